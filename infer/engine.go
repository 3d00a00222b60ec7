package infer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// EngineConfig sizes an Engine. Zero fields take the defaults.
type EngineConfig struct {
	// BlockSize is the number of positions in one KV-cache block (16).
	BlockSize int
	// NumBlocks is the number of KV-cache blocks; 0 derives it from
	// KVBytes.
	NumBlocks int
	// KVBytes bounds the KV cache's memory when NumBlocks is 0 (the
	// smaller of 1 GiB and what MaxSeqs full contexts need).
	KVBytes int64
	// MaxSeqs is the most sequences decoding together (32).
	MaxSeqs int
	// MaxBatchTokens is the number of tokens one step runs: every decoding
	// sequence's next token, then chunks of prompts being prefilled (512).
	MaxBatchTokens int
	// NoPrefixCache turns off the reuse of cached blocks for shared prompt
	// prefixes.
	NoPrefixCache bool
	// FloatDecode runs generated tokens of a quantized model through the
	// float32 GEMM as prompt tokens are, instead of the quantized kernels
	// (model.SeqChunk.DecodeFrom): fewer tokens per CPU-second at one stream
	// (about a third), more at 32 streams on a CPU whose float32 GEMM
	// outruns the 8-bit kernels (about 10 % on an AVX-512 EPYC), and the
	// prefix cache may then hold generated tokens' blocks too.
	FloatDecode bool
	// KV is the KV cache's type (empty: float32; f16 holds twice the
	// tokens in the same memory).
	KV model.KVType
	// Draft is a smaller model with the same vocabulary that proposes
	// DraftTokens tokens per step for speculative decoding (nil: off).
	Draft       *model.Model
	DraftTokens int
	// OnStep, if set, is called after every batched forward pass.
	OnStep func(StepStats)
}

// StepStats describes one engine step.
type StepStats struct {
	Seqs, Tokens int
	Duration     time.Duration
}

// EngineStats is a snapshot of an engine's state.
type EngineStats struct {
	Waiting, Running        int
	BlocksUsed, BlocksTotal int
	BlockSize               int
	Steps                   int64
	PrefixHitBlocks         int64
	PrefixLookupBlocks      int64
	Preemptions             int64
	DraftProposed           int64
	DraftAccepted           int64
}

// Request is one generation (or embedding) job for an Engine.
type Request struct {
	Prompt []int32
	// MaxTokens is the number of tokens to generate at most; 0 only runs the
	// prompt (for prompt logprobs or embeddings).
	MaxTokens int
	Sampling  Sampling
	// EOS ends generation when sampled (the token is not returned).
	EOS []int32
	// Stop strings end generation once the decoded output contains one;
	// they need Decode.
	Stop   []string
	Decode func(ids []int32) string
	// Logprobs asks for the log-probability of every generated token
	// (>= 0) and of the TopLogprobs most likely alternatives.
	Logprobs    bool
	TopLogprobs int
	// PromptLogprobs asks for the log-probability of every prompt token
	// given the ones before it (the "echo" of completions).
	PromptLogprobs bool
	// Embed runs the prompt only and returns the mean of its final hidden
	// states.
	Embed bool
	// Constraint, if set, restricts which tokens may be sampled.
	Constraint Constraint
}

// TokenLogprob is a token id and its log-probability.
type TokenLogprob struct {
	ID      int32
	Logprob float32
}

// Token is one generated token with, when asked for, its log-probability
// under the model and the most likely alternatives.
type Token struct {
	ID      int32
	Logprob float32
	Top     []TokenLogprob
	// At is when the engine produced the token.
	At time.Time
}

