package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// refValue decodes element i of a block buffer in float64, reading each
// field by its documented position rather than by the block loops of the
// codecs: an independent check of the layout.
func refValue(t Type, q []byte, i int) float64 {
	le := binary.LittleEndian
	f16 := func(b []byte) float64 { return float64(F16ToF32(le.Uint16(b))) }
	bs, bb := t.BlockSize(), t.BlockBytes()
	blk := q[i/bs*bb : (i/bs+1)*bb]
	j := i % bs
	switch t {
	case Q8_0:
		return f16(blk) * float64(int8(blk[2+j]))
	case Q4_0, Q4_1, Q5_0, Q5_1:
		off := map[Type]int{Q4_0: 2, Q4_1: 4, Q5_0: 6, Q5_1: 8}[t]
		nib := blk[off+j%16] & 0xf // elements 0..15 in low nibbles
		if j >= 16 {
			nib = blk[off+j%16] >> 4 // 16..31 in high nibbles
		}
		v := int(nib)
		if t == Q5_0 || t == Q5_1 {
			qh := le.Uint32(blk[off-4:])
			v |= int(qh>>j&1) << 4
		}
		switch t {
		case Q4_0:
			return f16(blk) * float64(v-8)
		case Q5_0:
			return f16(blk) * float64(v-16)
		}
		return f16(blk)*float64(v) + f16(blk[2:])
	case Q4_K, Q5_K:
		sub := j / 32 // sub-block 0..7
		sc := blk[4:16]
		var s, m int
		if sub < 4 {
			s, m = int(sc[sub]&63), int(sc[sub+4]&63)
		} else {
			s = int(sc[sub+4]&15) | int(sc[sub-4]>>6)<<4
			m = int(sc[sub+4]>>4) | int(sc[sub]>>6)<<4
		}
		qsOff := 16
		if t == Q5_K {
			qsOff = 48
		}
		// 64-element chunks of 32 bytes: low nibbles first, then high.
		byteIdx := qsOff + (j/64)*32 + j%32
		v := int(blk[byteIdx] & 0xf)
		if (j/32)%2 == 1 {
			v = int(blk[byteIdx] >> 4)
		}
		if t == Q5_K {
			v |= int(blk[16+j%32]>>(j/32)&1) << 4 // bit sub of qh[j%32]
		}
		return f16(blk)*float64(s)*float64(v) - f16(blk[2:])*float64(m)
	case Q6_K:
		half, r := j/128, j%128 // 128-element halves
		quarter, l := r/32, r%32
		ql := blk[half*64+(quarter%2)*32+l]
		lo := int(ql & 0xf)
		if quarter >= 2 {
			lo = int(ql >> 4)
		}
		hi := int(blk[128+half*32+l]>>(2*quarter)) & 3
		scale := int8(blk[192+j/16])
		return f16(blk[208:]) * float64(scale) * float64(lo|hi<<4-32)
	}
	panic("refValue: unsupported type " + t.String())
}

func randomInput(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestDequantizeMatchesFloat64Reference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range goldenTypes {
		for _, scale := range []float64{1, 0.01, 300} {
			x := randomInput(rng, 4*QKK, scale)
			qb, _ := typ.RowBytes(int64(len(x)))
			q := make([]byte, qb)
			if err := Quantize(typ, q, x); err != nil {
				t.Fatal(err)
			}
			y := make([]float32, len(x))
			if err := Dequantize(typ, y, q); err != nil {
				t.Fatal(err)
			}
			for i := range y {
				want := refValue(typ, q, i)
				if d := math.Abs(float64(y[i]) - want); d > 1e-6*math.Abs(want)+1e-30 {
					t.Fatalf("%v scale %g: element %d = %v, float64 reference %v", typ, scale, i, y[i], want)
				}
			}
		}
	}
}

