package nn

import (
	"math"

	"github.com/mai-llm/mai/backend/cpu"
)

// Embedding looks up rows of w [V, D] for ids, giving [len(ids), D].
func (tp *Tape) Embedding(w *Var, ids []int32) *Var {
	d := w.Cols()
	y := tp.out([]int{len(ids), d}, w)
	for i, id := range ids {
		copy(y.Data[i*d:i*d+d], w.Data[int(id)*d:int(id)*d+d])
	}
	tp.record(y, func() {
		for i, id := range ids {
			axpy(w.Grad[int(id)*d:int(id)*d+d], y.Grad[i*d:i*d+d], 1)
		}
	})
	return y
}

// Add returns a + b (same shapes).
func (tp *Tape) Add(a, b *Var) *Var {
	y := tp.out(a.Shape, a, b)
	for i := range y.Data {
		y.Data[i] = a.Data[i] + b.Data[i]
	}
	tp.record(y, func() {
		if a.Grad != nil {
			axpy(a.Grad, y.Grad, 1)
		}
		if b.Grad != nil {
			axpy(b.Grad, y.Grad, 1)
		}
	})
	return y
}

// Linear returns x·wᵀ + b for x [..., in], w [out, in] (Hugging Face's
// layout) and an optional bias b [out].
func (tp *Tape) Linear(x, w, b *Var) *Var {
	in, out := x.Cols(), w.Shape[0]
	n := x.Rows()
	y := tp.out(withLast(x.Shape, out), x, w, b)
	cpu.Gemm(tp.P, false, true, n, out, in, 1, x.Data, in, w.Data, in, 0, y.Data, out)
	if b != nil {
		for i := 0; i < n; i++ {
			axpy(y.Data[i*out:i*out+out], b.Data, 1)
		}
	}
	tp.record(y, func() {
		if x.Grad != nil {
			cpu.Gemm(tp.P, false, false, n, in, out, 1, y.Grad, out, w.Data, in, 1, x.Grad, in)
		}
		if w.Grad != nil {
			cpu.Gemm(tp.P, true, false, out, in, n, 1, y.Grad, out, x.Data, in, 1, w.Grad, in)
		}
		if b != nil && b.Grad != nil {
			for i := 0; i < n; i++ {
				axpy(b.Grad, y.Grad[i*out:i*out+out], 1)
			}
		}
	})
	return y
}

// RMSNorm normalizes rows of x by their root mean square and scales by w.
func (tp *Tape) RMSNorm(x, w *Var, eps float32) *Var {
	n, d := x.Rows(), x.Cols()
	y := tp.out(x.Shape, x, w)
	rstd := make([]float32, n)
	cpu.RMSNormForward(tp.P, y.Data, rstd, x.Data, w.Data, n, d, eps)
	tp.record(y, func() {
		dx := x.Grad
		if dx == nil {
			dx = make([]float32, len(x.Data))
		}
		cpu.RMSNormBackward(tp.P, dx, w.Grad, y.Grad, x.Data, w.Data, rstd, n, d)
	})
	return y
}

// LayerNorm normalizes rows of x to zero mean and unit variance, then
// applies w and the optional bias b.
func (tp *Tape) LayerNorm(x, w, b *Var, eps float32) *Var {
	n, d := x.Rows(), x.Cols()
	y := tp.out(x.Shape, x, w, b)
	mean, rstd := make([]float32, n), make([]float32, n)
	var bd, bg []float32
	if b != nil {
		bd, bg = b.Data, b.Grad
	}
	cpu.LayerNormForward(tp.P, y.Data, mean, rstd, x.Data, w.Data, bd, n, d, eps)
	tp.record(y, func() {
		dx := x.Grad
		if dx == nil {
			dx = make([]float32, len(x.Data))
		}
		cpu.LayerNormBackward(tp.P, dx, w.Grad, bg, y.Grad, x.Data, w.Data, mean, rstd, n, d)
	})
	return y
}

// RoPE rotates each head of x [N, heads*D] by its row's position.
func (tp *Tape) RoPE(x *Var, r *cpu.RoPE, pos []int32) *Var {
	y := tp.out(x.Shape, x)
	r.Forward(tp.P, y.Data, x.Data, pos)
	tp.record(y, func() { r.Backward(tp.P, x.Grad, y.Grad, pos) })
	return y
}

