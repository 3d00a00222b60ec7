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

// TestPackPanels checks packPanels (assembly where the CPU has it) against
// the portable packPanelsGo, for every width a remainder path can take.
func TestPackPanels(t *testing.T) {
	for width := 1; width <= 34; width++ {
		for _, panels := range []int{1, 3} {
			const rows, srcStride = 5, 120
			panelStride := rows*width + 7 // gaps between panels must stay untouched
			src := make([]float32, (rows-1)*srcStride+panels*width)
			for i := range src {
				src[i] = float32(i%97) - 40
			}
			got := make([]float32, (panels-1)*panelStride+rows*width+3)
			want := make([]float32, len(got))
			for i := range got {
				got[i], want[i] = -1, -1
			}
			packPanels(got, src, width, panels, rows, srcStride, panelStride, 0.5)
			packPanelsGo(want, src, width, panels, rows, srcStride, panelStride, 0.5)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("width %d, panels %d: dst[%d] = %g, want %g", width, panels, i, got[i], want[i])
				}
			}
		}
	}
}

// TestPackTrans checks packTrans (assembly where the CPU has it) against
// the portable packTransGo, for panel heights and lengths that reach every
// remainder path.
func TestPackTrans(t *testing.T) {
	for _, rows := range []int{1, 2, 4, 6, 12, 16, 32} {
		for _, kc := range []int{1, 7, 8, 9, 17, 256} {
			stride := kc + 5
			src := make([]float32, (rows-1)*stride+kc)
			for i := range src {
				src[i] = float32(i%89) - 30
			}
			got := make([]float32, rows*kc+3)
			want := make([]float32, len(got))
			for i := range got {
				got[i], want[i] = -1, -1
			}
			packTrans(got, src, rows, kc, stride, 2)
			packTransGo(want, src, rows, kc, stride, 2)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("rows %d, kc %d: dst[%d] = %g, want %g", rows, kc, i, got[i], want[i])
				}
			}
			for p := range kc {
				for r := range rows {
					if w := 2 * src[r*stride+p]; want[p*rows+r] != w {
						t.Fatalf("packTransGo rows %d, kc %d: dst[%d] = %g, want %g", rows, kc, p*rows+r, want[p*rows+r], w)
					}
				}
			}
		}
	}
}

// TestGemmDotAxpy checks the vector routines of the few-rows path against
// the portable ones, for every length up to a few registers' worth.
func TestGemmDotAxpy(t *testing.T) {
	for n := range 80 {
		x := make([]float32, n+1)
		y := make([]float32, n+1)
		for i := range x {
			x[i] = float32(i%13) - 6
			y[i] = float32(i%7) - 3
		}
		if got, want := gemmDot(x[:n], y), gemmDotGo(x[:n], y); got != want {
			t.Errorf("n=%d: gemmDot = %g, want %g", n, got, want)
		}
		got := append([]float32(nil), y...)
		want := append([]float32(nil), y...)
		gemmAxpy(0.5, x[:n], got)
		gemmAxpyGo(0.5, x[:n], want)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("n=%d: gemmAxpy y[%d] = %g, want %g", n, i, got[i], want[i])
			}
		}
	}
}
