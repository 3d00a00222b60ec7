package cpu

import "math"

// Elementwise kernels are split into chunks of at least actGrain elements.
const actGrain = 1 << 13

type ewArgs struct {
	out, a, b, c, d []float32
	approx          bool
}

var ewJobs jobs[ewArgs]

// SwiGLUForward computes out = silu(g) * u elementwise.
func SwiGLUForward(p *Pool, out, g, u []float32) {
	parallel(p, &ewJobs, len(out), actGrain, ewArgs{out: out, a: g, b: u}, swigluRange)
}

func swigluRange(a *ewArgs, lo, hi int) { vSwiGLU(a.out[lo:hi], a.a[lo:hi], a.b[lo:hi]) }

// SwiGLUBackward accumulates dg and du from dout.
func SwiGLUBackward(p *Pool, dg, du, dout, g, u []float32) {
	parallel(p, &ewJobs, len(dout), actGrain, ewArgs{out: dout, a: dg, b: du, c: g, d: u}, swigluBackRange)
}

func swigluBackRange(a *ewArgs, lo, hi int) {
	vSwiGLUBack(a.a[lo:hi], a.b[lo:hi], a.out[lo:hi], a.c[lo:hi], a.d[lo:hi])
}

const geluC = 0.7978845608028654 // sqrt(2/pi)

// GELUForward applies GELU: the tanh approximation when approx (GPT-2's
// gelu_new, computed as x·sigmoid(2u) with the fast exponential), else the
// exact erf form.
func GELUForward(p *Pool, out, x []float32, approx bool) {
	parallel(p, &ewJobs, len(out), actGrain, ewArgs{out: out, a: x, approx: approx}, geluRange)
}

func geluRange(a *ewArgs, lo, hi int) {
	out, x := a.out[lo:hi], a.a[lo:hi]
	if a.approx {
		vGELUTanh(out, x)
		return
	}
	for i, v := range x {
		out[i] = float32(0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2)))
	}
}

// GELUBackward accumulates dx from dout.
func GELUBackward(p *Pool, dx, dout, x []float32, approx bool) {
	parallel(p, &ewJobs, len(dx), actGrain, ewArgs{out: dx, a: dout, b: x, approx: approx}, geluBackRange)
}

func geluBackRange(a *ewArgs, lo, hi int) {
	dx, dout, x := a.out[lo:hi], a.a[lo:hi], a.b[lo:hi]
	if a.approx {
		vGELUTanhBack(dx, dout, x)
		return
	}
	for i := range dx {
		v := float64(x[i])
		d := 0.5*(1+math.Erf(v/math.Sqrt2)) + v*math.Exp(-0.5*v*v)/math.Sqrt(2*math.Pi)
		dx[i] += dout[i] * float32(d)
	}
}

type rowArgs struct {
	out, x, y, g []float32
	lse, losses  []float32
	targets      []int32
	d            int
	scale        float32
}

var rowJobs jobs[rowArgs]

// rowGrain returns a chunk size in rows of width d worth a worker.
func rowGrain(d int) int { return max(1, actGrain/max(d, 1)) }

// SoftmaxForward computes a row-wise softmax over rows of width d.
func SoftmaxForward(p *Pool, out, x []float32, n, d int) {
	parallel(p, &rowJobs, n, rowGrain(d), rowArgs{out: out, x: x, d: d}, softmaxRange)
}

func softmaxRange(a *rowArgs, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		softmaxRow(a.out[i*d:i*d+d], a.x[i*d:i*d+d])
	}
}

// SoftmaxBackward accumulates dx = y*(dy - sum(dy*y)).
func SoftmaxBackward(p *Pool, dx, dout, y []float32, n, d int) {
	parallel(p, &rowJobs, n, rowGrain(d), rowArgs{out: dx, g: dout, y: y, d: d}, softmaxBackRange)
}

func softmaxBackRange(a *rowArgs, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		yi, gi, dxi := a.y[i*d:i*d+d], a.g[i*d:i*d+d], a.out[i*d:i*d+d]
		s := vDot(yi, gi)
		for j := range yi {
			dxi[j] += yi[j] * (gi[j] - s)
		}
	}
}

func softmaxRow(out, x []float32) {
	m := vMax(x)
	s := vExpSub(out, x, m)
	vScale(out, 1/s)
}

// CrossEntropyForward computes per-row losses -log softmax(logits)[target]
// and keeps each row's log-sum-exp. Rows whose target is negative are ignored
// (loss 0). It returns the number of counted rows.
func CrossEntropyForward(p *Pool, losses, lse, logits []float32, targets []int32, n, v int) int {
	parallel(p, &rowJobs, n, rowGrain(v), rowArgs{losses: losses, lse: lse, x: logits, targets: targets, d: v}, ceRange)
	count := 0
	for _, t := range targets[:n] {
		if t >= 0 {
			count++
		}
	}
	return count
}

func ceRange(a *rowArgs, lo, hi int) {
	v := a.d
	for i := lo; i < hi; i++ {
		row := a.x[i*v : i*v+v]
		m := vMax(row)
		l := m + float32(math.Log(float64(vExpSum(row, m))))
		a.lse[i] = l
		if t := a.targets[i]; t >= 0 {
			a.losses[i] = l - row[t]
		} else {
			a.losses[i] = 0
		}
	}
}

// CrossEntropyBackward accumulates dlogits = scale*(softmax - onehot) for
// counted rows.
func CrossEntropyBackward(p *Pool, dlogits, logits, lse []float32, targets []int32, n, v int, scale float32) {
	parallel(p, &rowJobs, n, rowGrain(v), rowArgs{out: dlogits, x: logits, lse: lse, targets: targets, d: v, scale: scale}, ceBackRange)
}

func ceBackRange(a *rowArgs, lo, hi int) {
	v := a.d
	for i := lo; i < hi; i++ {
		t := a.targets[i]
		if t < 0 {
			continue
		}
		drow := a.out[i*v : i*v+v]
		vExpScaleAcc(drow, a.x[i*v:i*v+v], a.lse[i], a.scale)
		drow[t] -= a.scale
	}
}

// SwiGLURows computes out[i] = silu(gu[i][:f]) * gu[i][f:] for the n rows of
// gu [n, 2f] (a gate and an up projection computed by one GEMM), giving
// out [n, f].
func SwiGLURows(p *Pool, out, gu []float32, n, f int) {
	parallel(p, &rowJobs, n, rowGrain(2*f), rowArgs{out: out, x: gu, d: f}, swigluRowsRange)
}

func swigluRowsRange(a *rowArgs, lo, hi int) {
	f := a.d
	for i := lo; i < hi; i++ {
		row := a.x[2*i*f : 2*(i+1)*f]
		vSwiGLU(a.out[i*f:(i+1)*f], row[:f], row[f:])
	}
}

// SwiGLURowsBackward sets dgu [n, 2f] to the gradient of SwiGLURows with
// respect to gu (overwriting it), from dout [n, f].
func SwiGLURowsBackward(p *Pool, dgu, dout, gu []float32, n, f int) {
	parallel(p, &rowJobs, n, rowGrain(2*f), rowArgs{out: dgu, g: dout, x: gu, d: f}, swigluRowsBackRange)
}

func swigluRowsBackRange(a *rowArgs, lo, hi int) {
	f := a.d
	for i := lo; i < hi; i++ {
		row, drow := a.x[2*i*f:2*(i+1)*f], a.out[2*i*f:2*(i+1)*f]
		clear(drow) // in L1: the kernel accumulates
		vSwiGLUBack(drow[:f], drow[f:], a.g[i*f:(i+1)*f], row[:f], row[f:])
	}
}