// Final is how a request ended.
type Final struct {
	// FinishReason is "stop" (EOS, stop string or a finished constraint),
	// "length" (MaxTokens or the context), or "cancelled".
	FinishReason string
	// Err is set when the request failed or was cancelled.
	Err error
	// IDs are the generated ids (EOS excluded).
	IDs []int32
	// PromptTokens, CompletionTokens and CachedTokens (prompt tokens whose
	// KV came from the prefix cache) count tokens.
	PromptTokens, CompletionTokens, CachedTokens int
	// PromptLogprobs holds, with Request.PromptLogprobs, one entry per prompt
	// token; the first has Logprob NaN (nothing precedes it).
	PromptLogprobs []Token
	// Embedding is the mean final hidden state, with Request.Embed.
	Embedding []float32
	// Queued is the time spent waiting for admission; FirstToken the time
	// from submission to the first generated token.
	Queued, FirstToken time.Duration
}

// ContextError says that a request does not fit the model's context or the
// engine's KV cache.
type ContextError struct {
	Prompt, MaxTokens, Context int
	Reason                     string
}

// Error says what does not fit.
func (e *ContextError) Error() string {
	if e.Reason != "" {
		return e.Reason
	}
	return fmt.Sprintf("this model's maximum context length is %d tokens, but the prompt has %d tokens", e.Context, e.Prompt)
}

// ErrClosed is returned for requests to an engine that has shut down.
var ErrClosed = errors.New("engine is shut down")

// Handle follows one submitted request: its tokens as they come and how it
// ended.
type Handle struct {
	mu        sync.Mutex
	toks      []Token
	final     *Final
	wake      chan struct{}
	cancelled atomic.Bool
}

func newHandle() *Handle { return &Handle{wake: make(chan struct{}, 1)} }

func (h *Handle) push(t Token) {
	h.mu.Lock()
	h.toks = append(h.toks, t)
	h.mu.Unlock()
	h.signal()
}

func (h *Handle) finish(f *Final) {
	h.mu.Lock()
	if h.final == nil {
		h.final = f
	}
	h.mu.Unlock()
	h.signal()
}