// TestRoundTripError bounds the quantization error: per-element against the
// block's step size for the 32-element formats, and relative RMSE for all.
func TestRoundTripError(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Relative RMSE on Gaussian data; ggml's formats land well inside these.
	maxRel := map[Type]float64{
		Q8_0: 0.007, Q4_0: 0.12, Q4_1: 0.10, Q5_0: 0.06, Q5_1: 0.05,
		Q4_K: 0.10, Q5_K: 0.05, Q6_K: 0.025,
	}
	for _, typ := range goldenTypes {
		x := randomInput(rng, 64*QKK, 0.5)
		qb, _ := typ.RowBytes(int64(len(x)))
		q := make([]byte, qb)
		y := make([]float32, len(x))
		if err := Quantize(typ, q, x); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(typ, y, q); err != nil {
			t.Fatal(err)
		}
		var se, ss float64
		for i := range x {
			d := float64(x[i]) - float64(y[i])
			se += d * d
			ss += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / ss)
		t.Logf("%v: relative RMSE %.4f", typ, rel)
		if rel > maxRel[typ] {
			t.Errorf("%v: relative RMSE %.4f exceeds %.4f", typ, rel, maxRel[typ])
		}
		if typ.BlockSize() != QK {
			continue
		}
		// Per element: within one step (half a step plus the f16 rounding
		// of the scale, and a full step where the top level is clamped).
		for b := 0; b < len(x)/QK; b++ {
			xs := x[b*QK : (b+1)*QK]
			var lo, hi, amax float64 = math.Inf(1), math.Inf(-1), 0
			for _, v := range xs {
				lo, hi, amax = min(lo, float64(v)), max(hi, float64(v)), max(amax, math.Abs(float64(v)))
			}
			var step float64
			switch typ {
			case Q8_0:
				step = amax / 127 * 0.51
			case Q4_0:
				step = amax / 8 * 1.01
			case Q5_0:
				step = amax / 16 * 1.01
			case Q4_1:
				step = (hi-lo)/15*0.51 + math.Abs(lo)*1e-3
			case Q5_1:
				step = (hi-lo)/31*0.51 + math.Abs(lo)*1e-3
			}
			step += amax * 2e-3 // f16 rounding of d (and m)
			for i, v := range xs {
				if d := math.Abs(float64(v) - float64(y[b*QK+i])); d > step {
					t.Fatalf("%v block %d element %d: |%v - %v| = %g > %g", typ, b, i, v, y[b*QK+i], d, step)
				}
			}
		}
	}
}

func TestSpecialBlocks(t *testing.T) {
	for _, typ := range goldenTypes {
		n := typ.BlockSize() * 2
		qb, _ := typ.RowBytes(int64(n))
		cases := map[string]func(i int) float32{
			"zeros":    func(int) float32 { return 0 },
			"constant": func(int) float32 { return 0.25 },
			"one spike": func(i int) float32 {
				if i == 7 {
					return -3
				}
				return 0
			},
		}
		for name, f := range cases {
			x := make([]float32, n)
			for i := range x {
				x[i] = f(i)
			}
			q := make([]byte, qb)
			y := make([]float32, n)
			if err := Quantize(typ, q, x); err != nil {
				t.Fatal(err)
			}
			if err := Dequantize(typ, y, q); err != nil {
				t.Fatal(err)
			}
			for i := range x {
				if math.IsNaN(float64(y[i])) || math.Abs(float64(y[i]-x[i])) > 0.02 {
					t.Errorf("%v %s: element %d: %v -> %v", typ, name, i, x[i], y[i])
					break
				}
			}
		}
	}
}

