package quant

import (
	"fmt"
	"strings"
)

// Type is a ggml tensor type, numbered as in ggml.h and GGUF files.
type Type uint32

// The ggml types. Only those with a BlockSize can be sized; those with a codec
// (see CanDequantize and CanQuantize) can be converted.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
)

// Block sizes (elements per block) and block byte sizes of the codecs.
const (
	// QK is the block size of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
	QK = 32
	// QKK is the super-block size of the K-quants (ggml's QK_K).
	QKK = 256

	Q4_0Bytes = 2 + QK/2                   // 18: f16 d, 16 bytes of nibbles
	Q4_1Bytes = 2 + 2 + QK/2               // 20: f16 d, f16 m, nibbles
	Q5_0Bytes = 2 + 4 + QK/2               // 22: f16 d, 32 high bits, nibbles
	Q5_1Bytes = 2 + 2 + 4 + QK/2           // 24: f16 d, f16 m, high bits, nibbles
	Q8_0Bytes = 2 + QK                     // 34: f16 d, 32 int8
	Q4_KBytes = 2 + 2 + 12 + QKK/2         // 144: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, nibbles
	Q5_KBytes = 2 + 2 + 12 + QKK/8 + QKK/2 // 176: as Q4_K plus 32 bytes of high bits
	Q6_KBytes = QKK/2 + QKK/4 + QKK/16 + 2 // 210: low nibbles, 2-bit highs, int8 scales, f16 d
)

type typeInfo struct {
	name       string
	blockSize  int
	blockBytes int
}

var types = map[Type]typeInfo{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", QK, Q4_0Bytes},
	Q4_1:    {"Q4_1", QK, Q4_1Bytes},
	Q5_0:    {"Q5_0", QK, Q5_0Bytes},
	Q5_1:    {"Q5_1", QK, Q5_1Bytes},
	Q8_0:    {"Q8_0", QK, Q8_0Bytes},
	Q8_1:    {"Q8_1", QK, 4 + QK},
	Q2_K:    {"Q2_K", QKK, QKK/16 + QKK/4 + 4},
	Q3_K:    {"Q3_K", QKK, QKK/8 + QKK/4 + 12 + 2},
	Q4_K:    {"Q4_K", QKK, Q4_KBytes},
	Q5_K:    {"Q5_K", QKK, Q5_KBytes},
	Q6_K:    {"Q6_K", QKK, Q6_KBytes},
	Q8_K:    {"Q8_K", QKK, 4 + QKK + QKK/16*2},
	IQ2_XXS: {"IQ2_XXS", QKK, 2 + QKK/8*2},
	IQ2_XS:  {"IQ2_XS", QKK, 2 + QKK/8*2 + QKK/32},
	IQ3_XXS: {"IQ3_XXS", QKK, 2 + 3*QKK/8},
	IQ1_S:   {"IQ1_S", QKK, 2 + QKK/8 + QKK/16},
	IQ4_NL:  {"IQ4_NL", QK, 2 + QK/2},
	IQ3_S:   {"IQ3_S", QKK, 2 + QKK/4 + QKK/32 + QKK/8 + QKK/64},
	IQ2_S:   {"IQ2_S", QKK, 2 + QKK/4 + QKK/16},
	IQ4_XS:  {"IQ4_XS", QKK, 2 + 2 + QKK/64 + QKK/2},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", QKK, QKK/8 + QKK/16 + QKK/32},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", QKK, 2 + 4*13},
	TQ2_0:   {"TQ2_0", QKK, 2 + 64},
	MXFP4:   {"MXFP4", QK, 1 + QK/2},
}

// String returns the type's ggml name ("Q4_K"), or "Type(n)" if unknown.
func (t Type) String() string {
	if ti, ok := types[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("Type(%d)", uint32(t))
}

// Known reports whether t is a ggml type whose block layout is known.
func (t Type) Known() bool {
	_, ok := types[t]
	return ok
}

// BlockSize returns the number of elements in one block (1 for plain types),
// or 0 for an unknown type.
func (t Type) BlockSize() int { return types[t].blockSize }

// BlockBytes returns the number of bytes in one block (the element size for
// plain types), or 0 for an unknown type.
func (t Type) BlockBytes() int { return types[t].blockBytes }

// RowBytes returns the byte size of n elements of type t; n must be a
// multiple of the block size.
func (t Type) RowBytes(n int64) (int64, error) {
	ti, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("quant: unknown type %v", t)
	}
	if n < 0 || n%int64(ti.blockSize) != 0 {
		return 0, fmt.Errorf("quant: %d elements is not a multiple of the %s block size %d", n, ti.name, ti.blockSize)
	}
	blocks := n / int64(ti.blockSize)
	if blocks > (1<<62)/int64(ti.blockBytes) {
		return 0, fmt.Errorf("quant: %d %s elements overflow", n, ti.name)
	}
	return blocks * int64(ti.blockBytes), nil
}

