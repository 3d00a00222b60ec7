//go:build !amd64

package cpu

// activeKernel returns the microkernel Gemm uses on this architecture.
func activeKernel() gemmKernel { return goKernel }