func TestTypes(t *testing.T) {
	tests := []struct {
		typ        Type
		name       string
		bs, bb     int
		deq, quant bool
	}{
		{F32, "F32", 1, 4, true, true},
		{F16, "F16", 1, 2, true, true},
		{BF16, "BF16", 1, 2, true, true},
		{Q8_0, "Q8_0", 32, 34, true, true},
		{Q4_0, "Q4_0", 32, 18, true, true},
		{Q4_1, "Q4_1", 32, 20, true, true},
		{Q5_0, "Q5_0", 32, 22, true, true},
		{Q5_1, "Q5_1", 32, 24, true, true},
		{Q4_K, "Q4_K", 256, 144, true, true},
		{Q5_K, "Q5_K", 256, 176, true, true},
		{Q6_K, "Q6_K", 256, 210, true, true},
		{Q2_K, "Q2_K", 256, 84, false, false},
		{Q3_K, "Q3_K", 256, 110, false, false},
		{IQ4_XS, "IQ4_XS", 256, 136, false, false},
		{MXFP4, "MXFP4", 32, 17, false, false},
		{I32, "I32", 1, 4, true, false},
	}
	for _, tt := range tests {
		if tt.typ.String() != tt.name || tt.typ.BlockSize() != tt.bs || tt.typ.BlockBytes() != tt.bb ||
			tt.typ.CanDequantize() != tt.deq || tt.typ.CanQuantize() != tt.quant {
			t.Errorf("%d: %s %d %d %v %v", tt.typ, tt.typ, tt.typ.BlockSize(), tt.typ.BlockBytes(), tt.typ.CanDequantize(), tt.typ.CanQuantize())
		}
		p, err := ParseType(strings.ToLower(tt.name))
		if err != nil || p != tt.typ {
			t.Errorf("ParseType(%q) = %v, %v", tt.name, p, err)
		}
	}
	if s := Type(4).String(); s != "Type(4)" || Type(4).Known() {
		t.Errorf("Type(4) = %q", s)
	}
	if _, err := ParseType("q9"); err == nil {
		t.Error("ParseType(q9) succeeded")
	}
	if n, err := Q4_K.RowBytes(512); err != nil || n != 288 {
		t.Errorf("Q4_K.RowBytes(512) = %d, %v", n, err)
	}
	if _, err := Q4_K.RowBytes(100); err == nil {
		t.Error("RowBytes(100) of Q4_K succeeded")
	}
	if _, err := Type(99).RowBytes(1); err == nil {
		t.Error("RowBytes of unknown type succeeded")
	}
}

func TestCodecErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"quantize partial block", Quantize(Q8_0, make([]byte, 34), make([]float32, 31)), "not a multiple"},
		{"quantize short dst", Quantize(Q4_K, make([]byte, 100), make([]float32, 256)), "need 144 bytes"},
		{"quantize unsupported", Quantize(Q2_K, make([]byte, 84), make([]float32, 256)), "cannot quantize"},
		{"dequantize partial block", Dequantize(Q6_K, make([]float32, 256), make([]byte, 209)), "not a whole number"},
		{"dequantize wrong dst", Dequantize(Q4_0, make([]float32, 31), make([]byte, 18)), "destination has 31"},
		{"dequantize unsupported", Dequantize(IQ2_XXS, make([]float32, 256), make([]byte, 66)), "cannot dequantize"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, tt.err, tt.want)
		}
	}
	// Plain types go through the same entry points.
	y := make([]float32, 2)
	if err := Dequantize(I8, y, []byte{0xff, 5}); err != nil || y[0] != -1 || y[1] != 5 {
		t.Errorf("I8: %v %v", y, err)
	}
	if err := Dequantize(F64, y[:1], binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))); err != nil || y[0] != 2.5 {
		t.Errorf("F64: %v %v", y, err)
	}
	b := make([]byte, 4)
	if err := Quantize(BF16, b, []float32{1, -2}); err != nil {
		t.Fatal(err)
	}
	if err := Dequantize(BF16, y, b); err != nil || y[0] != 1 || y[1] != -2 {
		t.Errorf("BF16: %v %v", y, err)
	}
}

func FuzzDequantize(f *testing.F) {
	f.Add(uint8(Q4_K), make([]byte, 144))
	f.Add(uint8(Q6_K), make([]byte, 210))
	f.Add(uint8(Q5_0), []byte{0, 0x3c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		tp := Type(typ)
		if !tp.CanDequantize() {
			return
		}
		n, err := sizes(tp, len(data))
		if err != nil {
			return
		}
		y := make([]float32, n)
		if err := Dequantize(tp, y, data); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkQuantize(b *testing.B) {
	x := randomInput(rand.New(rand.NewPCG(1, 1)), 64*QKK, 1)
	for _, typ := range goldenTypes {
		b.Run(typ.String(), func(b *testing.B) {
			qb, _ := typ.RowBytes(int64(len(x)))
			q := make([]byte, qb)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				Quantize(typ, q, x)
			}
		})
	}
}

func BenchmarkDequantize(b *testing.B) {
	x := randomInput(rand.New(rand.NewPCG(1, 1)), 64*QKK, 1)
	y := make([]float32, len(x))
	for _, typ := range goldenTypes {
		b.Run(typ.String(), func(b *testing.B) {
			qb, _ := typ.RowBytes(int64(len(x)))
			q := make([]byte, qb)
			Quantize(typ, q, x)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				Dequantize(typ, y, q)
			}
		})
	}
}
