package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

func BenchmarkTmpKernels(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 2048, 2048
	x := qRandVec(rng, cols, 1)
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_K} {
		_, w := x16Weight(b, rng, typ, rows, cols)
		a := decodeAct(&avx2Dots, x, w)
		y := make([]float32, rows)
		_, k := avx2Dots.x16For(w.Type)
		b.Run(typ.String(), func(b *testing.B) {
			for range b.N {
				k(w.Data, rows/16, a, y)
			}
		})
	}
}
