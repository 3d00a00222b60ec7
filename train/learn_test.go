package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/data"
)

// TestLearnsGoCorpus trains the tiny dense and MoE presets briefly on real Go
// source and requires a validation loss well under the unigram entropy: the
// models use context, not just token frequencies. The MoE run must log expert
// load balance.
func TestLearnsGoCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two models")
	}
	dataDir := corpus(t, 600_000)
	ds, err := data.OpenShards(dataDir, "train")
	if err != nil {
		t.Fatal(err)
	}
	h, err := UnigramEntropy(ds)
	ds.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, preset := range []string{"tiny", "tiny-moe"} {
		t.Run(preset, func(t *testing.T) {
			c := Defaults()
			c.Preset, c.Data, c.Out = preset, dataDir, filepath.Join(t.TempDir(), "run")
			c.Batch, c.Seq, c.Steps, c.Warmup, c.LR, c.MinLR = 8, 64, 150, 15, 4e-3, 4e-4
			c.EvalEvery, c.EvalBatches, c.SaveEvery, c.LogEvery = 150, 8, 0, 0
			tr, err := New(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: val loss %.3f, unigram entropy %.3f", preset, sum.ValLoss, h)
			if sum.ValLoss > 0.8*h {
				t.Errorf("validation loss %.3f is not well under the unigram entropy %.3f", sum.ValLoss, h)
			}
			if preset == "tiny-moe" {
				b, _ := os.ReadFile(filepath.Join(c.Out, "metrics.jsonl"))
				if !strings.Contains(string(b), `"moe_load":[[`) {
					t.Error("metrics.jsonl has no expert load")
				}
			}
		})
	}
}
