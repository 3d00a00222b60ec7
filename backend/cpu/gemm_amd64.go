package cpu

// gemmKernel6x16 is the AVX2/FMA microkernel (gemm_amd64.s): a 6×16 tile
// over packed panels, with the contract of gemmKernel.tile.
//
//go:noescape
func gemmKernel6x16(kc int, a, b, c *float32, ldc int, beta float32)

// avx2Kernel is the AVX2/FMA microkernel.
var avx2Kernel = gemmKernel{name: "avx2-6x16", mr: 6, nr: 16, tile: tile6x16AVX2}

func tile6x16AVX2(kc int, a, b, c []float32, ldc int, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[6*kc-1]
	_ = b[16*kc-1]
	_ = c[5*ldc+15]
	gemmKernel6x16(kc, &a[0], &b[0], &c[0], ldc, beta)
}

// activeKernel returns the microkernel Gemm uses on this CPU.
func activeKernel() gemmKernel {
	if hostCPU.AVX2FMA {
		return avx2Kernel
	}
	return goKernel
}
