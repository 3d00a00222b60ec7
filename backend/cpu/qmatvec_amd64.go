package cpu

// Wrappers of the multi-row and dequantizing kernels (qmatvec_amd64.s).
// They check the lengths the assembly relies on.

import "github.com/mai-llm/mai/format/quant"

//go:noescape
func q4_0RowsAVX2(rows, nb int, w *byte, xq *int8, xd *float32, y *float32)

//go:noescape
func q8_0RowsAVX2(rows, nb int, w *byte, xq *int8, xd *float32, y *float32)

//go:noescape
func f16RowsAVX2(rows, n int, w *byte, x *float32, y *float32)

//go:noescape
func f16RowsAVX512(rows, n int, w *byte, x *float32, y *float32)

//go:noescape
func dequantQ4_0AVX2(nb int, w *byte, dst *float32)

//go:noescape
func dequantQ8_0AVX2(nb int, w *byte, dst *float32)

//go:noescape
func f16ToF32AVX2(n int, w *byte, dst *float32)

//go:noescape
func q4_0RowsVNNI(rows, nb int, w *byte, xq *int8, xd *float32, y *float32, nsum *int32)

// hasVNNI reports AVX-512 VNNI with 256-bit EVEX forms (AVX512VL), with
// the AVX-512 state enabled by the OS.
var hasVNNI = func() bool {
	if !hostCPU.AVX512F {
		return false
	}
	_, ebx, ecx, _ := cpuid(7, 0)
	return ebx&(1<<31) != 0 && ecx&(1<<11) != 0
}()

// vnniDots are avx2Dots with the AVX-512 VNNI Q4_0 decode kernel.
var vnniDots = func() dotSet {
	d := avx2Dots
	d.name, d.rowsQ4_0, d.rowsF16, d.negSums = "vnni", rowsQ4_0VNNI, rowsF16AVX512, true
	d.x16, d.dequant, d.rowsQ6K = x16Of(QQ4_0, QQ8_0, QQ4K), dequantAVX512, rowsQ6KAsm(q6KRowsVNNI)
	d.x16GemmK, d.x16RowsK = x16KGemmAsm(x16KGemmVNNI), x16KRowsAsm(x16KRowsVNNI)
	d.x16Gemm4, d.x16Gemm8 = x16GemmAsm(quant.Q4_0Bytes, x16GemmVNNI), x16GemmAsm(quant.Q8_0Bytes, x16GemmQ8VNNI)
	d.x16Rows4, d.x16Rows8 = x16RowsAsm(quant.Q4_0Bytes, x16RowsVNNI), x16RowsAsm(quant.Q8_0Bytes, x16RowsQ8VNNI)
	return d
}()

func rowsQ4_0VNNI(w []byte, rows int, a *qAct, y []float32) {
	nb := len(a.d)
	if rows <= 0 || nb == 0 {
		return
	}
	_ = w[rows*nb*18-1]
	_ = a.q[nb*32-1]
	_ = a.nsum[nb-1]
	_ = y[rows-1]
	q4_0RowsVNNI(rows, nb, &w[0], &a.q[0], &a.d[0], &y[0], &a.nsum[0])
}

func rowsQ8_0Asm(w []byte, rows int, a *qAct, y []float32) {
	xq, xd := a.q, a.d
	nb := len(xd)
	if rows <= 0 || nb == 0 {
		return
	}
	_ = w[rows*nb*34-1]
	_ = xq[nb*32-1]
	_ = y[rows-1]
	q8_0RowsAVX2(rows, nb, &w[0], &xq[0], &xd[0], &y[0])
}

func rowsQ4_0Asm(w []byte, rows int, a *qAct, y []float32) {
	xq, xd := a.q, a.d
	nb := len(xd)
	if rows <= 0 || nb == 0 {
		return
	}
	_ = w[rows*nb*18-1]
	_ = xq[nb*32-1]
	_ = y[rows-1]
	q4_0RowsAVX2(rows, nb, &w[0], &xq[0], &xd[0], &y[0])
}

func rowsF16Asm(w []byte, rows int, x []float32, y []float32) {
	n := len(x)
	if rows <= 0 || n == 0 {
		return
	}
	if n%32 != 0 {
		rowsF16Go(w, rows, x, y)
		return
	}
	_ = w[rows*n*2-1]
	_ = y[rows-1]
	f16RowsAVX2(rows, n, &w[0], &x[0], &y[0])
}

func dequantAsm(t QType, src []byte, dst []float32) {
	if len(dst) == 0 {
		return
	}
	switch t {
	case QQ4_0:
		nb := len(dst) / 32
		_ = src[nb*18-1]
		_ = dst[nb*32-1]
		dequantQ4_0AVX2(nb, &src[0], &dst[0])
	case QQ8_0:
		nb := len(dst) / 32
		_ = src[nb*34-1]
		_ = dst[nb*32-1]
		dequantQ8_0AVX2(nb, &src[0], &dst[0])
	case QQ6K:
		nb := len(dst) / 256
		_ = src[nb*210-1]
		_ = dst[nb*256-1]
		dequantQ6KAVX2(nb, &src[0], &dst[0])
	case QF16:
		n := len(dst) &^ 15
		_ = src[2*len(dst)-1]
		if n > 0 {
			f16ToF32AVX2(n, &src[0], &dst[0])
		}
		if n < len(dst) {
			dequantGo(t, src[2*n:], dst[n:])
		}
	default:
		dequantGo(t, src, dst)
	}
}

