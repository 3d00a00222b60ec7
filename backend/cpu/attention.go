package cpu

import (
	"math"
	"sync"
)

// Attn describes a causal multi-head attention problem with grouped-query
// heads. Queries are [B, Tq, H, D]; keys and values are [B, Tk, KV, D] with
// KStride elements between batch entries (so a KV cache larger than Tk can be
// used in place). Query t sits at absolute position Offset+t and attends keys
// at positions <= its own, and within Window positions when Window > 0.
type Attn struct {
	B, Tq, Tk, H, KV, D int
	KStride             int
	Offset              int
	Window              int
	Scale               float32
	// Start, when set, holds for every query (B*Tq) the first key position
	// it may attend to: packed documents do not see each other.
	Start []int32
}

func (a *Attn) span(b, t int) (lo, hi int) {
	pos := a.Offset + t
	hi = min(pos+1, a.Tk)
	if a.Window > 0 {
		lo = max(0, pos-a.Window+1)
	}
	if a.Start != nil {
		lo = max(lo, int(a.Start[b*a.Tq+t]))
	}
	return lo, hi
}

// Tiles of the flash-style kernels: a block of attnBQ queries of one head
// meets blocks of attnBK keys; the score tile is the only T×T-shaped memory.
// attnTileMin is the query count from which AttentionForward runs the tiled
// kernel; shorter problems (decoding, small chunks) run one query row at a
// time, with the same arithmetic as PagedAttentionForward. (Variables only
// so that tests can shrink the tiles; nothing else sets them.)
var (
	attnBQ      = 64
	attnBK      = 256
	attnTileMin = 16
)

// serialPool runs the tile GEMMs inside a worker on that worker alone.
var serialPool = &Pool{n: 1}

// AttentionForward writes out [B,Tq,H,D] and the log-sum-exp of every score
// row, lse [B,H,Tq], which is all the backward pass keeps (no T×T matrix).
//
// From attnTileMin queries on, it is flash attention: for each (batch, head,
// tile of attnBQ queries), in parallel, the scores against blocks of attnBK
// keys are one GEMM, the softmax is kept online (running max and sum, the
// output rescaled as the max grows), and the probabilities times the value
// block is a second GEMM accumulated into out.
func AttentionForward(p *Pool, a *Attn, out, lse, q, k, v []float32) {
	if a.Tq < attnTileMin {
		attnRows(p, a, out, lse, q, k, v)
		return
	}
	nqt := (a.Tq + attnBQ - 1) / attnBQ
	runAttn(p, a, a.B*a.H*nqt, attnBuf{out: out, lse: lse, q: q, k: k, v: v}, 2*attnBQ*attnBK+2*attnBQ, (*attnJob).forward)
}

// AttentionBackward accumulates dq, dk and dv. Work is split by (batch, KV
// head) so that every key and value gradient row has one writer (and the
// query gradients of the head group with it); probabilities are recomputed
// tile by tile from lse, flash-attention style.
func AttentionBackward(p *Pool, a *Attn, dq, dk, dv, dout, out, lse, q, k, v []float32) {
	runAttn(p, a, a.B*a.KV, attnBuf{dq: dq, dk: dk, dv: dv, dout: dout, out: out, lse: lse, q: q, k: k, v: v},
		2*attnBQ*attnBK+attnBQ, (*attnJob).backward)
}

type attnBuf struct {
	dq, dk, dv, dout, out, lse, q, k, v []float32
}

// attnJob runs one attention call over units of work; each chunk of units
// gets its own slice of the job's scratch, which stays with the recycled job.
type attnJob struct {
	a       Attn
	x       attnBuf
	fn      func(j *attnJob, scratch []float32, u int)
	per     int // scratch floats per chunk
	size    int // units per chunk
	scratch []float32
	run     func(lo, hi int)
}

var attnJobs = sync.Pool{New: func() any {
	j := new(attnJob)
	j.run = j.chunk
	return j
}}

func runAttn(p *Pool, a *Attn, units int, x attnBuf, per int, fn func(j *attnJob, scratch []float32, u int)) {
	if units <= 0 {
		return
	}
	j := attnJobs.Get().(*attnJob)
	parts, size := p.Chunks(units, 1)
	if need := parts * per; cap(j.scratch) < need {
		j.scratch = make([]float32, need)
	}
	j.a, j.x, j.fn, j.per, j.size = *a, x, fn, per, size
	p.For(units, 1, j.run)
	j.a, j.x, j.fn = Attn{}, attnBuf{}, nil
	attnJobs.Put(j)
}

