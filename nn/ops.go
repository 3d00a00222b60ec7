package nn

import (
	"math"

	"github.com/mai-llm/mai/backend/cpu"
)

// opKind names the backward kernel of a recorded op.
type opKind uint8

const (
	opFunc opKind = iota
	opEmbedding
	opAdd
	opLinear
	opRMSNorm
	opLayerNorm
	opRoPE
	opAttention
	opSwiGLU
	opGELU
	opSoftmax
	opSigmoid
	opCrossEntropy
	opLinearCE
	opWeightedSum
	opAddNorm
	opLinearSwiGLU
	opTopK
	opGatherRows
	opScaleRows
	opCombine
	opLoadBalance
	opZLoss
)

// op is one recorded operation: its output y, inputs a, b, c and what its
// backward needs. Fields are used as each kind documents at its forward.
type op struct {
	kind    opKind
	y       *Var
	a, b, c *Var
	y2, d   *Var // a second output and a fourth input (AddNorm)
	flag    bool
	f       float32
	n       int
	buf     []float32 // saved per-row statistics (rstd, lse, ...)
	buf2    []float32
	ids     []int32
	rows    []int
	idx     []int
	vars    []*Var
	rowSets [][]int
	route   *Route
	f64     []float64
	attn    cpu.Attn
	rope    cpu.RoPE
	fn      func()
}

// backward runs o's backward kernel.
func (tp *Tape) backward(o *op) {
	p := tp.P
	y := o.y
	if o.kind == opAddNorm {
		tp.addNormBackward(o)
		return
	}
	if o.kind != opFunc && dead(y) {
		return
	}
	switch o.kind {
	case opFunc:
		o.fn()
	case opEmbedding:
		w, d := o.a, o.a.Cols()
		dw := accGrad(w)
		for i, id := range o.ids {
			cpu.Axpy(nil, dw[int(id)*d:int(id)*d+d], 1, y.Grad[i*d:i*d+d])
		}
	case opAdd:
		tp.addBackward(y, o.a, o.b)
	case opLinear:
		x, w, b := o.a, o.b, o.c
		in, out, n := x.Cols(), w.Shape[0], x.Rows()
		if x.Grad != nil {
			beta := float32(1)
			if freshGrad(x) {
				beta = 0
			}
			cpu.Gemm(p, false, false, n, in, out, 1, y.Grad, out, w.Data, in, beta, x.Grad, in)
		}
		if w.Grad != nil {
			beta := float32(1)
			if freshGrad(w) {
				beta = 0
			}
			cpu.Gemm(p, true, false, out, in, n, 1, y.Grad, out, x.Data, in, beta, w.Grad, in)
		}
		if b != nil && b.Grad != nil {
			cpu.SumRows(p, accGrad(b), y.Grad, n, out)
		}
	case opRMSNorm:
		x, w := o.a, o.b
		cpu.RMSNormBackward(p, tp.scratchFor(x), accGrad(w), y.Grad, x.Data, w.Data, o.buf, x.Rows(), x.Cols())
	case opLayerNorm:
		x, w := o.a, o.b
		var bg []float32
		if o.c != nil {
			bg = accGrad(o.c)
		}
		cpu.LayerNormBackward(p, tp.scratchFor(x), accGrad(w), bg, y.Grad, x.Data, w.Data, o.buf, o.buf2, x.Rows(), x.Cols())
	case opRoPE:
		if x := o.a; x.Grad != nil {
			if freshGrad(x) {
				o.rope.BackwardTo(p, x.Grad, y.Grad, o.ids)
			} else {
				o.rope.Backward(p, x.Grad, y.Grad, o.ids)
			}
		}
	case opAttention:
		q, k, v := o.a, o.b, o.c
		cpu.AttentionBackward(p, &o.attn, tp.scratchFor(q), tp.scratchFor(k), tp.scratchFor(v), y.Grad, y.Data, o.buf, q.Data, k.Data, v.Data)
	case opSwiGLU:
		cpu.SwiGLUBackward(p, tp.scratchFor(o.a), tp.scratchFor(o.b), y.Grad, o.a.Data, o.b.Data)
	case opGELU:
		if o.a.Grad != nil {
			cpu.GELUBackward(p, accGrad(o.a), y.Grad, o.a.Data, o.flag)
		}
	case opSoftmax:
		if o.a.Grad != nil {
			cpu.SoftmaxBackward(p, accGrad(o.a), y.Grad, y.Data, o.a.Rows(), o.a.Cols())
		}
	case opSigmoid:
		if dx := accGrad(o.a); dx != nil {
			for i, s := range y.Data {
				dx[i] += y.Grad[i] * s * (1 - s)
			}
		}
	case opCrossEntropy:
		if o.n > 0 && o.a.Grad != nil {
			logits := o.a
			cpu.CrossEntropyBackward(p, accGrad(logits), logits.Data, o.buf, o.ids, logits.Rows(), logits.Cols(), y.Grad[0]/float32(o.n))
		}
	case opLinearCE:
		tp.linearCEBackward(o)
	case opLinearSwiGLU:
		tp.linearSwiGLUBackward(o)
	case opWeightedSum:
		for i, x := range o.vars {
			if dx := accGrad(x); dx != nil {
				dx[0] += o.buf[i] * y.Grad[0]
			}
		}
	default:
		tp.moeBackward(o)
	}
}

