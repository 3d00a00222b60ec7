package cpu

import "math"

// RMSNormForward computes out = x / rms(x) * w over rows of width d and keeps
// the reciprocal RMS per row for the backward pass. rstd may be nil.
func RMSNormForward(p *Pool, out, rstd, x, w []float32, n, d int, eps float32) {
	p.For(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi := x[i*d : i*d+d]
			var ss float64
			for _, v := range xi {
				ss += float64(v) * float64(v)
			}
			r := float32(1 / math.Sqrt(ss/float64(d)+float64(eps)))
			if rstd != nil {
				rstd[i] = r
			}
			oi := out[i*d : i*d+d]
			for j, v := range xi {
				oi[j] = v * r * w[j]
			}
		}
	})
}

// RMSNormBackward accumulates dx and dw (dw may be nil for a fixed weight).
func RMSNormBackward(p *Pool, dx, dw, dout, x, w, rstd []float32, n, d int) {
	parts := partials(p, dw, n)
	p.For(n, 16, func(lo, hi int) {
		pdw := parts.get(lo)
		for i := lo; i < hi; i++ {
			xi, gi, dxi := x[i*d:i*d+d], dout[i*d:i*d+d], dx[i*d:i*d+d]
			r := rstd[i]
			// dx = r*(g*w) - r^3/d * x * sum(g*w*x)
			var dot float64
			for j := range xi {
				dot += float64(gi[j]) * float64(w[j]) * float64(xi[j])
			}
			c := float32(dot) * r * r * r / float32(d)
			for j := range xi {
				dxi[j] += r*gi[j]*w[j] - c*xi[j]
				if pdw != nil {
					pdw[j] += gi[j] * xi[j] * r
				}
			}
		}
	})
	parts.reduce(dw)
}

// LayerNormForward computes out = (x-mean)/std * w + b over rows of width d,
// keeping mean and reciprocal std per row. b may be nil.
func LayerNormForward(p *Pool, out, mean, rstd, x, w, b []float32, n, d int, eps float32) {
	p.For(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi := x[i*d : i*d+d]
			var s float64
			for _, v := range xi {
				s += float64(v)
			}
			m := s / float64(d)
			var ss float64
			for _, v := range xi {
				dv := float64(v) - m
				ss += dv * dv
			}
			r := 1 / math.Sqrt(ss/float64(d)+float64(eps))
			mean[i], rstd[i] = float32(m), float32(r)
			oi := out[i*d : i*d+d]
			for j, v := range xi {
				o := float32((float64(v)-m)*r) * w[j]
				if b != nil {
					o += b[j]
				}
				oi[j] = o
			}
		}
	})
}

// LayerNormBackward accumulates dx, dw and db (db may be nil).
func LayerNormBackward(p *Pool, dx, dw, db, dout, x, w, mean, rstd []float32, n, d int) {
	pw := partials(p, dw, n)
	pb := partials(p, db, n)
	p.For(n, 16, func(lo, hi int) {
		pdw, pdb := pw.get(lo), pb.get(lo)
		for i := lo; i < hi; i++ {
			xi, gi, dxi := x[i*d:i*d+d], dout[i*d:i*d+d], dx[i*d:i*d+d]
			m, r := mean[i], rstd[i]
			var sg, sgx float64
			for j := range xi {
				xh := (xi[j] - m) * r
				g := gi[j] * w[j]
				sg += float64(g)
				sgx += float64(g) * float64(xh)
				if pdw != nil {
					pdw[j] += gi[j] * xh
				}
				if pdb != nil {
					pdb[j] += gi[j]
				}
			}
			mg, mgx := float32(sg/float64(d)), float32(sgx/float64(d))
			for j := range xi {
				xh := (xi[j] - m) * r
				dxi[j] += r * (gi[j]*w[j] - mg - xh*mgx)
			}
		}
	})
	pw.reduce(dw)
	pb.reduce(db)
}

// partialSums holds one accumulator per worker chunk so that parameter
// gradient reductions are race-free and summed in a fixed order.
type partialSums struct {
	chunk int
	bufs  [][]float32
}

func partials(p *Pool, dst []float32, n int) *partialSums {
	if dst == nil {
		return &partialSums{}
	}
	parts := min(p.Threads(), max(1, (n+15)/16))
	chunk := (n + parts - 1) / parts
	ps := &partialSums{chunk: chunk, bufs: make([][]float32, parts)}
	for i := range ps.bufs {
		ps.bufs[i] = make([]float32, len(dst))
	}
	return ps
}

func (ps *partialSums) get(lo int) []float32 {
	if ps.bufs == nil {
		return nil
	}
	return ps.bufs[lo/ps.chunk]
}

func (ps *partialSums) reduce(dst []float32) {
	for _, b := range ps.bufs {
		for j, v := range b {
			dst[j] += v
		}
	}
}
