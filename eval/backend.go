package eval

import (
	"context"
	"fmt"
)

// Backend is a language model that evaluation can query. It works on text, so
// models with different tokenizers are scored on the same terms; a backend
// tokenizes as its model does.
type Backend interface {
	// Name identifies the model in results.
	Name() string
	// MaxLength is the context length in tokens.
	MaxLength() int
	// LogLikelihood returns, for each request, the log-probability (natural
	// log) of the continuation given the context, summed over the
	// continuation's tokens.
	LogLikelihood(ctx context.Context, reqs []LLRequest) ([]LLResult, error)
	// LogLikelihoodRolling returns the log-probability of each whole text,
	// conditioned only on the start of a document, scored in windows of the
	// context length that advance by stride tokens (0: half the context).
	LogLikelihoodRolling(ctx context.Context, texts []string, stride int) ([]RollingResult, error)
	// Generate continues prompts (or chat conversations).
	Generate(ctx context.Context, reqs []GenRequest) ([]string, error)
}

// TokenScorer is implemented by backends that can score raw token ids.
type TokenScorer interface {
	// ScoreIDs returns log p(ids[i] | ids[:i]) for i = 1..len(ids)-1,
	// scored in windows when ids is longer than the context.
	ScoreIDs(ctx context.Context, ids []int32, stride int) ([]float64, error)
}

// LLRequest asks for log P(Continuation | Context).
type LLRequest struct {
	Context, Continuation string
}

// LLResult is the answer to an LLRequest.
type LLResult struct {
	// LogProb is the summed log-probability of the continuation's tokens.
	LogProb float64
	// Greedy reports whether every continuation token was the model's most
	// likely token (false when the backend cannot tell).
	Greedy bool
	// Tokens is the number of continuation tokens scored.
	Tokens int
}

// RollingResult is the log-likelihood of a whole text.
type RollingResult struct {
	LogProb float64 // summed over Tokens tokens (natural log)
	Tokens  int
}

// Message is one turn of a chat conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// GenRequest asks for a continuation of Prompt, or, when Messages is set, for
// the assistant's reply to a chat rendered with the model's chat template.
type GenRequest struct {
	Prompt      string
	Messages    []Message
	Until       []string // stop strings (not included in the output)
	MaxTokens   int
	Temperature float64 // 0: greedy
	Seed        uint64
}

// windows splits the scoring of seq[1:] (each token conditioned on what
// precedes it) into model calls of at most maxLen tokens: each window is a
// slice seq[lo:hi] whose tokens from seq[from] on are scored. The first window
// scores as many tokens as fit; later ones advance by stride with the rest of
// the window as context.
func windows(n, maxLen, stride int) ([]window, error) {
	if maxLen < 2 {
		return nil, fmt.Errorf("context length %d is too short to score tokens", maxLen)
	}
	if stride <= 0 {
		stride = max(1, maxLen/2)
	}
	stride = min(stride, maxLen-1)
	var ws []window
	next := 1 // first unscored position
	for next < n {
		hi := min(n, next+stride)
		if next == 1 {
			hi = min(n, maxLen)
		}
		lo := max(0, hi-maxLen)
		ws = append(ws, window{lo: lo, hi: hi, from: next})
		next = hi
	}
	return ws, nil
}

type window struct{ lo, hi, from int }
