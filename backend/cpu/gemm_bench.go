package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"time"
)

// GemmBenchConfig describes one GEMM benchmark: C = op(A)·op(B) with op(A)
// m×k and op(B) k×n, alpha 1 and beta 0.
type GemmBenchConfig struct {
	M, N, K        int
	TransA, TransB bool
	// Runs is how many timed runs to take the median of (after one warm-up).
	Runs int
	// Kernel names the microkernel (one of GemmKernels); empty means the one
	// Gemm uses.
	Kernel string
}

// GemmBenchResult is what BenchGemm measured. Times are medians over the runs.
type GemmBenchResult struct {
	M       int    `json:"m"`
	N       int    `json:"n"`
	K       int    `json:"k"`
	Trans   string `json:"trans"` // "NN", "NT", "TN" or "TT"
	Threads int    `json:"threads"`
	Kernel  string `json:"kernel"`
	Runs    int    `json:"runs"`
	// WallSeconds is the median wall-clock time of one GEMM.
	WallSeconds float64 `json:"wall_seconds"`
	// CPUSeconds is the median process CPU time of one GEMM (all threads);
	// zero where the system does not report it.
	CPUSeconds float64 `json:"cpu_seconds"`
	// GFLOPS is 2mnk over the median wall time.
	GFLOPS float64 `json:"gflops"`
	// CPUGFLOPS is 2mnk·threads over the median CPU time: what the threads
	// reached while they ran, which time taken by other processes on a
	// shared machine does not lower.
	CPUGFLOPS float64 `json:"cpu_gflops"`
	// PeakGFLOPS is the measured FMA peak of all threads over wall time
	// (Peak.GFLOPS); PeakCPUGFLOPS the same over CPU time (Peak.CPUGFLOPS).
	PeakGFLOPS    float64 `json:"peak_gflops"`
	PeakCPUGFLOPS float64 `json:"peak_cpu_gflops"`
	// FractionOfPeak is GFLOPS / PeakGFLOPS.
	FractionOfPeak float64 `json:"fraction_of_peak"`
	// CPUFractionOfPeak is CPUGFLOPS / PeakCPUGFLOPS.
	CPUFractionOfPeak float64 `json:"cpu_fraction_of_peak"`
}

// GemmKernelName names the microkernel Gemm uses on this CPU.
func GemmKernelName() string { return activeKernel().name }

// GemmKernels names every microkernel this CPU can run, the one Gemm uses last.
func GemmKernels() []string {
	var names []string
	for _, k := range availableKernels() {
		names = append(names, k.name)
	}
	return names
}

func kernelByName(name string) (gemmKernel, error) {
	if name == "" {
		return activeKernel(), nil
	}
	for _, k := range availableKernels() {
		if k.name == name {
			return k, nil
		}
	}
	return gemmKernel{}, fmt.Errorf("no GEMM kernel %q on this CPU (have %s)", name, strings.Join(GemmKernels(), ", "))
}

// BenchGemm times Gemm on random matrices with p's threads and reports the
// median of cfg.Runs runs against peak, measured on the same pool.
func BenchGemm(p *Pool, cfg GemmBenchConfig, peak Peak) (GemmBenchResult, error) {
	if cfg.M <= 0 || cfg.N <= 0 || cfg.K <= 0 {
		return GemmBenchResult{}, fmt.Errorf("gemm bench: sizes must be positive, got m=%d n=%d k=%d", cfg.M, cfg.N, cfg.K)
	}
	if cfg.Runs <= 0 {
		return GemmBenchResult{}, fmt.Errorf("gemm bench: runs must be positive, got %d", cfg.Runs)
	}
	kern, err := kernelByName(cfg.Kernel)
	if err != nil {
		return GemmBenchResult{}, fmt.Errorf("gemm bench: %w", err)
	}
	m, n, k := cfg.M, cfg.N, cfg.K
	rng := rand.New(rand.NewPCG(uint64(m), uint64(n*k)))
	rnd := func(size int) []float32 {
		s := make([]float32, size)
		for i := range s {
			s[i] = rng.Float32()*2 - 1
		}
		return s
	}
	a, b, c := rnd(m*k), rnd(k*n), make([]float32, m*n)
	lda, ldb := k, n
	if cfg.TransA {
		lda = m
	}
	if cfg.TransB {
		ldb = k
	}
	run := func() {
		gemm(kern, gemmSmall, p, cfg.TransA, cfg.TransB, m, n, k, 1, a, lda, b, ldb, 0, c, n)
	}
	runtime.GC() // collect garbage now, not while timing (CPU time counts the collector)
	run()        // warm up: page in, fill the buffer pool
	walls := make([]float64, cfg.Runs)
	cpus := make([]float64, cfg.Runs)
	for i := range cfg.Runs {
		c0, _ := processCPUTime()
		t0 := time.Now()
		run()
		walls[i] = time.Since(t0).Seconds()
		c1, _ := processCPUTime()
		cpus[i] = (c1 - c0).Seconds()
	}
	flops := 2 * float64(m) * float64(n) * float64(k)
	r := GemmBenchResult{
		M: m, N: n, K: k,
		Trans:         transName(cfg.TransA, cfg.TransB),
		Threads:       p.Threads(),
		Kernel:        kern.name,
		Runs:          cfg.Runs,
		WallSeconds:   median(walls),
		CPUSeconds:    median(cpus),
		PeakGFLOPS:    peak.GFLOPS,
		PeakCPUGFLOPS: peak.CPUGFLOPS,
	}
	r.GFLOPS = flops / r.WallSeconds / 1e9
	if r.CPUSeconds > 0 {
		r.CPUGFLOPS = flops * float64(r.Threads) / r.CPUSeconds / 1e9
	}
	if peak.GFLOPS > 0 {
		r.FractionOfPeak = r.GFLOPS / peak.GFLOPS
	}
	if peak.CPUGFLOPS > 0 {
		r.CPUFractionOfPeak = r.CPUGFLOPS / peak.CPUGFLOPS
	}
	return r, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