// ParseType returns the type named s ("q4_k", "Q8_0", "f16"; case-insensitive).
func ParseType(s string) (Type, error) {
	u := strings.ToUpper(s)
	for t, ti := range types {
		if ti.name == u {
			return t, nil
		}
	}
	return 0, fmt.Errorf("quant: unknown type %q", s)
}

// CanDequantize reports whether Dequantize supports t.
func (t Type) CanDequantize() bool {
	switch t {
	case F32, F16, BF16, F64, I8, I16, I32, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K:
		return true
	}
	return false
}

// CanQuantize reports whether Quantize supports t.
func (t Type) CanQuantize() bool {
	switch t {
	case F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K:
		return true
	}
	return false
}

// sizes checks that src holds whole blocks of t and returns the element count.
func sizes(t Type, nsrc int) (int, error) {
	ti := types[t]
	if nsrc%ti.blockBytes != 0 {
		return 0, fmt.Errorf("quant: %d bytes is not a whole number of %s blocks (%d bytes each)", nsrc, ti.name, ti.blockBytes)
	}
	return nsrc / ti.blockBytes * ti.blockSize, nil
}

// Dequantize decodes src, whole blocks of type t, into dst, which must hold
// exactly the number of elements they encode.
func Dequantize(t Type, dst []float32, src []byte) error {
	if !t.CanDequantize() {
		return fmt.Errorf("quant: cannot dequantize %v", t)
	}
	n, err := sizes(t, len(src))
	if err != nil {
		return err
	}
	if n != len(dst) {
		return fmt.Errorf("quant: %d bytes of %v hold %d values, destination has %d", len(src), t, n, len(dst))
	}
	switch t {
	case F32:
		DecodeF32(dst, src)
	case F16:
		DecodeF16(dst, src)
	case BF16:
		DecodeBF16(dst, src)
	case F64, I8, I16, I32:
		decodePlain(t, dst, src)
	case Q8_0:
		dequantQ8_0(dst, src)
	case Q4_0:
		dequantQ4_0(dst, src)
	case Q4_1:
		dequantQ4_1(dst, src)
	case Q5_0:
		dequantQ5_0(dst, src)
	case Q5_1:
		dequantQ5_1(dst, src)
	case Q4_K:
		dequantQ4_K(dst, src)
	case Q5_K:
		dequantQ5_K(dst, src)
	case Q6_K:
		dequantQ6_K(dst, src)
	}
	return nil
}

// Quantize encodes src into dst as type t. len(src) must be a multiple of
// the block size and dst must hold exactly the encoded bytes
// (see RowBytes). The block formats follow ggml's reference quantizers
// (quantize_row_*_ref), which llama.cpp's quantize tool uses when no
// importance matrix is given.
func Quantize(t Type, dst []byte, src []float32) error {
	if !t.CanQuantize() {
		return fmt.Errorf("quant: cannot quantize to %v", t)
	}
	want, err := t.RowBytes(int64(len(src)))
	if err != nil {
		return err
	}
	if int64(len(dst)) != want {
		return fmt.Errorf("quant: %d values of %v need %d bytes, destination has %d", len(src), t, want, len(dst))
	}
	switch t {
	case F32:
		EncodeF32(dst, src)
	case F16:
		EncodeF16(dst, src)
	case BF16:
		EncodeBF16(dst, src)
	case Q8_0:
		quantQ8_0(dst, src)
	case Q4_0:
		quantQ4_0(dst, src)
	case Q4_1:
		quantQ4_1(dst, src)
	case Q5_0:
		quantQ5_0(dst, src)
	case Q5_1:
		quantQ5_1(dst, src)
	case Q4_K:
		quantQ4_K(dst, src)
	case Q5_K:
		quantQ5_K(dst, src)
	case Q6_K:
		quantQ6_K(dst, src)
	}
	return nil
}
