package infer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/model"
)

func loadFixture(t *testing.T, name string) (*model.Model, []int32, []int32) {
	t.Helper()
	dir := filepath.Join("..", "model", "testdata", "hf", name)
	m, err := model.Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	prompt, _, err := ref.Int32("prompt")
	if err != nil {
		t.Fatal(err)
	}
	greedy, _, err := ref.Int32("greedy")
	if err != nil {
		t.Fatal(err)
	}
	return m, prompt, greedy
}

func TestGreedyMatchesTransformers(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		for _, noCache := range []bool{false, true} {
			m, prompt, want := loadFixture(t, name)
			res, err := Generate(context.Background(), m, prompt, Options{MaxTokens: len(want) - len(prompt), NoCache: noCache}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := append(slices.Clone(prompt), res.IDs...)
			if !slices.Equal(got, want) {
				t.Errorf("%s (noCache=%v): got %v\nwant %v", name, noCache, got, want)
			}
		}
	}
}

func TestCacheEqualsRecompute(t *testing.T) {
	m, prompt, _ := loadFixture(t, "mixtral")
	for _, s := range []Sampling{{}, {Temperature: 0.9, TopK: 50, TopP: 0.95, Seed: 7}, {Temperature: 1.2, MinP: 0.05, RepetitionPenalty: 1.3, Seed: 3}} {
		a, err := Generate(context.Background(), m, prompt, Options{MaxTokens: 40, Sampling: s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Generate(context.Background(), m, prompt, Options{MaxTokens: 40, Sampling: s, NoCache: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.IDs, b.IDs) {
			t.Errorf("sampling %+v: cache %v != recompute %v", s, a.IDs, b.IDs)
		}
	}
}

func TestSampler(t *testing.T) {
	logits := []float32{1, 3, 2, 3, -1}
	if got := NewSampler(Sampling{}).Sample(slices.Clone(logits), nil); got != 1 {
		t.Errorf("greedy picked %d, want 1 (first maximum)", got)
	}
	if got := NewSampler(Sampling{Temperature: 1, TopK: 1, Seed: 9}).Sample(slices.Clone(logits), nil); got != 1 {
		t.Errorf("top-k 1 picked %d, want 1", got)
	}
	// top-p small keeps only the best token.
	if got := NewSampler(Sampling{Temperature: 1, TopP: 0.01, Seed: 9}).Sample([]float32{0, 5, 1}, nil); got != 1 {
		t.Errorf("top-p picked %d", got)
	}
	// min-p 0.5 excludes tokens with less than half the best probability.
	counts := map[int32]int{}
	s := NewSampler(Sampling{Temperature: 1, MinP: 0.5, Seed: 1})
	for range 200 {
		counts[s.Sample([]float32{2, 2, 0, -3}, nil)]++
	}
	if counts[2]+counts[3] != 0 || counts[0] == 0 || counts[1] == 0 {
		t.Errorf("min-p counts %v", counts)
	}
	// Repetition penalty turns greedy away from a seen token.
	if got := NewSampler(Sampling{RepetitionPenalty: 2}).Sample([]float32{1, 1.5, 0}, []int32{1}); got != 0 {
		t.Errorf("repetition penalty: picked %d, want 0", got)
	}
	// Same seed, same draws.
	a, b := NewSampler(Sampling{Temperature: 1, Seed: 42}), NewSampler(Sampling{Temperature: 1, Seed: 42})
	for range 50 {
		if a.Sample([]float32{0, 0.1, 0.2, 0.3}, nil) != b.Sample([]float32{0, 0.1, 0.2, 0.3}, nil) {
			t.Fatal("seeded samplers diverged")
		}
	}
}

func TestStopStrings(t *testing.T) {
	if s, ok := cutStop("hello world", []string{"wor", "lo"}); !ok || s != "hel" {
		t.Errorf("cutStop = %q %v", s, ok)
	}
}

func TestPromptTooLong(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	long := make([]int32, m.Cfg.MaxSeq+1)
	if _, err := Generate(context.Background(), m, long, Options{MaxTokens: 1}, nil); err == nil {
		t.Fatal("want an error for a prompt longer than the context")
	}
}
