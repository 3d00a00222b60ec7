package cpu

import (
	"sync"
)

// Parallel vector operations for the tape's elementwise ops. A nil pool runs
// on the calling goroutine.

type vecArgs struct {
	dst, a, b []float32
	alpha     float32
	n, d      int
}

var vecJobs jobs[vecArgs]

// Axpy sets y += alpha*x over len(y).
func Axpy(p *Pool, y []float32, alpha float32, x []float32) {
	x = x[:len(y)]
	if p == nil {
		vAxpy(y, alpha, x)
		return
	}
	parallel(p, &vecJobs, len(y), actGrain, vecArgs{dst: y, a: x, alpha: alpha}, axpyRange)
}

func axpyRange(v *vecArgs, lo, hi int) { vAxpy(v.dst[lo:hi], v.alpha, v.a[lo:hi]) }

// Copy sets dst = src over len(dst).
func Copy(p *Pool, dst, src []float32) {
	src = src[:len(dst)]
	if p == nil {
		copy(dst, src)
		return
	}
	parallel(p, &vecJobs, len(dst), actGrain, vecArgs{dst: dst, a: src}, copyRange)
}

func copyRange(v *vecArgs, lo, hi int) { copy(v.dst[lo:hi], v.a[lo:hi]) }

// Add sets dst = a + b over len(dst).
func Add(p *Pool, dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	if p == nil {
		vAdd(dst, a, b)
		return
	}
	parallel(p, &vecJobs, len(dst), actGrain, vecArgs{dst: dst, a: a, b: b}, addRange)
}

func addRange(v *vecArgs, lo, hi int) { vAdd(v.dst[lo:hi], v.a[lo:hi], v.b[lo:hi]) }

// FillRows sets every row of dst [n, d] to row [d] (a bias before a GEMM that
// accumulates).
func FillRows(p *Pool, dst, row []float32, n, d int) {
	parallel(p, &vecJobs, n, rowGrain(d), vecArgs{dst: dst, a: row[:d], d: d}, fillRowsRange)
}

func fillRowsRange(v *vecArgs, lo, hi int) {
	for i := lo; i < hi; i++ {
		copy(v.dst[i*v.d:(i+1)*v.d], v.a)
	}
}

// SumRows accumulates dst[j] += Σ_i x[i*d+j] for x [n, d] (a bias
// gradient). Columns are split across workers and every column is summed in
// row order, so the result does not depend on the thread count.
func SumRows(p *Pool, dst, x []float32, n, d int) {
	parallel(p, &vecJobs, d, max(64, actGrain/max(n, 1)), vecArgs{dst: dst[:d], a: x[:n*d], n: n, d: d}, sumRowsRange)
}

func sumRowsRange(v *vecArgs, lo, hi int) {
	for i := 0; i < v.n; i++ {
		vAxpy(v.dst[lo:hi], 1, v.a[i*v.d+lo:i*v.d+hi])
	}
}

// MatVecRows is the most rows MatVec takes.
const MatVecRows = 4

// matVecGrain is the fewest multiply-adds a MatVec chunk gets (about 10 µs
// of weight streaming), so that decoding splits every projection of a model
// of a few hundred dimensions across the workers.
const matVecGrain = 1 << 16

// MatVec computes y = x·wᵀ + beta·y for the m <= MatVecRows rows of x [m, k]
// and w [n, k]: the matrix-vector products of decoding. Output columns are
// split across the pool, each a dot product per row, so the weights stream
// from memory once, on every worker at once.
func MatVec(p *Pool, m, n, k int, x, w []float32, beta float32, y []float32) {
	if m > MatVecRows {
		panic("cpu.MatVec: more rows than MatVecRows")
	}
	parallel(p, &matVecJobs, n, max(1, matVecGrain/max(1, m*k)), matVecArgs{m: m, k: k, n: n, x: x[:m*k], w: w[:n*k], y: y[:m*n], beta: beta}, matVecRange)
}

type matVecArgs struct {
	m, k, n int
	x, w, y []float32
	beta    float32
}

var matVecJobs jobs[matVecArgs]

func matVecRange(a *matVecArgs, lo, hi int) {
	k := a.k
	for j := lo; j < hi; j++ {
		wj := a.w[j*k : j*k+k]
		for i := 0; i < a.m; i++ {
			s := vDot(a.x[i*k:i*k+k], wj)
			if a.beta != 0 {
				s += a.beta * a.y[i*a.n+j]
			}
			a.y[i*a.n+j] = s
		}
	}
}

// Scale sets x *= a.
func Scale(p *Pool, x []float32, a float32) {
	parallel(p, &vecJobs, len(x), actGrain, vecArgs{dst: x, alpha: a}, scaleRange)
}

