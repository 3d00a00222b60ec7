//go:build !amd64

package cpu

// activeKernel returns the microkernel Gemm uses on this architecture.
func activeKernel() gemmKernel { return goKernel }

// availableKernels lists every microkernel this CPU can run, best last.
func availableKernels() []gemmKernel { return []gemmKernel{goKernel} }
