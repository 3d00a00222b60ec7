package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/tokenizer"
)

func TestSFTMasksAllButAssistant(t *testing.T) {
	tok, err := tokenizer.Load("byte")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []tokenizer.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "Say hi."},
		{Role: "assistant", Content: "Hi."},
		{Role: "user", Content: "Again?"},
		{Role: "assistant", Content: "Hi again."},
	}
	ids, mask, err := EncodeChat(tok, msgs)
	if err != nil {
		t.Fatal(err)
	}
	var trained, all strings.Builder
	for i, id := range ids {
		s := tok.Decode([]int{int(id)})
		all.WriteString(s)
		if mask[i] {
			trained.WriteString(s)
		}
	}
	if got, want := trained.String(), "Hi.<|im_end|>\nHi again.<|im_end|>\n"; got != want {
		t.Fatalf("trained tokens %q, want %q (conversation %q)", got, want, all.String())
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	lines := `{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi."},{"role":"assistant","content":"Hi."}]}
{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}
{"messages":[{"role":"user","content":"no answer"}]}
`
	os.WriteFile(path, []byte(lines), 0o644)
	set, err := LoadSFT(path, tok, 256)
	if err != nil {
		t.Fatal(err)
	}
	if set.Examples != 3 || set.Skipped != 1 || len(set.Rows) != 1 {
		t.Fatalf("examples %d skipped %d rows %d", set.Examples, set.Skipped, len(set.Rows))
	}
	r := set.Rows[0]
	var got strings.Builder
	for i, y := range r.Y {
		if y >= 0 {
			got.WriteString(tok.Decode([]int{int(y)}))
			if r.Start[i] != r.Start[i+1] && i+1 < len(r.Start) {
				t.Fatalf("target at %d crosses a conversation boundary", i)
			}
		}
	}
	if want := "Hi.<|im_end|>\n4<|im_end|>\n"; got.String() != want {
		t.Fatalf("targets carrying loss %q, want %q", got.String(), want)
	}
	// Positions restart at each packed conversation.
	second := -1
	for i := range r.Start {
		if r.Start[i] != 0 {
			second = i
			break
		}
	}
	if second <= 0 || r.Pos[second] != 0 || r.Pos[second-1] == 0 {
		t.Fatalf("positions do not restart at the second conversation (at %d)", second)
	}
	if _, err := LoadSFT(filepath.Join(dir, "missing.jsonl"), tok, 64); err == nil {
		t.Fatal("want an error for a missing file")
	}
	os.WriteFile(path, []byte("{not json\n"), 0o644)
	if _, err := LoadSFT(path, tok, 64); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("want an error naming line 1, got %v", err)
	}
}
