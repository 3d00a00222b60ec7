package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refRound rounds x to a binary format with mbits explicit mantissa bits,
// minimum normal exponent emin and overflow threshold, in float64, ties to
// even. It is the independent reference for F32ToF16 and F32ToBF16.
func refRound(x float32, mbits, emin int, maxFinite float64) float64 {
	v := float64(x)
	if math.IsNaN(v) || math.IsInf(v, 0) || v == 0 {
		return v
	}
	a := math.Abs(v)
	e := math.Ilogb(a)
	if e < emin {
		e = emin
	}
	ulp := math.Ldexp(1, e-mbits)
	r := math.RoundToEven(a/ulp) * ulp
	if r > maxFinite {
		r = math.Inf(1)
	}
	return math.Copysign(r, v)
}

const (
	maxF16  = 65504.0
	maxBF16 = 3.3895313892515355e38 // (2 - 2^-7) * 2^127
)

func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		back := F32ToF16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x round-tripped to %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func TestBF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		b := uint16(i)
		f := BF16ToF32(b)
		back := F32ToBF16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BF16ToF32(back))) || back&0x8000 != b&0x8000 {
				t.Fatalf("NaN %#04x round-tripped to %#04x", b, back)
			}
			continue
		}
		if back != b {
			t.Fatalf("%#04x -> %v -> %#04x", b, f, back)
		}
	}
}

func TestRoundingAgainstFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(x float32) {
		t.Helper()
		got16 := float64(F16ToF32(F32ToF16(x)))
		want16 := refRound(x, 10, -14, maxF16)
		if !(got16 == want16 || math.IsNaN(got16) && math.IsNaN(want16)) || math.Signbit(got16) != math.Signbit(want16) {
			t.Fatalf("f16(%g [%#08x]) = %g, want %g", x, math.Float32bits(x), got16, want16)
		}
		gotB := float64(BF16ToF32(F32ToBF16(x)))
		wantB := refRound(x, 7, -126, maxBF16)
		if !(gotB == wantB || math.IsNaN(gotB) && math.IsNaN(wantB)) || math.Signbit(gotB) != math.Signbit(wantB) {
			t.Fatalf("bf16(%g [%#08x]) = %g, want %g", x, math.Float32bits(x), gotB, wantB)
		}
	}
	edges := []float32{
		0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519.99, 65520, -65520, 1e6,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		5.960464477539063e-08, 2.9802322387695312e-08, 2.98023259e-08, 2.98023e-08,
		6.103515625e-05, 6.1e-05, 1.0009765625, 1.00048828125, 1.0014648, 1.00146484375,
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40,
		3.3895313892515355e38, 3.3961775292304e38, 3.39e38,
	}
	for _, x := range edges {
		check(x)
	}
	for range 1_000_000 {
		check(math.Float32frombits(rng.Uint32()))
	}
	// Dense sampling near the float16 range, where most values fall.
	for range 1_000_000 {
		check(float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-25))))
	}
	// Exact ties: float32 values halfway between adjacent float16 values.
	for i := 0; i < 0x7bff; i++ {
		lo := float64(F16ToF32(uint16(i)))
		hi := float64(F16ToF32(uint16(i + 1)))
		check(float32((lo + hi) / 2))
	}
}

func TestNaNSignAndQuiet(t *testing.T) {
	negNaN := math.Float32frombits(0xff800001) // signalling NaN, low payload only
	if h := F32ToF16(negNaN); h&0x8000 == 0 || h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(-sNaN) = %#04x", h)
	}
	if b := F32ToBF16(negNaN); b&0x8000 == 0 || !math.IsNaN(float64(BF16ToF32(b))) {
		t.Errorf("F32ToBF16(-sNaN) = %#04x", b)
	}
}

func TestBulkBytes(t *testing.T) {
	src := []float32{0, 1, -2.5, 65504, 1e-7, float32(math.Inf(-1))}
	buf := make([]byte, 4*len(src))
	out := make([]float32, len(src))
	EncodeF32(buf, src)
	DecodeF32(out, buf)
	for i := range src {
		if out[i] != src[i] {
			t.Fatalf("f32 %d: %v != %v", i, out[i], src[i])
		}
	}
	EncodeF16(buf, src)
	DecodeF16(out, buf[:2*len(src)])
	u := make([]uint16, len(src))
	F32ToF16Slice(u, src)
	for i := range src {
		if out[i] != F16ToF32(u[i]) {
			t.Fatalf("f16 %d: %v != %v", i, out[i], F16ToF32(u[i]))
		}
	}
	EncodeBF16(buf, src)
	DecodeBF16(out, buf[:2*len(src)])
	F32ToBF16Slice(u, src)
	back := make([]float32, len(src))
	BF16ToF32Slice(back, u)
	for i := range src {
		if out[i] != back[i] {
			t.Fatalf("bf16 %d: %v != %v", i, out[i], back[i])
		}
	}
	F16ToF32Slice(back, []uint16{0x3c00, 0xc000, 0, 0, 0, 0})
	if back[0] != 1 || back[1] != -2 {
		t.Fatalf("F16ToF32Slice: %v", back[:2])
	}
}

func BenchmarkDecodeF16(b *testing.B) {
	src := make([]byte, 2<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]float32, 1<<20)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		DecodeF16(dst, src)
	}
}
