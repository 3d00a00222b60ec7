package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/tokenizer"
)

// codec wraps a model's tokenizer with what serving needs: prompt encoding,
// chat rendering, token bytes for logprobs and constraints, and the ids and
// strings that end a turn.
type codec struct {
	c     infer.Codec
	tk    *tokenizer.Tokenizer // nil for the byte-level codec
	vocab int
	// template is the chat template (MAI's ChatML default when the tokenizer
	// has none); chatML tells whether turns end with <|im_end|>.
	template string
	chatML   bool
	// eos ends generation; stops are stop strings every chat request gets
	// (the turn delimiter, for tokenizers that cannot produce it as one id).
	eos       []int32
	chatStops []string
	tokBytes  [][]byte
}

func newCodec(c infer.Codec, vocab, modelEOS int) *codec {
	k := &codec{c: c, vocab: vocab}
	k.tk, _ = c.(*tokenizer.Tokenizer)
	addEOS := func(id int) {
		if id >= 0 && id < vocab && !slices.Contains(k.eos, int32(id)) {
			k.eos = append(k.eos, int32(id))
		}
	}
	addEOS(modelEOS)
	addEOS(c.EOT())
	k.template = tokenizer.DefaultChatTemplate
	if k.tk != nil {
		if t := k.tk.Config().ChatTemplate; t != "" {
			k.template = t
		}
		for _, name := range []string{"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", k.tk.Config().EOSToken} {
			if id, ok := k.tk.SpecialID(name); ok {
				addEOS(id)
			}
		}
	}
	k.chatML = strings.Contains(k.template, "<|im_start|>")
	if k.chatML {
		if _, ok := k.special("<|im_end|>"); !ok {
			k.chatStops = []string{"<|im_end|>"}
		}
	}
	k.tokBytes = make([][]byte, vocab)
	for id := range k.tokBytes {
		k.tokBytes[id] = k.bytesOf(id)
	}
	return k
}

func (k *codec) special(name string) (int, bool) {
	if k.tk == nil {
		return 0, false
	}
	return k.tk.SpecialID(name)
}

// bytesOf returns the bytes a token stands for (none for special tokens).
func (k *codec) bytesOf(id int) []byte {
	if k.tk != nil {
		if _, ok := k.tk.Token(id); !ok || k.tk.IsSpecial(id) {
			return nil // special, or padding past the tokenizer's vocabulary
		}
		return k.tk.AppendDecode(nil, []int{id})
	}
	return []byte(k.c.Decode([]int{id}))
}

// tokenText is the text shown for a token in logprobs.
func (k *codec) tokenText(id int32) string {
	if k.tk != nil && k.tk.IsSpecial(int(id)) {
		return k.tk.Decode([]int{int(id)})
	}
	if int(id) < len(k.tokBytes) {
		return string(k.tokBytes[id])
	}
	return ""
}

// encode tokenizes ordinary text (special-token text stays text), adding the
// tokens the model expects around a sequence (such as Llama's BOS).
func (k *codec) encode(text string) []int32 {
	var ids []int
	if k.tk != nil {
		ids = k.tk.AddSpecialTokens(k.tk.Encode(text))
	} else {
		ids = k.c.Encode(text)
	}
	return to32(ids)
}

// encodeTemplated tokenizes a rendered chat prompt, whose special-token text
// (such as <|im_start|>) becomes the special ids.
func (k *codec) encodeTemplated(text string) []int32 {
	if k.tk != nil {
		return to32(k.tk.EncodeWithSpecial(text))
	}
	return to32(k.c.Encode(text))
}

func (k *codec) decode(ids []int32) string {
	x := make([]int, len(ids))
	for i, v := range ids {
		x[i] = int(v)
	}
	return k.c.Decode(x)
}

// renderChat renders messages with the model's chat template, adding the
// tool descriptions to the system message when tools are given.
func (k *codec) renderChat(msgs []tokenizer.Message, tools []Tool) (string, error) {
	if len(tools) > 0 {
		desc, err := toolsPrompt(tools)
		if err != nil {
			return "", err
		}
		if len(msgs) > 0 && msgs[0].Role == "system" {
			msgs = slices.Clone(msgs)
			msgs[0].Content += "\n\n" + desc
		} else {
			msgs = append([]tokenizer.Message{{Role: "system", Content: desc}}, msgs...)
		}
	}
	if k.tk != nil {
		out, err := k.tk.ApplyChatTemplate(msgs, true)
		if err == nil || !errors.Is(err, tokenizer.ErrNoChatTemplate) {
			return out, err
		}
	}
	return tokenizer.RenderChatTemplate(k.template, msgs, true, nil)
}

// toolsPrompt describes tools the way Hermes- and Qwen-style templates do:
// the model answers a call with <tool_call>{"name":..., "arguments":...}</tool_call>.
func toolsPrompt(tools []Tool) (string, error) {
	var b strings.Builder
	b.WriteString("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n")
	b.WriteString("You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
	for _, t := range tools {
		j, err := json.Marshal(t)
		if err != nil {
			return "", fmt.Errorf("tools: %w", err)
		}
		b.WriteString("\n")
		b.Write(j)
	}
	b.WriteString("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n")
	b.WriteString("<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")
	return b.String(), nil
}

func to32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out
}