// Attention runs causal attention; q is [B*Tq, H*D], k and v are
// [B*Tk, KV*D] (a.KStride must be Tk*KV*D), giving [B*Tq, H*D].
func (tp *Tape) Attention(q, k, v *Var, a cpu.Attn) *Var {
	y := tp.out(q.Shape, q, k, v)
	lse := make([]float32, a.B*a.H*a.Tq)
	cpu.AttentionForward(tp.P, &a, y.Data, lse, q.Data, k.Data, v.Data)
	tp.record(y, func() {
		cpu.AttentionBackward(tp.P, &a, gradOrScratch(q), gradOrScratch(k), gradOrScratch(v), y.Grad, y.Data, lse, q.Data, k.Data, v.Data)
	})
	return y
}

// SwiGLU returns silu(g) * u.
func (tp *Tape) SwiGLU(g, u *Var) *Var {
	y := tp.out(g.Shape, g, u)
	cpu.SwiGLUForward(tp.P, y.Data, g.Data, u.Data)
	tp.record(y, func() { cpu.SwiGLUBackward(tp.P, gradOrScratch(g), gradOrScratch(u), y.Grad, g.Data, u.Data) })
	return y
}

// GELU applies GELU (tanh approximation when approx).
func (tp *Tape) GELU(x *Var, approx bool) *Var {
	y := tp.out(x.Shape, x)
	cpu.GELUForward(tp.P, y.Data, x.Data, approx)
	tp.record(y, func() { cpu.GELUBackward(tp.P, x.Grad, y.Grad, x.Data, approx) })
	return y
}

// Softmax returns a row-wise softmax.
func (tp *Tape) Softmax(x *Var) *Var {
	y := tp.out(x.Shape, x)
	cpu.SoftmaxForward(tp.P, y.Data, x.Data, x.Rows(), x.Cols())
	tp.record(y, func() { cpu.SoftmaxBackward(tp.P, x.Grad, y.Grad, y.Data, x.Rows(), x.Cols()) })
	return y
}

// Sigmoid applies the logistic function elementwise.
func (tp *Tape) Sigmoid(x *Var) *Var {
	y := tp.out(x.Shape, x)
	for i, v := range x.Data {
		y.Data[i] = float32(1 / (1 + math.Exp(-float64(v))))
	}
	tp.record(y, func() {
		for i, s := range y.Data {
			x.Grad[i] += y.Grad[i] * s * (1 - s)
		}
	})
	return y
}

// CrossEntropy returns the mean of -log softmax(logits)[target] over rows
// whose target is not negative, as a scalar.
func (tp *Tape) CrossEntropy(logits *Var, targets []int32) *Var {
	n, v := logits.Rows(), logits.Cols()
	y := tp.out([]int{1}, logits)
	losses, lse := make([]float32, n), make([]float32, n)
	count := cpu.CrossEntropyForward(tp.P, losses, lse, logits.Data, targets, n, v)
	var s float64
	for _, l := range losses {
		s += float64(l)
	}
	if count > 0 {
		y.Data[0] = float32(s / float64(count))
	}
	tp.record(y, func() {
		if count > 0 {
			cpu.CrossEntropyBackward(tp.P, logits.Grad, logits.Data, lse, targets, n, v, y.Grad[0]/float32(count))
		}
	})
	return y
}

// WeightedSum returns Σ w[i]*xs[i] for scalars.
func (tp *Tape) WeightedSum(xs []*Var, w []float32) *Var {
	y := tp.out([]int{1}, xs...)
	for i, x := range xs {
		y.Data[0] += w[i] * x.Data[0]
	}
	tp.record(y, func() {
		for i, x := range xs {
			if x.Grad != nil {
				x.Grad[0] += w[i] * y.Grad[0]
			}
		}
	})
	return y
}

// Reshape returns a view of x with a new shape that shares data and gradient.
func (tp *Tape) Reshape(x *Var, shape ...int) *Var {
	t, err := x.Tensor.Reshape(shape...)
	if err != nil {
		panic(err) // a model-construction bug, never data-dependent
	}
	return &Var{Tensor: *t, Grad: x.Grad}
}

func gradOrScratch(v *Var) []float32 {
	if v.Grad != nil {
		return v.Grad
	}
	return make([]float32, len(v.Data))
}

func axpy(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
