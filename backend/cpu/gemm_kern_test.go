package cpu

import (
	"runtime"
	"testing"
)

// BenchmarkGemmKernel measures the microkernel alone on L1/L2-resident
// panels (kc=256), per thread CPU time.
func BenchmarkGemmKernel(b *testing.B) {
	for _, kern := range testKernels() {
		b.Run(kern.name, func(b *testing.B) {
			const kc = gemmKC
			// As in gemmBlock: one B micro-panel against an MC×KC block of A.
			tiles := gemmMC / kern.mr
			ap := make([]float32, gemmMC*kc)
			bp := make([]float32, kern.nr*kc)
			c := make([]float32, gemmMC*kern.nr)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0, _ := threadCPUTime()
			for b.Loop() {
				for i := range tiles {
					kern.tile(kc, ap[i*kern.mr*kc:], bp, c[i*kern.mr*kern.nr:], kern.nr, 1)
				}
			}
			c1, _ := threadCPUTime()
			flops := 2 * float64(tiles*kern.mr*kern.nr*kc) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/(c1-c0).Seconds()/1e9, "cpuGFLOP/s")
		})
	}
}
