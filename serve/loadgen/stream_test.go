package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestReadStream(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		tokens  int
		prompt  int
		wantErr string
	}{
		{"chat deltas", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n", 2, 0, ""},
		{"usage wins", "data: {\"choices\":[{\"text\":\"ab\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\ndata: [DONE]\n", 5, 7, ""},
		{"comments and events", ": ping\nevent: message\ndata:{\"choices\":[{\"text\":\"x\"}]}\n\ndata:[DONE]\n", 1, 0, ""},
		{"null error is no error", "data: {\"choices\":[{\"text\":\"x\"}],\"error\":null}\n\ndata: [DONE]\n", 1, 0, ""},
		{"error event", "data: {\"error\":{\"message\":\"boom\"}}\n\n", 0, 0, "error event"},
		{"no done", "data: {\"choices\":[{\"text\":\"x\"}]}\n\n", 0, 0, "without data: [DONE]"},
		{"bad chunk", "data: [1,2\n\n", 0, 0, "bad stream chunk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := readStream(strings.NewReader(tt.body), time.Now())
			if tt.wantErr != "" {
				if o.err == nil || !strings.Contains(o.err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", o.err, tt.wantErr)
				}
				return
			}
			if o.err != nil || o.tokens != tt.tokens || o.promptTokens != tt.prompt {
				t.Errorf("got %d tokens, %d prompt tokens, err %v; want %d, %d", o.tokens, o.promptTokens, o.err, tt.tokens, tt.prompt)
			}
		})
	}
}

// FuzzReadStream feeds arbitrary bytes as a server's event stream: the
// reader must never panic and must not count tokens for a failed stream.
func FuzzReadStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"text\":\"ab\"}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":-3}}\ndata: [DONE]\n"))
	f.Add([]byte("data: {\"error\":{}}\n"))
	f.Add([]byte("data:\n\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := readStream(strings.NewReader(string(b)), time.Now())
		if o.err != nil && (o.tokens != 0 || len(o.gaps) != 0) {
			t.Fatalf("failed stream counted %d tokens", o.tokens)
		}
	})
}
