package infer

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// BenchResult is what BenchGenerate measured, in the shape of llama-bench's
// pp (prompt processing) and tg (text generation) figures.
type BenchResult struct {
	PromptTokens   int     `json:"prompt_tokens"`
	GenTokens      int     `json:"gen_tokens"`
	PromptTokensPS float64 `json:"prompt_tokens_per_s"`
	TokensPerS     float64 `json:"tokens_per_s"` // decode, batch 1
	Threads        int     `json:"threads"`
}

// BenchGenerate times a prefill of promptTokens random tokens and then
// genTokens greedy decode steps at batch 1, with the KV cache.
func BenchGenerate(m *model.Model, promptTokens, genTokens int) (*BenchResult, error) {
	if promptTokens <= 0 || genTokens <= 0 {
		return nil, fmt.Errorf("bench generate: prompt and generated token counts must be positive")
	}
	if promptTokens+genTokens > m.Cfg.MaxSeq {
		return nil, fmt.Errorf("bench generate: %d+%d tokens exceed the context of %d", promptTokens, genTokens, m.Cfg.MaxSeq)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	prompt := make([]int32, promptTokens)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(m.Cfg.Vocab))
	}
	tp := nn.NewTape(m.Pool, false)
	// Warm up once (allocator, caches), then measure.
	if _, err := m.Forward(tp, prompt[:min(8, len(prompt))], 1, min(8, len(prompt)), m.NewCache(1, 8), true); err != nil {
		return nil, err
	}
	cache := m.NewCache(1, promptTokens+genTokens)
	t0 := time.Now()
	out, err := m.Forward(tp, prompt, 1, promptTokens, cache, true)
	if err != nil {
		return nil, err
	}
	pp := time.Since(t0).Seconds()
	next := Argmax(out.Logits.Data)
	t1 := time.Now()
	for range genTokens {
		out, err = m.Forward(tp, []int32{next}, 1, 1, cache, true)
		if err != nil {
			return nil, err
		}
		next = Argmax(out.Logits.Data)
	}
	tg := time.Since(t1).Seconds()
	return &BenchResult{PromptTokens: promptTokens, GenTokens: genTokens, PromptTokensPS: float64(promptTokens) / pp,
		TokensPerS: float64(genTokens) / tg, Threads: m.Pool.Threads()}, nil
}
