package gpu

import (
	"math/rand/v2"
	"testing"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/nn"
)

// TestDecodeMatchesCPU prefills two sequences and decodes three tokens with
// the device cache, against model.Model.Forward with a host cache: the
// last positions' logits within 1e-4·(|want| + rms(want)) (f32; only
// summation orders differ).
func TestDecodeMatchesCPU(t *testing.T) {
	forDevices(t, func(t *testing.T, d *cuda.Device) {
		for name, c := range configs(t) {
			t.Run(name, func(t *testing.T) {
				ref, g, _ := newPair(t, d, c)
				const b, prompt, steps, maxLen = 2, 5, 3, 16
				kc, err := g.NewCache(b, maxLen)
				if err != nil {
					t.Fatal(err)
				}
				defer kc.Free()
				host := ref.m.NewCache(b, maxLen)
				tp := nn.NewTape(ref.pool, false)
				rng := rand.New(rand.NewPCG(4, 4))
				ids := make([]int32, b*prompt)
				for i := range ids {
					ids[i] = int32(rng.IntN(c.Vocab))
				}
				tt := prompt
				worstErr := 0.0
				for step := 0; step <= steps; step++ {
					out, err := ref.m.Forward(tp, ids, b, tt, host, true)
					if err != nil {
						t.Fatal(err)
					}
					got, err := g.Forward(ids, b, tt, kc)
					if err != nil {
						t.Fatal(err)
					}
					e := worst(got, out.Logits.Data, 0)
					worstErr = max(worstErr, e)
					if e > tolGrad {
						t.Errorf("step %d (%d positions): logits off by %.3g", step, kc.Len, e)
					}
					// Next tokens: each sequence's greedy choice on the CPU.
					next := make([]int32, b)
					for i := range next {
						row := out.Logits.Data[i*c.Vocab : (i+1)*c.Vocab]
						for j, v := range row {
							if v > row[next[i]] {
								next[i] = int32(j)
							}
						}
					}
					ids, tt = next, 1
				}
				if kc.Len != host.Len || kc.Len != prompt+steps {
					t.Errorf("cache length %d, host %d", kc.Len, host.Len)
				}
				if _, err := g.Forward(make([]int32, b*maxLen), b, maxLen, kc); err == nil {
					t.Error("no error past the cache size")
				}
				t.Logf("logits within %.2g over %d positions", worstErr, kc.Len)
			})
		}
	})
}
