package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

func newEngine(t *testing.T, m *model.Model, cfg EngineConfig) *Engine {
	t.Helper()
	e, err := NewEngine(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func ids(toks []Token) []int32 {
	out := make([]int32, len(toks))
	for i, t := range toks {
		out[i] = t.ID
	}
	return out
}

// prompts returns n different prompts of varied lengths.
func prompts(n, vocab int) [][]int32 {
	var out [][]int32
	for i := 0; i < n; i++ {
		p := make([]int32, 3+(i*5)%17)
		for j := range p {
			p[j] = int32((i*131 + j*17 + 7) % vocab)
		}
		out = append(out, p)
	}
	return out
}

func TestEngineGreedyMatchesTransformers(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		m, prompt, want := loadFixture(t, name)
		e := newEngine(t, m, EngineConfig{BlockSize: 4})
		toks, f, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: len(want) - len(prompt)})
		if err != nil {
			t.Fatal(err)
		}
		got := append(slices.Clone(prompt), ids(toks)...)
		if !slices.Equal(got, want) || f.FinishReason != "length" {
			t.Errorf("%s: got %v (%s)\nwant %v", name, got, f.FinishReason, want)
		}
	}
}

// TestEngineBatchingMatchesAlone runs 16 requests at once under several
// engine shapes (small blocks, chunked prefill, a cache so small that
// sequences are preempted) and checks every output against infer.Generate,
// greedy and seeded sampling.
func TestEngineBatchingMatchesAlone(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	ps := prompts(16, m.Cfg.Vocab)
	samplings := []Sampling{{}, {Temperature: 0.8, TopP: 0.9, Seed: 11}}
	want := make([][]int32, len(ps))
	for i, p := range ps {
		res, err := Generate(context.Background(), m, p, Options{MaxTokens: 20, Sampling: samplings[i%2]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res.IDs
	}
	for _, tc := range []struct {
		name string
		cfg  EngineConfig
	}{
		{"defaults", EngineConfig{}},
		{"chunked prefill", EngineConfig{BlockSize: 4, MaxBatchTokens: 16}},
		{"preemption", EngineConfig{BlockSize: 4, NumBlocks: 40, MaxSeqs: 16}}, // 16 sequences need ~10 blocks each
		{"3 at a time", EngineConfig{BlockSize: 8, MaxSeqs: 3, NoPrefixCache: true}},
	} {
		cfg := tc.cfg
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, m, cfg)
			var wg sync.WaitGroup
			got := make([][]int32, len(ps))
			errs := make([]error, len(ps))
			for i, p := range ps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 20, Sampling: samplings[i%2]})
					got[i], errs[i] = ids(toks), err
				}()
			}
			wg.Wait()
			for i := range ps {
				if errs[i] != nil {
					t.Fatalf("request %d: %v", i, errs[i])
				}
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("request %d: batched %v\nalone %v", i, got[i], want[i])
				}
			}
			st := settled(e)
			if st.BlocksUsed != 0 || st.Running != 0 || st.Waiting != 0 {
				t.Errorf("after all requests: %+v", st)
			}
			if cfg.NumBlocks == 40 && st.Preemptions == 0 {
				t.Errorf("the small cache caused no preemption: %+v", st)
			}
		})
	}
}

