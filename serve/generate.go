package serve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/mai-llm/mai/infer"
)

// params are the generation settings common to chat and completions, after
// validation.
type params struct {
	maxTokens      int
	maxExplicit    bool
	sampling       infer.Sampling
	seed           *int64
	n              int
	stops          []string
	logprobs       bool
	topLogprobs    int
	promptLogprobs bool
	ignoreEOS      bool
	constraint     func() (infer.Constraint, error)
}

// sampling validates and fills the sampling parameters.
func (s *Server) samplingParams(p *params, temp, topP *float64, topK int, minP, rep float64, seed *int64, n *int) error {
	p.sampling = infer.Sampling{Temperature: 1, TopP: 1, TopK: topK, MinP: minP, RepetitionPenalty: rep}
	if temp != nil {
		if *temp < 0 || *temp > 2 {
			return badRequest("temperature", "%g is not a valid temperature: it must be between 0 and 2.", *temp)
		}
		p.sampling.Temperature = *temp
	}
	if topP != nil {
		if *topP <= 0 || *topP > 1 {
			return badRequest("top_p", "%g is not a valid top_p: it must be in (0, 1].", *topP)
		}
		p.sampling.TopP = *topP
	}
	if topK < 0 {
		return badRequest("top_k", "top_k must not be negative.")
	}
	if minP < 0 || minP > 1 {
		return badRequest("min_p", "min_p must be between 0 and 1.")
	}
	if rep < 0 {
		return badRequest("repetition_penalty", "repetition_penalty must be positive.")
	}
	p.seed = seed
	p.n = 1
	if n != nil {
		if *n < 1 || *n > s.cfg.MaxN {
			return badRequest("n", "n must be between 1 and %d, got %d.", s.cfg.MaxN, *n)
		}
		p.n = *n
	}
	return nil
}

// maxTokensParam validates max_tokens against the context and the server's
// limit. min is the smallest allowed value.
func (s *Server) maxTokensParam(p *params, v *int, def, min int, param string) error {
	if v == nil {
		p.maxTokens = def
		return nil
	}
	if *v < min {
		return badRequest(param, "%s must be at least %d, got %d.", param, min, *v)
	}
	if s.cfg.MaxTokens > 0 && *v > s.cfg.MaxTokens {
		return badRequest(param, "%s is too large: %d. This server allows at most %d completion tokens.", param, *v, s.cfg.MaxTokens)
	}
	p.maxTokens, p.maxExplicit = *v, true
	return nil
}

func stopsParam(stops []string) ([]string, error) {
	if len(stops) > 16 {
		return nil, badRequest("stop", "at most 16 stop sequences are allowed, got %d.", len(stops))
	}
	return stops, nil
}

// fit checks the prompt against the context and settles max_tokens: the
// prompt must fit, and an explicit max_tokens must fit beside it.
func (s *Server) fit(m *Model, p *params, prompt []int32, what string) (int, error) {
	ctx := m.Engine.Model().Cfg.MaxSeq
	if len(prompt) == 0 {
		return 0, badRequest(what, "The prompt is empty.")
	}
	if len(prompt) > ctx {
		e := badRequest(what, "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. Please reduce the length of the %s.", ctx, what, len(prompt), what)
		e.Code = ptr("context_length_exceeded")
		return 0, e
	}
	if p.maxExplicit && len(prompt)+p.maxTokens > ctx {
		e := badRequest(what, "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the %s, %d in the completion). Please reduce the length of the %s or completion.", ctx, len(prompt)+p.maxTokens, len(prompt), what, p.maxTokens, what)
		e.Code = ptr("context_length_exceeded")
		return 0, e
	}
	n := min(p.maxTokens, ctx-len(prompt))
	if s.cfg.MaxTokens > 0 {
		n = min(n, s.cfg.MaxTokens)
	}
	return n, nil
}

// choice is one running generation of a request.
type choice struct {
	index  int
	prompt []int32
	h      *infer.Handle
	ts     *textStream
	toks   []infer.Token
	lpSent int // tokens whose logprobs were streamed
	final  *infer.Final
	last   time.Time
	first  bool
}

// event is what a choice produced since its last event.
type event struct {
	c     *choice
	toks  []infer.Token
	delta string
	done  bool
	lp    int // tokens of the choice so far whose logprobs may be reported (textStream.inText)
}

// submit starts one choice.
func (s *Server) submit(ctx context.Context, m *Model, p *params, prompt []int32, index, seedOffset int, stops []string) (*choice, error) {
	maxNew, err := s.fit(m, p, prompt, "messages")
	if err != nil {
		return nil, err
	}
	req := &infer.Request{Prompt: prompt, MaxTokens: maxNew, Sampling: p.sampling, EOS: m.codec.eos, Stop: stops,
		Decode: m.codec.decode, Logprobs: p.logprobs, TopLogprobs: p.topLogprobs, PromptLogprobs: p.promptLogprobs}
	if p.seed != nil {
		req.Sampling.Seed = uint64(*p.seed) + uint64(seedOffset)
	} else {
		req.Sampling.Seed = rand.Uint64()
	}
	if p.constraint != nil {
		if req.Constraint, err = p.constraint(); err != nil {
			return nil, err
		}
	}
	if p.ignoreEOS {
		req.EOS = nil
	}
	h, err := m.Engine.Submit(ctx, req)
	if err != nil {
		return nil, engineErr(err)
	}
	return &choice{index: index, prompt: prompt, h: h, ts: newTextStream(m.codec.decode, stops), first: true}, nil
}