func (j *attnJob) chunk(lo, hi int) {
	c := lo / j.size
	s := j.scratch[c*j.per : (c+1)*j.per]
	for u := lo; u < hi; u++ {
		j.fn(j, s, u)
	}
}

// tileSpan returns the key range [lo, hi) that queries [t0, t1) of batch b
// attend to, as a whole.
func (a *Attn) tileSpan(b, t0, t1 int) (lo, hi int) {
	lo, hi = a.Tk, 0
	for t := t0; t < t1; t++ {
		s0, s1 := a.span(b, t)
		if s0 < s1 {
			lo, hi = min(lo, s0), max(hi, s1)
		}
	}
	return lo, hi
}

// forward computes unit u = (b, h, query tile).
func (j *attnJob) forward(scratch []float32, u int) {
	a := &j.a
	nqt := (a.Tq + attnBQ - 1) / attnBQ
	qt, h, b := u%nqt, (u/nqt)%a.H, u/(nqt*a.H)
	kh := h / (a.H / a.KV)
	t0 := qt * attnBQ
	t1 := min(t0+attnBQ, a.Tq)
	bq := t1 - t0
	ldq, ldk := a.H*a.D, a.KV*a.D
	qo := ((b*a.Tq+t0)*a.H + h) * a.D // first row of this tile in q and out
	ko := b*a.KStride + kh*a.D        // key/value row 0 of this head
	out := j.x.out[qo:]
	sc := scratch[:attnBQ*attnBK]
	mrow := scratch[2*attnBQ*attnBK:][:bq]
	lrow := scratch[2*attnBQ*attnBK+attnBQ:][:bq]
	for r := 0; r < bq; r++ {
		clear(out[r*ldq : r*ldq+a.D])
		mrow[r], lrow[r] = float32(math.Inf(-1)), 0
	}
	lo, hi := a.tileSpan(b, t0, t1)
	for k0 := lo; k0 < hi; k0 += attnBK {
		k1 := min(k0+attnBK, hi)
		bk := k1 - k0
		Gemm(serialPool, false, true, bq, bk, a.D, a.Scale, j.x.q[qo:], ldq, j.x.k[ko+k0*ldk:], ldk, 0, sc, bk)
		for r := 0; r < bq; r++ {
			row := sc[r*bk : r*bk+bk]
			s0, s1 := a.span(b, t0+r)
			c0, c1 := max(s0, k0)-k0, min(s1, k1)-k0
			if c0 >= c1 {
				clear(row)
				continue
			}
			clear(row[:c0])
			clear(row[c1:])
			mb := vMax(row[c0:c1])
			mold := mrow[r]
			if mb > mold {
				if lrow[r] != 0 {
					alpha := expf(mold - mb)
					lrow[r] *= alpha
					vScale(out[r*ldq:r*ldq+a.D], alpha)
				}
				mrow[r] = mb
			}
			lrow[r] += vExpSub(row[c0:c1], row[c0:c1], mrow[r])
		}
		Gemm(serialPool, false, false, bq, a.D, bk, 1, sc, bk, j.x.v[ko+k0*ldk:], ldk, 1, out, ldq)
	}
	lse := j.x.lse[(b*a.H+h)*a.Tq+t0:][:bq]
	for r := 0; r < bq; r++ {
		if lrow[r] == 0 { // a query with no key (never in causal attention)
			lse[r] = float32(math.Inf(-1))
			continue
		}
		vScale(out[r*ldq:r*ldq+a.D], 1/lrow[r])
		lse[r] = mrow[r] + float32(math.Log(float64(lrow[r])))
	}
}

