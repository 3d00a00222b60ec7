package infer

import (
	"context"
	"fmt"
	"strings"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// Options controls one generation.
type Options struct {
	MaxTokens int
	Sampling  Sampling
	// EOS ends generation when produced (not included in the output text).
	EOS []int32
	// Stop strings end generation; they need Decode.
	Stop []string
	// Decode turns ids into text, for stop strings.
	Decode func(ids []int32) string
	// NoCache recomputes the whole prefix each step (a reference for tests).
	NoCache bool
	// KV is the KV cache's type (empty: float32).
	KV model.KVType
}

// Result is a finished generation.
type Result struct {
	IDs          []int32 // generated ids, prompt excluded
	FinishReason string  // "stop" (EOS or stop string) or "length"
	Text         string  // decoded text, cut at a stop string (when Decode is set)
}

// Generate continues prompt with up to MaxTokens tokens. onToken, if not
// nil, sees every new id and may stop generation by returning false.
func Generate(ctx context.Context, m *model.Model, prompt []int32, opt Options, onToken func(id int32) bool) (*Result, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	ctxLen := m.Cfg.MaxSeq
	if len(prompt) > ctxLen {
		return nil, fmt.Errorf("generate: prompt of %d tokens exceeds the model's context of %d tokens", len(prompt), ctxLen)
	}
	maxNew := opt.MaxTokens
	if maxNew <= 0 || len(prompt)+maxNew > ctxLen {
		maxNew = ctxLen - len(prompt)
	}
	tp := nn.NewTape(m.Pool, false)
	tp.Arena = true // reset before each pass: its logits are read before the next
	var cache *model.KVCache
	if !opt.NoCache {
		cache = m.NewCacheOf(1, len(prompt)+maxNew, opt.KV)
	}
	s := NewSampler(opt.Sampling)
	hist := append([]int32(nil), prompt...)
	res := &Result{FinishReason: "length"}
	next := prompt
	for len(res.IDs) < maxNew {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		in := next
		if cache == nil {
			in = hist
		}
		tp.Reset()
		out, err := m.Forward(tp, in, 1, len(in), cache, true)
		if err != nil {
			return nil, err
		}
		id := s.Sample(out.Logits.Data, hist)
		if isEOS(id, opt.EOS) {
			res.FinishReason = "stop"
			break
		}
		hist = append(hist, id)
		res.IDs = append(res.IDs, id)
		if onToken != nil && !onToken(id) {
			res.FinishReason = "stop"
			break
		}
		if len(opt.Stop) > 0 && opt.Decode != nil {
			if text, ok := cutStop(opt.Decode(res.IDs), opt.Stop); ok {
				res.Text = text
				res.FinishReason = "stop"
				return res, nil
			}
		}
		next = []int32{id}
	}
	if opt.Decode != nil {
		res.Text = opt.Decode(res.IDs)
	}
	return res, nil
}

func isEOS(id int32, eos []int32) bool {
	for _, e := range eos {
		if id == e {
			return true
		}
	}
	return false
}

// cutStop returns text before the first stop string, if any occurs.
func cutStop(text string, stops []string) (string, bool) {
	cut := -1
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(text, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return text, false
	}
	return text[:cut], true
}
