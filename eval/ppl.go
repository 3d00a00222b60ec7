package eval

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/tokenizer"
)

// Perplexity is a language-modeling score. Bits per byte divides the total
// negative log-likelihood by the UTF-8 bytes of the text, so it compares
// models with different tokenizers; token perplexity does not.
type Perplexity struct {
	Tokens int     `json:"tokens"` // tokens scored
	NLL    float64 `json:"nll"`    // mean negative log-likelihood per token (nats)
	PPL    float64 `json:"ppl"`    // exp(NLL)
	// Text scores (absent for token-id input).
	Bytes          int64   `json:"bytes,omitempty"`
	Words          int64   `json:"words,omitempty"`
	BitsPerByte    float64 `json:"bits_per_byte,omitempty"`
	BytePerplexity float64 `json:"byte_perplexity,omitempty"`
	WordPerplexity float64 `json:"word_perplexity,omitempty"`
}

// PerplexityIDs scores a token sequence: every token after the first,
// conditioned on those before it, in windows that advance by stride when the
// sequence is longer than the context.
func PerplexityIDs(ctx context.Context, b Backend, ids []int32, stride int) (*Perplexity, error) {
	ts, ok := b.(TokenScorer)
	if !ok {
		return nil, fmt.Errorf("perplexity: backend %s cannot score token ids (a server needs token-id prompts)", b.Name())
	}
	if len(ids) < 2 {
		return nil, fmt.Errorf("perplexity: need at least 2 token ids, have %d", len(ids))
	}
	lps, err := ts.ScoreIDs(ctx, ids, stride)
	if err != nil {
		return nil, fmt.Errorf("perplexity: %w", err)
	}
	var sum float64
	for _, lp := range lps {
		sum -= lp
	}
	nll := sum / float64(len(lps))
	return &Perplexity{Tokens: len(lps), NLL: nll, PPL: math.Exp(nll)}, nil
}

// PerplexityTexts scores whole texts (each from the start of a document) and
// reports bits per byte over their UTF-8 bytes.
func PerplexityTexts(ctx context.Context, b Backend, texts []string, stride int) (*Perplexity, error) {
	var nonEmpty []string
	for _, t := range texts {
		if t != "" {
			nonEmpty = append(nonEmpty, t)
		}
	}
	if len(nonEmpty) == 0 {
		return nil, fmt.Errorf("perplexity: no text to score")
	}
	rs, err := b.LogLikelihoodRolling(ctx, nonEmpty, stride)
	if err != nil {
		return nil, fmt.Errorf("perplexity: %w", err)
	}
	p := &Perplexity{}
	var nll float64
	for i, r := range rs {
		nll -= r.LogProb
		p.Tokens += r.Tokens
		p.Bytes += int64(len(nonEmpty[i]))
		p.Words += int64(len(strings.Fields(nonEmpty[i])))
	}
	if p.Tokens == 0 {
		return nil, fmt.Errorf("perplexity: the texts produced no tokens to score")
	}
	p.NLL = nll / float64(p.Tokens)
	p.PPL = math.Exp(p.NLL)
	p.BitsPerByte = nll / math.Ln2 / float64(p.Bytes)
	p.BytePerplexity = math.Exp(nll / float64(p.Bytes))
	if p.Words > 0 {
		p.WordPerplexity = math.Exp(nll / float64(p.Words))
	}
	return p, nil
}

// ShardTexts reads up to maxDocs documents (0: all) of a split of a shard
// directory (mai data prepare) back into text with the tokenizer the shards
// were written with, so any model can score them.
func ShardTexts(dir, split string, maxDocs int) ([]string, error) {
	ds, err := data.OpenShards(dir, split)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	defer ds.Close()
	var dec func([]int) string
	switch name := ds.Tokenizer(); name {
	case "byte", "":
		dec = infer.ByteCodec{}.Decode
	default:
		tok, err := tokenizer.Load(name)
		if err != nil {
			return nil, fmt.Errorf("shards %s use tokenizer %q: %w", dir, name, err)
		}
		dec = tok.Decode
	}
	n := ds.Docs()
	if maxDocs > 0 {
		n = min(n, int64(maxDocs))
	}
	eot := ds.EOT()
	var texts []string
	for i := range n {
		doc, err := ds.Document(i)
		if err != nil {
			return nil, fmt.Errorf("shards %s: document %d: %w", dir, i, err)
		}
		ids := make([]int, 0, len(doc))
		for _, v := range doc {
			if int(v) != eot {
				ids = append(ids, int(v))
			}
		}
		if t := dec(ids); t != "" {
			texts = append(texts, strings.ToValidUTF8(t, string(utf8.RuneError)))
		}
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("shards %s: split %q holds no documents", dir, split)
	}
	return texts, nil
}
