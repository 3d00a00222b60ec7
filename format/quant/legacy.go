package quant

import (
	"encoding/binary"
	"math"
)

// The 32-element block formats. Arithmetic is in float32, one rounding per
// operation as ggml's reference C does it (explicit float32 conversions keep
// Go from fusing multiply-adds), so the output is byte-identical to
// quantize_row_*_ref compiled without floating-point contraction.

func decodePlain(t Type, dst []float32, src []byte) {
	le := binary.LittleEndian
	switch t {
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	}
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, F32ToF16(f)) }
func getF16(b []byte) float32    { return F16ToF32(binary.LittleEndian.Uint16(b)) }

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// roundAway rounds half away from zero, as C's roundf.
func roundAway(f float32) float32 { return float32(math.Round(float64(f))) }

// absMax returns the element of largest magnitude (the first one on ties),
// as the Q4_0/Q5_0 reference does, with its sign.
func absMax(x []float32) float32 {
	var amax, max float32
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, max = a, v
		}
	}
	return max
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// clampTrunc is C's (uint8_t)MIN(hi, (int8_t)f): truncation toward zero to
// int8, clamped above at hi.
func clampTrunc(f float32, hi int) uint8 {
	return uint8(min(hi, int(int8(f))))
}

func inv(d float32) float32 {
	if d != 0 {
		return 1 / d
	}
	return 0
}

func quantQ8_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		y := dst[b*Q8_0Bytes : (b+1)*Q8_0Bytes]
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		id := inv(d)
		putF16(y, d)
		for j, v := range x {
			y[2+j] = byte(int8(roundAway(float32(v * id))))
		}
	}
}

func dequantQ8_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK; b++ {
		y := src[b*Q8_0Bytes : (b+1)*Q8_0Bytes]
		d := getF16(y)
		out := dst[b*QK : (b+1)*QK]
		for j := range out {
			out[j] = float32(int8(y[2+j])) * d
		}
	}
}

func quantQ4_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		y := dst[b*Q4_0Bytes : (b+1)*Q4_0Bytes]
		d := absMax(x) / -8
		id := inv(d)
		putF16(y, d)
		for j := 0; j < QK/2; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+QK/2] * id)
			y[2+j] = clampTrunc(x0+8.5, 15) | clampTrunc(x1+8.5, 15)<<4
		}
	}
}

func dequantQ4_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK; b++ {
		y := src[b*Q4_0Bytes : (b+1)*Q4_0Bytes]
		d := getF16(y)
		out := dst[b*QK : (b+1)*QK]
		for j := 0; j < QK/2; j++ {
			out[j] = float32(int(y[2+j]&0xf)-8) * d
			out[j+QK/2] = float32(int(y[2+j]>>4)-8) * d
		}
	}
}

func quantQ4_1(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		y := dst[b*Q4_1Bytes : (b+1)*Q4_1Bytes]
		lo, hi := minMax(x)
		d := (hi - lo) / 15
		id := inv(d)
		putF16(y, d)
		putF16(y[2:], lo)
		for j := 0; j < QK/2; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+QK/2] - lo) * id)
			y[4+j] = clampTrunc(x0+0.5, 15) | clampTrunc(x1+0.5, 15)<<4
		}
	}
}

func dequantQ4_1(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK; b++ {
		y := src[b*Q4_1Bytes : (b+1)*Q4_1Bytes]
		d, m := getF16(y), getF16(y[2:])
		out := dst[b*QK : (b+1)*QK]
		for j := 0; j < QK/2; j++ {
			out[j] = float32(float32(y[4+j]&0xf)*d) + m
			out[j+QK/2] = float32(float32(y[4+j]>>4)*d) + m
		}
	}
}

func quantQ5_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		y := dst[b*Q5_0Bytes : (b+1)*Q5_0Bytes]
		d := absMax(x) / -16
		id := inv(d)
		putF16(y, d)
		var qh uint32
		for j := 0; j < QK/2; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+QK/2] * id)
			q0 := clampTrunc(x0+16.5, 31)
			q1 := clampTrunc(x1+16.5, 31)
			y[6+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(y[2:], qh)
	}
}

func dequantQ5_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK; b++ {
		y := src[b*Q5_0Bytes : (b+1)*Q5_0Bytes]
		d := getF16(y)
		qh := binary.LittleEndian.Uint32(y[2:])
		out := dst[b*QK : (b+1)*QK]
		for j := 0; j < QK/2; j++ {
			h0 := int(qh>>j&1) << 4
			h1 := int(qh>>(j+QK/2)&1) << 4
			out[j] = float32((int(y[6+j]&0xf)|h0)-16) * d
			out[j+QK/2] = float32((int(y[6+j]>>4)|h1)-16) * d
		}
	}
}

func quantQ5_1(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		y := dst[b*Q5_1Bytes : (b+1)*Q5_1Bytes]
		lo, hi := minMax(x)
		d := (hi - lo) / 31
		id := inv(d)
		putF16(y, d)
		putF16(y[2:], lo)
		var qh uint32
		for j := 0; j < QK/2; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+QK/2] - lo) * id)
			q0 := uint8(x0 + 0.5)
			q1 := uint8(x1 + 0.5)
			y[8+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(y[4:], qh)
	}
}

func dequantQ5_1(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK; b++ {
		y := src[b*Q5_1Bytes : (b+1)*Q5_1Bytes]
		d, m := getF16(y), getF16(y[2:])
		qh := binary.LittleEndian.Uint32(y[4:])
		out := dst[b*QK : (b+1)*QK]
		for j := 0; j < QK/2; j++ {
			h0 := uint8(qh>>j&1) << 4
			h1 := uint8(qh>>(j+QK/2)&1) << 4
			out[j] = float32(float32(y[8+j]&0xf|h0)*d) + m
			out[j+QK/2] = float32(float32(y[8+j]>>4|h1)*d) + m
		}
	}
}
