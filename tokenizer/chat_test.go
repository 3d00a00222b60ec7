package tokenizer

import (
	"errors"
	"strings"
	"testing"
)

func TestChatTemplates(t *testing.T) {
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: " Hi \n"}, {Role: "assistant", Content: "Hello."}, {Role: "user", Content: "Bye"}}
	tests := []struct {
		name, template string
		gen            bool
		want           string
	}{
		{"chatml", DefaultChatTemplate, true,
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi \n<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
		// Mistral-style: system merged into the first user turn, alternation checked.
		{"mistral", `{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'].strip() + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'].strip() + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- endif %}
{%- endfor %}`, true, "<s> [INST] Be brief.\n\nHi [/INST] Hello.</s> [INST] Bye [/INST]"},
		// trim_blocks and lstrip_blocks (which strip before block tags only), loop.last, namespace, filters.
		{"blocks", `{% set ns = namespace(n=0) %}
{% for m in messages %}
  {% set ns.n = ns.n + 1 %}
  {{ m.role | upper }}: {{ m.content | trim }}{% if not loop.last %} | {% endif %}
{% endfor %}
{{ ns.n }}{% if add_generation_prompt %}>{% endif %}`, false, "  SYSTEM: Be brief. |   USER: Hi |   ASSISTANT: Hello. |   USER: Bye4"}, // as Jinja2 renders it
	}
	vars := map[string]any{"bos_token": "<s>", "eos_token": "</s>"}
	for _, tt := range tests {
		got, err := RenderChatTemplate(tt.template, msgs, tt.gen, vars)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
	// raise_exception surfaces as an error.
	bad := []Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}
	if _, err := RenderChatTemplate(tests[1].template, bad, true, vars); err == nil || !strings.Contains(err.Error(), "alternate") {
		t.Errorf("raise_exception: err = %v", err)
	}
	if _, err := RenderChatTemplate("{% for %}", msgs, true, nil); err == nil {
		t.Error("malformed template: no error")
	}
	if _, err := mustLoad(t, "cl100k_base").ApplyChatTemplate(msgs, true); !errors.Is(err, ErrNoChatTemplate) {
		t.Errorf("cl100k_base: err = %v, want ErrNoChatTemplate", err)
	}
}
