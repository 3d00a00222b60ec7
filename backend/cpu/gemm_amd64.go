package cpu

// activeKernel returns the microkernel Gemm uses on this CPU.
func activeKernel() gemmKernel { return goKernel }
