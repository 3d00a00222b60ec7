package serve

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/mai-llm/mai/infer"
)

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req CompletionRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return err
	}
	if req.Prompt.Len() == 0 {
		return badRequest("prompt", "prompt must be a string, a list of strings, or token ids, and not empty.")
	}
	var p params
	if err := s.samplingParams(&p, req.Temperature, req.TopP, req.TopK, req.MinP, req.RepetitionPenalty, req.Seed, req.N); err != nil {
		return err
	}
	p.ignoreEOS = req.IgnoreEOS
	if err := s.maxTokensParam(&p, req.MaxTokens, 16, 0, "max_tokens"); err != nil {
		return err
	}
	if p.maxTokens == 0 && !req.Echo {
		return badRequest("max_tokens", "max_tokens of 0 is only useful with echo.")
	}
	if p.stops, err = stopsParam(req.Stop); err != nil {
		return err
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 20 {
			return badRequest("logprobs", "logprobs must be between 0 and 20.")
		}
		p.logprobs, p.topLogprobs = true, *req.Logprobs
		p.promptLogprobs = req.Echo
	}
	if p.constraint, err = constraintFor(m, req.ResponseFormat); err != nil {
		return err
	}
	if nPrompts := req.Prompt.Len(); nPrompts*p.n > s.cfg.MaxN*4 {
		return badRequest("prompt", "too many completions in one request: %d prompts × n=%d (the limit is %d).", nPrompts, p.n, s.cfg.MaxN*4)
	}
	var prompts [][]int32
	for _, t := range req.Prompt.Texts {
		prompts = append(prompts, m.codec.encode(t))
	}
	for i, ids := range req.Prompt.IDs {
		for _, id := range ids {
			if id < 0 || int(id) >= m.codec.vocab {
				return badRequest("prompt", "prompt %d holds token id %d, outside the vocabulary [0,%d).", i, id, m.codec.vocab)
			}
		}
		prompts = append(prompts, ids)
	}
	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	var choices []*choice
	for pi, prompt := range prompts {
		for i := 0; i < p.n; i++ {
			c, err := s.submitCompletion(ctx, m, &p, prompt, pi*p.n+i, i)
			if err != nil {
				return err
			}
			choices = append(choices, c)
		}
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	if req.Stream {
		return s.streamCompletion(w, ctx, m, &req, &p, start, id, created, choices)
	}
	if err := s.run(ctx, m, start, choices, func(event) error { return nil }); err != nil {
		return err
	}
	resp := CompletionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name, SystemFingerprint: fingerprint}
	for _, c := range choices {
		text := c.ts.text
		ch := CompletionChoice{Index: c.index, FinishReason: ptr(c.final.FinishReason)}
		prefix := ""
		if req.Echo {
			prefix = m.codec.decode(c.prompt)
		}
		ch.Text = prefix + text
		if p.logprobs {
			ch.Logprobs = completionLogprobs(m, c, req.Echo, p.topLogprobs, len(prefix)+len(text), c.ts.stopped)
		}
		resp.Choices = append(resp.Choices, ch)
	}
	u := s.usage(m, choices, p.n)
	resp.Usage = &u
	return writeJSON(w, resp)
}

func (s *Server) submitCompletion(ctx context.Context, m *Model, p *params, prompt []int32, index, seedOffset int) (*choice, error) {
	c, err := s.submit(ctx, m, p, prompt, index, seedOffset, p.stops)
	if ae, ok := err.(*APIError); ok && ae.Param != nil && *ae.Param == "messages" {
		ae.Param = ptr("prompt")
		ae.Message = strings.ReplaceAll(ae.Message, "messages", "prompt")
	}
	return c, err
}

