package cpu

import "math"

// SwiGLUForward computes out = silu(g) * u elementwise.
func SwiGLUForward(p *Pool, out, g, u []float32) {
	p.For(len(out), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := g[i]
			s := float32(1 / (1 + math.Exp(-float64(x))))
			out[i] = x * s * u[i]
		}
	})
}

// SwiGLUBackward accumulates dg and du from dout.
func SwiGLUBackward(p *Pool, dg, du, dout, g, u []float32) {
	p.For(len(dout), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := g[i]
			s := float32(1 / (1 + math.Exp(-float64(x))))
			silu := x * s
			du[i] += dout[i] * silu
			dg[i] += dout[i] * u[i] * s * (1 + x*(1-s))
		}
	})
}

const geluC = 0.7978845608028654 // sqrt(2/pi)

// GELUForward applies GELU: the tanh approximation when approx (GPT-2's
// gelu_new), else the exact erf form.
func GELUForward(p *Pool, out, x []float32, approx bool) {
	p.For(len(out), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := float64(x[i])
			if approx {
				out[i] = float32(0.5 * v * (1 + math.Tanh(geluC*(v+0.044715*v*v*v))))
			} else {
				out[i] = float32(0.5 * v * (1 + math.Erf(v/math.Sqrt2)))
			}
		}
	})
}

// GELUBackward accumulates dx from dout.
func GELUBackward(p *Pool, dx, dout, x []float32, approx bool) {
	p.For(len(dx), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := float64(x[i])
			var d float64
			if approx {
				u := geluC * (v + 0.044715*v*v*v)
				t := math.Tanh(u)
				d = 0.5*(1+t) + 0.5*v*(1-t*t)*geluC*(1+3*0.044715*v*v)
			} else {
				d = 0.5*(1+math.Erf(v/math.Sqrt2)) + v*math.Exp(-0.5*v*v)/math.Sqrt(2*math.Pi)
			}
			dx[i] += dout[i] * float32(d)
		}
	})
}

// SoftmaxForward computes a row-wise softmax over rows of width d.
func SoftmaxForward(p *Pool, out, x []float32, n, d int) {
	p.For(n, 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			softmaxRow(out[i*d:i*d+d], x[i*d:i*d+d])
		}
	})
}

// SoftmaxBackward accumulates dx = y*(dy - sum(dy*y)).
func SoftmaxBackward(p *Pool, dx, dout, y []float32, n, d int) {
	p.For(n, 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			yi, gi, dxi := y[i*d:i*d+d], dout[i*d:i*d+d], dx[i*d:i*d+d]
			var s float32
			for j := range yi {
				s += yi[j] * gi[j]
			}
			for j := range yi {
				dxi[j] += yi[j] * (gi[j] - s)
			}
		}
	})
}

func softmaxRow(out, x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var s float64
	for j, v := range x {
		e := float32(math.Exp(float64(v - m)))
		out[j] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for j := range out {
		out[j] *= inv
	}
}

// CrossEntropyForward computes per-row losses -log softmax(logits)[target]
// and keeps each row's log-sum-exp. Rows whose target is negative are ignored
// (loss 0). It returns the number of counted rows.
func CrossEntropyForward(p *Pool, losses, lse, logits []float32, targets []int32, n, v int) int {
	p.For(n, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := logits[i*v : i*v+v]
			m := float32(math.Inf(-1))
			for _, x := range row {
				m = max(m, x)
			}
			var s float64
			for _, x := range row {
				s += math.Exp(float64(x - m))
			}
			l := float32(math.Log(s)) + m
			lse[i] = l
			if t := targets[i]; t >= 0 {
				losses[i] = l - row[t]
			} else {
				losses[i] = 0
			}
		}
	})
	count := 0
	for _, t := range targets[:n] {
		if t >= 0 {
			count++
		}
	}
	return count
}

// CrossEntropyBackward accumulates dlogits = scale*(softmax - onehot) for
// counted rows.
func CrossEntropyBackward(p *Pool, dlogits, logits, lse []float32, targets []int32, n, v int, scale float32) {
	p.For(n, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t := targets[i]
			if t < 0 {
				continue
			}
			row, drow := logits[i*v:i*v+v], dlogits[i*v:i*v+v]
			l := lse[i]
			for j, x := range row {
				drow[j] += scale * float32(math.Exp(float64(x-l)))
			}
			drow[t] -= scale
		}
	})
}