func TestEnginePrefixCache(t *testing.T) {
	m, _, _ := loadFixture(t, "mixtral")
	e := newEngine(t, m, EngineConfig{BlockSize: 4})
	prompt := prompts(4, m.Cfg.Vocab)[3] // 18 tokens
	a, fa, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	b, fb, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(a), ids(b)) {
		t.Errorf("cached prefix changed the output: %v vs %v", ids(a), ids(b))
	}
	if fa.CachedTokens != 0 || fb.CachedTokens != 16 {
		t.Errorf("cached tokens: first %d, second %d (want 0, 16)", fa.CachedTokens, fb.CachedTokens)
	}
	// A longer prompt sharing the prefix, with generated tokens as part of
	// it, reuses the blocks the first request filled while generating.
	long := append(slices.Clone(prompt), ids(a)...)
	_, fc, err := e.Generate(context.Background(), &Request{Prompt: long, MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fc.CachedTokens != 24 {
		t.Errorf("extended prompt: cached %d tokens, want 24", fc.CachedTokens)
	}
}

func TestEngineCancel(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	// The engine waits after its first step until the request is
	// cancelled: a fast engine could otherwise finish all 100 tokens first.
	gate := make(chan struct{})
	e := newEngine(t, m, EngineConfig{BlockSize: 4, OnStep: func(StepStats) { <-gate }})
	ctx, cancel := context.WithCancel(context.Background())
	h, err := e.Submit(ctx, &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	close(gate)
	_, f, err := h.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.FinishReason != "cancelled" || !errors.Is(f.Err, context.Canceled) {
		t.Errorf("final %+v", f)
	}
	// The engine keeps serving, and the blocks came back.
	if _, _, err := e.Generate(context.Background(), &Request{Prompt: []int32{4, 5}, MaxTokens: 3}); err != nil {
		t.Fatal(err)
	}
	if st := settled(e); st.BlocksUsed != 0 {
		t.Errorf("blocks still used: %+v", st)
	}
	h2, _ := e.Submit(context.Background(), &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 100})
	h2.Cancel()
	if _, f, _ := h2.Wait(context.Background()); f.FinishReason != "cancelled" {
		t.Errorf("Cancel: %+v", f)
	}
}

func TestEngineStops(t *testing.T) {
	m, prompt, want := loadFixture(t, "llama")
	gen := want[len(prompt):]
	e := newEngine(t, m, EngineConfig{})
	// EOS: the fifth greedy token ends generation and is not returned.
	toks, f, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 20, EOS: []int32{gen[4]}})
	if err != nil {
		t.Fatal(err)
	}
	if k := slices.Index(gen, gen[4]); !slices.Equal(ids(toks), gen[:k]) || f.FinishReason != "stop" {
		t.Errorf("EOS: %v %s", ids(toks), f.FinishReason)
	}
	// Stop string over a fake decoding: token ids as letters.
	dec := func(x []int32) string {
		b := make([]byte, len(x))
		for i, v := range x {
			b[i] = byte('a' + v%26)
		}
		return string(b)
	}
	stop := dec(gen[6:8])
	toks, f, err = e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 20, Stop: []string{stop}, Decode: dec})
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) > 8 || f.FinishReason != "stop" {
		t.Errorf("stop string: %d tokens, %s", len(toks), f.FinishReason)
	}
	// Max tokens, and a prompt-only request.
	toks, f, _ = e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 3})
	if len(toks) != 3 || f.FinishReason != "length" || f.CompletionTokens != 3 || f.PromptTokens != len(prompt) {
		t.Errorf("max tokens: %d %+v", len(toks), f)
	}
	toks, f, _ = e.Generate(context.Background(), &Request{Prompt: prompt})
	if len(toks) != 0 || f.FinishReason != "length" {
		t.Errorf("no tokens: %d %+v", len(toks), f)
	}
}

