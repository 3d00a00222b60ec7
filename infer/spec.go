package infer

import (
	"fmt"
	"time"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// speculator runs speculative decoding: a small draft model proposes k
// tokens one by one, and the target model checks all of them in a single
// forward pass over k+1 positions. The engine uses it when one greedy
// sequence is decoding alone (latency-bound work, where the target's
// forward costs about the same for k+1 tokens as for one); with several
// sequences, batching already fills the matrix multiplies. Because the
// target's rows do not depend on how tokens are grouped, the output is
// exactly what plain greedy decoding gives.
type speculator struct {
	draft *model.Model
	k     int
	tp    *nn.Tape
}

func newSpeculator(target *model.Model, cfg EngineConfig) (*speculator, error) {
	d := cfg.Draft
	if d.Cfg.Vocab != target.Cfg.Vocab {
		return nil, fmt.Errorf("engine: draft model's vocabulary (%d) differs from the target's (%d)", d.Cfg.Vocab, target.Cfg.Vocab)
	}
	k := cfg.DraftTokens
	if k <= 0 {
		k = 4
	}
	tp := nn.NewTape(d.Pool, false)
	tp.Arena = true // reset before each draft pass: outputs are read before the next
	return &speculator{draft: d, k: k, tp: tp}, nil
}

// eligible reports whether s can be decoded speculatively now.
func (sp *speculator) eligible(s *seq) bool {
	r := s.req
	return r.Sampling.Temperature <= 0 && r.Constraint == nil && !r.Embed &&
		s.computed == len(s.tokens)-1 && s.computed >= s.nPrompt && len(s.tokens) < sp.draft.Cfg.MaxSeq
}

// propose runs the draft over the tokens it has not seen and returns up to
// k greedy proposals.
func (sp *speculator) propose(s *seq, k int) ([]int32, error) {
	if s.draft == nil {
		// Sized to the sequence's end: NewCache touches every page.
		s.draft = sp.draft.NewCache(1, min(sp.draft.Cfg.MaxSeq, s.nPrompt+s.maxNew))
	}
	c := s.draft
	in := s.tokens[c.Len:]
	var out []int32
	for len(out) < k {
		if c.Len+len(in) > c.Max {
			break
		}
		sp.tp.Reset()
		o, err := sp.draft.Forward(sp.tp, in, 1, len(in), c, true)
		if err != nil {
			return nil, err
		}
		id := Argmax(o.Logits.Data)
		out = append(out, id)
		in = []int32{id}
	}
	return out, nil
}

// specStep decodes s speculatively: draft proposals, one target pass over
// the last token and the proposals, then the longest agreeing prefix plus
// the target's own next token.
func (e *Engine) specStep(s *seq) {
	sp := e.spec
	remaining := s.maxNew - (len(s.tokens) - s.nPrompt)
	k := min(sp.k, remaining-1, e.m.Cfg.MaxSeq-len(s.tokens))
	var props []int32
	var err error
	if k > 0 {
		props, err = sp.propose(s, k)
		if err != nil {
			e.end(s, "error", err)
			e.removeEnded()
			return
		}
	}
	base := len(s.tokens)
	if !e.grow(s, s.computed+1+len(props)) {
		return
	}
	ids := append([]int32{s.tokens[len(s.tokens)-1]}, props...)
	t0 := time.Now()
	ch := model.SeqChunk{IDs: ids, Start: s.computed, Blocks: s.blocks, Logits: model.RowsAll}
	if !e.cfg.FloatDecode {
		ch.DecodeFrom = s.nPrompt // generated tokens take the same kernels as in ordinary steps
	}
	out, err := e.forward([]model.SeqChunk{ch})
	if err != nil {
		e.end(s, "error", err)
		e.removeEnded()
		return
	}
	dur := time.Since(t0)
	v := e.m.Cfg.Vocab
	accepted := 0
	for i := 0; i <= len(props) && !s.ended; i++ {
		e.sampleNext(s, out.Logits[0][i*v:(i+1)*v])
		if s.ended || i == len(props) || s.tokens[len(s.tokens)-1] != props[i] {
			break
		}
		accepted++
	}
	if !s.ended {
		s.computed = len(s.tokens) - 1
		e.registerBlocks(s)
	}
	if s.draft != nil {
		s.draft.Len = min(s.draft.Len, base+accepted)
	}
	e.removeEnded()
	e.mu.Lock()
	e.stats.Steps++
	e.stats.DraftProposed += int64(len(props))
	e.stats.DraftAccepted += int64(accepted)
	e.mu.Unlock()
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(StepStats{Seqs: 1, Tokens: len(ids), Duration: dur})
	}
}
