//go:build !amd64

package cpu

// activeKernel returns the microkernel Gemm uses on this architecture.
func activeKernel() gemmKernel { return goKernel }

// availableKernels lists every microkernel this CPU can run, best last.
func availableKernels() []gemmKernel { return []gemmKernel{goKernel} }

// packPanels deals rows of src into micro-panels: for r < rows, q < panels,
// i < width, dst[q*panelStride+r*width+i] = alpha*src[r*srcStride+q*width+i].
func packPanels(dst, src []float32, width, panels, rows, srcStride, panelStride int, alpha float32) {
	packPanelsGo(dst, src, width, panels, rows, srcStride, panelStride, alpha)
}

// packTrans transposes rows rows of src (row r at src[r*stride:], kc long)
// into one micro-panel: dst[p*rows+r] = alpha*src[r*stride+p].
func packTrans(dst, src []float32, rows, kc, stride int, alpha float32) {
	packTransGo(dst, src, rows, kc, stride, alpha)
}

// gemmDot returns the sum of a[i]*b[i] over len(a) (b is at least as long).
func gemmDot(a, b []float32) float32 { return gemmDotGo(a, b) }

// gemmAxpy sets y[i] += alpha*x[i] over len(x) (y is at least as long).
func gemmAxpy(alpha float32, x, y []float32) { gemmAxpyGo(alpha, x, y) }
