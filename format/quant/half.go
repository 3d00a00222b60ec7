// Package quant converts between float32 and the compact number formats used
// by model files: IEEE half precision (float16), bfloat16, and the block
// quantization formats of llama.cpp's ggml (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q4_K, Q5_K, Q6_K), byte for byte in ggml's layout.
//
// Conversions to the narrower formats round to nearest, ties to even, and keep
// infinities and NaNs (a NaN stays a NaN, with its sign). All multi-byte values
// in the byte-level functions are little-endian, as in safetensors and GGUF.
package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// F32ToF16 converts f to IEEE 754 binary16 bits, rounding to nearest even.
// Values beyond the float16 range become ±Inf; NaN stays a quiet NaN.
func F32ToF16(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	mant := bits & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			// Keep the top payload bits and force the quiet bit so the
			// result is a NaN even when those payload bits are zero.
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Result is subnormal (or zero): value / 2^-24 with the implicit bit.
		if e < -10 {
			// Below half the smallest subnormal (2^-25): rounds to zero.
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e) // 14..24
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++ // may carry into the smallest normal, which encodes correctly
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is correct, up to and including Inf
	}
	return sign | uint16(h)
}

// F16ToF32 converts IEEE 754 binary16 bits to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	switch {
	case em >= 0x7c00: // Inf or NaN: keep the payload
		return math.Float32frombits(sign | 0x7f800000 | (em&0x3ff)<<13)
	case em >= 0x0400: // normal: rebias the exponent by 127-15
		return math.Float32frombits(sign | (em<<13 + 112<<23))
	}
	// Zero or subnormal: em * 2^-24, exact in float32.
	return math.Float32frombits(sign | math.Float32bits(float32(em)*(1.0/(1<<24))))
}

// F32ToBF16 converts f to bfloat16 bits (the top half of a float32),
// rounding to nearest even. NaN stays a quiet NaN.
func F32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7fffffff > 0x7f800000 {
		return uint16(bits>>16) | 0x40
	}
	bits += 0x7fff + (bits>>16)&1
	return uint16(bits >> 16)
}

// BF16ToF32 converts bfloat16 bits to float32 exactly.
func BF16ToF32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// F32ToF16Slice converts src into dst, which must be at least as long.
func F32ToF16Slice(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = F32ToF16(v)
	}
}

// F16ToF32Slice converts src into dst, which must be at least as long.
func F16ToF32Slice(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = F16ToF32(v)
	}
}

// F32ToBF16Slice converts src into dst, which must be at least as long.
func F32ToBF16Slice(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = F32ToBF16(v)
	}
}

// BF16ToF32Slice converts src into dst, which must be at least as long.
func BF16ToF32Slice(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = BF16ToF32(v)
	}
}

// EncodeF16 writes src as little-endian float16 into dst, which must hold
// 2*len(src) bytes.
func EncodeF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
	}
}

// DecodeF16 reads little-endian float16 values from src into dst; src must
// hold 2*len(dst) bytes.
func DecodeF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// EncodeBF16 writes src as little-endian bfloat16 into dst, which must hold
// 2*len(src) bytes.
func EncodeBF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
	}
}

// DecodeBF16 reads little-endian bfloat16 values from src into dst; src must
// hold 2*len(dst) bytes.
func DecodeBF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// EncodeF32 writes src as little-endian float32 into dst, which must hold
// 4*len(src) bytes.
func EncodeF32(dst []byte, src []float32) {
	dst = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// DecodeF32 reads little-endian float32 values from src into dst; src must
// hold 4*len(dst) bytes.
func DecodeF32(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// checkLen returns an error when a byte buffer does not match n elements of
// size bytes each; it is shared by the block codecs.
func checkLen(what string, got, want int) error {
	if got != want {
		return fmt.Errorf("quant: %s: got %d bytes, want %d", what, got, want)
	}
	return nil
}