func TestEngineErrors(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	e := newEngine(t, m, EngineConfig{BlockSize: 4, NumBlocks: 8})
	var ce *ContextError
	if _, err := e.Submit(context.Background(), &Request{Prompt: make([]int32, m.Cfg.MaxSeq+1)}); !errors.As(err, &ce) {
		t.Errorf("long prompt: %v", err)
	}
	if _, err := e.Submit(context.Background(), &Request{Prompt: make([]int32, 20), MaxTokens: 50}); !errors.As(err, &ce) {
		t.Errorf("more than the cache: %v", err)
	}
	for _, r := range []*Request{{}, {Prompt: []int32{-1}}, {Prompt: []int32{int32(m.Cfg.Vocab)}}, {Prompt: []int32{1}, MaxTokens: -1}} {
		if _, err := e.Submit(context.Background(), r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
	e.Close()
	if _, err := e.Submit(context.Background(), &Request{Prompt: []int32{1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}

func TestEngineLogprobs(t *testing.T) {
	m, prompt, _ := loadFixture(t, "llama")
	e := newEngine(t, m, EngineConfig{BlockSize: 4, MaxBatchTokens: 32})
	toks, f, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: 4, Logprobs: true, TopLogprobs: 3, PromptLogprobs: true})
	if err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(prompt), ids(toks)...)
	out, err := m.Forward(nn.NewTape(nil, false), all, 1, len(all), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	v := m.Cfg.Vocab
	ref := func(pos int) float64 { // log p(all[pos] | all[:pos])
		row := out.Logits.Data[(pos-1)*v : pos*v]
		return float64(row[all[pos]]) - logSumExp(row)
	}
	if len(f.PromptLogprobs) != len(prompt) || !math.IsNaN(float64(f.PromptLogprobs[0].Logprob)) {
		t.Fatalf("prompt logprobs: %+v", f.PromptLogprobs)
	}
	for i := 1; i < len(prompt); i++ {
		if d := math.Abs(float64(f.PromptLogprobs[i].Logprob) - ref(i)); d > 1e-4 {
			t.Errorf("prompt token %d: %v, want %v", i, f.PromptLogprobs[i].Logprob, ref(i))
		}
	}
	for i, tk := range toks {
		if d := math.Abs(float64(tk.Logprob) - ref(len(prompt)+i)); d > 1e-4 {
			t.Errorf("token %d: %v, want %v", i, tk.Logprob, ref(len(prompt)+i))
		}
		// Greedy: the chosen token is the top alternative.
		if len(tk.Top) != 3 || tk.Top[0].ID != tk.ID || tk.Top[0].Logprob < tk.Top[1].Logprob {
			t.Errorf("token %d top: %+v", i, tk.Top)
		}
	}
}

func TestEngineEmbed(t *testing.T) {
	m, prompt, _ := loadFixture(t, "llama")
	e := newEngine(t, m, EngineConfig{BlockSize: 4, MaxBatchTokens: 3})
	_, f, err := e.Generate(context.Background(), &Request{Prompt: prompt, Embed: true, MaxTokens: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Embedding) != m.Cfg.Dim || f.CompletionTokens != 0 {
		t.Fatalf("embedding of %d values, %d tokens generated", len(f.Embedding), f.CompletionTokens)
	}
	kv, _ := m.NewPagedKV(4, 4)
	out, err := m.ForwardPaged(nn.NewTape(nil, false), kv, []model.SeqChunk{{IDs: prompt, Blocks: []int32{0, 1}, Hidden: true}})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < m.Cfg.Dim; j++ {
		var s float64
		for r := range prompt {
			s += float64(out.Hidden[0][r*m.Cfg.Dim+j])
		}
		if d := math.Abs(s/float64(len(prompt)) - float64(f.Embedding[j])); d > 1e-6 {
			t.Fatalf("dim %d: %v vs %v", j, f.Embedding[j], s/float64(len(prompt)))
		}
	}
}

func TestEngineSpeculative(t *testing.T) {
	target, _, _ := loadFixture(t, "llama")
	for _, name := range []string{"llama", "mixtral"} { // a perfect draft and a poor one
		draft, _, _ := loadFixture(t, name)
		e := newEngine(t, target, EngineConfig{BlockSize: 4, Draft: draft, DraftTokens: 3})
		for _, p := range prompts(3, target.Cfg.Vocab) {
			want, err := Generate(context.Background(), target, p, Options{MaxTokens: 17}, nil)
			if err != nil {
				t.Fatal(err)
			}
			toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 17})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(toks), want.IDs) {
				t.Errorf("draft %s: %v, want %v", name, ids(toks), want.IDs)
			}
		}
		st := e.Stats()
		t.Logf("draft %s: %d proposed, %d accepted, %d steps", name, st.DraftProposed, st.DraftAccepted, st.Steps)
		if st.DraftProposed == 0 || (name == "llama" && st.DraftAccepted != st.DraftProposed) {
			t.Errorf("draft %s: %+v", name, st)
		}
	}
}

func TestEngineQueueWaits(t *testing.T) {
	// With room for one sequence at a time, requests queue and all finish.
	m, _, _ := loadFixture(t, "llama")
	e := newEngine(t, m, EngineConfig{BlockSize: 4, NumBlocks: 8, MaxSeqs: 4})
	var wg sync.WaitGroup
	for i, p := range prompts(6, m.Cfg.Vocab) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, _, err := e.Generate(ctx, &Request{Prompt: p[:3], MaxTokens: 20}); err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

// TestEngineQuantizedBatchingMatchesAlone runs a quantized model, whose
// decoded tokens take the quantized kernels and whose prompts take the
// float32 GEMM (model.SeqChunk.DecodeFrom): 16 requests at once under
// several engine shapes (chunked prefill, preemption, the prefix cache
// holding the blocks of earlier requests) give, greedy and seeded, what each
// gives alone.
func TestEngineQuantizedBatchingMatchesAlone(t *testing.T) {
	for _, float := range []bool{false, true} {
		t.Run(fmt.Sprintf("FloatDecode=%v", float), func(t *testing.T) { testQuantizedBatching(t, float) })
	}
}

func testQuantizedBatching(t *testing.T, float bool) {
	m, _, _ := loadFixture(t, "llama")
	if err := m.Quantize(model.QuantizeOptions{Type: quant.Q8_0}); err != nil {
		t.Fatal(err)
	}
	ps := prompts(16, m.Cfg.Vocab)
	// A prompt that continues another request's prompt and output, as a chat
	// turn does: the prefix cache holds the first request's prompt blocks,
	// never its generated tokens' (computed by other kernels).
	samplings := []Sampling{{}, {Temperature: 0.8, TopP: 0.9, Seed: 11}}
	alone := func(p []int32, s Sampling) []int32 {
		e := newEngine(t, m, EngineConfig{NoPrefixCache: true, FloatDecode: float})
		toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 20, Sampling: s})
		if err != nil {
			t.Fatal(err)
		}
		return ids(toks)
	}
	want := make([][]int32, len(ps))
	for i, p := range ps {
		want[i] = alone(p, samplings[i%2])
	}
	long := append(slices.Clone(ps[15]), want[15]...)
	wantLong := alone(long, Sampling{})
	for _, tc := range []struct {
		name string
		cfg  EngineConfig
	}{
		{"defaults", EngineConfig{}},
		{"chunked prefill", EngineConfig{BlockSize: 4, MaxBatchTokens: 16}},
		{"preemption", EngineConfig{BlockSize: 4, NumBlocks: 40, MaxSeqs: 16}},
		{"3 at a time", EngineConfig{BlockSize: 8, MaxSeqs: 3}},
	} {
		cfg := tc.cfg
		cfg.FloatDecode = float
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, m, cfg)
			var wg sync.WaitGroup
			got := make([][]int32, len(ps))
			errs := make([]error, len(ps))
			for i, p := range ps {
				wg.Go(func() {
					toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 20, Sampling: samplings[i%2]})
					got[i], errs[i] = ids(toks), err
				})
			}
			wg.Wait()
			for i := range ps {
				if errs[i] != nil {
					t.Fatalf("request %d: %v", i, errs[i])
				}
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("request %d: batched %v\nalone %v", i, got[i], want[i])
				}
			}
			toks, f, err := e.Generate(context.Background(), &Request{Prompt: long, MaxTokens: 20})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(toks), wantLong) {
				t.Errorf("continued prompt: %v\nalone %v", ids(toks), wantLong)
			}
			bs := cfg.BlockSize
			if bs == 0 {
				bs = 16
			}
			if !float && f.CachedTokens > len(ps[15])/bs*bs {
				t.Errorf("continued prompt: %d cached tokens, more than the earlier prompt's full blocks", f.CachedTokens)
			}
			if cfg.NumBlocks == 40 && e.Stats().Preemptions == 0 {
				t.Errorf("the small cache caused no preemption: %+v", e.Stats())
			}
		})
	}
}

