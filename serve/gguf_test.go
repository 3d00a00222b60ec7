package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

// TestServeGGUF serves a GGUF file (weights and the tokenizer from its
// metadata) and checks ignore_eos: a model whose end-of-text is the token it
// picks first stops at once, unless the request ignores EOS.
func TestServeGGUF(t *testing.T) {
	dir, err := byteModelDir()
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	prompt := "Hello there"
	ids := make([]int32, len(prompt))
	for i := range prompt {
		ids[i] = int32(prompt[i])
	}
	r, err := infer.Generate(context.Background(), m, ids, infer.Options{MaxTokens: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := r.IDs[0]
	m.Cfg.EOS = int(first)
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := m.SaveGGUF(path, model.GGUFOptions{TokenizerDir: dir}); err != nil {
		t.Fatal(err)
	}
	g, err := LoadModel("g", path, "", infer.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Log: quietLog()}, g)
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, s)
	for _, tt := range []struct {
		ignore bool
		tokens int
		reason string
	}{{false, 0, "stop"}, {true, 8, "length"}} {
		body := `{"model":"g","prompt":"` + prompt + `","max_tokens":8,"temperature":0,"ignore_eos":` + map[bool]string{false: "false", true: "true"}[tt.ignore] + `}`
		resp, err := httpClient.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out CompletionResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("ignore_eos %v: status %d, %v", tt.ignore, resp.StatusCode, err)
		}
		reason := ""
		if len(out.Choices) == 1 && out.Choices[0].FinishReason != nil {
			reason = *out.Choices[0].FinishReason
		}
		if out.Usage.PromptTokens != len(prompt) || out.Usage.CompletionTokens != tt.tokens || reason != tt.reason {
			t.Errorf("ignore_eos %v: usage %+v, finish %q; want %d prompt and %d completion tokens, %q",
				tt.ignore, out.Usage, reason, len(prompt), tt.tokens, tt.reason)
		}
	}
}
