package nn

import (
	"slices"

	"github.com/mai-llm/mai/backend/cpu"
)

// ceChunkCols picks the vocabulary chunk width (tests make it small).
var ceChunkCols = cpu.CEChunkCols

// LinearCrossEntropy returns CrossEntropy(Linear(x, w, nil), targets), the
// mean next-token loss over rows whose target is not negative, without
// materializing the [N, V] logits: the classifier runs one vocabulary chunk
// of cpu.CEChunkCols columns at a time, folding each chunk into an online
// log-sum-exp, and the backward pass recomputes each chunk's logits, turns
// them into their gradient in place and applies the two gradient GEMMs. It
// costs one more classifier GEMM than the unfused pair and saves the logits
// and their gradient ([N, V] each) and the memory traffic over them.
func (tp *Tape) LinearCrossEntropy(x, w *Var, targets []int32) *Var {
	n, d, v := x.Rows(), x.Cols(), w.Shape[0]
	p := tp.P
	y := tp.out([]int{1}, false, x, w)
	cw := ceChunkCols(n, v)
	chunk := tp.floats(n*cw, false)
	st := tp.floats(5*n, false)
	m, s, tl, losses, lse := st[:n], st[n:2*n], st[2*n:3*n], st[3*n:4*n], st[4*n:5*n]
	for c0 := 0; c0 < v; c0 += cw {
		wc := min(cw, v-c0)
		cpu.Gemm(p, false, true, n, wc, d, 1, x.Data, d, w.Data[c0*d:], d, 0, chunk, wc)
		cpu.CEChunkForward(p, chunk, m, s, tl, targets, n, wc, c0, c0 == 0)
	}
	count := cpu.CEChunkLoss(losses, lse, m, s, tl, targets, n)
	y.Data[0] = meanLoss(losses, count)
	tp.record(op{kind: opLinearCE, y: y, a: x, b: w, ids: targets, n: count, buf: lse})
	return y
}

func (tp *Tape) linearCEBackward(o *op) {
	if o.n == 0 || (o.a.Grad == nil && o.b.Grad == nil) {
		return // (a lazy x.Grad stays lazy: logically zero)
	}
	x, w := o.a, o.b
	n, d, v := x.Rows(), x.Cols(), w.Shape[0]
	p := tp.P
	scale := o.y.Grad[0] / float32(o.n)
	cw := ceChunkCols(n, v)
	chunk := tp.floats(n*cw, false)
	betaX := float32(1)
	if x.Grad != nil && freshGrad(x) {
		betaX = 0
	}
	dw := accGrad(w)
	for c0 := 0; c0 < v; c0 += cw {
		wc := min(cw, v-c0)
		cpu.Gemm(p, false, true, n, wc, d, 1, x.Data, d, w.Data[c0*d:], d, 0, chunk, wc)
		cpu.CEChunkBackward(p, chunk, o.buf, o.ids, n, wc, c0, scale)
		if x.Grad != nil {
			cpu.Gemm(p, false, false, n, d, wc, 1, chunk, wc, w.Data[c0*d:], d, betaX, x.Grad, d)
			betaX = 1
		}
		if dw != nil {
			cpu.Gemm(p, true, false, wc, d, n, 1, chunk, wc, x.Data, d, 1, dw[c0*d:], d)
		}
	}
}

// AddRMSNorm returns the residual sum s = x + a and h = RMSNorm(s, w): a
// residual connection and the norm after it, in one pass over the rows.
func (tp *Tape) AddRMSNorm(x, a, w *Var, eps float32) (s, h *Var) {
	n, d := x.Rows(), x.Cols()
	s = tp.out(x.Shape, false, x, a)
	h = tp.out(x.Shape, false, x, a, w)
	var rstd []float32
	if h.Grad != nil {
		rstd = tp.floats(n, false)
	}
	cpu.AddRMSNormForward(tp.P, s.Data, h.Data, rstd, x.Data, a.Data, w.Data, n, d, eps)
	tp.record(op{kind: opAddNorm, y: h, y2: s, a: x, b: a, c: w, buf: rstd})
	return s, h
}

// AddLayerNorm returns the residual sum s = x + a and
// h = LayerNorm(s, w, b) (b may be nil), in one pass over the rows.
func (tp *Tape) AddLayerNorm(x, a, w, b *Var, eps float32) (s, h *Var) {
	n, d := x.Rows(), x.Cols()
	s = tp.out(x.Shape, false, x, a)
	h = tp.out(x.Shape, false, x, a, w, b)
	mean, rstd := tp.floats(n, false), tp.floats(n, false)
	var bd []float32
	if b != nil {
		bd = b.Data
	}
	cpu.AddLayerNormForward(tp.P, s.Data, h.Data, mean, rstd, x.Data, a.Data, w.Data, bd, n, d, eps)
	tp.record(op{kind: opAddNorm, y: h, y2: s, a: x, b: a, c: w, d: b, buf: rstd, buf2: mean, flag: true})
	return s, h
}

