//go:build !amd64

package cpu

// activePeakLoop returns the FMA loop matching the active GEMM kernel.
func activePeakLoop() peakLoop { return goPeakLoop }