// addBackward passes y's gradient to both terms of y = a + b.
func (tp *Tape) addBackward(y, a, b *Var) {
	for _, x := range [2]*Var{a, b} {
		switch {
		case x.Grad == nil:
		case freshGrad(x):
			cpu.Copy(tp.P, x.Grad, y.Grad)
		default:
			cpu.Axpy(tp.P, x.Grad, 1, y.Grad)
		}
	}
}

// Embedding looks up rows of w [V, D] for ids, giving [len(ids), D].
func (tp *Tape) Embedding(w *Var, ids []int32) *Var {
	d := w.Cols()
	y := tp.out([]int{len(ids), d}, false, w)
	for i, id := range ids {
		copy(y.Data[i*d:i*d+d], w.Data[int(id)*d:int(id)*d+d])
	}
	tp.record(op{kind: opEmbedding, y: y, a: w, ids: ids})
	return y
}

// Add returns a + b (same shapes).
func (tp *Tape) Add(a, b *Var) *Var {
	y := tp.out(a.Shape, false, a, b)
	cpu.Add(tp.P, y.Data, a.Data, b.Data)
	tp.record(op{kind: opAdd, y: y, a: a, b: b})
	return y
}

// Linear returns x·wᵀ + b for x [..., in], w [out, in] (Hugging Face's
// layout) and an optional bias b [out].
func (tp *Tape) Linear(x, w, b *Var) *Var {
	in, out := x.Cols(), w.Shape[0]
	n := x.Rows()
	var sb [4]int
	shape := append(sb[:0], x.Shape...)
	shape[len(shape)-1] = out
	y := tp.out(shape, false, x, w, b)
	beta := float32(0)
	if b != nil {
		cpu.FillRows(tp.P, y.Data, b.Data, n, out)
		beta = 1
	}
	if n <= cpu.MatVecRows {
		cpu.MatVec(tp.P, n, out, in, x.Data, w.Data, beta, y.Data)
	} else {
		cpu.Gemm(tp.P, false, true, n, out, in, 1, x.Data, in, w.Data, in, beta, y.Data, out)
	}
	tp.record(op{kind: opLinear, y: y, a: x, b: w, c: b})
	return y
}

// RMSNorm normalizes rows of x by their root mean square and scales by w.
func (tp *Tape) RMSNorm(x, w *Var, eps float32) *Var {
	n, d := x.Rows(), x.Cols()
	y := tp.out(x.Shape, false, x, w)
	var rstd []float32
	if y.Grad != nil {
		rstd = tp.floats(n, false)
	}
	cpu.RMSNormForward(tp.P, y.Data, rstd, x.Data, w.Data, n, d, eps)
	tp.record(op{kind: opRMSNorm, y: y, a: x, b: w, buf: rstd})
	return y
}

// LayerNorm normalizes rows of x to zero mean and unit variance, then
// applies w and the optional bias b.
func (tp *Tape) LayerNorm(x, w, b *Var, eps float32) *Var {
	n, d := x.Rows(), x.Cols()
	y := tp.out(x.Shape, false, x, w, b)
	mean, rstd := tp.floats(n, false), tp.floats(n, false)
	var bd []float32
	if b != nil {
		bd = b.Data
	}
	cpu.LayerNormForward(tp.P, y.Data, mean, rstd, x.Data, w.Data, bd, n, d, eps)
	tp.record(op{kind: opLayerNorm, y: y, a: x, b: w, c: b, buf: mean, buf2: rstd})
	return y
}

