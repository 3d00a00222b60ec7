package nn

import (
	"math"

	"github.com/mai-llm/mai/backend/cpu"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), written
// to match torch.optim.AdamW step for step. It works on flat parameter
// memory; M and V have the parameters' length.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	M, V                           []float32
	Step                           int
}

// Segment is a run of the flat parameter buffer and whether weight decay
// applies to it.
type Segment struct {
	Off, Len int
	Decay    bool
}

// NewAdamW returns an optimizer for n parameters.
func NewAdamW(n int, beta1, beta2, eps, wd float64) *AdamW {
	return &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: wd, M: make([]float32, n), V: make([]float32, n)}
}

// Update applies one step with learning rate lr to params using grads.
// Adjacent segments with the same decay setting run as one vectorized,
// parallel pass (cpu.AdamWUpdate).
func (o *AdamW) Update(p *cpu.Pool, params, grads []float32, segs []Segment, lr float64) {
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	hp := cpu.AdamHP{B1: float32(o.Beta1), OneMinusB1: 1 - float32(o.Beta1), B2: float32(o.Beta2), OneMinusB2: 1 - float32(o.Beta2),
		StepSize: float32(lr / bc1), SqrtBC2: float32(math.Sqrt(bc2)), Eps: float32(o.Eps)}
	for i := 0; i < len(segs); {
		s := segs[i]
		end := s.Off + s.Len
		j := i + 1
		for j < len(segs) && segs[j].Off == end && segs[j].Decay == s.Decay {
			end += segs[j].Len
			j++
		}
		i = j
		hp.Decay = 1
		if s.Decay {
			hp.Decay = float32(1 - lr*o.WeightDecay)
		}
		cpu.AdamWUpdate(p, params[s.Off:end], grads[s.Off:end], o.M[s.Off:end], o.V[s.Off:end], &hp)
	}
}

// GradNorm returns the global L2 norm of grads, summed in float64 in a fixed
// order (per chunk of 2¹⁶ values, in parallel on the default pool, then over
// the chunks in order), so it does not depend on the thread count.
func GradNorm(grads []float32) float64 {
	return math.Sqrt(cpu.SumSquares(cpu.Default(), grads))
}

// ClipGrads scales grads so their global norm is at most maxNorm; it returns
// the norm before clipping.
func ClipGrads(grads []float32, maxNorm float64) float64 {
	n := GradNorm(grads)
	if maxNorm > 0 && n > maxNorm {
		cpu.Scale(cpu.Default(), grads, float32(maxNorm/(n+1e-6)))
	}
	return n
}
