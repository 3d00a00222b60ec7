package cpu

import (
	"math"
	"sync"
)

// normGrain is the fewest rows a norm kernel gives a worker.
const normGrain = 16

type normArgs struct {
	out, mean, rstd, x, w, b []float32
	dx, dw, db, dout         []float32
	d                        int
	eps                      float32
}

var normJobs jobs[normArgs]

// RMSNormForward computes out = x / rms(x) * w over rows of width d and keeps
// the reciprocal RMS per row for the backward pass. rstd may be nil.
func RMSNormForward(p *Pool, out, rstd, x, w []float32, n, d int, eps float32) {
	parallel(p, &normJobs, n, normGrain, normArgs{out: out, rstd: rstd, x: x, w: w, d: d, eps: eps}, rmsRange)
}

func rmsRange(a *normArgs, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		xi := a.x[i*d : i*d+d]
		ss := vSumSq(xi, 0)
		r := float32(1 / math.Sqrt(float64(ss)/float64(d)+float64(a.eps)))
		if a.rstd != nil {
			a.rstd[i] = r
		}
		vMulScale(a.out[i*d:i*d+d], xi, a.w, r)
	}
}

// RMSNormBackward accumulates dx and dw (dw may be nil for a fixed weight).
func RMSNormBackward(p *Pool, dx, dw, dout, x, w, rstd []float32, n, d int) {
	normBackward(p, normArgs{dx: dx, dw: dw, dout: dout, x: x, w: w, rstd: rstd, d: d}, n, rmsBackRange)
}

func rmsBackRange(a *normArgs, dw, _ []float32, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		xi, gi := a.x[i*d:i*d+d], a.dout[i*d:i*d+d]
		r := a.rstd[i]
		// dx = r*(g*w) - r^3/d * x * sum(g*w*x)
		c := vDot3(gi, a.w, xi) * r * r * r / float32(d)
		vRMSBack(a.dx[i*d:i*d+d], dw, gi, xi, a.w, r, c)
	}
}

// LayerNormForward computes out = (x-mean)/std * w + b over rows of width d,
// keeping mean and reciprocal std per row. b may be nil.
func LayerNormForward(p *Pool, out, mean, rstd, x, w, b []float32, n, d int, eps float32) {
	parallel(p, &normJobs, n, normGrain, normArgs{out: out, mean: mean, rstd: rstd, x: x, w: w, b: b, d: d, eps: eps}, lnRange)
}

func lnRange(a *normArgs, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		xi := a.x[i*d : i*d+d]
		m := vSum(xi) / float32(d)
		v := vSumSq(xi, m) / float32(d)
		r := float32(1 / math.Sqrt(float64(v)+float64(a.eps)))
		a.mean[i], a.rstd[i] = m, r
		vLNFwd(a.out[i*d:i*d+d], xi, a.w, a.b, m, r)
	}
}

// LayerNormBackward accumulates dx, dw and db (dw and db may be nil).
func LayerNormBackward(p *Pool, dx, dw, db, dout, x, w, mean, rstd []float32, n, d int) {
	normBackward(p, normArgs{dx: dx, dw: dw, db: db, dout: dout, x: x, w: w, mean: mean, rstd: rstd, d: d}, n, lnBackRange)
}

func lnBackRange(a *normArgs, dw, db []float32, lo, hi int) {
	d := a.d
	for i := lo; i < hi; i++ {
		xi, gi := a.x[i*d:i*d+d], a.dout[i*d:i*d+d]
		m, r := a.mean[i], a.rstd[i]
		sg, sgx := vLNBackSums(gi, a.w, xi, m, r)
		vLNBack(a.dx[i*d:i*d+d], dw, db, gi, a.w, xi, m, r, sg/float32(d), sgx/float32(d))
	}
}

// normBackJob runs a norm backward over row chunks. Parameter gradients are
// summed per chunk into partial buffers, which are then added to dw and db in
// chunk order, so results do not depend on which worker ran which chunk. The
// buffers stay with the job, which is recycled: no allocation per call.
type normBackJob struct {
	a     normArgs
	fn    func(a *normArgs, dw, db []float32, lo, hi int)
	size  int
	parts []float32 // 2*d per chunk: dw then db
	run   func(lo, hi int)
}

var normBackJobs = sync.Pool{New: func() any {
	j := new(normBackJob)
	j.run = j.chunk
	return j
}}

func normBackward(p *Pool, a normArgs, n int, fn func(a *normArgs, dw, db []float32, lo, hi int)) {
	if n <= 0 {
		return
	}
	j := normBackJobs.Get().(*normBackJob)
	parts, size := p.Chunks(n, normGrain)
	d := a.d
	if need := 2 * d * parts; cap(j.parts) < need {
		j.parts = make([]float32, need)
	}
	j.parts = j.parts[:2*d*parts]
	clear(j.parts)
	j.a, j.fn, j.size = a, fn, size
	p.For(n, normGrain, j.run)
	for c := 0; c < parts; c++ {
		if a.dw != nil {
			vAxpy(a.dw[:d], 1, j.parts[2*d*c:2*d*c+d])
		}
		if a.db != nil {
			vAxpy(a.db[:d], 1, j.parts[2*d*c+d:2*d*c+2*d])
		}
	}
	j.a, j.fn = normArgs{}, nil
	normBackJobs.Put(j)
}

func (j *normBackJob) chunk(lo, hi int) {
	d := j.a.d
	c := lo / j.size
	var dw, db []float32
	if j.a.dw != nil {
		dw = j.parts[2*d*c : 2*d*c+d]
	}
	if j.a.db != nil {
		db = j.parts[2*d*c+d : 2*d*c+2*d]
	}
	j.fn(&j.a, dw, db, lo, hi)
}

// AddRMSNormForward computes the residual sum s = x + a and h = RMSNorm(s, w)
// in one pass over each row (s is normalized while it is in cache), keeping
// the reciprocal RMS per row. rstd may be nil.
func AddRMSNormForward(p *Pool, s, h, rstd, x, a, w []float32, n, d int, eps float32) {
	parallel(p, &normJobs, n, normGrain, normArgs{out: h, rstd: rstd, x: s, dx: x, dout: a, w: w, d: d, eps: eps}, addRMSRange)
}

func addRMSRange(a *normArgs, lo, hi int) {
	d := a.d
	vAdd(a.x[lo*d:hi*d], a.dx[lo*d:hi*d], a.dout[lo*d:hi*d])
	rmsRange(a, lo, hi)
}

// AddLayerNormForward computes the residual sum s = x + a and
// h = LayerNorm(s, w, b) in one pass over each row, keeping mean and
// reciprocal std per row. b may be nil.
func AddLayerNormForward(p *Pool, s, h, mean, rstd, x, a, w, b []float32, n, d int, eps float32) {
	parallel(p, &normJobs, n, normGrain, normArgs{out: h, mean: mean, rstd: rstd, x: s, dx: x, dout: a, w: w, b: b, d: d, eps: eps}, addLNRange)
}

func addLNRange(a *normArgs, lo, hi int) {
	d := a.d
	vAdd(a.x[lo*d:hi*d], a.dx[lo*d:hi*d], a.dout[lo*d:hi*d])
	lnRange(a, lo, hi)
}
