// Package infer generates text from a model: prefill and incremental decode
// with a KV cache, samplers, and stop conditions.
package infer

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling holds the per-request sampling parameters. Temperature 0 is
// greedy decoding.
type Sampling struct {
	Temperature       float64 `json:"temperature"`
	TopK              int     `json:"top_k"`
	TopP              float64 `json:"top_p"`
	MinP              float64 `json:"min_p"`
	RepetitionPenalty float64 `json:"repetition_penalty"`
	Seed              uint64  `json:"seed"`
}

// Sampler draws tokens from logits with a seeded generator, so a seed fixes
// the output.
type Sampler struct {
	S     Sampling
	rng   *rand.Rand
	idx   []int
	probs []float64
}

// NewSampler returns a sampler for the given parameters.
func NewSampler(s Sampling) *Sampler {
	return &Sampler{S: s, rng: rand.New(rand.NewPCG(s.Seed, 0x73616d70))}
}

// Sample picks the next token. logits is modified (penalties, temperature).
// history lists the tokens seen so far, for the repetition penalty. The steps
// follow Hugging Face's order: repetition penalty, temperature, top-k,
// top-p, min-p.
func (s *Sampler) Sample(logits []float32, history []int32) int32 {
	if p := s.S.RepetitionPenalty; p > 0 && p != 1 {
		seen := map[int32]bool{}
		for _, id := range history {
			if seen[id] || int(id) >= len(logits) {
				continue
			}
			seen[id] = true
			if logits[id] > 0 {
				logits[id] /= float32(p)
			} else {
				logits[id] *= float32(p)
			}
		}
	}
	if s.S.Temperature <= 0 {
		return Argmax(logits)
	}
	n := len(logits)
	if cap(s.idx) < n {
		s.idx, s.probs = make([]int, n), make([]float64, n)
	}
	idx, probs := s.idx[:n], s.probs[:n]
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	keep := n
	if s.S.TopK > 0 && s.S.TopK < keep {
		keep = s.S.TopK
	}
	m := float64(logits[idx[0]]) / s.S.Temperature
	var sum float64
	for i := 0; i < keep; i++ {
		probs[i] = math.Exp(float64(logits[idx[i]])/s.S.Temperature - m)
		sum += probs[i]
	}
	for i := 0; i < keep; i++ {
		probs[i] /= sum
	}
	if tp := s.S.TopP; tp > 0 && tp < 1 {
		var c float64
		for i := 0; i < keep; i++ {
			c += probs[i]
			if c >= tp {
				keep = i + 1
				break
			}
		}
	}
	if mp := s.S.MinP; mp > 0 {
		limit := mp * probs[0]
		for i := 1; i < keep; i++ {
			if probs[i] < limit {
				keep = i
				break
			}
		}
	}
	sum = 0
	for i := 0; i < keep; i++ {
		sum += probs[i]
	}
	r := s.rng.Float64() * sum
	for i := 0; i < keep; i++ {
		r -= probs[i]
		if r <= 0 {
			return int32(idx[i])
		}
	}
	return int32(idx[keep-1])
}

// Argmax returns the index of the largest logit (the first on ties, as
// torch.argmax does).
func Argmax(logits []float32) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return int32(best)
}
