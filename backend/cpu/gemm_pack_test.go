package cpu

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkGemmPack measures packing alone, in thread CPU time per float packed.
func BenchmarkGemmPack(b *testing.B) {
	const ld = 3072
	src := make([]float32, ld*ld)
	run := func(b *testing.B, floats int, fn func()) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0, _ := threadCPUTime()
		for b.Loop() {
			fn()
		}
		c1, _ := threadCPUTime()
		b.ReportMetric(float64((c1-c0).Nanoseconds())/float64(b.N*floats), "cpu-ns/float")
	}
	for _, kern := range availableKernels()[1:] {
		for _, tr := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/A/trans=%v", kern.name, tr), func(b *testing.B) {
				ap := make([]float32, gemmMC*gemmKC)
				run(b, gemmMC*gemmKC, func() { packA(ap, src, ld, tr, 0, gemmMC, 0, gemmKC, kern.mr, 1) })
			})
			b.Run(fmt.Sprintf("%s/B/trans=%v", kern.name, tr), func(b *testing.B) {
				bp := make([]float32, gemmNC*gemmKC)
				const nc = 768
				run(b, nc*gemmKC, func() { packB(bp, src, ld, tr, 0, gemmKC, 0, nc, kern.nr) })
			})
		}
	}
}
