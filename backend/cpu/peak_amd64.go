package cpu

// fmaLoopAVX2 issues iters×12 independent 8-wide FMAs (peak_amd64.s).
//
//go:noescape
func fmaLoopAVX2(iters int)

// fmaLoopAVX512 issues iters×12 independent 16-wide FMAs (peak_amd64.s).
//
//go:noescape
func fmaLoopAVX512(iters int)

var (
	avx2PeakLoop   = peakLoop{isa: "avx2", flopsPerIter: 12 * 8 * 2, run: fmaLoopAVX2}
	avx512PeakLoop = peakLoop{isa: "avx512", flopsPerIter: 12 * 16 * 2, run: fmaLoopAVX512}
)

// peakLoopFor returns the FMA loop for a kernel's instruction set.
func peakLoopFor(isa string) peakLoop {
	switch {
	case isa == "avx512" && hostCPU.AVX512F:
		return avx512PeakLoop
	case isa == "avx2" && hostCPU.AVX2FMA:
		return avx2PeakLoop
	}
	return goPeakLoop
}