// backward computes unit u = (b, KV head): the gradients of its keys and
// values and of the queries of its head group.
func (j *attnJob) backward(scratch []float32, u int) {
	a := &j.a
	b, kh := u/a.KV, u%a.KV
	grp := a.H / a.KV
	ldq, ldk := a.H*a.D, a.KV*a.D
	ko := b*a.KStride + kh*a.D
	pr := scratch[:attnBQ*attnBK]
	dp := scratch[attnBQ*attnBK:][:attnBQ*attnBK]
	delta := scratch[2*attnBQ*attnBK:][:attnBQ]
	x := &j.x
	for h := kh * grp; h < (kh+1)*grp; h++ {
		for t0 := 0; t0 < a.Tq; t0 += attnBQ {
			t1 := min(t0+attnBQ, a.Tq)
			bq := t1 - t0
			qo := ((b*a.Tq+t0)*a.H + h) * a.D
			lse := x.lse[(b*a.H+h)*a.Tq+t0:][:bq]
			for r := 0; r < bq; r++ {
				o := qo + r*ldq
				delta[r] = vDot(x.dout[o:o+a.D], x.out[o:o+a.D])
			}
			lo, hi := a.tileSpan(b, t0, t1)
			for k0 := lo; k0 < hi; k0 += attnBK {
				k1 := min(k0+attnBK, hi)
				bk := k1 - k0
				kb := ko + k0*ldk
				// P = exp(scale·Q·Kᵀ - lse), zero outside each row's span.
				Gemm(serialPool, false, true, bq, bk, a.D, a.Scale, x.q[qo:], ldq, x.k[kb:], ldk, 0, pr, bk)
				for r := 0; r < bq; r++ {
					row := pr[r*bk : r*bk+bk]
					s0, s1 := a.span(b, t0+r)
					c0, c1 := max(s0, k0)-k0, min(s1, k1)-k0
					if c0 >= c1 {
						clear(row)
						continue
					}
					clear(row[:c0])
					clear(row[c1:])
					vExpSub(row[c0:c1], row[c0:c1], lse[r])
				}
				// dV += Pᵀ·dO; dP = dO·Vᵀ.
				Gemm(serialPool, true, false, bk, a.D, bq, 1, pr, bk, x.dout[qo:], ldq, 1, x.dv[kb:], ldk)
				Gemm(serialPool, false, true, bq, bk, a.D, 1, x.dout[qo:], ldq, x.v[kb:], ldk, 0, dp, bk)
				// dS = P∘(dP - Δ)·scale, into dp.
				for r := 0; r < bq; r++ {
					attnDS(dp[r*bk:r*bk+bk], pr[r*bk:r*bk+bk], delta[r], a.Scale)
				}
				// dQ += dS·K; dK += dSᵀ·Q.
				Gemm(serialPool, false, false, bq, a.D, bk, 1, dp, bk, x.k[kb:], ldk, 1, x.dq[qo:], ldq)
				Gemm(serialPool, true, false, bk, a.D, bq, 1, dp, bk, x.q[qo:], ldq, 1, x.dk[kb:], ldk)
			}
		}
	}
}

// attnDS sets ds = p*(ds - delta)*scale.
func attnDS(ds, p []float32, delta, scale float32) {
	p = p[:len(ds)]
	for i, v := range ds {
		ds[i] = p[i] * (v - delta) * scale
	}
}

// attnRows is the one-query-row-at-a-time forward for short problems. Its
// arithmetic is PagedAttentionForward's, so that a sequence decoded through
// either gets the same bits.
func attnRows(p *Pool, a *Attn, out, lse, q, k, v []float32) {
	runAttn(p, a, a.B*a.H*a.Tq, attnBuf{out: out, lse: lse, q: q, k: k, v: v}, a.Tk, (*attnJob).row)
}

func (j *attnJob) row(buf []float32, r int) {
	a := &j.a
	q, k, v := j.x.q, j.x.k, j.x.v
	t := r % a.Tq
	h := (r / a.Tq) % a.H
	b := r / (a.Tq * a.H)
	kh := h / (a.H / a.KV)
	qi := q[((b*a.Tq+t)*a.H+h)*a.D:][:a.D]
	oi := j.x.out[((b*a.Tq+t)*a.H+h)*a.D:][:a.D]
	s0, s1 := a.span(b, t)
	m := float32(math.Inf(-1))
	ld, base := a.KV*a.D, b*a.KStride+(s0*a.KV+kh)*a.D
	if s0 < s1 {
		vDotRows(qi, k[base:], ld, buf[s0:s1], a.Scale)
		m = vMax(buf[s0:s1])
	}
	sum := vExpSub(buf[s0:s1], buf[s0:s1], m)
	clear(oi)
	inv := 1 / sum
	vScale(buf[s0:s1], inv)
	if s0 < s1 {
		vAxpyRows(oi, v[base:], ld, buf[s0:s1])
	}
	j.x.lse[(b*a.H+h)*a.Tq+t] = m + float32(math.Log(float64(sum)))
}
