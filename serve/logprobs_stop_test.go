package serve

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mai-llm/mai/infer"
)

// TestChatLogprobsStopAtContent: chat logprobs cover the tokens of the
// returned content only — a stop string's tokens (and an end-of-text
// token) are left out, streamed or not, as OpenAI's API does.
func TestChatLogprobsStopAtContent(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	// The random byte model writes valid JSON under a schema; the stop
	// string cuts it right after the opening brace, two tokens before the
	// end of what the engine generated.
	schema := map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}},
		"required": []string{"answer"}, "additionalProperties": false}
	body := map[string]any{"model": "tiny", "messages": []map[string]any{{"role": "user", "content": "Hello"}},
		"max_tokens": 16, "temperature": 0, "logprobs": true, "stop": []string{`"an`},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "a", "schema": schema, "strict": true}}}
	joined := func(lps []ChatTokenLogprob) string {
		var b []byte
		for _, lp := range lps {
			for _, x := range lp.Bytes {
				b = append(b, byte(x))
			}
		}
		return string(b)
	}
	var resp ChatResponse
	if code := post(t, ts.URL+"/v1/chat/completions", "", body, &resp); code != 200 {
		t.Fatalf("%d %+v", code, resp)
	}
	c := resp.Choices[0]
	want := *c.Message.Content
	if !strings.HasPrefix(want, "{") || strings.Contains(want, `"`) || *c.FinishReason != "stop" {
		t.Fatalf("content %q (finish %s), want an opening brace cut at the stop string", want, *c.FinishReason)
	}
	if got := joined(c.Logprobs.Content); got != want {
		t.Errorf("logprob tokens spell %q, want the content %q", got, want)
	}
	if resp.Usage.CompletionTokens <= len(c.Logprobs.Content) {
		t.Errorf("%d completion tokens, %d logprobs: the stop string's tokens should be counted but not reported", resp.Usage.CompletionTokens, len(c.Logprobs.Content))
	}

	body["stream"] = true
	var content string
	var lps []ChatTokenLogprob
	for _, e := range sseEvents(t, ts.URL+"/v1/chat/completions", body) {
		if e == "[DONE]" {
			break
		}
		var ch ChatResponse
		if err := json.Unmarshal([]byte(e), &ch); err != nil {
			t.Fatal(err)
		}
		if len(ch.Choices) == 0 {
			continue
		}
		if d := ch.Choices[0].Delta; d != nil && d.Content != nil {
			content += *d.Content
		}
		if l := ch.Choices[0].Logprobs; l != nil {
			lps = append(lps, l.Content...)
		}
	}
	if content != want || joined(lps) != want {
		t.Errorf("stream: content %q, logprob tokens %q, want %q", content, joined(lps), want)
	}
}
