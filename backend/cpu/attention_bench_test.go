package cpu

import (
	"fmt"
	"math"
	"testing"
)

// BenchmarkAttention times the fused attention forward and backward at the
// shapes of the tiny and gpt2-124m presets and a longer context.
func BenchmarkAttention(b *testing.B) {
	for _, a := range []Attn{
		{B: 16, Tq: 128, Tk: 128, H: 4, KV: 2, D: 32},
		{B: 4, Tq: 64, Tk: 64, H: 12, KV: 12, D: 64},
		{B: 1, Tq: 1024, Tk: 1024, H: 12, KV: 4, D: 64},
	} {
		a.KStride = a.Tk * a.KV * a.D
		a.Scale = float32(1 / math.Sqrt(float64(a.D)))
		r := kRand(1)
		nq, nk := a.B*a.Tq*a.H*a.D, a.B*a.KStride
		q, k, v, g := randVec(r, nq, 1), randVec(r, nk, 1), randVec(r, nk, 1), randVec(r, nq, 1)
		out, lse := make([]float32, nq), make([]float32, a.B*a.H*a.Tq)
		dq, dk, dv := make([]float32, nq), make([]float32, nk), make([]float32, nk)
		p := Default()
		name := fmt.Sprintf("B%d_T%d_H%d_KV%d_D%d", a.B, a.Tq, a.H, a.KV, a.D)
		b.Run(name+"/fwd", func(b *testing.B) {
			for range b.N {
				AttentionForward(p, &a, out, lse, q, k, v)
			}
		})
		b.Run(name+"/bwd", func(b *testing.B) {
			for range b.N {
				AttentionBackward(p, &a, dq, dk, dv, g, out, lse, q, k, v)
			}
		})
	}
}
