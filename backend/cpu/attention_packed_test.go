package cpu

import (
	"math/rand/v2"
	"testing"
)

// TestPackedAttention checks that documents packed into one sequence with
// Start set see only themselves: outputs and gradients equal attention run
// on each document alone.
func TestPackedAttention(t *testing.T) {
	p := NewPool(2)
	rng := rand.New(rand.NewPCG(1, 2))
	const H, KV, D = 4, 2, 8
	docs := []int{5, 9, 3} // one row of 17 positions
	T := 17
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	q, k, v, g := randv(T*H*D), randv(T*KV*D), randv(T*KV*D), randv(T*H*D)
	start := make([]int32, T)
	off := 0
	for _, n := range docs {
		for i := 0; i < n; i++ {
			start[off+i] = int32(off)
		}
		off += n
	}
	a := Attn{B: 1, Tq: T, Tk: T, H: H, KV: KV, D: D, KStride: T * KV * D, Scale: 0.35, Start: start}
	out, lse := make([]float32, T*H*D), make([]float32, H*T)
	AttentionForward(p, &a, out, lse, q, k, v)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	AttentionBackward(p, &a, dq, dk, dv, g, out, lse, q, k, v)

	off = 0
	for _, n := range docs {
		qs, ks, vs, gs := q[off*H*D:(off+n)*H*D], k[off*KV*D:(off+n)*KV*D], v[off*KV*D:(off+n)*KV*D], g[off*H*D:(off+n)*H*D]
		b := Attn{B: 1, Tq: n, Tk: n, H: H, KV: KV, D: D, KStride: n * KV * D, Scale: 0.35}
		o2, l2 := make([]float32, n*H*D), make([]float32, H*n)
		AttentionForward(p, &b, o2, l2, qs, ks, vs)
		dq2, dk2, dv2 := make([]float32, len(qs)), make([]float32, len(ks)), make([]float32, len(vs))
		AttentionBackward(p, &b, dq2, dk2, dv2, gs, o2, l2, qs, ks, vs)
		for name, pair := range map[string][2][]float32{
			"out": {out[off*H*D : (off+n)*H*D], o2}, "dq": {dq[off*H*D : (off+n)*H*D], dq2},
			"dk": {dk[off*KV*D : (off+n)*KV*D], dk2}, "dv": {dv[off*KV*D : (off+n)*KV*D], dv2},
		} {
			for i := range pair[1] {
				if d := pair[0][i] - pair[1][i]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("doc at %d: %s[%d] = %v packed, %v alone", off, name, i, pair[0][i], pair[1][i])
				}
			}
		}
		off += n
	}
}