func (h *Handle) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Next waits until tokens arrive or the request ends and returns the tokens
// produced since the previous call; final is set once the request has ended
// (it may come with the last tokens). It returns ctx's error if ctx ends
// first.
func (h *Handle) Next(ctx context.Context) (toks []Token, final *Final, err error) {
	for {
		h.mu.Lock()
		toks, final = h.toks, h.final
		h.toks = nil
		h.mu.Unlock()
		if len(toks) > 0 || final != nil {
			return toks, final, nil
		}
		select {
		case <-h.wake:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// Wait collects every token until the request ends.
func (h *Handle) Wait(ctx context.Context) ([]Token, *Final, error) {
	var all []Token
	for {
		toks, f, err := h.Next(ctx)
		if err != nil {
			return all, nil, err
		}
		all = append(all, toks...)
		if f != nil {
			return all, f, nil
		}
	}
}

// Cancel stops the request; its blocks are freed at the next step.
func (h *Handle) Cancel() {
	h.cancelled.Store(true)
}

// seq is the engine's state for one request.
type seq struct {
	req      *Request
	ctx      context.Context
	h        *Handle
	id       int64
	tokens   []int32 // prompt, then generated tokens
	nPrompt  int
	maxNew   int
	computed int     // positions whose keys and values are in the cache
	blocks   []int32 // block table
	hashes   []uint64
	cached   int // prompt tokens reused from the prefix cache
	sampler  *Sampler
	promptLP []Token
	embSum   []float64
	submit   time.Time
	admitted time.Time
	first    time.Time
	stopLen  int // longest stop string, for the incremental check
	ended    bool
	draft    *model.KVCache // the draft model's cache, for speculative decoding
}

// Engine runs requests on one model with continuous batching: every step
// runs one batched forward pass over the next token of every decoding
// sequence plus chunks of prompts being prefilled, so requests join and
// leave the batch at any step. Keys and values live in a paged cache whose
// blocks are handed out as sequences grow; requests wait for admission
// until enough blocks are free, the most recently admitted sequence is
// preempted (and later recomputed) when the cache runs out, and full blocks
// of prompts are kept and shared by later requests with the same prefix.
type Engine struct {
	m    *model.Model
	cfg  EngineConfig
	kv   *model.PagedKV
	pool *blockPool
	tp   *nn.Tape
	spec *speculator

	mu       sync.Mutex
	incoming []*seq
	closed   bool
	stats    EngineStats
	wake     chan struct{}
	done     chan struct{}

	waiting []*seq
	running []*seq
	nextID  int64
}

// NewEngine starts an engine for m. Call Close to stop it.
func NewEngine(m *model.Model, cfg EngineConfig) (*Engine, error) {
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = 16
	}
	if cfg.MaxSeqs <= 0 {
		cfg.MaxSeqs = 32
	}
	if cfg.MaxBatchTokens <= 0 {
		cfg.MaxBatchTokens = 512
	}
	cfg.MaxBatchTokens = max(cfg.MaxBatchTokens, cfg.MaxSeqs)
	perSeq := (m.Cfg.MaxSeq + cfg.BlockSize - 1) / cfg.BlockSize
	if cfg.NumBlocks <= 0 {
		limit := cfg.KVBytes
		if limit <= 0 {
			limit = 1 << 30
		}
		cfg.NumBlocks = min(cfg.MaxSeqs*perSeq, int(limit/int64(m.KVBytesPerBlock(cfg.BlockSize, cfg.KV))))
		cfg.NumBlocks = max(cfg.NumBlocks, perSeq)
	}
	kv, err := m.NewPagedKVOf(cfg.NumBlocks, cfg.BlockSize, cfg.KV)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &Engine{m: m, cfg: cfg, kv: kv, pool: newBlockPool(cfg.NumBlocks, cfg.BlockSize), tp: nn.NewTape(m.Pool, false),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	// A step's activations come from the tape's arena, reset before each
	// step (a step reads its logits before the next one starts), so that
	// steps of a recurring shape allocate nothing.
	e.tp.Arena = true
	if cfg.Draft != nil {
		if e.spec, err = newSpeculator(m, cfg); err != nil {
			return nil, err
		}
	}
	e.stats.BlocksTotal, e.stats.BlockSize = cfg.NumBlocks, cfg.BlockSize
	go e.loop()
	return e, nil
}

// Model returns the engine's model.
func (e *Engine) Model() *model.Model { return e.m }

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() EngineConfig { return e.cfg }

// Stats returns a snapshot of the engine's state.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Waiting += len(e.incoming)
	return s
}

// Submit queues a request. The request ends when ctx is cancelled or
// h.Cancel is called. Errors are for requests that can never run: an empty
// prompt, ids outside the vocabulary, a prompt beyond the context
// (*ContextError), or a closed engine.
func (e *Engine) Submit(ctx context.Context, req *Request) (*Handle, error) {
	c := &e.m.Cfg
	if len(req.Prompt) == 0 {
		return nil, fmt.Errorf("empty prompt")
	}
	for _, id := range req.Prompt {
		if id < 0 || int(id) >= c.Vocab {
			return nil, fmt.Errorf("token id %d is outside the vocabulary [0,%d)", id, c.Vocab)
		}
	}
	if req.MaxTokens < 0 {
		return nil, fmt.Errorf("max tokens %d is negative", req.MaxTokens)
	}
	if len(req.Prompt) > c.MaxSeq {
		return nil, &ContextError{Prompt: len(req.Prompt), MaxTokens: req.MaxTokens, Context: c.MaxSeq}
	}
	maxNew := min(req.MaxTokens, c.MaxSeq-len(req.Prompt))
	if req.Embed {
		maxNew = 0
	}
	if need := (len(req.Prompt) + maxNew + e.cfg.BlockSize - 1) / e.cfg.BlockSize; need > e.cfg.NumBlocks {
		return nil, &ContextError{Prompt: len(req.Prompt), MaxTokens: req.MaxTokens, Context: c.MaxSeq,
			Reason: fmt.Sprintf("the request needs %d tokens of KV cache but the server has room for %d", len(req.Prompt)+maxNew, e.cfg.NumBlocks*e.cfg.BlockSize)}
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > c.Vocab {
		return nil, fmt.Errorf("top logprobs %d outside [0,%d]", req.TopLogprobs, c.Vocab)
	}
	s := &seq{req: req, ctx: ctx, h: newHandle(), tokens: slices.Clip(slices.Clone(req.Prompt)), nPrompt: len(req.Prompt),
		maxNew: maxNew, sampler: NewSampler(req.Sampling), submit: time.Now()}
	for _, st := range req.Stop {
		s.stopLen = max(s.stopLen, len(st))
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.nextID++
	s.id = e.nextID
	e.incoming = append(e.incoming, s)
	e.mu.Unlock()
	e.signal()
	return s.h, nil
}

// Generate submits a request and waits for its end.
func (e *Engine) Generate(ctx context.Context, req *Request) ([]Token, *Final, error) {
	h, err := e.Submit(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	toks, f, err := h.Wait(ctx)
	if err != nil {
		return toks, nil, err
	}
	return toks, f, f.Err
}

// Close stops the engine: requests still queued or running end with
// ErrClosed. It waits for the loop to exit.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.signal()
	<-e.done
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) loop() {
	defer close(e.done)
	for {
		e.mu.Lock()
		e.waiting = append(e.waiting, e.incoming...)
		e.incoming = nil
		closed := e.closed
		e.mu.Unlock()
		if closed {
			for _, s := range append(e.running, e.waiting...) {
				e.end(s, "cancelled", ErrClosed)
			}
			e.running, e.waiting = nil, nil
			e.publish()
			return
		}
		if len(e.running) == 0 && len(e.waiting) == 0 {
			e.publish()
			<-e.wake
			continue
		}
		e.step()
		e.publish()
	}
}

func (e *Engine) publish() {
	e.mu.Lock()
	e.stats.Waiting, e.stats.Running = len(e.waiting), len(e.running)
	e.stats.BlocksUsed = e.pool.used()
	e.stats.PrefixHitBlocks, e.stats.PrefixLookupBlocks = e.pool.hits, e.pool.lookups
	e.mu.Unlock()
}

// end finishes a sequence and gives its blocks back.
func (e *Engine) end(s *seq, reason string, err error) {
	s.ended = true
	for _, b := range s.blocks {
		e.pool.release(b)
	}
	s.blocks = nil
	f := &Final{FinishReason: reason, Err: err, IDs: slices.Clone(s.tokens[s.nPrompt:]), PromptTokens: s.nPrompt,
		CompletionTokens: len(s.tokens) - s.nPrompt, CachedTokens: s.cached, PromptLogprobs: s.promptLP}
	if !s.admitted.IsZero() {
		f.Queued = s.admitted.Sub(s.submit)
	}
	if !s.first.IsZero() {
		f.FirstToken = s.first.Sub(s.submit)
	}
	if s.req.Embed && err == nil {
		f.Embedding = make([]float32, len(s.embSum))
		for i, v := range s.embSum {
			f.Embedding[i] = float32(v / float64(s.nPrompt))
		}
	}
	s.h.finish(f)
}

func (s *seq) gone() error {
	if s.h.cancelled.Load() {
		return context.Canceled
	}
	return s.ctx.Err()
}

// step runs one scheduling round and one forward pass.
func (e *Engine) step() {
	// Drop cancelled requests.
	keep := e.running[:0]
	for _, s := range e.running {
		if err := s.gone(); err != nil {
			e.end(s, "cancelled", err)
			continue
		}
		keep = append(keep, s)
	}
	e.running = keep
	wkeep := e.waiting[:0]
	for _, s := range e.waiting {
		if err := s.gone(); err != nil {
			e.end(s, "cancelled", err)
			continue
		}
		wkeep = append(wkeep, s)
	}
	e.waiting = wkeep

	// Admit waiting requests, oldest first, while blocks last.
	for len(e.waiting) > 0 && len(e.running) < e.cfg.MaxSeqs {
		if !e.admit(e.waiting[0]) {
			break
		}
		e.running = append(e.running, e.waiting[0])
		e.waiting = e.waiting[1:]
	}
	if len(e.running) == 0 {
		return
	}
	if e.spec != nil && len(e.running) == 1 && e.spec.eligible(e.running[0]) {
		e.specStep(e.running[0])
		return
	}

	// Schedule: every decoding sequence's next token first, then prefill
	// chunks within the token budget.
	budget := e.cfg.MaxBatchTokens
	type sched struct {
		s *seq
		k int
	}
	var plan []sched
	for i := 0; i < len(e.running); i++ {
		s := e.running[i]
		if len(s.tokens)-s.computed != 1 {
			continue
		}
		if !e.grow(s, s.computed+1) {
			continue // s itself was preempted
		}
		plan = append(plan, sched{s, 1})
		budget--
	}
	for _, s := range e.running {
		rem := len(s.tokens) - s.computed
		if rem <= 1 || budget <= 0 {
			continue
		}
		k := min(rem, budget)
		plan = append(plan, sched{s, k})
		budget -= k
	}
	if len(plan) == 0 {
		return
	}
	chunks := make([]model.SeqChunk, len(plan))
	for i, p := range plan {
		s := p.s
		ch := model.SeqChunk{IDs: s.tokens[s.computed : s.computed+p.k], Start: s.computed, Blocks: s.blocks}
		if !e.cfg.FloatDecode {
			ch.DecodeFrom = s.nPrompt
		}
		last := s.computed+p.k == len(s.tokens)
		switch {
		case s.req.Embed:
			ch.Hidden = true
		case s.req.PromptLogprobs && s.computed < s.nPrompt:
			ch.Logits = model.RowsAll
		case last:
			ch.Logits = model.RowsLast
		}
		chunks[i] = ch
	}
	t0 := time.Now()
	out, err := e.forward(chunks)
	dur := time.Since(t0)
	if err != nil {
		slog.Error("engine step failed", "err", err, "seqs", len(plan))
		for _, p := range plan {
			e.end(p.s, "error", err)
		}
		e.removeEnded()
		return
	}
	ntok := 0
	for i, p := range plan {
		s := p.s
		ntok += p.k
		start := s.computed
		s.computed += p.k
		e.registerBlocks(s)
		if s.req.Embed {
			if s.embSum == nil {
				s.embSum = make([]float64, e.m.Cfg.Dim)
			}
			d := e.m.Cfg.Dim
			hid := out.Hidden[i]
			for r := 0; r < p.k; r++ {
				for j, v := range hid[r*d : (r+1)*d] {
					s.embSum[j] += float64(v)
				}
			}
			if s.computed == len(s.tokens) {
				e.end(s, "stop", nil)
			}
			continue
		}
		logits := out.Logits[i]
		if chunks[i].Logits == model.RowsAll {
			v := e.m.Cfg.Vocab
			if start == 0 && len(s.promptLP) == 0 {
				s.promptLP = append(s.promptLP, Token{ID: s.tokens[0], Logprob: float32(math.NaN())})
			}
			for r := 0; r < p.k; r++ {
				pos := start + r + 1
				if pos >= s.nPrompt {
					break
				}
				s.promptLP = append(s.promptLP, logprobOf(logits[r*v:(r+1)*v], s.tokens[pos], s.req.TopLogprobs))
			}
			logits = logits[(p.k-1)*v:]
		}
		if s.computed < len(s.tokens) {
			continue
		}
		e.sampleNext(s, logits)
	}
	e.removeEnded()
	e.mu.Lock()
	e.stats.Steps++
	e.mu.Unlock()
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(StepStats{Seqs: len(plan), Tokens: ntok, Duration: dur})
	}
}

// forward runs the model, turning a panic into an error so that one bad
// batch cannot take the server down.
func (e *Engine) forward(chunks []model.SeqChunk) (out *model.BatchOutput, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("forward pass panicked: %v\n%s", r, debug.Stack())
		}
	}()
	e.tp.Reset()
	return e.m.ForwardPaged(e.tp, e.kv, chunks)
}

// sampleNext picks s's next token from the logits of its last position and
// decides whether s is finished.
func (e *Engine) sampleNext(s *seq, logits []float32) {
	if len(s.tokens)-s.nPrompt >= s.maxNew {
		e.end(s, "length", nil)
		return
	}
	var raw []float32
	if s.req.Logprobs {
		raw = slices.Clone(logits) // the sampler and the constraint change logits
	}
	if s.req.Constraint != nil {
		s.req.Constraint.Mask(logits)
	}
	id := s.sampler.Sample(logits, s.tokens)
	tok := Token{ID: id}
	if raw != nil {
		tok = logprobOf(raw, id, s.req.TopLogprobs)
	}
	e.accept(s, tok)
}

// accept appends a sampled token and checks the stop conditions.
func (e *Engine) accept(s *seq, tok Token) {
	tok.At = time.Now()
	if s.first.IsZero() {
		s.first = tok.At
	}
	if slices.Contains(s.req.EOS, tok.ID) {
		e.end(s, "stop", nil)
		return
	}
	if s.req.Constraint != nil {
		if err := s.req.Constraint.Advance(tok.ID); err != nil {
			e.end(s, "error", err)
			return
		}
	}
	s.tokens = append(s.tokens, tok.ID)
	s.h.push(tok)
	switch {
	case s.req.Constraint != nil && s.req.Constraint.Done():
		e.end(s, "stop", nil)
	case len(s.req.Stop) > 0 && s.req.Decode != nil && s.hitStop():
		e.end(s, "stop", nil)
	case len(s.tokens)-s.nPrompt >= s.maxNew:
		e.end(s, "length", nil)
	}
}

// hitStop reports whether the output so far contains a stop string. Only
// a match that ends in the newest token can be new, so it decodes just the
// tail that could hold one: every token is at least one byte, and the margin
// covers tokens that decode to nothing and decoders that treat the start of
// a text differently.
func (s *seq) hitStop() bool {
	gen := s.tokens[s.nPrompt:]
	from := max(0, len(gen)-s.stopLen-16)
	_, hit := cutStop(s.req.Decode(gen[from:]), s.req.Stop)
	return hit
}

// removeEnded drops finished sequences from the running list.
func (e *Engine) removeEnded() {
	e.running = slices.DeleteFunc(e.running, func(s *seq) bool { return s.ended })
}

// admit gives s the blocks for its tokens, reusing cached prefix blocks, if
// enough blocks are available.
func (e *Engine) admit(s *seq) bool {
	bs := e.cfg.BlockSize
	n := len(s.tokens)
	var matched []int32
	var hashes []uint64
	if !e.cfg.NoPrefixCache && !s.req.PromptLogprobs && !s.req.Embed {
		var parent uint64
		for j := 0; (j+1)*bs <= e.cacheable(s, n-1); j++ {
			b, h, ok := e.pool.lookup(parent, s.tokens[j*bs:(j+1)*bs])
			if !ok {
				break
			}
			matched = append(matched, b)
			hashes = append(hashes, h)
			parent = h
		}
	}
	total := (n + bs - 1) / bs
	cost := total - len(matched)
	for _, b := range matched {
		if e.pool.ref[b] == 0 {
			cost++ // taking an idle cached block uses up an available one
		}
	}
	reserve := 0
	if len(e.running) > 0 {
		reserve = max(1, e.cfg.NumBlocks/100)
	}
	if e.pool.available() < cost+reserve {
		return false
	}
	for _, b := range matched {
		e.pool.take(b)
	}
	s.blocks = append(s.blocks[:0], matched...)
	s.hashes = hashes
	for len(s.blocks) < total {
		b, _ := e.pool.alloc()
		s.blocks = append(s.blocks, b)
	}
	s.computed = len(matched) * bs
	if s.admitted.IsZero() {
		s.admitted = time.Now()
		s.cached = min(s.computed, s.nPrompt)
	}
	return true
}

// grow makes s's block table cover n positions, preempting the most
// recently admitted other sequences if blocks run out. It reports false if
// s itself had to be preempted.
func (e *Engine) grow(s *seq, n int) bool {
	bs := e.cfg.BlockSize
	for len(s.blocks)*bs < n {
		if b, ok := e.pool.alloc(); ok {
			s.blocks = append(s.blocks, b)
			continue
		}
		victim := e.running[len(e.running)-1]
		e.preempt(victim)
		if victim == s {
			return false
		}
	}
	return true
}

// preempt frees a running sequence's blocks and puts it back at the head of
// the queue; it will recompute its tokens (its full blocks usually survive
// in the prefix cache).
func (e *Engine) preempt(s *seq) {
	for _, b := range s.blocks {
		e.pool.release(b)
	}
	s.blocks, s.hashes, s.computed = nil, nil, 0
	s.promptLP, s.embSum = nil, nil
	e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
	e.waiting = append([]*seq{s}, e.waiting...)
	e.mu.Lock()
	e.stats.Preemptions++
	e.mu.Unlock()
}

// registerBlocks adds s's newly filled blocks to the prefix cache.
func (e *Engine) registerBlocks(s *seq) {
	if e.cfg.NoPrefixCache {
		return
	}
	bs := e.cfg.BlockSize
	for j := len(s.hashes); (j+1)*bs <= e.cacheable(s, s.computed); j++ {
		var parent uint64
		if j > 0 {
			parent = s.hashes[j-1]
		}
		toks := s.tokens[j*bs : (j+1)*bs]
		h := prefixHash(parent, toks)
		e.pool.register(s.blocks[j], parent, h, toks)
		s.hashes = append(s.hashes, h)
	}
}

// cacheable limits to n the positions of s whose blocks the prefix cache
// may hold: only prompt positions when the model computes decoded tokens
// through other kernels than prompts (model.DecodeKernels), so that a
// prompt never reuses the keys and values of a generated token, nor a
// recomputed generated token those of a prompt.
func (e *Engine) cacheable(s *seq, n int) int {
	if e.m.DecodeKernels() && !e.cfg.FloatDecode {
		return min(n, s.nPrompt)
	}
	return n
}

// logSumExp returns log Σ exp(x).
func logSumExp(x []float32) float64 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - m))
	}
	return float64(m) + math.Log(sum)
}

// logprobOf returns the log-probability of id under logits and the top
// alternatives.
func logprobOf(logits []float32, id int32, top int) Token {
	lse := logSumExp(logits)
	t := Token{ID: id, Logprob: float32(float64(logits[id]) - lse)}
	if top > 0 {
		t.Top = topLogprobs(logits, top)
	}
	return t
}

// topLogprobs returns the k most likely tokens and their log-probabilities,
// best first (ties by lower id).
func topLogprobs(logits []float32, k int) []TokenLogprob {
	if k <= 0 {
		return nil
	}
	k = min(k, len(logits))
	lse := logSumExp(logits)
	best := make([]int32, 0, k+1)
	less := func(a, b int32) bool { // a ranks after b
		return logits[a] < logits[b] || (logits[a] == logits[b] && a > b)
	}
	for i := range logits {
		id := int32(i)
		if len(best) == k && !less(best[k-1], id) {
			continue
		}
		j := sort.Search(len(best), func(j int) bool { return less(best[j], id) })
		best = slices.Insert(best, j, id)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]TokenLogprob, k)
	for i, id := range best {
		out[i] = TokenLogprob{ID: id, Logprob: float32(float64(logits[id]) - lse)}
	}
	return out
}
