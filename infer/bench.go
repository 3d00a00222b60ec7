package infer

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/mai-llm/mai/backend/cpu"
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
	// ISA is the instruction set the CPU kernels ran with (cpu.ISA).
	ISA string `json:"isa"`
	// KV is the KV cache's type.
	KV model.KVType `json:"kv_cache"`
	// PromptCPUMs and GenCPUMsPerToken are process CPU time (all threads):
	// of the whole prefill, and per decoded token. On a machine shared with
	// other work they move much less than the wall-clock rates.
	PromptCPUMs      float64 `json:"prompt_cpu_ms"`
	GenCPUMsPerToken float64 `json:"gen_cpu_ms_per_token"`
	// PeakRSS is the process's peak resident memory in bytes (0 where
	// not measured).
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// BenchGenerate times a prefill of promptTokens random tokens and then
// genTokens greedy decode steps at batch 1, with a KV cache of type kv.
func BenchGenerate(m *model.Model, promptTokens, genTokens int, kv model.KVType) (*BenchResult, error) {
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
	// The tape's arena holds the activations from pass to pass (reset
	// before each), as the serving engine's does.
	tp := nn.NewTape(m.Pool, false)
	tp.Arena = true
	// Warm up as llama-bench does (one untimed run of each test): a full
	// prefill and a few decode steps, so that the timed runs find the heap
	// grown and its pages mapped, the weights' pages touched, the worker
	// threads started.
	cache := m.NewCacheOf(1, promptTokens+genTokens, kv)
	// Two untimed prefills: the first sizes the arena, the second touches
	// its pages (llama-bench's one warm-up run finds its buffers allocated
	// at context creation).
	for range 2 {
		tp.Reset()
		cache.Len = 0
		if _, err := m.Forward(tp, prompt, 1, promptTokens, cache, true); err != nil {
			return nil, err
		}
	}
	for i := range min(4, genTokens) {
		tp.Reset()
		if _, err := m.Forward(tp, prompt[i:i+1], 1, 1, cache, true); err != nil {
			return nil, err
		}
	}
	cache.Len = 0
	// Collect the warm-up's garbage now: the timed runs then allocate from
	// the pages it left mapped instead of growing the heap into fresh pages
	// (whose first-touch faults would count against the first timed run
	// only), as a long generation runs in its steady state.
	runtime.GC()
	c0, t0 := processCPU(), time.Now()
	tp.Reset()
	out, err := m.Forward(tp, prompt, 1, promptTokens, cache, true)
	if err != nil {
		return nil, err
	}
	pp, ppCPU := time.Since(t0).Seconds(), processCPU()-c0
	next := Argmax(out.Logits.Data)
	c1, t1 := processCPU(), time.Now()
	for range genTokens {
		tp.Reset()
		out, err = m.Forward(tp, []int32{next}, 1, 1, cache, true)
		if err != nil {
			return nil, err
		}
		next = Argmax(out.Logits.Data)
	}
	tg, tgCPU := time.Since(t1).Seconds(), processCPU()-c1
	return &BenchResult{PromptTokens: promptTokens, GenTokens: genTokens, PromptTokensPS: float64(promptTokens) / pp,
		TokensPerS: float64(genTokens) / tg, Threads: m.Pool.Threads(), ISA: cpu.ISA(), KV: cache.Type(),
		PromptCPUMs: float64(ppCPU) / 1e6, GenCPUMsPerToken: float64(tgCPU) / 1e6 / float64(genTokens), PeakRSS: peakRSS()}, nil
}