// rowsF16AVX512 is rowsF16Asm with 512-bit vectors where the row length is
// a multiple of 64.
func rowsF16AVX512(w []byte, rows int, x []float32, y []float32) {
	n := len(x)
	if rows <= 0 || n == 0 {
		return
	}
	if n%64 != 0 {
		rowsF16Asm(w, rows, x, y)
		return
	}
	_ = w[rows*n*2-1]
	_ = y[rows-1]
	f16RowsAVX512(rows, n, &w[0], &x[0], &y[0])
}

//go:noescape
func dequantQ6KAVX2(nb int, w *byte, dst *float32)

//go:noescape
func dequantQ4KAVX512(nb int, w *byte, dst *float32)

//go:noescape
func q6KRowsVNNI(rows, nsb int, w *byte, xq *int8, xd *float32, off *int32, y *float32)

//go:noescape
func q6KRowsAVX2(rows, nsb int, w *byte, xq *int8, xd *float32, off *int32, y *float32)

//go:noescape
func dequantQ6KAVX512(nb int, w *byte, dst *float32)

//go:noescape
func x16KGemmVNNI(nsb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16KRowsVNNI(panels, nsb int, w *byte, xq *int8, xd *float32, dxs *float32, y *float32)

//go:noescape
func x16GemmVNNI(nb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16GemmQ8VNNI(nb int, w *byte, xt *byte, y *float32, ldy int)

//go:noescape
func x16RowsVNNI(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)

//go:noescape
func x16RowsQ8VNNI(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)

// x16GemmAsm wraps an assembly x16 GEMM kernel for blocks of bb bytes
// (Q4_0 18, Q8_0 34).
func x16GemmAsm(bb int, kern func(nb int, w *byte, xt *byte, y *float32, ldy int)) func(nb int, w, xt []byte, y []float32, ldy int) {
	return func(nb int, w, xt []byte, y []float32, ldy int) {
		_ = w[nb*x16Rows*bb-1]
		_ = xt[nb*x16TileBytes-1]
		_ = y[(x16Tile-1)*ldy+x16Rows-1]
		kern(nb, &w[0], &xt[0], &y[0], ldy)
	}
}

// x16RowsAsm wraps an assembly x16 decode kernel for blocks of bb bytes.
func x16RowsAsm(bb int, kern func(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)) func(w []byte, panels int, a *qAct, y []float32) {
	return func(w []byte, panels int, a *qAct, y []float32) {
		nb := len(a.d)
		if panels <= 0 || nb == 0 {
			return
		}
		_ = w[panels*nb*x16Rows*bb-1]
		_ = a.q[nb*32-1]
		_ = a.nsum[nb-1]
		_ = y[panels*x16Rows-1]
		kern(panels, nb, &w[0], &a.q[0], &a.d[0], &a.nsum[0], &y[0])
	}
}

// dequantAVX512 is dequantAsm with the AVX-512 Q6_K and Q4_K expansions.
func dequantAVX512(t QType, src []byte, dst []float32) {
	nb := len(dst) / 256
	switch {
	case nb == 0:
		dequantAsm(t, src, dst)
	case t == QQ6K:
		_ = src[nb*210-1]
		_ = dst[nb*256-1]
		dequantQ6KAVX512(nb, &src[0], &dst[0])
	case t == QQ4K:
		_ = src[nb*q4KBytes-1]
		_ = dst[nb*256-1]
		dequantQ4KAVX512(nb, &src[0], &dst[0])
	default:
		dequantAsm(t, src, dst)
	}
}

// rowsQ6KAsm wraps a Q6_K decode kernel (q6KRowsVNNI or q6KRowsAVX2).
func rowsQ6KAsm(kern func(rows, nsb int, w *byte, xq *int8, xd *float32, off *int32, y *float32)) func(w []byte, rows int, a *qAct, y []float32) {
	return func(w []byte, rows int, a *qAct, y []float32) {
		nsb := len(a.q) / 256
		if rows <= 0 || nsb == 0 {
			return
		}
		_ = w[rows*nsb*210-1]
		_ = a.q[nsb*256-1]
		_ = a.d[nsb*8-1]
		_ = a.sum4[nsb*64-1]
		_ = y[rows-1]
		kern(rows, nsb, &w[0], &a.q[0], &a.d[0], &a.sum4[0], &y[0])
	}
}

// x16KGemmAsm wraps an assembly Q4_K x16 GEMM kernel.
func x16KGemmAsm(kern func(nsb int, w *byte, xt *byte, y *float32, ldy int)) func(nsb int, w, xt []byte, y []float32, ldy int) {
	return func(nsb int, w, xt []byte, y []float32, ldy int) {
		_ = w[nsb*x16Rows*q4KBytes-1]
		_ = xt[8*nsb*x16TileBytes-1]
		_ = y[(x16Tile-1)*ldy+x16Rows-1]
		kern(nsb, &w[0], &xt[0], &y[0], ldy)
	}
}

// x16KRowsAsm wraps an assembly Q4_K x16 decode kernel.
func x16KRowsAsm(kern func(panels, nsb int, w *byte, xq *int8, xd *float32, dxs *float32, y *float32)) func(w []byte, panels int, a *qAct, y []float32) {
	return func(w []byte, panels int, a *qAct, y []float32) {
		nsb := len(a.d) / 8
		if panels <= 0 || nsb == 0 {
			return
		}
		_ = w[panels*nsb*x16Rows*q4KBytes-1]
		_ = a.q[nsb*256-1]
		_ = a.dxs[nsb*8-1]
		_ = y[panels*x16Rows-1]
		kern(panels, nsb, &w[0], &a.q[0], &a.d[0], &a.dxs[0], &y[0])
	}
}
