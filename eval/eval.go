// Package eval measures what a language model can do: perplexity and bits per
// byte on held-out text, multiple-choice tasks scored by log-likelihood,
// generation tasks with answer extraction, and Go code tasks run against
// their tests in a sandbox with pass@k. A Backend is a model in this process
// or any OpenAI-compatible server; Run evaluates tasks on it, and Compare
// follows scores over the checkpoints of a training run.
package eval

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Options controls a Run.
type Options struct {
	// Limit scores at most this many items per task (0: all).
	Limit int
	// NumFewshot overrides each task's number of few-shot examples (0: the
	// task's own; negative: none).
	NumFewshot int
	// Seed fixes the choice of few-shot examples, the subset under Limit and
	// sampling.
	Seed uint64
	// Stride is the sliding-window step in tokens for perplexity (0: half the
	// context).
	Stride int
	// Samples is the number of completions per code task (n of pass@k;
	// default 1), Ks the k values reported (default 1 and 10 where k ≤ n).
	Samples int
	Ks      []int
	// Temperature for generation and code samples (default 0, greedy, for
	// one sample, and 0.8 for several).
	Temperature *float64
	// MaxTokens overrides the tasks' generation budgets.
	MaxTokens int
	// Sandbox configures code execution.
	Sandbox SandboxOptions
	// KeepSamples records each item's prompt, prediction and score.
	KeepSamples bool
	// Log receives progress (default slog.Default()).
	Log *slog.Logger
}

// Results is what Run returns: one entry per task.
type Results struct {
	Model string       `json:"model"`
	Step  int          `json:"step,omitempty"` // training step, when known
	Time  string       `json:"time"`
	Tasks []TaskResult `json:"tasks"`
}

// TaskResult holds a task's metrics (see docs/eval.md for their meaning).
type TaskResult struct {
	Task     string             `json:"task"`
	Kind     string             `json:"kind"`
	N        int                `json:"n"`
	Fewshot  int                `json:"num_fewshot"`
	Metrics  map[string]float64 `json:"metrics"`
	Stderr   map[string]float64 `json:"stderr,omitempty"`
	Seconds  float64            `json:"seconds"`
	Warnings []string           `json:"warnings,omitempty"`
	Samples  []Sample           `json:"samples,omitempty"`
}

// Sample is one scored item, kept with Options.KeepSamples.
type Sample struct {
	ID         string    `json:"id,omitempty"`
	Prompt     string    `json:"prompt,omitempty"`
	LogProbs   []float64 `json:"logprobs,omitempty"`
	Pred       int       `json:"pred"`
	Gold       int       `json:"gold"`
	Output     []string  `json:"output,omitempty"`
	Passed     []bool    `json:"passed,omitempty"`
	Correct    bool      `json:"correct"`
	Diagnostic string    `json:"diagnostic,omitempty"`
}

// Flat returns every metric as "task/metric" → value, the form a training
// loop logs and Compare plots.
func (r *Results) Flat() map[string]float64 {
	out := map[string]float64{}
	for _, t := range r.Tasks {
		for k, v := range t.Metrics {
			out[t.Task+"/"+k] = v
		}
	}
	return out
}

// Run evaluates tasks on a backend.
func Run(ctx context.Context, b Backend, tasks []*Task, opt Options) (*Results, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	res := &Results{Model: b.Name(), Time: time.Now().UTC().Format(time.RFC3339)}
	for _, t := range tasks {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		start := time.Now()
		var tr *TaskResult
		var err error
		switch t.Kind {
		case KindPerplexity:
			tr, err = runPerplexity(ctx, b, t, opt)
		case KindMultipleChoice:
			tr, err = runMultipleChoice(ctx, b, t, opt)
		case KindGenerate:
			tr, err = runGenerate(ctx, b, t, opt)
		case KindCode:
			tr, err = runCode(ctx, b, t, opt)
		}
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", t.Name, err)
		}
		tr.Task, tr.Kind = t.Name, t.Kind
		tr.Seconds = time.Since(start).Seconds()
		opt.Log.Info("evaluated", "task", t.Name, "items", tr.N, "metrics", tr.Metrics, "seconds", math.Round(tr.Seconds*10)/10)
		res.Tasks = append(res.Tasks, *tr)
	}
	return res, nil
}

// items returns the task's items, a seeded subset of Limit when set.
func items(t *Task, opt Options) []Item {
	its := t.Items
	if opt.Limit > 0 && opt.Limit < len(its) {
		r := rand.New(rand.NewPCG(opt.Seed, 0x6974656d))
		idx := r.Perm(len(its))[:opt.Limit]
		sort.Ints(idx)
		sub := make([]Item, len(idx))
		for i, k := range idx {
			sub[i] = its[k]
		}
		its = sub
	}
	return its
}

func numFewshot(t *Task, opt Options) int {
	switch {
	case opt.NumFewshot < 0:
		return 0
	case opt.NumFewshot > 0:
		return opt.NumFewshot
	}
	return t.NumFewshot
}

// fewshot picks k examples for item i: from the task's few-shot split, or
// else from its other items, seeded per item.
func fewshot(t *Task, it Item, i, k int, seed uint64) []Item {
	if k <= 0 {
		return nil
	}
	pool := t.Fewshot
	if len(pool) == 0 {
		pool = t.Items
	}
	r := rand.New(rand.NewPCG(seed, uint64(i)+1))
	var out []Item
	for _, j := range r.Perm(len(pool)) {
		if len(out) == k {
			break
		}
		if pool[j].ID == it.ID && pool[j].Context == it.Context && pool[j].Prompt == it.Prompt {
			continue // never show an item its own answer
		}
		out = append(out, pool[j])
	}
	return out
}

// meanStderr returns the mean of xs and its standard error.
func meanStderr(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	if len(xs) < 2 {
		return m, 0
	}
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)-1) / float64(len(xs)))
}

func runPerplexity(ctx context.Context, b Backend, t *Task, opt Options) (*TaskResult, error) {
	its := items(t, opt)
	texts := make([]string, len(its))
	for i, it := range its {
		texts[i] = it.Text
	}
	p, err := PerplexityTexts(ctx, b, texts, opt.Stride)
	if err != nil {
		return nil, err
	}
	return &TaskResult{N: len(its), Metrics: map[string]float64{
		"bits_per_byte": p.BitsPerByte, "byte_perplexity": p.BytePerplexity, "word_perplexity": p.WordPerplexity,
		"token_perplexity": p.PPL, "nll": p.NLL, "tokens": float64(p.Tokens), "bytes": float64(p.Bytes),
	}}, nil
}
