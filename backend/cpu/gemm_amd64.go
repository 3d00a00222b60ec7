package cpu

//go:generate go run ./internal/asmgen -out gemm_amd64.s

// gemmKernel6x16 is the AVX2/FMA microkernel (gemm_amd64.s): a 6×16 tile
// over packed panels, with the contract of gemmKernel.tile.
//
//go:noescape
func gemmKernel6x16(kc int, a, b, c *float32, ldc int, beta float32)

// gemmKernel12x32 is the AVX-512 microkernel (gemm_amd64.s): a 12×32 tile
// over packed panels, with the contract of gemmKernel.tile.
//
//go:noescape
func gemmKernel12x32(kc int, a, b, c *float32, ldc int, beta float32)

// avx512Kernel is the AVX-512 microkernel.
var avx512Kernel = gemmKernel{name: "avx512-12x32", isa: "avx512", mr: 12, nr: 32, tile: tile12x32AVX512}

func tile12x32AVX512(kc int, a, b, c []float32, ldc int, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[12*kc-1]
	_ = b[32*kc-1]
	_ = c[11*ldc+31]
	gemmKernel12x32(kc, &a[0], &b[0], &c[0], ldc, beta)
}

// avx2Kernel is the AVX2/FMA microkernel.
var avx2Kernel = gemmKernel{name: "avx2-6x16", isa: "avx2", mr: 6, nr: 16, tile: tile6x16AVX2}

func tile6x16AVX2(kc int, a, b, c []float32, ldc int, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[6*kc-1]
	_ = b[16*kc-1]
	_ = c[5*ldc+15]
	gemmKernel6x16(kc, &a[0], &b[0], &c[0], ldc, beta)
}

// activeKernel returns the microkernel Gemm uses on this CPU.
func activeKernel() gemmKernel {
	switch {
	case hostCPU.AVX512F:
		return avx512Kernel
	case hostCPU.AVX2FMA:
		return avx2Kernel
	}
	return goKernel
}

// availableKernels lists every microkernel this CPU can run, best last.
func availableKernels() []gemmKernel {
	ks := []gemmKernel{goKernel}
	if hostCPU.AVX2FMA {
		ks = append(ks, avx2Kernel)
	}
	if hostCPU.AVX512F {
		ks = append(ks, avx512Kernel)
	}
	return ks
}

// packPanelsAVX is packPanels in one pass over the rows (gemm_pack_amd64.s).
//
//go:noescape
func packPanelsAVX(dst, src *float32, width, panels, rows, srcStride, panelStride int, alpha float32)

// packRowsAVX copies rows rows of width floats, scaled by alpha, from src
// (rows srcStride apart) to dst (rows dstStride apart) (gemm_pack_amd64.s).
//
//go:noescape
func packRowsAVX(dst, src *float32, width, rows, srcStride, dstStride int, alpha float32)

// packPanels deals rows of src into micro-panels: for r < rows, q < panels,
// i < width, dst[q*panelStride+r*width+i] = alpha*src[r*srcStride+q*width+i].
func packPanels(dst, src []float32, width, panels, rows, srcStride, panelStride int, alpha float32) {
	if rows <= 0 || width <= 0 || panels <= 0 {
		return
	}
	// Bounds checks here keep the assembly inside the slices.
	_ = dst[(panels-1)*panelStride+rows*width-1]
	_ = src[(rows-1)*srcStride+panels*width-1]
	if !hostCPU.AVX2FMA {
		packPanelsGo(dst, src, width, panels, rows, srcStride, panelStride, alpha)
		return
	}
	if width < 16 {
		// Narrow panels (A's): deal each row into all of them in one pass.
		packPanelsAVX(&dst[0], &src[0], width, panels, rows, srcStride, panelStride, alpha)
		return
	}
	// Wide panels (B's) lie a multiple of 4 KiB apart, so writing one row to
	// each of many panels would thrash one L1 set. Instead a block of rows
	// at a time, panel by panel: each panel receives whole lines, and each
	// source row is still read from start to end.
	const block = 16
	for r0 := 0; r0 < rows; r0 += block {
		rb := min(block, rows-r0)
		for q := range panels {
			packRowsAVX(&dst[q*panelStride+r0*width], &src[r0*srcStride+q*width], width, rb, srcStride, width, alpha)
		}
	}
}

// packTransAVX is packTrans in assembly for an even number of rows
// (gemm_pack_amd64.s).
//
//go:noescape
func packTransAVX(dst, src *float32, rows, kc, stride int, alpha float32)

// packTrans transposes rows rows of src (row r at src[r*stride:], kc long)
// into one micro-panel: dst[p*rows+r] = alpha*src[r*stride+p].
func packTrans(dst, src []float32, rows, kc, stride int, alpha float32) {
	if rows <= 0 || kc <= 0 {
		return
	}
	// Bounds checks here keep the assembly inside the slices.
	_ = dst[kc*rows-1]
	_ = src[(rows-1)*stride+kc-1]
	if hostCPU.AVX2FMA && rows%2 == 0 {
		packTransAVX(&dst[0], &src[0], rows, kc, stride, alpha)
		return
	}
	packTransGo(dst, src, rows, kc, stride, alpha)
}

// dotAVX and axpyAVX are dot and axpy in assembly (gemm_vec_amd64.s).
//
//go:noescape
func dotAVX(a, b *float32, n int) float32

//go:noescape
func axpyAVX(alpha float32, x, y *float32, n int)

// gemmDot returns the sum of a[i]*b[i] over len(a) (b is at least as long).
func gemmDot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	_ = b[len(a)-1]
	if hostCPU.AVX2FMA {
		return dotAVX(&a[0], &b[0], len(a))
	}
	return gemmDotGo(a, b)
}

// gemmAxpy sets y[i] += alpha*x[i] over len(x) (y is at least as long).
func gemmAxpy(alpha float32, x, y []float32) {
	if len(x) == 0 {
		return
	}
	_ = y[len(x)-1]
	if hostCPU.AVX2FMA {
		axpyAVX(alpha, &x[0], &y[0], len(x))
		return
	}
	gemmAxpyGo(alpha, x, y)
}