func (s *Server) streamCompletion(w http.ResponseWriter, ctx context.Context, m *Model, req *CompletionRequest, p *params, start time.Time, id string, created int64, choices []*choice) error {
	out := newSSE(w)
	chunk := func(ch CompletionChoice) error {
		b, err := json.Marshal(CompletionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name,
			SystemFingerprint: fingerprint, Choices: []CompletionChoice{ch}})
		if err != nil {
			return err
		}
		return out.send(b)
	}
	offsets := map[*choice]int{}
	if req.Echo {
		for _, c := range choices {
			text := m.codec.decode(c.prompt)
			offsets[c] = len(text)
			if err := chunk(CompletionChoice{Index: c.index, Text: text}); err != nil {
				return nil
			}
		}
	}
	err := s.run(ctx, m, start, choices, func(ev event) error {
		ch := CompletionChoice{Index: ev.c.index, Text: ev.delta}
		if p.logprobs && len(ev.toks) > 0 {
			ch.Logprobs = tokensLogprobs(m, ev.toks, p.topLogprobs, offsets[ev.c])
			for _, t := range ev.toks {
				offsets[ev.c] += len(m.codec.tokenText(t.ID))
			}
		}
		if ev.done {
			ch.FinishReason = ptr(ev.c.final.FinishReason)
			if req.Echo && p.logprobs && len(ev.c.final.PromptLogprobs) > 0 {
				// Prompt logprobs are known only at the end here; send them
				// ahead of the last text.
				pl := promptLogprobs(m, ev.c.final.PromptLogprobs, p.topLogprobs)
				if err := chunk(CompletionChoice{Index: ev.c.index, Logprobs: pl}); err != nil {
					return err
				}
			}
		}
		if ch.Text == "" && ch.Logprobs == nil && ch.FinishReason == nil {
			return nil
		}
		return chunk(ch)
	})
	if err != nil {
		if r0(ctx) {
			return nil
		}
		ae, ok := err.(*APIError)
		if !ok {
			ae = apiErr(http.StatusInternalServerError, "server_error", "", "The server had an error while processing your request.")
		}
		b, _ := json.Marshal(ErrorBody{Error: *ae})
		out.send(b)
		return nil
	}
	u := s.usage(m, choices, p.n)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		b, _ := json.Marshal(CompletionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name,
			SystemFingerprint: fingerprint, Choices: []CompletionChoice{}, Usage: &u})
		out.send(b)
	}
	out.done()
	return nil
}

// completionLogprobs builds the legacy logprobs of a finished choice: the
// prompt's tokens first when echoing, then the generated tokens (up to the
// end of the returned text when a stop string cut it).
func completionLogprobs(m *Model, c *choice, echo bool, top, textLen int, cut bool) *CompletionLogprobs {
	lp := &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []*float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	off := 0
	if echo {
		pl := promptLogprobs(m, c.final.PromptLogprobs, top)
		if pl == nil { // logprobs were not computed (should not happen): report the tokens
			pl = &CompletionLogprobs{}
			for _, id := range c.prompt {
				pl.Tokens = append(pl.Tokens, m.codec.tokenText(id))
				pl.TokenLogprobs = append(pl.TokenLogprobs, nil)
				pl.TopLogprobs = append(pl.TopLogprobs, map[string]float64{})
				pl.TextOffset = append(pl.TextOffset, off)
				off += len(m.codec.tokenText(id))
			}
		} else if n := len(pl.TextOffset); n > 0 {
			off = pl.TextOffset[n-1] + len(pl.Tokens[n-1])
		}
		lp.append(pl)
	}
	gen := tokensLogprobs(m, c.toks, top, off)
	for i, o := range gen.TextOffset {
		if cut && o >= textLen && i > 0 { // tokens past a stop string
			gen.Tokens, gen.TokenLogprobs, gen.TopLogprobs, gen.TextOffset = gen.Tokens[:i], gen.TokenLogprobs[:i], gen.TopLogprobs[:i], gen.TextOffset[:i]
			break
		}
	}
	lp.append(gen)
	return lp
}

func (l *CompletionLogprobs) append(o *CompletionLogprobs) {
	l.Tokens = append(l.Tokens, o.Tokens...)
	l.TokenLogprobs = append(l.TokenLogprobs, o.TokenLogprobs...)
	l.TopLogprobs = append(l.TopLogprobs, o.TopLogprobs...)
	l.TextOffset = append(l.TextOffset, o.TextOffset...)
}

