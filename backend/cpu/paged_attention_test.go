package cpu

import (
	"slices"
	"testing"
)

// TestPagedAttentionMatchesContiguous scatters a contiguous KV layout into
// shuffled blocks and checks that the paged kernel gives the same bits as
// AttentionForward, with and without a sliding window, and that a bad
// description is refused.
func TestPagedAttentionMatchesContiguous(t *testing.T) {
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(5)
		const b, tk, h, kv, d, bs = 3, 13, 4, 2, 8, 4
		for _, window := range []int{0, 5} {
			// Queries: the last tq positions of each sequence.
			tq := 6
			a := Attn{B: b, Tq: tq, Tk: tk, H: h, KV: kv, D: d, KStride: tk * kv * d, Offset: tk - tq, Window: window, Scale: 0.3}
			q := randVec(r, b*tq*h*d, 1)
			k := randVec(r, b*tk*kv*d, 1)
			v := randVec(r, b*tk*kv*d, 1)
			want := make([]float32, len(q))
			AttentionForward(p, &a, want, make([]float32, b*h*tq), q, k, v)

			nb := (tk + bs - 1) / bs
			total := b * nb
			kc := make([]float32, total*bs*kv*d)
			vc := make([]float32, total*bs*kv*d)
			pa := PagedAttn{H: h, KV: kv, D: d, BlockSize: bs, Window: window, Scale: 0.3}
			pa.QStart = []int{0}
			w := kv * d
			for i := 0; i < b; i++ {
				var table []int32
				for j := 0; j < nb; j++ {
					table = append(table, int32(total-1-(i*nb+j))) // reversed
				}
				for s := 0; s < tk; s++ {
					row := int(table[s/bs])*bs + s%bs
					copy(kc[row*w:(row+1)*w], k[(i*tk+s)*w:(i*tk+s+1)*w])
					copy(vc[row*w:(row+1)*w], v[(i*tk+s)*w:(i*tk+s+1)*w])
				}
				pa.Blocks = append(pa.Blocks, table)
				pa.Pos0 = append(pa.Pos0, tk-tq)
				pa.QStart = append(pa.QStart, (i+1)*tq)
			}
			if err := pa.Validate(total * bs); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, len(q))
			PagedAttentionForward(p, &pa, got, q, kc, vc)
			if !slices.Equal(got, want) {
				t.Fatalf("window %d: paged attention differs from AttentionForward", window)
			}
			bad := pa
			bad.Blocks = slices.Clone(pa.Blocks)
			bad.Blocks[1] = []int32{int32(total)}
			if bad.Validate(total*bs) == nil {
				t.Fatal("a block outside the cache was accepted")
			}
		}
	})
}
