package tokenizer

import (
	"errors"
	"fmt"
	"sync"
	"time"

	jinja "github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// DefaultChatTemplate is MAI's chat template: ChatML, the format of
// <|im_start|>role\ncontent<|im_end|>\n turns that Qwen and many open models use.
const DefaultChatTemplate = `{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

// ErrNoChatTemplate is returned when a tokenizer has no chat template and
// no <|im_start|> token for MAI's default one.
var ErrNoChatTemplate = errors.New("tokenizer has no chat template")

// chatTemplates caches compiled templates by source (a registry).
var chatTemplates sync.Map // string -> func() (*exec.Template, error)

func compileChatTemplate(src string) (*exec.Template, error) {
	f, _ := chatTemplates.LoadOrStore(src, sync.OnceValues(func() (*exec.Template, error) {
		// Hugging Face renders chat templates with trim_blocks and lstrip_blocks.
		cfg := config.New()
		cfg.TrimBlocks = true
		cfg.LeftStripBlocks = true
		cfg.KeepTrailingNewline = false
		mem, err := loaders.NewMemoryLoader(map[string]string{"/chat_template": src})
		if err != nil {
			return nil, err
		}
		env := &exec.Environment{
			Context:           exec.EmptyContext().Update(jinja.GlobalFunctions).Update(jinja.GlobalVariables),
			Filters:           jinja.Filters,
			Tests:             jinja.Tests,
			ControlStructures: jinja.ControlStructures,
			Methods:           jinja.Methods,
		}
		return exec.NewTemplate("/chat_template", cfg, mem, env)
	}))
	return f.(func() (*exec.Template, error))()
}

// RenderChatTemplate renders a Jinja chat template the way Hugging Face's
// apply_chat_template does, with messages, add_generation_prompt, the
// special-token variables in vars (bos_token, eos_token, ...) and the
// raise_exception and strftime_now functions.
func RenderChatTemplate(template string, msgs []Message, addGenerationPrompt bool, vars map[string]any) (out string, err error) {
	tpl, err := compileChatTemplate(template)
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat template: %w", err)
	}
	messages := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		messages[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	data := map[string]any{
		"messages":              messages,
		"add_generation_prompt": addGenerationPrompt,
		"raise_exception": func(msg string) (string, error) {
			return "", fmt.Errorf("template raised: %s", msg)
		},
		"strftime_now": func(format string) string { return strftime(time.Now(), format) },
	}
	for k, v := range vars {
		data[k] = v
	}
	defer func() {
		if r := recover(); r != nil { // the template engine panics on some malformed templates
			out, err = "", fmt.Errorf("tokenizer: chat template: %v", r)
		}
	}()
	out, err = tpl.ExecuteToString(exec.NewContext(data))
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat template: %w", err)
	}
	return out, nil
}

// ApplyChatTemplate renders msgs into the prompt text the model was trained
// on, ending with the assistant header when addGenerationPrompt is set. It
// uses the chat_template of tokenizer_config.json, else MAI's
// [DefaultChatTemplate] if the vocabulary has <|im_start|>.
func (t *Tokenizer) ApplyChatTemplate(msgs []Message, addGenerationPrompt bool) (string, error) {
	tmpl := t.cfg.ChatTemplate
	if tmpl == "" {
		if _, ok := t.specials["<|im_start|>"]; !ok {
			return "", fmt.Errorf("tokenizer: %s: %w", t.name, ErrNoChatTemplate)
		}
		tmpl = DefaultChatTemplate
	}
	vars := map[string]any{
		"bos_token": t.cfg.BOSToken, "eos_token": t.cfg.EOSToken,
		"pad_token": t.cfg.PadToken, "unk_token": t.cfg.UnkToken,
	}
	return RenderChatTemplate(tmpl, msgs, addGenerationPrompt, vars)
}

// strftime formats t with the C strftime directives chat templates use.
func strftime(t time.Time, format string) string {
	repl := map[byte]string{
		'Y': "2006", 'm': "01", 'd': "02", 'H': "15", 'M': "04", 'S': "05",
		'y': "06", 'b': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday", 'p': "PM", 'Z': "MST",
	}
	var out []byte
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && i+1 < len(format) {
			i++
			switch c := format[i]; c {
			case '%':
				out = append(out, '%')
			case 'e':
				out = fmt.Appendf(out, "%d", t.Day())
			case 'j':
				out = fmt.Appendf(out, "%03d", t.YearDay())
			default:
				if layout, ok := repl[c]; ok {
					out = append(out, t.Format(layout)...)
				} else {
					out = append(out, '%', c)
				}
			}
			continue
		}
		out = append(out, format[i])
	}
	return string(out)
}
