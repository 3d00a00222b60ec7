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
	parallel(p, &ropeJobs, len(pos), ropeGrain(r), ropeArgs{r: *r, out: out, x: x, pos: pos, sign: 1}, ropeRange)
}

// Backward accumulates dx += rotate⁻¹(dout).
func (r *RoPE) Backward(p *Pool, dx, dout []float32, pos []int32) {
	parallel(p, &ropeJobs, len(pos), ropeGrain(r), ropeArgs{r: *r, out: dx, x: dout, pos: pos, sign: -1, acc: true}, ropeRange)
}

// BackwardTo sets dx = rotate⁻¹(dout) (Backward into a gradient nothing has
// written yet).
func (r *RoPE) BackwardTo(p *Pool, dx, dout []float32, pos []int32) {
	parallel(p, &ropeJobs, len(pos), ropeGrain(r), ropeArgs{r: *r, out: dx, x: dout, pos: pos, sign: -1}, ropeRange)
}

type ropeArgs struct {
	r      RoPE
	out, x []float32
	pos    []int32
	sign   float32
	acc    bool
}

var ropeJobs jobs[ropeArgs]

func ropeGrain(r *RoPE) int { return max(1, actGrain/max(1, r.Heads*r.D)) }

func ropeRange(a *ropeArgs, lo, hi int) {
	r := &a.r
	half := r.Rot / 2
	w := r.Heads * r.D
	for n := lo; n < hi; n++ {
		cs := r.Cos[int(a.pos[n])*half:][:half]
		sn := r.Sin[int(a.pos[n])*half:][:half]
		for h := 0; h < r.Heads; h++ {
			xi := a.x[n*w+h*r.D:][:r.D]
			oi := a.out[n*w+h*r.D:][:r.D]
			ropeHead(oi, xi, cs, sn, half, r.Rot, a.sign, a.acc)
		}
	}
}

// ropeHead rotates one head's first rot dimensions (pairs i, i+half) and
// copies (or, with acc, adds) the rest.
func ropeHead(oi, xi, cs, sn []float32, half, rot int, sign float32, acc bool) {
	x1, x2 := xi[:half], xi[half:2*half]
	o1, o2 := oi[:half], oi[half:2*half]
	k := vec8(half)
	if k > 0 {
		flag := 0
		if acc {
			flag = 1
		}
		vRopeAVX(&o1[0], &xi[0], &cs[0], &sn[0], k, half, sign, flag)
	}
	for i := k; i < half; i++ {
		c, s := cs[i], sign*sn[i]
		v1 := x1[i]*c - x2[i]*s
		v2 := x2[i]*c + x1[i]*s
		if acc {
			o1[i] += v1
			o2[i] += v2
		} else {
			o1[i], o2[i] = v1, v2
		}
	}
	if acc {
		vAxpy(oi[rot:], 1, xi[rot:])
	} else {
		copy(oi[rot:], xi[rot:])
	}
}
