package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSFTRun fine-tunes on chat JSONL: the held-out loss falls, and an
// interrupted run resumes exactly.
func TestSFTRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	f, _ := os.Create(path)
	for i := 0; i < 400; i++ {
		a, b := i%17, (i*7)%13
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("%d+%d?", a, b)},
			{"role": "assistant", "content": fmt.Sprint(a + b)},
		}})
		f.Write(append(line, '\n'))
	}
	f.Close()
	cfg := Defaults()
	cfg.SFT, cfg.Preset = path, "tiny"
	cfg.Batch, cfg.Seq, cfg.Steps, cfg.Warmup, cfg.LR = 4, 128, 40, 4, 3e-3
	cfg.EvalEvery, cfg.EvalBatches, cfg.SaveEvery, cfg.LogEvery = 20, 4, 10, 0
	cfg.Threads = 2
	run := func(out string, stop int) ([]float64, []float64) {
		c := cfg
		c.Out, c.StopAfter = out, stop
		tr, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Run(context.Background()); err != nil && !errors.Is(err, ErrStopped) {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		var loss, val []float64
		for _, l := range splitLines(b) {
			var m Metrics
			json.Unmarshal(l, &m)
			loss = append(loss, m.Loss)
			if m.ValLoss != nil {
				val = append(val, *m.ValLoss)
			}
		}
		return loss, val
	}
	full := filepath.Join(dir, "full")
	want, val := run(full, 0)
	if len(val) != 2 || val[1] >= val[0] {
		t.Fatalf("held-out SFT loss did not fall: %v", val)
	}
	part := filepath.Join(dir, "part")
	run(part, 15)
	got, _ := run(part, 0)
	if !slices.Equal(got, want) {
		t.Fatalf("resumed SFT losses differ:\n got %v\nwant %v", got, want)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}