func promptLogprobs(m *Model, toks []infer.Token, top int) *CompletionLogprobs {
	if len(toks) == 0 {
		return nil
	}
	lp := tokensLogprobs(m, toks, top, 0)
	// Nothing precedes the first token: its logprob is null, as OpenAI
	// answers; its alternatives are {} rather than null, which the official
	// Go client cannot decode inside the list.
	lp.TokenLogprobs[0], lp.TopLogprobs[0] = nil, map[string]float64{}
	return lp
}

func tokensLogprobs(m *Model, toks []infer.Token, top, off int) *CompletionLogprobs {
	lp := &CompletionLogprobs{}
	for _, t := range toks {
		text := m.codec.tokenText(t.ID)
		lp.Tokens = append(lp.Tokens, text)
		v := float64(t.Logprob)
		lp.TokenLogprobs = append(lp.TokenLogprobs, &v)
		alts := map[string]float64{}
		for _, a := range t.Top[:min(top, len(t.Top))] {
			at := m.codec.tokenText(a.ID)
			if _, seen := alts[at]; !seen {
				alts[at] = float64(a.Logprob)
			}
		}
		lp.TopLogprobs = append(lp.TopLogprobs, alts)
		lp.TextOffset = append(lp.TextOffset, off)
		off += len(text)
	}
	return lp
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) error {
	var req EmbeddingRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return err
	}
	if req.Input.Len() == 0 {
		return badRequest("input", "input must be a non-empty string, list of strings, or token ids.")
	}
	if req.Input.Len() > 2048 {
		return badRequest("input", "at most 2048 inputs per request, got %d.", req.Input.Len())
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return badRequest("encoding_format", "Invalid value: '%s'. Supported values are: 'float' and 'base64'.", req.EncodingFormat)
	}
	dim := m.Engine.Model().Cfg.Dim
	if req.Dimensions != nil && (*req.Dimensions < 1 || *req.Dimensions > dim) {
		return badRequest("dimensions", "dimensions must be between 1 and %d for this model.", dim)
	}
	var inputs [][]int32
	for _, t := range req.Input.Texts {
		inputs = append(inputs, m.codec.encode(t))
	}
	inputs = append(inputs, req.Input.IDs...)
	ctxLen := m.Engine.Model().Cfg.MaxSeq
	for i, in := range inputs {
		if len(in) == 0 {
			return badRequest("input", "input %d is empty.", i)
		}
		if len(in) > ctxLen {
			e := badRequest("input", "This model's maximum context length is %d tokens, however you requested %d tokens in input %d. Please reduce your input.", ctxLen, len(in), i)
			e.Code = ptr("context_length_exceeded")
			return e
		}
		for _, id := range in {
			if id < 0 || int(id) >= m.codec.vocab {
				return badRequest("input", "input %d holds token id %d, outside the vocabulary [0,%d).", i, id, m.codec.vocab)
			}
		}
	}
	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	handles := make([]*infer.Handle, len(inputs))
	for i, in := range inputs {
		if handles[i], err = m.Engine.Submit(ctx, &infer.Request{Prompt: in, Embed: true}); err != nil {
			return engineErr(err)
		}
	}
	resp := EmbeddingResponse{Object: "list", Model: m.Name, Data: []Embedding{}}
	for i, h := range handles {
		_, f, err := h.Wait(ctx)
		if err == nil {
			err = f.Err
		}
		if err != nil {
			for _, o := range handles {
				o.Cancel()
			}
			return engineErr(err)
		}
		vec := f.Embedding
		if req.Dimensions != nil && *req.Dimensions < len(vec) {
			vec = normalize(vec[:*req.Dimensions])
		}
		e := Embedding{Object: "embedding", Index: i, Embedding: vec}
		if req.EncodingFormat == "base64" {
			e.Embedding = base64.StdEncoding.EncodeToString(floatBytes(vec))
		}
		resp.Data = append(resp.Data, e)
		resp.Usage.PromptTokens += f.PromptTokens
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	s.met.add("mai_prompt_tokens_total", float64(resp.Usage.PromptTokens), "model", m.Name)
	return writeJSON(w, resp)
}

func normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if s == 0 {
		return out
	}
	inv := 1 / math.Sqrt(s)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// floatBytes encodes float32s little-endian (encoding_format "base64").
func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
