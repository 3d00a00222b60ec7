package eval_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/eval"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/train"
)

// TestScoresRiseOverTraining trains the tiny preset briefly on a small Go
// corpus, evaluates every checkpoint of the run (as mai eval compare does)
// and checks that the scores improve and the plot is drawn.
func TestScoresRiseOverTraining(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	run := t.TempDir()
	shards, err := train.EnsureShards("testdata/gocode", filepath.Join(run, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := train.Defaults()
	cfg.Preset, cfg.Data, cfg.Out = "tiny", shards, run
	cfg.Batch, cfg.Seq, cfg.Steps, cfg.Warmup, cfg.LR, cfg.MinLR = 4, 64, 60, 5, 3e-3, 1e-3
	cfg.SaveEvery, cfg.Keep, cfg.EvalEvery, cfg.LogEvery = 30, 0, 0, 0
	tr, err := train.New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The trainer saves no step 0: write the run's initial weights (same
	// preset, vocabulary and seed) as its first checkpoint.
	c, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.Vocab, c.EOS = 257, 256
	m0, err := model.New(c, false)
	if err != nil {
		t.Fatal(err)
	}
	m0.Init(cfg.Seed)
	if err := m0.Save(filepath.Join(run, "checkpoints", "step-0000000"), "f32", 0); err != nil {
		t.Fatal(err)
	}

	// Held-in text, so that a few steps show: the corpus the model saw.
	var texts []string
	files, _ := filepath.Glob("testdata/gocode/*.txt")
	for _, f := range files[:6] {
		b, _ := os.ReadFile(f)
		texts = append(texts, string(b))
	}
	var ppl bytes.Buffer
	ppl.WriteString(`{"mai_task":{"name":"corpus-ppl","kind":"perplexity"}}` + "\n")
	for _, tx := range texts {
		ppl.WriteString(`{"text":` + quote(tx) + "}\n")
	}
	task, err := eval.ParseTask("corpus-ppl", &ppl)
	if err != nil {
		t.Fatal(err)
	}
	opt := eval.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rs, err := eval.EvalRun(context.Background(), run, []*eval.Task{task}, opt, eval.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[0].Step != 0 || rs[1].Step != 30 || rs[2].Step != 60 {
		t.Fatalf("%d checkpoints evaluated, want steps 0, 30 and 60", len(rs))
	}
	first, last := rs[0].Tasks[0].Metrics["bits_per_byte"], rs[len(rs)-1].Tasks[0].Metrics["bits_per_byte"]
	t.Logf("bits per byte: step %d %.3f → step %d %.3f", rs[0].Step, first, rs[len(rs)-1].Step, last)
	if mid := rs[1].Tasks[0].Metrics["bits_per_byte"]; !(last < first-1 && mid < first-1) {
		t.Errorf("bits per byte did not fall over training: %.3f → %.3f", first, last)
	}
	// Cached: a second call evaluates nothing new and returns the same.
	again, err := eval.EvalRun(context.Background(), run, []*eval.Task{task}, opt, eval.LocalOptions{})
	if err != nil || again[2].Tasks[0].Metrics["bits_per_byte"] != last {
		t.Errorf("cached results differ: %v", err)
	}
	m, err := eval.ReadTrainMetrics(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ss := append(eval.ResultSeries("tiny", rs), eval.TrainSeries("tiny", m, "loss")...)
	var tab strings.Builder
	if err := eval.WriteSeriesTable(&tab, ss); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", tab.String())
	png1 := filepath.Join(run, "scores.png")
	if err := eval.Plot(png1, "tiny", ss); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
		t.Errorf("plot is %v", b)
	}
}

func quote(s string) string {
	var b bytes.Buffer
	enc := jsonEncoder(&b)
	enc.Encode(s)
	return strings.TrimSpace(b.String())
}

func jsonEncoder(w io.Writer) *json.Encoder { return json.NewEncoder(w) }
