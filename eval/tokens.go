package eval

import (
	"context"
	"fmt"
	"strings"
)

// tokenModel is a model reached by token ids: the local model, or a server
// that takes token-id prompts. tokenBackend builds the text-level Backend on
// top of it, so both paths window and score identically.
type tokenModel interface {
	name() string
	maxLen() int
	// encode tokenizes text.
	encode(text string) ([]int32, error)
	// prefix is the token a document starts with (BOS, else end-of-text),
	// or -1 when there is none.
	prefix() int32
	// score returns, for each sequence, the log-probability of ids[i] given
	// ids[:i] and whether it was the most likely token, for i in [from, len).
	// Every sequence fits the context.
	score(ctx context.Context, seqs []scoreSeq) ([][]tokScore, error)
	generate(ctx context.Context, reqs []GenRequest) ([]string, error)
}

type scoreSeq struct {
	ids  []int32
	from int
}

type tokScore struct {
	lp     float64 // log-probability of the token
	top    float64 // log-probability of the most likely token
	greedy bool    // the token was the most likely one
}

// tokenBackend implements Backend and TokenScorer over a tokenModel.
type tokenBackend struct{ m tokenModel }

func (b *tokenBackend) Name() string   { return b.m.name() }
func (b *tokenBackend) MaxLength() int { return b.m.maxLen() }

// LogLikelihood encodes context and continuation separately (trailing spaces
// of the context move to the continuation, as lm-evaluation-harness does) and
// keeps the last MaxLength tokens when the pair is too long.
func (b *tokenBackend) LogLikelihood(ctx context.Context, reqs []LLRequest) ([]LLResult, error) {
	maxLen := b.m.maxLen()
	seqs := make([]scoreSeq, len(reqs))
	for i, r := range reqs {
		c, k := splitSpaces(r.Context, r.Continuation)
		cids, err := b.m.encode(c)
		if err != nil {
			return nil, err
		}
		kids, err := b.m.encode(k)
		if err != nil {
			return nil, err
		}
		if len(cids) == 0 {
			p := b.m.prefix()
			if p < 0 {
				return nil, fmt.Errorf("loglikelihood: empty context and the model has no start-of-text token")
			}
			cids = []int32{p}
		}
		if len(kids) >= maxLen {
			return nil, fmt.Errorf("loglikelihood: a continuation of %d tokens does not fit the context of %d tokens", len(kids), maxLen)
		}
		seq := append(cids, kids...)
		if len(seq) > maxLen {
			seq = seq[len(seq)-maxLen:]
		}
		seqs[i] = scoreSeq{ids: seq, from: len(seq) - len(kids)}
	}
	outs, err := b.m.score(ctx, seqs)
	if err != nil {
		return nil, err
	}
	res := make([]LLResult, len(reqs))
	for i, o := range outs {
		r := LLResult{Greedy: true, Tokens: len(o)}
		for _, s := range o {
			r.LogProb += s.lp
			r.Greedy = r.Greedy && s.greedy
		}
		res[i] = r
	}
	return res, nil
}

// splitSpaces moves trailing spaces of the context to the continuation.
func splitSpaces(context, cont string) (string, string) {
	t := strings.TrimRight(context, " ")
	return t, context[len(t):] + cont
}

// LogLikelihoodRolling scores each text after the model's start-of-text
// token in windows of the context length.
func (b *tokenBackend) LogLikelihoodRolling(ctx context.Context, texts []string, stride int) ([]RollingResult, error) {
	res := make([]RollingResult, len(texts))
	for i, t := range texts {
		ids, err := b.m.encode(t)
		if err != nil {
			return nil, err
		}
		if p := b.m.prefix(); p >= 0 {
			ids = append([]int32{p}, ids...)
		}
		lps, err := b.ScoreIDs(ctx, ids, stride)
		if err != nil {
			return nil, err
		}
		for _, lp := range lps {
			res[i].LogProb += lp
		}
		res[i].Tokens = len(lps)
	}
	return res, nil
}

// ScoreIDs returns log p(ids[i] | ids[:i]) for i ≥ 1.
func (b *tokenBackend) ScoreIDs(ctx context.Context, ids []int32, stride int) ([]float64, error) {
	if len(ids) < 2 {
		return nil, nil
	}
	ws, err := windows(len(ids), b.m.maxLen(), stride)
	if err != nil {
		return nil, err
	}
	seqs := make([]scoreSeq, len(ws))
	for i, w := range ws {
		seqs[i] = scoreSeq{ids: ids[w.lo:w.hi], from: w.from - w.lo}
	}
	outs, err := b.m.score(ctx, seqs)
	if err != nil {
		return nil, err
	}
	lps := make([]float64, 0, len(ids)-1)
	for _, o := range outs {
		for _, s := range o {
			lps = append(lps, s.lp)
		}
	}
	return lps, nil
}

// Generate continues each request.
func (b *tokenBackend) Generate(ctx context.Context, reqs []GenRequest) ([]string, error) {
	return b.m.generate(ctx, reqs)
}
