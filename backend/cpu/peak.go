package cpu

import (
	"runtime"
	"time"
)

// Peak is a measured floating-point throughput: the FMA instructions the
// active GEMM kernel uses, issued with independent accumulators so that
// nothing but the FMA units limits them.
type Peak struct {
	// ISA names the instructions measured ("avx512", "avx2", "go").
	ISA string
	// GFLOPS is the float32 throughput of all the pool's threads running at
	// once, over wall-clock time (an FMA counts as two flops).
	GFLOPS float64
	// PerThread is each thread's throughput over its own CPU time while all
	// ran, so that time lost to other processes on a shared machine does not
	// count; it falls back to wall-clock time where thread CPU time is unknown.
	PerThread []float64
	// CPUGFLOPS is the sum of PerThread: what all threads reach when each has
	// a core to itself.
	CPUGFLOPS float64
}

// peakLoop is one FMA loop: run(iters) issues flopsPerIter flops per iteration.
type peakLoop struct {
	isa          string
	flopsPerIter int
	run          func(iters int)
}

// PeakGFLOPS measures the FMA throughput of all of p's threads at once, in
// GFLOP/s: the denominator of a GEMM's fraction of peak. See MeasurePeak.
func PeakGFLOPS(p *Pool) float64 { return MeasurePeak(p).GFLOPS }

// MeasurePeak measures the FMA peak of the instructions Gemm uses, on all of
// p's threads and per thread. It takes the best of a few short runs (about
// 0.2 s in all), since a shared machine can only make a run slower.
func MeasurePeak(p *Pool) Peak {
	return measurePeak(p, peakLoopFor(activeKernel().isa), 5, 20*time.Millisecond)
}

// MeasurePeakFor is MeasurePeak for the instructions of the named GEMM
// kernel (one of GemmKernels).
func MeasurePeakFor(p *Pool, kernel string) (Peak, error) {
	k, err := kernelByName(kernel)
	if err != nil {
		return Peak{}, err
	}
	return measurePeak(p, peakLoopFor(k.isa), 5, 20*time.Millisecond), nil
}

func measurePeak(p *Pool, loop peakLoop, reps int, target time.Duration) Peak {
	// Calibrate the iteration count for about target per run on one thread.
	iters := 1 << 12
	for {
		t0 := time.Now()
		loop.run(iters)
		if d := time.Since(t0); d >= target/4 || iters >= 1<<30 {
			iters = int(float64(iters) * float64(target) / float64(max(d, time.Microsecond)))
			break
		}
		iters *= 4
	}
	iters = max(iters, 1)
	flops := float64(iters) * float64(loop.flopsPerIter)
	t := p.Threads()
	res := Peak{ISA: loop.isa, PerThread: make([]float64, t)}
	for range reps {
		t0 := time.Now()
		p.For(t, 1, func(lo, hi int) {
			for w := lo; w < hi; w++ {
				runtime.LockOSThread()
				c0, ok := threadCPUTime()
				w0 := time.Now()
				loop.run(iters)
				d := time.Since(w0)
				if c1, ok1 := threadCPUTime(); ok && ok1 && c1 > c0 {
					d = c1 - c0
				}
				runtime.UnlockOSThread()
				res.PerThread[w] = max(res.PerThread[w], flops/d.Seconds()/1e9)
			}
		})
		res.GFLOPS = max(res.GFLOPS, float64(t)*flops/time.Since(t0).Seconds()/1e9)
	}
	for _, g := range res.PerThread {
		res.CPUGFLOPS += g
	}
	return res
}

// goPeakLoop measures scalar float32 multiply-adds in Go.
var goPeakLoop = peakLoop{isa: "go", flopsPerIter: 16, run: fmaLoopGo}

// fmaLoopGo runs eight independent multiply-add chains.
func fmaLoopGo(iters int) {
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	x, y := float32(0.999), float32(1e-3)
	for range iters {
		s0 = s0*x + y
		s1 = s1*x + y
		s2 = s2*x + y
		s3 = s3*x + y
		s4 = s4*x + y
		s5 = s5*x + y
		s6 = s6*x + y
		s7 = s7*x + y
	}
	peakSink = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}

// peakSink keeps fmaLoopGo's result alive.
var peakSink float32
