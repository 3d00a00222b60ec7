package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// QuickstartOptions configures Quickstart.
type QuickstartOptions struct {
	Corpus  string  // text tree; default: the Go standard library source
	Preset  string  // model preset; default tiny
	Minutes float64 // training time budget
	Out     string  // run directory
	Threads int
	Seed    uint64
	// MaxBytes bounds the corpus read (spread over the whole tree).
	MaxBytes int64
}

// DefaultSnippets are the Go prompts the quickstart completes.
var DefaultSnippets = []string{
	"func main() {\n\t",
	"if err != nil {\n\t\treturn ",
	"for i := 0; i < len(",
	"// Package ",
}

// Quickstart trains a small model on a corpus for a few minutes, showing the
// loss fall, saves it, and completes a few Go snippets with it.
func Quickstart(ctx context.Context, o QuickstartOptions, w io.Writer) error {
	if o.Corpus == "" {
		o.Corpus = filepath.Join(GoRoot(), "src")
	}
	if o.Preset == "" {
		o.Preset = "tiny"
	}
	if o.Minutes <= 0 {
		o.Minutes = 3
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 24 << 20
	}
	fmt.Fprintf(w, "MAI quickstart: preset %s, corpus %s, %.1f minutes, output %s\n", o.Preset, o.Corpus, o.Minutes, o.Out)
	shards, err := EnsureShards(o.Corpus, filepath.Join(o.Out, "data"), o.MaxBytes)
	if err != nil {
		return err
	}
	cfg := Defaults()
	cfg.Preset, cfg.Data, cfg.Out, cfg.Threads, cfg.Seed = o.Preset, shards, o.Out, o.Threads, o.Seed
	cfg.Batch, cfg.Seq, cfg.LR, cfg.MinLR, cfg.Warmup = 16, 128, 2e-3, 2e-4, 30
	cfg.EvalEvery, cfg.EvalBatches, cfg.SaveEvery, cfg.LogEvery = 50, 8, 100, 10
	cfg.Minutes = o.Minutes
	per, err := stepSeconds(cfg)
	if err != nil {
		return err
	}
	cfg.Steps = max(20, int(o.Minutes*60*0.9/per))
	fmt.Fprintf(w, "one step of %d×%d tokens takes %.2fs here: planning %d steps\n", cfg.Batch, cfg.Seq, per, cfg.Steps)
	tr, err := New(cfg, w)
	if err != nil {
		return err
	}
	if tr.step >= cfg.Steps {
		fmt.Fprintf(w, "%s already holds a finished run (step %d); delete it to train again\n", o.Out, tr.step)
	}
	sum, err := tr.Run(ctx)
	if err != nil {
		return err
	}
	h, err := UnigramEntropy(tr.train)
	if err != nil {
		return err
	}
	v, err := tr.Validate(cfg.EvalBatches)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\ntrained %d steps (%d tokens) in %s: validation loss %.3f nats/token (%.2f bits/byte) vs unigram entropy %.3f\n",
		sum.Steps, sum.Tokens, sum.Elapsed.Round(time.Second), v, v/math.Ln2, h)
	fmt.Fprintf(w, "model saved in %s\n  try: mai generate --model %s --prompt 'func main() {' --max-tokens 200\n\n", sum.ModelDir, o.Out)
	return Complete(ctx, tr.Model, DefaultSnippets, 160, w)
}

// Complete prints sampled completions of each prompt with a byte-level model.
func Complete(ctx context.Context, m *model.Model, prompts []string, n int, w io.Writer) error {
	codec := infer.ByteCodec{}
	for i, p := range prompts {
		ids := toInt32(codec.Encode(p))
		res, err := infer.Generate(ctx, m, ids, infer.Options{MaxTokens: n, EOS: []int32{int32(codec.EOT())},
			Sampling: infer.Sampling{Temperature: 0.7, TopK: 40, Seed: uint64(i + 1)}}, nil)
		if err != nil {
			return err
		}
		text := codec.Decode(toInt(res.IDs))
		fmt.Fprintf(w, "── completion %d ──\n%s\x1b[1m%s\x1b[0m\n", i+1, p, strings.ToValidUTF8(text, "?"))
	}
	return nil
}

// stepSeconds times two optimizer steps of a throwaway model of the run's shape.
func stepSeconds(cfg Config) (float64, error) {
	ds, err := data.OpenShards(cfg.Data, "train")
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	c, err := model.Preset(cfg.Preset)
	if err != nil {
		return 0, err
	}
	c.Vocab = ds.VocabSize()
	m, err := model.New(c, true)
	if err != nil {
		return 0, err
	}
	m.Init(1)
	x := make([]int32, cfg.Batch*cfg.Seq)
	tp := nn.NewTape(nil, true)
	var best float64 = math.Inf(1)
	for range 3 {
		t0 := time.Now()
		tp.Reset()
		loss, _, _, err := m.Loss(tp, x, x, cfg.Batch, cfg.Seq)
		if err != nil {
			return 0, err
		}
		if err := tp.Backward(loss); err != nil {
			return 0, err
		}
		best = min(best, time.Since(t0).Seconds())
	}
	return best, nil
}

func toInt32(a []int) []int32 {
	out := make([]int32, len(a))
	for i, v := range a {
		out[i] = int32(v)
	}
	return out
}

func toInt(a []int32) []int {
	out := make([]int, len(a))
	for i, v := range a {
		out[i] = int(v)
	}
	return out
}
