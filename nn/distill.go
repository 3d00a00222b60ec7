package nn

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/backend/cpu"
)

// DistillTargets are a teacher's sparse next-token distributions for some
// rows of a batch: for each listed row, up to K student token ids with the
// teacher's probability of each, and the teacher's probability of every
// other token together (Rest).
type DistillTargets struct {
	// Rows lists the rows (of the hidden states) that have a target.
	Rows []int32
	// K is the number of entries per row.
	K int
	// IDs [len(Rows)*K] are student token ids; -1 marks an empty slot. The
	// ids of one row must be distinct.
	IDs []int32
	// Prob [len(Rows)*K] are the teacher's probabilities of the entries.
	Prob []float32
	// Rest [len(Rows)] is the teacher's probability of all tokens not listed
	// (0: the listed entries carry all the mass). With Prob it sums to 1.
	Rest []float32
}

// distillRestFloor is the smallest student probability of the unlisted
// tokens that the loss resolves: float32 log-sum-exps cannot tell 1 - S
// apart from zero below about 1e-7.
const distillRestFloor = 1e-6

// Validate checks the targets' shapes and values for hidden states of n rows
// and a vocabulary of v tokens.
func (t *DistillTargets) Validate(n, v int) error {
	m := len(t.Rows)
	if t.K <= 0 && m > 0 {
		return fmt.Errorf("distill targets: K is %d, must be positive", t.K)
	}
	if len(t.IDs) != m*t.K || len(t.Prob) != m*t.K || len(t.Rest) != m {
		return fmt.Errorf("distill targets: %d rows × K %d need %d ids and probabilities and %d rest masses, have %d, %d and %d",
			m, t.K, m*t.K, m, len(t.IDs), len(t.Prob), len(t.Rest))
	}
	for i, r := range t.Rows {
		if r < 0 || int(r) >= n {
			return fmt.Errorf("distill targets: row %d outside [0,%d)", r, n)
		}
		sum := float64(t.Rest[i])
		if !(t.Rest[i] >= 0 && t.Rest[i] <= 1) {
			return fmt.Errorf("distill targets: row %d: rest mass %v outside [0,1]", r, t.Rest[i])
		}
		ids := t.IDs[i*t.K : (i+1)*t.K]
		for j, id := range ids {
			p := t.Prob[i*t.K+j]
			if id < 0 {
				continue
			}
			if int(id) >= v {
				return fmt.Errorf("distill targets: row %d: token id %d outside the vocabulary [0,%d)", r, id, v)
			}
			if !(p >= 0 && p <= 1) {
				return fmt.Errorf("distill targets: row %d: probability %v outside [0,1]", r, p)
			}
			for _, o := range ids[:j] {
				if o == id {
					return fmt.Errorf("distill targets: row %d: token id %d listed twice", r, id)
				}
			}
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-3 {
			return fmt.Errorf("distill targets: row %d: probabilities and rest sum to %.6f, not 1", r, sum)
		}
	}
	return nil
}

// LinearDistill returns the mean over t.Rows of the forward KL divergence
// KL(teacher ‖ student) between the teacher's sparse distribution t and the
// student's softmax(x·wᵀ), both coarsened to the listed tokens plus one
// bucket for all others:
//
//	L_i = Σ_j q_j (log q_j − log p_j) + r (log r − log R)
//
// where q_j are the teacher's probabilities of the listed ids, p_j the
// student's, r = Rest and R = 1 − Σ_j p_j the student's mass off the list
// (floored at 1e-6). It is the exact KL of the two distributions over that
// partition of the vocabulary, a lower bound of the full KL that is zero
// only when the student matches every listed probability and the total of
// the rest; with r = 0 it is the cross-entropy to q minus q's entropy.
//
// Like LinearCrossEntropy, the classifier runs one vocabulary chunk at a
// time and only on the listed rows of x [N, D] (w is [V, D]): the logits
// are never materialized, and the backward pass recomputes each chunk.
func (tp *Tape) LinearDistill(x, w *Var, t *DistillTargets) (*Var, error) {
	n, d, v := x.Rows(), x.Cols(), w.Shape[0]
	if w.Cols() != d {
		return nil, fmt.Errorf("linear distill: hidden size %d, classifier %v", d, w.Shape)
	}
	if err := t.Validate(n, v); err != nil {
		return nil, err
	}
	m, k := len(t.Rows), t.K
	y := tp.out([]int{1}, false, x, w)
	if m == 0 {
		y.Data[0] = 0
		return y, nil
	}
	p := tp.P
	xr := tp.floats(m*d, false)
	for i, r := range t.Rows {
		copy(xr[i*d:(i+1)*d], x.Data[int(r)*d:int(r)*d+d])
	}
	cw := ceChunkCols(m, v)
	chunk := tp.floats(m*cw, false)
	st := tp.floats(4*m+m*k, false)
	mx, s, lse, rest, pk := st[:m], st[m:2*m], st[2*m:3*m], st[3*m:4*m], st[4*m:]
	zk := tp.floats(m*k, false) // student logits of the listed ids
	noTarget := tp.Int32s(m)
	for i := range noTarget {
		noTarget[i] = -1
	}
	for c0 := 0; c0 < v; c0 += cw {
		wc := min(cw, v-c0)
		cpu.Gemm(p, false, true, m, wc, d, 1, xr, d, w.Data[c0*d:], d, 0, chunk, wc)
		cpu.CEChunkForward(p, chunk, mx, s, nil, noTarget, m, wc, c0, c0 == 0)
		for e, id := range t.IDs {
			if c := int(id) - c0; id >= 0 && c >= 0 && c < wc {
				zk[e] = chunk[(e/k)*wc+c]
			}
		}
	}
	var total float64
	for i := range m {
		l := float64(mx[i]) + math.Log(float64(s[i]))
		lse[i] = float32(l)
		var li, sum float64
		for j := range k {
			e := i*k + j
			if t.IDs[e] < 0 {
				pk[e] = 0
				continue
			}
			lp := float64(zk[e]) - l
			pj := math.Exp(lp)
			pk[e] = float32(pj)
			sum += pj
			if q := float64(t.Prob[e]); q > 0 {
				li += q * (math.Log(q) - lp)
			}
		}
		// rest holds the student's mass off the list, R.
		rr := max(1-sum, distillRestFloor)
		rest[i] = float32(rr)
		if r := float64(t.Rest[i]); r > 0 {
			li += r * (math.Log(r) - math.Log(rr))
		}
		total += li
	}
	y.Data[0] = float32(total / float64(m))
	if y.Grad == nil {
		return y, nil
	}
	tp.record(op{kind: opFunc, y: y, fn: func() { tp.linearDistillBackward(x, w, y, t, xr, lse, rest, pk, noTarget) }})
	return y, nil
}

// linearDistillBackward applies dL/dz_v = p_v (Q − r S/R) for every token v
// and adds p_v r/R − q_v for the listed ones (Q = Σ q_j, S = Σ p_j; with
// R = 1 − S this is p_v − q_v on the list and p_v (1 − r/R) off it), chunk
// by chunk, then the classifier's two gradient GEMMs. Where R is floored the
// same expression is used: it keeps pushing mass off the list.
func (tp *Tape) linearDistillBackward(x, w, y *Var, t *DistillTargets, xr, lse, rest, pk []float32, ones []int32) {
	if dead(y) || (x.Grad == nil && w.Grad == nil) {
		return
	}
	d, v := x.Cols(), w.Shape[0]
	m, k := len(t.Rows), t.K
	p := tp.P
	scale := y.Grad[0] / float32(m)
	a := tp.floats(2*m, false) // per row: the factor of p_v, and of the listed p_v
	for i := range m {
		var q, sum float64
		for j := range k {
			if e := i*k + j; t.IDs[e] >= 0 {
				q += float64(t.Prob[e])
				sum += float64(pk[e])
			}
		}
		r, rr := float64(t.Rest[i]), float64(rest[i])
		a[i] = float32(q - r*sum/rr)
		a[m+i] = float32(r / rr)
	}
	// CEChunkBackward with a target outside every chunk leaves softmax×1.
	for i := range ones {
		ones[i] = math.MaxInt32
	}
	cw := ceChunkCols(m, v)
	chunk := tp.floats(m*cw, false)
	var dxr []float32
	if x.Grad != nil {
		dxr = tp.floats(m*d, false)
	}
	dw := accGrad(w)
	for c0 := 0; c0 < v; c0 += cw {
		wc := min(cw, v-c0)
		cpu.Gemm(p, false, true, m, wc, d, 1, xr, d, w.Data[c0*d:], d, 0, chunk, wc)
		cpu.CEChunkBackward(p, chunk, lse, ones, m, wc, c0, 1)
		for i := range m {
			row := chunk[i*wc : (i+1)*wc]
			f := scale * a[i]
			for c := range row {
				row[c] *= f
			}
			for j := range k {
				e := i*k + j
				if c := int(t.IDs[e]) - c0; t.IDs[e] >= 0 && c >= 0 && c < wc {
					row[c] += scale * (pk[e]*a[m+i] - t.Prob[e])
				}
			}
		}
		if dxr != nil {
			beta := float32(1)
			if c0 == 0 {
				beta = 0
			}
			cpu.Gemm(p, false, false, m, d, wc, 1, chunk, wc, w.Data[c0*d:], d, beta, dxr, d)
		}
		if dw != nil {
			cpu.Gemm(p, true, false, wc, d, m, 1, chunk, wc, xr, d, 1, dw[c0*d:], d)
		}
	}
	if dxr != nil {
		dx := accGrad(x)
		for i, r := range t.Rows {
			axpy(dx[int(r)*d:int(r)*d+d], dxr[i*d:(i+1)*d], 1)
		}
	}
}

// ClassifierInput returns the hidden states and classifier weight of the
// fused classifier-and-loss op (LinearCrossEntropy) that produced loss on
// this tape, so that another loss can share the same forward pass (as
// distillation does with a model's Loss). ok is false when loss was not made
// by that op on this tape, or the tape does not record.
func (tp *Tape) ClassifierInput(loss *Var) (x, w *Var, ok bool) {
	for i := len(tp.ops) - 1; i >= 0; i-- {
		if o := &tp.ops[i]; o.kind == opLinearCE && o.y == loss {
			return o.a, o.b, true
		}
	}
	return nil, nil, false
}