// addNormBackward adds the norm's input gradient to the sum's own gradient
// (from its later uses), then passes the total to both terms.
func (tp *Tape) addNormBackward(o *op) {
	h, s, w := o.y, o.y2, o.c
	if h.Grad != nil && !dead(h) {
		n, d := s.Rows(), s.Cols()
		ds := tp.scratchFor(s)
		if o.flag {
			var db []float32
			if o.d != nil {
				db = accGrad(o.d)
			}
			cpu.LayerNormBackward(tp.P, ds, accGrad(w), db, h.Grad, s.Data, w.Data, o.buf2, o.buf, n, d)
		} else {
			cpu.RMSNormBackward(tp.P, ds, accGrad(w), h.Grad, s.Data, w.Data, o.buf, n, d)
		}
	}
	if s.Grad != nil && !dead(s) {
		tp.addBackward(s, o.a, o.b)
	}
}

// LinearSwiGLU returns SwiGLU(Linear(x, wg, nil), Linear(x, wu, nil)), the
// first half of a gated MLP. When wg and wu lie next to each other in memory
// (as a model's flat parameter buffer lays out gate_proj and up_proj), both
// projections run as one GEMM over the [2F, in] pair, and the backward pass
// as one GEMM for the input gradient and one for both weight gradients;
// otherwise it is the three ops.
func (tp *Tape) LinearSwiGLU(x, wg, wu *Var) *Var {
	w, dw, ok := adjacent(wg, wu)
	if !ok {
		return tp.SwiGLU(tp.Linear(x, wg, nil), tp.Linear(x, wu, nil))
	}
	f, in, n := wg.Shape[0], x.Cols(), x.Rows()
	var sb [4]int
	shape := append(sb[:0], x.Shape...)
	shape[len(shape)-1] = f
	y := tp.out(shape, false, x, wg, wu)
	gu := tp.floats(n*2*f, false)
	if n <= cpu.MatVecRows {
		cpu.MatVec(tp.P, n, 2*f, in, x.Data, w, 0, gu)
	} else {
		cpu.Gemm(tp.P, false, true, n, 2*f, in, 1, x.Data, in, w, in, 0, gu, 2*f)
	}
	cpu.SwiGLURows(tp.P, y.Data, gu, n, f)
	if y.Grad != nil {
		tp.record(op{kind: opLinearSwiGLU, y: y, a: x, b: wg, c: wu, buf: gu, buf2: dw})
	}
	return y
}

func (tp *Tape) linearSwiGLUBackward(o *op) {
	x, wg, y := o.a, o.b, o.y
	f, in, n := wg.Shape[0], x.Cols(), x.Rows()
	w, _, _ := adjacent(wg, o.c)
	dgu := tp.floats(n*2*f, false)
	cpu.SwiGLURowsBackward(tp.P, dgu, y.Grad, o.buf, n, f)
	if x.Grad != nil {
		beta := float32(1)
		if freshGrad(x) {
			beta = 0
		}
		cpu.Gemm(tp.P, false, false, n, in, 2*f, 1, dgu, 2*f, w, in, beta, x.Grad, in)
	}
	if dw := o.buf2; dw != nil {
		cpu.Gemm(tp.P, true, false, 2*f, in, n, 1, dgu, 2*f, x.Data, in, 1, dw, in)
	}
}

// adjacent reports whether b follows a directly in memory, with the same
// shape, and if so returns the data (and gradient, nil when neither has
// one) of both as one slice. Gradients must be adjacent too, and not lazy.
func adjacent(a, b *Var) (data, grad []float32, ok bool) {
	na, nb := len(a.Data), len(b.Data)
	if na == 0 || na != nb || !slices.Equal(a.Shape, b.Shape) || cap(a.Data) < na+nb || &a.Data[:na+nb][na] != &b.Data[0] {
		return nil, nil, false
	}
	if (a.Grad == nil) != (b.Grad == nil) {
		return nil, nil, false
	}
	if a.Grad != nil {
		if a.owner().lazy || b.owner().lazy || cap(a.Grad) < na+nb || &a.Grad[:na+nb][na] != &b.Grad[0] {
			return nil, nil, false
		}
		grad = a.Grad[:na+nb]
	}
	return a.Data[:na+nb], grad, true
}
