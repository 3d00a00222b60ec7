package cpu

//go:generate go run ./internal/x16gen -out x16avx2_amd64.s

import "github.com/mai-llm/mai/format/quant"

// The AVX2/FMA/F16C row-dot kernels (quant_amd64.s). Their callers check
// the lengths; the assembly reads exactly the blocks it is given.

//go:noescape
func dotF16AVX2(n int, w *byte, x *float32) float32

//go:noescape
func dotBF16AVX2(n int, w *byte, x *float32) float32

//go:noescape
func dotQ8_0AVX2(nb int, w *byte, xq *int8, xd *float32) float32

//go:noescape
func dotQ4_0AVX2(nb int, w *byte, xq *int8, xd *float32) float32

//go:noescape
func dotQ4KAVX2(nb int, w *byte, xq *int8, xd *float32, xs *int16) float32

//go:noescape
func x16GemmAVX2(nb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16RowsAVX2(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)

//go:noescape
func x16GemmQ8AVX2(nb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16RowsQ8AVX2(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)

//go:noescape
func x16KGemmAVX2(nsb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16KRowsAVX2(panels, nsb int, w *byte, xq *int8, xd *float32, dxs *float32, y *float32)

// hasF16C reports the F16C extension (half-precision conversion).
var hasF16C = func() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return ecx&(1<<29) != 0
}()

// avx2Dots are the AVX2 assembly kernels. Q4_0, Q8_0 and Q4_K weights take
// the x16 layout (x16avx2_amd64.s).
var avx2Dots = dotSet{name: "avx2", f16: dotF16Asm, bf16: dotBF16Asm, q8_0: dotQ8_0Asm, q4_0: dotQ4_0Asm, q4K: dotQ4KAsm,
	rowsQ8_0: rowsQ8_0Asm, rowsQ4_0: rowsQ4_0Asm, rowsF16: rowsF16Asm, dequant: dequantAsm, rowsQ6K: rowsQ6KAsm(q6KRowsAVX2),
	x16: x16Of(QQ4_0, QQ8_0, QQ4K), x16Gemm4: x16GemmAsm(quant.Q4_0Bytes, x16GemmAVX2), x16Rows4: x16RowsAsm(quant.Q4_0Bytes, x16RowsAVX2),
	x16Gemm8: x16GemmAsm(quant.Q8_0Bytes, x16GemmQ8AVX2), x16Rows8: x16RowsAsm(quant.Q8_0Bytes, x16RowsQ8AVX2),
	x16GemmK: x16KGemmAsm(x16KGemmAVX2), x16RowsK: x16KRowsAsm(x16KRowsAVX2)}

// dotKernels returns the row-dot kernels for this CPU.
func dotKernels() *dotSet {
	if hostCPU.AVX2FMA && hasF16C && hasVNNI {
		return &vnniDots
	}
	if hostCPU.AVX2FMA && hasF16C {
		return &avx2Dots
	}
	return &goDots
}

// availableDots lists every kernel set this CPU can run.
func availableDots() []*dotSet {
	if hostCPU.AVX2FMA && hasF16C && hasVNNI {
		return []*dotSet{&goDots, &avx2Dots, &vnniDots}
	}
	if hostCPU.AVX2FMA && hasF16C {
		return []*dotSet{&goDots, &avx2Dots}
	}
	return []*dotSet{&goDots}
}

func dotF16Asm(w []byte, x []float32) float32 {
	n := len(x) &^ 15
	_ = w[2*len(x)-1]
	var s float32
	if n > 0 {
		s = dotF16AVX2(n, &w[0], &x[0])
	}
	if n < len(x) {
		s += dotF16Go(w[2*n:], x[n:])
	}
	return s
}

func dotBF16Asm(w []byte, x []float32) float32 {
	n := len(x) &^ 15
	_ = w[2*len(x)-1]
	var s float32
	if n > 0 {
		s = dotBF16AVX2(n, &w[0], &x[0])
	}
	if n < len(x) {
		s += dotBF16Go(w[2*n:], x[n:])
	}
	return s
}

func dotQ8_0Asm(w []byte, xq []int8, xd []float32) float32 {
	nb := len(xd)
	_ = w[nb*34-1]
	_ = xq[nb*32-1]
	return dotQ8_0AVX2(nb, &w[0], &xq[0], &xd[0])
}

func dotQ4_0Asm(w []byte, xq []int8, xd []float32) float32 {
	nb := len(xd)
	_ = w[nb*18-1]
	_ = xq[nb*32-1]
	return dotQ4_0AVX2(nb, &w[0], &xq[0], &xd[0])
}

func dotQ4KAsm(w []byte, xq []int8, xd []float32, xs []int16) float32 {
	nb := len(xd)
	_ = w[nb*q4KBytes-1]
	_ = xq[nb*256-1]
	_ = xs[nb*8-1]
	return dotQ4KAVX2(nb, &w[0], &xq[0], &xd[0], &xs[0])
}

//go:noescape
func quantQ8_0AVX2(nb int, x *float32, q *int8, d *float32)

// quantQ8_0Blocks rounds x (whole blocks of 32) to Q8_0 into q and d with
// the AVX2 kernel, reporting false (nothing done) where it does not run.
func quantQ8_0Blocks(x []float32, q []int8, d []float32) bool {
	nb := len(x) / 32
	if !hostCPU.AVX2FMA || nb == 0 {
		return false
	}
	_ = q[nb*32-1]
	_ = d[nb-1]
	quantQ8_0AVX2(nb, &x[0], &q[0], &d[0])
	return true
}

//go:noescape
func q8ToF32AVX2(nb int, q *int8, d *float32, dst *float32)

// q8ToF32Blocks sets dst = q·d per block of 32 with the AVX2 kernel,
// reporting false (nothing done) where it does not run.
func q8ToF32Blocks(q []int8, d []float32, dst []float32) bool {
	nb := len(dst) / 32
	if !hostCPU.AVX2FMA || nb == 0 || len(dst)%32 != 0 {
		return false
	}
	_ = q[nb*32-1]
	_ = d[nb-1]
	q8ToF32AVX2(nb, &q[0], &d[0], &dst[0])
	return true
}
