package cpu

// RoPE rotates the first Rot dimensions of every head of x, laid out
// [N, Heads, D], by angles for each row's position, in the Hugging Face
// "rotate half" convention: pairs are (i, i+Rot/2). Cos and Sin are tables of
// [maxPos, Rot/2].
type RoPE struct {
	Heads, D, Rot int
	Cos, Sin      []float32
}

// Forward writes out = rotate(x) for rows at the given positions.
func (r *RoPE) Forward(p *Pool, out, x []float32, pos []int32) {
	r.apply(p, out, x, pos, 1)
}

// Backward accumulates dx = rotate⁻¹(dout).
func (r *RoPE) Backward(p *Pool, dx, dout []float32, pos []int32) {
	tmp := make([]float32, len(dout))
	r.apply(p, tmp, dout, pos, -1)
	for i, v := range tmp {
		dx[i] += v
	}
}

func (r *RoPE) apply(p *Pool, out, x []float32, pos []int32, sign float32) {
	half := r.Rot / 2
	w := r.Heads * r.D
	p.For(len(pos), 16, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			cs := r.Cos[int(pos[n])*half:][:half]
			sn := r.Sin[int(pos[n])*half:][:half]
			for h := 0; h < r.Heads; h++ {
				xi := x[n*w+h*r.D:][:r.D]
				oi := out[n*w+h*r.D:][:r.D]
				for i := 0; i < half; i++ {
					c, s := cs[i], sign*sn[i]
					x1, x2 := xi[i], xi[i+half]
					oi[i] = x1*c - x2*s
					oi[i+half] = x2*c + x1*s
				}
				copy(oi[r.Rot:], xi[r.Rot:])
			}
		}
	})
}
