package cpu

import "math"

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

// AttentionForward writes out [B,Tq,H,D] and the log-sum-exp of every score
// row, lse [B,H,Tq], which is all the backward pass keeps (no T×T matrix).
func AttentionForward(p *Pool, a *Attn, out, lse, q, k, v []float32) {
	rows := a.B * a.H * a.Tq
	grp := a.H / a.KV
	p.For(rows, 4, func(lo, hi int) {
		buf := make([]float32, a.Tk)
		for r := lo; r < hi; r++ {
			t := r % a.Tq
			h := (r / a.Tq) % a.H
			b := r / (a.Tq * a.H)
			kh := h / grp
			qi := q[((b*a.Tq+t)*a.H+h)*a.D:][:a.D]
			oi := out[((b*a.Tq+t)*a.H+h)*a.D:][:a.D]
			s0, s1 := a.span(b, t)
			m := float32(math.Inf(-1))
			for s := s0; s < s1; s++ {
				ks := k[b*a.KStride+(s*a.KV+kh)*a.D:][:a.D]
				x := dot(qi, ks) * a.Scale
				buf[s] = x
				m = max(m, x)
			}
			var sum float64
			for s := s0; s < s1; s++ {
				e := float32(math.Exp(float64(buf[s] - m)))
				buf[s] = e
				sum += float64(e)
			}
			clear(oi)
			inv := float32(1 / sum)
			for s := s0; s < s1; s++ {
				axpy(oi, v[b*a.KStride+(s*a.KV+kh)*a.D:][:a.D], buf[s]*inv)
			}
			lse[(b*a.H+h)*a.Tq+t] = m + float32(math.Log(sum))
		}
	})
}

// AttentionBackward accumulates dq, dk and dv. Work is split by (batch, KV
// head) so that every key and value gradient row has one writer.
func AttentionBackward(p *Pool, a *Attn, dq, dk, dv, dout, out, lse, q, k, v []float32) {
	grp := a.H / a.KV
	p.For(a.B*a.KV, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			b, kh := u/a.KV, u%a.KV
			for h := kh * grp; h < (kh+1)*grp; h++ {
				for t := 0; t < a.Tq; t++ {
					off := ((b*a.Tq+t)*a.H + h) * a.D
					qi, gi, oi, dqi := q[off:][:a.D], dout[off:][:a.D], out[off:][:a.D], dq[off:][:a.D]
					l := lse[(b*a.H+h)*a.Tq+t]
					dd := dot(gi, oi)
					s0, s1 := a.span(b, t)
					for s := s0; s < s1; s++ {
						ko := b*a.KStride + (s*a.KV+kh)*a.D
						pr := float32(math.Exp(float64(dot(qi, k[ko:][:a.D])*a.Scale - l)))
						dp := dot(gi, v[ko:][:a.D])
						ds := pr * (dp - dd) * a.Scale
						axpy(dqi, k[ko:][:a.D], ds)
						axpy(dk[ko:][:a.D], qi, ds)
						axpy(dv[ko:][:a.D], gi, pr)
					}
				}
			}
		}
	})
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}
