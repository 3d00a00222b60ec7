package nn

import "github.com/mai-llm/mai/backend/cpu"

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
