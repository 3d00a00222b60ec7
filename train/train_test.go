package train

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mai-llm/mai/data"
)

// corpus writes shards of real text (Go source from GOROOT) for tests.
func corpus(t *testing.T, maxBytes int) string {
	t.Helper()
	root := filepath.Join(goroot(t), "src", "strings")
	var docs []string
	total := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || total > maxBytes {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			docs = append(docs, string(b))
			total += len(b)
		}
		return nil
	})
	dir := t.TempDir()
	if err := data.WriteShards(dir, slices.Values(docs), data.ByteEncoder{}, data.ShardOptions{ValFraction: 0.1, Tokenizer: "byte"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func goroot(t *testing.T) string {
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	return "/usr/local/go"
}

func tinyConfig(dataDir, out string) Config {
	c := Defaults()
	c.Data, c.Out = dataDir, out
	c.Batch, c.Seq, c.Steps, c.Warmup = 4, 64, 30, 5
	c.EvalEvery, c.EvalBatches, c.SaveEvery, c.LogEvery = 10, 2, 10, 0
	c.Threads = 2
	return c
}

func readLosses(t *testing.T, out string) []float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ls []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m Metrics
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m.Step != len(ls)+1 {
			t.Fatalf("metrics step %d at line %d", m.Step, len(ls)+1)
		}
		ls = append(ls, m.Loss)
	}
	return ls
}

func TestResumeIsExact(t *testing.T) {
	for _, preset := range []string{"tiny", "tiny-moe"} {
		t.Run(preset, func(t *testing.T) {
			dataDir := corpus(t, 300_000)
			full := filepath.Join(t.TempDir(), "full")
			cfg := tinyConfig(dataDir, full)
			cfg.Preset = preset
			tr, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := readLosses(t, full)
			if len(want) != cfg.Steps || want[len(want)-1] >= want[0] {
				t.Fatalf("losses did not fall: %v", want)
			}
			if sum.ValLoss == 0 {
				t.Fatal("no validation loss")
			}

			// Interrupted at step 15 (checkpoint at 10), then resumed.
			part := filepath.Join(t.TempDir(), "part")
			cfg.Out = part
			cfg.StopAfter = 15
			tr, err = New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Run(context.Background()); !errors.Is(err, ErrStopped) {
				t.Fatalf("want ErrStopped, got %v", err)
			}
			cfg.StopAfter = 0
			tr, err = New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tr.step != 10 {
				t.Fatalf("resumed at step %d, want 10", tr.step)
			}
			if _, err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := readLosses(t, part)
			if !slices.Equal(got, want) {
				t.Fatalf("resumed losses differ:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	c := Defaults()
	c.LR, c.MinLR, c.Warmup, c.Steps = 1, 0.1, 10, 110
	if got := c.LRAt(0); got != 0.1 {
		t.Errorf("warmup start %v", got)
	}
	if got := c.LRAt(9); got != 1 {
		t.Errorf("warmup end %v", got)
	}
	if got := c.LRAt(110); got < 0.0999 || got > 0.1001 {
		t.Errorf("cosine end %v", got)
	}
	c.Schedule = "wsd"
	if got := c.LRAt(50); got != 1 {
		t.Errorf("wsd stable %v", got)
	}
	if got := c.LRAt(109); got < 0.0999 || got > 0.1001 {
		t.Errorf("wsd end %v", got)
	}
}

func TestBadInput(t *testing.T) {
	c := Defaults()
	c.Out = t.TempDir()
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "no data") {
		t.Errorf("missing data: %v", err)
	}
	c.Data = t.TempDir()
	if _, err := New(c, nil); err == nil {
		t.Error("empty data dir: want an error")
	}
}
