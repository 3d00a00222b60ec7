//go:build !amd64

package cpu

// cpuFeatures are the instruction-set extensions the kernels select on.
type cpuFeatures struct {
	AVX2FMA bool // AVX2 and FMA3, with YMM state enabled by the OS
	AVX512F bool // AVX-512 Foundation, with ZMM state enabled by the OS
}

// hostCPU is empty off amd64: only the portable kernels run.
var hostCPU cpuFeatures
