package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

// TestHalfConversions checks F32ToF16s and F16sToF32s against quant's
// scalar conversions on every kind of value: normal, subnormal, halfway
// cases, overflow, infinities, NaN, and lengths off the vector width.
func TestHalfConversions(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519, 65520, 1e6, -1e6,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 5.96e-8, 2.98e-8, 2.99e-8, 6.1e-5, -3e-6,
		1 + 1.0/2048, 1 + 3.0/2048, math.Float32frombits(0x7f800001)}
	for _, n := range []int{0, 1, 15, 16, 37, 1000} {
		src := make([]float32, n)
		for i := range src {
			if i < len(special) && n > 16 {
				src[i] = special[i]
				continue
			}
			src[i] = float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-25)))
		}
		got, want := make([]uint16, n), make([]uint16, n)
		F32ToF16s(got, src)
		for i, f := range src {
			want[i] = quant.F32ToF16(f)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("n %d: F32ToF16s(%g) = %#04x, quant.F32ToF16 %#04x", n, src[i], got[i], want[i])
			}
		}
		back := make([]float32, n)
		F16sToF32s(back, got)
		for i, h := range got {
			if w := quant.F16ToF32(h); math.Float32bits(back[i]) != math.Float32bits(w) {
				t.Fatalf("n %d: F16sToF32s(%#04x) = %g, quant.F16ToF32 %g", n, h, back[i], w)
			}
		}
	}
}
