package cpu

import (
	"unsafe"

	"github.com/mai-llm/mai/format/quant"
)

// F32ToF16s sets dst[i] to src[i] in IEEE half precision, rounded to
// nearest even, as quant.F32ToF16 does (with F16C where the CPU has it).
func F32ToF16s(dst []uint16, src []float32) {
	src = src[:len(dst)]
	n := 0
	if vecF16() {
		n = len(dst) &^ 15
		if n > 0 {
			f32ToF16AVX(n, &src[0], &dst[0])
		}
	}
	quant.F32ToF16Slice(dst[n:], src[n:])
}

// F16sToF32s sets dst[i] to the half-precision value src[i], exactly.
func F16sToF32s(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := 0
	if vecF16() {
		n = len(dst) &^ 15
		if n > 0 {
			f16ToF32AVX2(n, (*byte)(unsafe.Pointer(&src[0])), &dst[0])
		}
	}
	quant.F16ToF32Slice(dst[n:], src[n:])
}