// RoPE rotates each head of x [N, heads*D] by its row's position.
func (tp *Tape) RoPE(x *Var, r *cpu.RoPE, pos []int32) *Var {
	y := tp.out(x.Shape, false, x)
	r.Forward(tp.P, y.Data, x.Data, pos)
	tp.record(op{kind: opRoPE, y: y, a: x, rope: *r, ids: pos})
	return y
}

// Attention runs causal attention; q is [B*Tq, H*D], k and v are
// [B*Tk, KV*D] (a.KStride must be Tk*KV*D), giving [B*Tq, H*D].
func (tp *Tape) Attention(q, k, v *Var, a cpu.Attn) *Var {
	y := tp.out(q.Shape, false, q, k, v)
	lse := tp.floats(a.B*a.H*a.Tq, false)
	cpu.AttentionForward(tp.P, &a, y.Data, lse, q.Data, k.Data, v.Data)
	tp.record(op{kind: opAttention, y: y, a: q, b: k, c: v, attn: a, buf: lse})
	return y
}

// SwiGLU returns silu(g) * u.
func (tp *Tape) SwiGLU(g, u *Var) *Var {
	y := tp.out(g.Shape, false, g, u)
	cpu.SwiGLUForward(tp.P, y.Data, g.Data, u.Data)
	tp.record(op{kind: opSwiGLU, y: y, a: g, b: u})
	return y
}

// GELU applies GELU (tanh approximation when approx).
func (tp *Tape) GELU(x *Var, approx bool) *Var {
	y := tp.out(x.Shape, false, x)
	cpu.GELUForward(tp.P, y.Data, x.Data, approx)
	tp.record(op{kind: opGELU, y: y, a: x, flag: approx})
	return y
}

// Softmax returns a row-wise softmax.
func (tp *Tape) Softmax(x *Var) *Var {
	y := tp.out(x.Shape, false, x)
	cpu.SoftmaxForward(tp.P, y.Data, x.Data, x.Rows(), x.Cols())
	tp.record(op{kind: opSoftmax, y: y, a: x})
	return y
}

// Sigmoid applies the logistic function elementwise.
func (tp *Tape) Sigmoid(x *Var) *Var {
	y := tp.out(x.Shape, false, x)
	for i, v := range x.Data {
		y.Data[i] = float32(1 / (1 + math.Exp(-float64(v))))
	}
	tp.record(op{kind: opSigmoid, y: y, a: x})
	return y
}

// CrossEntropy returns the mean of -log softmax(logits)[target] over rows
// whose target is not negative, as a scalar.
func (tp *Tape) CrossEntropy(logits *Var, targets []int32) *Var {
	n, v := logits.Rows(), logits.Cols()
	y := tp.out([]int{1}, false, logits)
	losses, lse := tp.floats(n, false), tp.floats(n, false)
	count := cpu.CrossEntropyForward(tp.P, losses, lse, logits.Data, targets, n, v)
	y.Data[0] = meanLoss(losses, count)
	tp.record(op{kind: opCrossEntropy, y: y, a: logits, ids: targets, n: count, buf: lse})
	return y
}

// meanLoss sums per-row losses in float64, in row order, over count rows.
func meanLoss(losses []float32, count int) float32 {
	if count == 0 {
		return 0
	}
	var s float64
	for _, l := range losses {
		s += float64(l)
	}
	return float32(s / float64(count))
}

// WeightedSum returns Σ w[i]*xs[i] for scalars.
func (tp *Tape) WeightedSum(xs []*Var, w []float32) *Var {
	y := tp.out([]int{1}, true, xs...)
	for i, x := range xs {
		y.Data[0] += w[i] * x.Data[0]
	}
	if y.Grad != nil {
		// Keep copies: the caller's slices need not outlive the call.
		vs := tp.ptrs.alloc(len(xs))
		copy(vs, xs)
		ws := tp.floats(len(w), false)
		copy(ws, w)
		tp.record(op{kind: opWeightedSum, y: y, vars: vs, buf: ws})
	}
	return y
}

// Reshape returns a view of x with a new shape that shares data and gradient.
func (tp *Tape) Reshape(x *Var, shape ...int) *Var {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic("nn: Reshape to a negative dimension") // a model-construction bug
		}
		n *= d
	}
	if n != x.Len() {
		panic("nn: Reshape changes the number of elements") // a model-construction bug
	}
	tp.begin()
	v := tp.newVar(x.Data, x.Grad, shape)
	v.root = x.owner()
	return v
}

// axpy sets y += a*x over len(y).
func axpy(y, x []float32, a float32) { cpu.Axpy(nil, y, a, x) }