// engineErr maps engine errors to API errors.
func engineErr(err error) error {
	var ce *infer.ContextError
	switch {
	case errors.As(err, &ce):
		e := badRequest("messages", "%s", upperFirst(ce.Error()))
		e.Code = ptr("context_length_exceeded")
		return e
	case errors.Is(err, infer.ErrClosed):
		return apiErr(http.StatusServiceUnavailable, "server_error", "", "The server is shutting down.")
	case errors.Is(err, context.DeadlineExceeded):
		return apiErr(http.StatusGatewayTimeout, "server_error", "", "The request timed out.")
	}
	return badRequest("", "%s", upperFirst(err.Error()))
}

func upperFirst(s string) string {
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

// run follows every choice until all end, calling emit for each event in
// the order they come, and records metrics. It returns the first error of
// a choice (the others are cancelled then), or ctx's error.
func (s *Server) run(ctx context.Context, m *Model, start time.Time, choices []*choice, emit func(event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan event, len(choices))
	errs := make(chan error, len(choices))
	for _, c := range choices {
		go func() {
			for {
				toks, f, err := c.h.Next(ctx)
				if err != nil {
					c.h.Cancel()
					errs <- err
					return
				}
				ev := event{c: c, toks: toks}
				for _, t := range toks {
					if c.first {
						s.met.observe("mai_time_to_first_token_seconds", t.At.Sub(start).Seconds(), "model", m.Name)
						c.first = false
					} else {
						s.met.observe("mai_inter_token_latency_seconds", t.At.Sub(c.last).Seconds(), "model", m.Name)
					}
					c.last = t.At
					ev.delta += c.ts.push(t.ID)
				}
				ev.lp = c.ts.inText(c.ts.sent)
				if f != nil {
					c.final = f
					ev.delta += c.ts.flush()
					ev.done = true
					ev.lp = c.ts.inText(len(c.ts.text))
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					c.h.Cancel()
					errs <- ctx.Err()
					return
				}
				if f != nil {
					errs <- nil
					return
				}
			}
		}()
	}
	var first error
	pending := len(choices)
	for pending > 0 {
		select {
		case ev := <-events:
			ev.c.toks = append(ev.c.toks, ev.toks...)
			if ev.done && ev.c.final.Err != nil && first == nil {
				first = ev.c.final.Err
				cancel()
			}
			if first == nil {
				if err := emit(ev); err != nil {
					first = err
					cancel()
				}
			}
		case err := <-errs:
			pending--
			if err != nil && first == nil {
				first = err
				cancel()
			}
		}
	}
	// Drain events sent before the goroutines ended.
	for {
		select {
		case ev := <-events:
			ev.c.toks = append(ev.c.toks, ev.toks...)
			if first == nil {
				if err := emit(ev); err != nil {
					first = err
				}
			}
			continue
		default:
		}
		break
	}
	for _, c := range choices {
		if c.final == nil {
			// Cancelled: the engine ends it at its next step; wait for the
			// count of what it generated.
			wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
			toks, f, err := c.h.Wait(wctx)
			wcancel()
			if err != nil {
				continue
			}
			c.toks, c.final = append(c.toks, toks...), f
		}
		s.met.add("mai_generation_tokens_total", float64(c.final.CompletionTokens), "model", m.Name)
		s.met.add("mai_finished_total", 1, "model", m.Name, "reason", c.final.FinishReason)
	}
	if first != nil {
		if errors.Is(first, context.DeadlineExceeded) {
			return apiErr(http.StatusGatewayTimeout, "server_error", "", fmt.Sprintf("The request did not finish within %s.", s.cfg.RequestTimeout))
		}
		return first
	}
	return nil
}

// usage sums the token counts of choices; the prompt counts once per
// distinct prompt.
func (s *Server) usage(m *Model, choices []*choice, n int) Usage {
	var u Usage
	cached := 0
	for i, c := range choices {
		if c.final == nil {
			continue
		}
		if i%n == 0 {
			u.PromptTokens += c.final.PromptTokens
			cached += c.final.CachedTokens
		}
		u.CompletionTokens += c.final.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: cached}
	s.met.add("mai_prompt_tokens_total", float64(u.PromptTokens), "model", m.Name)
	s.met.add("mai_cached_prompt_tokens_total", float64(cached), "model", m.Name)
	return u
}

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w)}
}

func (e *sse) send(data []byte) error {
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", data); err != nil {
		return err
	}
	return e.rc.Flush()
}

func (e *sse) done() error { return e.send([]byte("[DONE]")) }