// settled returns the engine's stats once it has no running sequence or
// used block, or after a second. A request's handle finishes inside the
// engine's step, before the step's bookkeeping, so a client can see its
// request done a moment before the stats do.
func settled(e *Engine) EngineStats {
	deadline := time.Now().Add(time.Second)
	for {
		st := e.Stats()
		if (st.Running == 0 && st.BlocksUsed == 0 && st.Waiting == 0) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEngineKVF16 serves from a half-precision KV cache: twice the blocks
// in the same memory, and a request's tokens the same whether it runs
// alone or among others (every row reads the cache the same way).
func TestEngineKVF16(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	if m.KVBytesPerBlock(16, model.KVF16)*2 != m.KVBytesPerBlock(16, model.KVF32) {
		t.Fatalf("f16 block %d bytes, f32 %d", m.KVBytesPerBlock(16, model.KVF16), m.KVBytesPerBlock(16, model.KVF32))
	}
	cfg := EngineConfig{BlockSize: 4, KV: model.KVF16, MaxBatchTokens: 16}
	ps := prompts(8, m.Cfg.Vocab)
	alone := make([][]int32, len(ps))
	e := newEngine(t, m, cfg)
	for i, p := range ps {
		toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 12})
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = ids(toks)
	}
	var wg sync.WaitGroup
	got := make([][]int32, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks, _, err := e.Generate(context.Background(), &Request{Prompt: p, MaxTokens: 12})
			if err != nil {
				t.Error(err)
			}
			got[i] = ids(toks)
		}()
	}
	wg.Wait()
	for i := range ps {
		if !slices.Equal(got[i], alone[i]) {
			t.Errorf("request %d: batched %v\nalone %v", i, got[i], alone[i])
		}
	}
}