func scaleRange(v *vecArgs, lo, hi int) { vScale(v.dst[lo:hi], v.alpha) }

// sumSqChunk is the fixed piece of SumSquares: its partial sums do not depend
// on the thread count.
const sumSqChunk = 1 << 16

// SumSquares returns Σ x² accumulated in float64: per fixed chunk of 2¹⁶
// values in parallel, then over the chunks in order, so the result is the
// same for any thread count.
func SumSquares(p *Pool, x []float32) float64 {
	nc := (len(x) + sumSqChunk - 1) / sumSqChunk
	if nc == 0 {
		return 0
	}
	j := sumSqJobs.Get().(*sumSqJob)
	if cap(j.part) < nc {
		j.part = make([]float64, nc)
	}
	j.part, j.x = j.part[:nc], x
	p.For(nc, 1, j.run)
	var s float64
	for _, v := range j.part {
		s += v
	}
	j.x = nil
	sumSqJobs.Put(j)
	return s
}

type sumSqJob struct {
	x    []float32
	part []float64
	run  func(lo, hi int)
}

var sumSqJobs = sync.Pool{New: func() any {
	j := new(sumSqJob)
	j.run = j.chunks
	return j
}}

func (j *sumSqJob) chunks(lo, hi int) {
	for c := lo; c < hi; c++ {
		j.part[c] = vSumSqF64(j.x[c*sumSqChunk : min((c+1)*sumSqChunk, len(j.x))])
	}
}

// AttendOne is causal attention of one query position over tk cached
// positions (decode at batch 1): for each of heads query heads (grouped
// over kvHeads key/value heads, head size d), out[h] = softmax(scale·q[h]·
// K[:, g]ᵀ) · V[:, g], where row j of K and V starts at j·stride. scores is
// scratch of at least heads·tk values. The heads are split over p.
func AttendOne(p *Pool, out, q, k, v []float32, tk, heads, kvHeads, d, stride int, scale float32, scores []float32) {
	checkAttendOne(len(out), len(q), len(k), len(v), len(scores), tk, heads, kvHeads, d, stride)
	a := attendArgs{out: out, q: q, k: k, v: v, sc: scores, tk: tk, heads: heads, group: heads / kvHeads, d: d, stride: stride, scale: scale}
	attend(p, a)
}

// AttendOneF16 is AttendOne over keys and values stored in half precision
// (a KV cache of half the bytes, which decode at long contexts reads).
func AttendOneF16(p *Pool, out, q []float32, k, v []uint16, tk, heads, kvHeads, d, stride int, scale float32, scores []float32) {
	checkAttendOne(len(out), len(q), len(k), len(v), len(scores), tk, heads, kvHeads, d, stride)
	a := attendArgs{out: out, q: q, k16: k, v16: v, sc: scores, tk: tk, heads: heads, group: heads / kvHeads, d: d, stride: stride, scale: scale}
	attend(p, a)
}

func checkAttendOne(out, q, k, v, scores, tk, heads, kvHeads, d, stride int) {
	if tk <= 0 || heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0 || q < heads*d || out < heads*d ||
		scores < heads*tk || k < (tk-1)*stride+kvHeads*d || v < (tk-1)*stride+kvHeads*d {
		panic("cpu.AttendOne: sizes out of range")
	}
}

func attend(p *Pool, a attendArgs) {
	// About 16K multiply-adds of work per chunk at least.
	grain := max(1, (1<<14)/max(1, a.tk*a.d))
	parallel(p, &attendJobs, a.heads, grain, a, attendRange)
}

type attendArgs struct {
	out, q, k, v, sc []float32
	k16, v16         []uint16 // keys and values in half precision (k, v nil)
	tk, heads, group int
	d, stride        int
	scale            float32
}

var attendJobs jobs[attendArgs]

func attendRange(a *attendArgs, lo, hi int) {
	d, tk := a.d, a.tk
	for h := lo; h < hi; h++ {
		g := h / a.group
		q := a.q[h*d : (h+1)*d]
		sc := a.sc[h*tk : (h+1)*tk]
		if a.k16 != nil {
			vDotRowsF16(q, a.k16[g*d:], a.stride, sc, a.scale)
		} else {
			vDotRows(q, a.k[g*d:], a.stride, sc, a.scale)
		}
		inv := 1 / vExpSub(sc, sc, vMax(sc))
		o := a.out[h*d : (h+1)*d]
		clear(o)
		vScale(sc, inv)
		if a.v16 != nil {
			vAxpyRowsF16(o, a.v16[g*d:], a.stride, sc)
		} else {
			vAxpyRows(o, a.v[g*d:], a.stride, sc)
		}
	}
}
