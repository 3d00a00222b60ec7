package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// gemmCase is one GEMM problem. Strides of zero mean "tight".
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	lda, ldb, ldc  int
}

func (tc gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d_a%g_b%g_ld%d,%d,%d", t(tc.transA), t(tc.transB), tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.lda, tc.ldb, tc.ldc)
}

// gemmOperands builds random operands for tc, with C full of NaN when beta is zero
// (Gemm must not read it) and random otherwise.
func gemmOperands(tc *gemmCase, rng *rand.Rand) (a, b, c []float32) {
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	tc.lda = max(tc.lda, ac, 1)
	tc.ldb = max(tc.ldb, bc, 1)
	tc.ldc = max(tc.ldc, tc.n, 1)
	fill := func(rows, ld int, nan bool) []float32 {
		s := make([]float32, rows*ld)
		for i := range s {
			if nan {
				s[i] = float32(math.NaN())
			} else {
				s[i] = rng.Float32()*2 - 1
			}
		}
		return s
	}
	return fill(ar, tc.lda, false), fill(br, tc.ldb, false), fill(tc.m, tc.ldc, tc.beta == 0)
}

// gemmRef computes the float64 reference of tc: want = alpha·op(A)·op(B) + beta·C0
// and bound, the tolerance of each element (a multiple of eps times the sum of
// the absolute values of its terms).
func gemmRef(tc gemmCase, a, b, c0 []float32) (want, bound []float64) {
	eps := float64(math.Nextafter32(1, 2) - 1)
	tol := (4*math.Sqrt(float64(tc.k)) + 8) * eps
	want = make([]float64, tc.m*tc.n)
	bound = make([]float64, tc.m*tc.n)
	for i := range tc.m {
		for j := range tc.n {
			var s, abs float64
			for l := range tc.k {
				var av, bv float64
				if tc.transA {
					av = float64(a[l*tc.lda+i])
				} else {
					av = float64(a[i*tc.lda+l])
				}
				if tc.transB {
					bv = float64(b[j*tc.ldb+l])
				} else {
					bv = float64(b[l*tc.ldb+j])
				}
				s += av * bv
				abs += math.Abs(av * bv)
			}
			w := float64(tc.alpha) * s
			abs *= math.Abs(float64(tc.alpha))
			if tc.beta != 0 {
				w += float64(tc.beta) * float64(c0[i*tc.ldc+j])
				abs += math.Abs(float64(tc.beta) * float64(c0[i*tc.ldc+j]))
			}
			want[i*tc.n+j] = w
			bound[i*tc.n+j] = tol*abs + 1e-30
		}
	}
	return want, bound
}

// checkGemm compares c (the result) with the reference, and checks that the
// padding between rows of C is untouched.
func checkGemm(t *testing.T, tc gemmCase, want, bound []float64, c0, c []float32) {
	t.Helper()
	bad := 0
	for i := range tc.m {
		for j := range tc.n {
			got, w := float64(c[i*tc.ldc+j]), want[i*tc.n+j]
			if !(math.Abs(got-w) <= bound[i*tc.n+j]) {
				if bad < 5 {
					t.Errorf("%v: C[%d][%d] = %g, want %g (tolerance %g)", tc, i, j, got, w, bound[i*tc.n+j])
				}
				bad++
			}
		}
		for j := tc.n; j < tc.ldc && i < tc.m-1; j++ {
			if got, was := c[i*tc.ldc+j], c0[i*tc.ldc+j]; math.Float32bits(got) != math.Float32bits(was) {
				t.Fatalf("%v: padding C[%d][%d] changed from %g to %g", tc, i, j, was, got)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%v: %d wrong elements", tc, bad)
	}
}

// runGemmCase runs tc with kernel kern (packing forced when small is 0) and checks it.
func runGemmCase(t *testing.T, p *Pool, kern gemmKernel, small int, tc gemmCase, rng *rand.Rand) {
	t.Helper()
	a, b, c0 := gemmOperands(&tc, rng)
	c := append([]float32(nil), c0...)
	gemm(kern, small, p, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, tc.lda, b, tc.ldb, tc.beta, c, tc.ldc)
	want, bound := gemmRef(tc, a, b, c0)
	checkGemm(t, tc, want, bound, c0, c)
}

// testKernels lists the kernels this machine can run.
func testKernels() []gemmKernel {
	return availableKernels()
}

var transposes = []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}}

func TestGemmSmallSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := NewPool(2)
	ks := []int{1, 2, 3, 5, 8, 17, 37}
	for ki, kern := range testKernels() {
		// Packing forced, Gemm's own choice, and (once) the unpacked loop everywhere.
		smalls := []int{0, gemmSmall}
		if ki == 0 {
			smalls = append(smalls, math.MaxInt)
		}
		for _, small := range smalls {
			t.Run(fmt.Sprintf("%s/small%d", kern.name, small), func(t *testing.T) {
				for _, tr := range transposes {
					for m := 1; m <= 37; m++ {
						for n := 1; n <= 37; n++ {
							k := ks[(m+n)%len(ks)]
							runGemmCase(t, p, kern, small, gemmCase{transA: tr.a, transB: tr.b, m: m, n: n, k: k, alpha: 1, beta: 0}, rng)
						}
					}
					for k := 1; k <= 37; k++ {
						runGemmCase(t, p, kern, small, gemmCase{transA: tr.a, transB: tr.b, m: 13, n: 19, k: k, alpha: 1, beta: 0}, rng)
					}
				}
			})
		}
	}
}

func TestGemmAlphaBetaStrides(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := NewPool(2)
	for _, kern := range testKernels() {
		for _, tr := range transposes {
			for _, ab := range []struct{ alpha, beta float32 }{{1, 0}, {1, 1}, {-0.5, 0}, {2, -1.5}, {0.25, 1}} {
				for _, ld := range []int{0, 41} {
					tc := gemmCase{transA: tr.a, transB: tr.b, m: 31, n: 35, k: 29, alpha: ab.alpha, beta: ab.beta, lda: ld, ldb: ld + 3, ldc: ld + 1}
					t.Run(kern.name+"/"+tc.String(), func(t *testing.T) {
						runGemmCase(t, p, kern, 0, tc, rng)
					})
				}
			}
		}
	}
}

func TestGemmLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Each case runs every kernel on 1, 2 and 3 threads against one reference.
	sizes := []struct{ m, n, k int }{
		{300, 200, 600}, // several MC and KC blocks, edge tiles in m and k
		{7, 3100, 260},  // more than one NC panel
		{150, 97, 1},    // k == 1
		{1, 513, 300},   // a row vector
		{513, 1, 300},   // a column vector
		{96, 64, 257},   // exact tiles, k just past one block
		{145, 33, 511},  // m just past MC
		{100, 70, 3000}, // long k
		{3, 700, 333},   // few rows: dot products or row updates
		{2, 40, 6500},   // few rows, op(A) rows too long to gather when transposed
	}
	pools := []*Pool{NewPool(1), NewPool(2), NewPool(3)}
	for _, sz := range sizes {
		for _, tr := range transposes {
			tc := gemmCase{transA: tr.a, transB: tr.b, m: sz.m, n: sz.n, k: sz.k, alpha: 0.5, beta: 0}
			if sz.m%2 == 0 {
				tc.beta = 0.75
			}
			t.Run(tc.String(), func(t *testing.T) {
				a, b, c0 := gemmOperands(&tc, rng)
				want, bound := gemmRef(tc, a, b, c0)
				for _, kern := range testKernels() {
					for _, p := range pools {
						c := append([]float32(nil), c0...)
						gemm(kern, gemmSmall, p, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, tc.lda, b, tc.ldb, tc.beta, c, tc.ldc)
						checkGemm(t, tc, want, bound, c0, c)
					}
				}
			})
		}
	}
}

// TestGemmGPT2Sampled runs the GPT-2 training shapes in every variant and
// checks a random sample of C against float64 dot products.
func TestGemmGPT2Sampled(t *testing.T) {
	if testing.Short() {
		t.Skip("large GEMMs")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	p := NewPool(2)
	eps := float64(math.Nextafter32(1, 2) - 1)
	for _, sz := range gpt2Shapes {
		// One set of operands per shape; each variant reads them with its own strides.
		a, b, c := gemmOperands(&gemmCase{m: sz.m, n: sz.n, k: sz.k}, rng)
		for _, tr := range transposes {
			tc := gemmCase{transA: tr.a, transB: tr.b, m: sz.m, n: sz.n, k: sz.k, alpha: 1, beta: 0}
			tc.lda, tc.ldb, tc.ldc = sz.k, sz.n, sz.n
			if tc.transA {
				tc.lda = sz.m
			}
			if tc.transB {
				tc.ldb = sz.k
			}
			t.Run(tc.String(), func(t *testing.T) {
				Gemm(p, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, tc.lda, b, tc.ldb, tc.beta, c, tc.ldc)
				for range 200 {
					i, j := rng.IntN(tc.m), rng.IntN(tc.n)
					if rng.IntN(4) == 0 { // the last rows and columns hold the edge tiles
						i, j = tc.m-1-rng.IntN(12), tc.n-1-rng.IntN(32)
					}
					var s, abs float64
					for l := range tc.k {
						var av, bv float64
						if tc.transA {
							av = float64(a[l*tc.lda+i])
						} else {
							av = float64(a[i*tc.lda+l])
						}
						if tc.transB {
							bv = float64(b[j*tc.ldb+l])
						} else {
							bv = float64(b[l*tc.ldb+j])
						}
						s += av * bv
						abs += math.Abs(av * bv)
					}
					if got := float64(c[i*tc.ldc+j]); !(math.Abs(got-s) <= (4*math.Sqrt(float64(tc.k))+8)*eps*abs) {
						t.Fatalf("C[%d][%d] = %g, want %g", i, j, got, s)
					}
				}
			})
		}
	}
}

// TestGemmAllocs checks that a GEMM allocates nothing once its buffers exist
// (a training step must not allocate).
func TestGemmAllocs(t *testing.T) {
	p := NewPool(1)
	m, n, k := 100, 70, 300
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	Gemm(p, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	if got := testing.AllocsPerRun(20, func() { Gemm(p, false, true, m, n, k, 1, a, k, b, k, 0, c, n) }); got != 0 {
		t.Fatalf("Gemm allocates %v times per call, want 0", got)
	}
}

func TestGemmDegenerate(t *testing.T) {
	p := NewPool(2)
	nan := float32(math.NaN())
	// k == 0 and alpha == 0 scale C by beta, and beta == 0 clears it without reading.
	c := []float32{nan, nan, nan, nan}
	Gemm(p, false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
	for i, v := range c {
		if v != 0 {
			t.Fatalf("k=0 beta=0: c[%d] = %g, want 0", i, v)
		}
	}
	c = []float32{1, 2, 3, 4}
	Gemm(p, false, false, 2, 2, 1, 0, []float32{nan, nan}, 1, []float32{nan, nan}, 2, 2, c, 2)
	for i, v := range c {
		if v != float32(2*(i+1)) {
			t.Fatalf("alpha=0 beta=2: c[%d] = %g, want %d", i, v, 2*(i+1))
		}
	}
	// m == 0 or n == 0 touches nothing.
	Gemm(p, true, true, 0, 0, 5, 1, nil, 1, nil, 5, 0, nil, 1)
}

func TestGemmBadArguments(t *testing.T) {
	p := NewPool(1)
	cases := []struct {
		name string
		fn   func()
		want string
	}{
		{"negative", func() { Gemm(p, false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) }, "negative size"},
		{"short A", func() {
			Gemm(p, false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}, "A is 2×2"},
		{"stride B", func() {
			Gemm(p, false, true, 2, 3, 2, 1, make([]float32, 4), 2, make([]float32, 6), 1, 0, make([]float32, 6), 3)
		}, "B has 2 columns but row stride 1"},
		{"short C", func() {
			Gemm(p, false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}, "C is 2×2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tc.want) {
					t.Fatalf("panic %v, want one containing %q", r, tc.want)
				}
			}()
			tc.fn()
		})
	}
}

// TestGemmDeterministic checks that results do not depend on the thread count.
func TestGemmDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	tc := gemmCase{m: 123, n: 301, k: 515, alpha: 1, beta: 0}
	a, b, _ := gemmOperands(&tc, rng)
	var first []float32
	for _, threads := range []int{1, 2, 3} {
		c := make([]float32, tc.m*tc.ldc)
		Gemm(NewPool(threads), false, false, tc.m, tc.n, tc.k, 1, a, tc.lda, b, tc.ldb, 0, c, tc.ldc)
		if first == nil {
			first = c
			continue
		}
		for i := range c {
			if math.Float32bits(c[i]) != math.Float32bits(first[i]) {
				t.Fatalf("threads=%d: c[%d] = %g, with 1 thread %g", threads, i, c[i], first[i])
			}
		}
	}
}

// gpt2Shapes are the GEMMs of a GPT-2 124M training step at 4096 tokens
// (m×n×k: tokens × out × in).
var gpt2Shapes = []struct{ m, n, k int }{
	{4096, 768, 768},
	{4096, 768, 3072},
	{4096, 3072, 768},
}

func BenchmarkGemmGPT2(b *testing.B) {
	for _, sz := range gpt2Shapes {
		for _, tr := range transposes {
			benchGemm(b, sz.m, sz.n, sz.k, tr.a, tr.b)
		}
	}
}

// BenchmarkGemmGPT2WeightGrad runs the weight-gradient GEMMs of the same step,
// dW = dYᵀ·X (out × in × tokens, A transposed).
func BenchmarkGemmGPT2WeightGrad(b *testing.B) {
	for _, sz := range []struct{ m, n, k int }{{768, 768, 4096}, {3072, 768, 4096}, {768, 3072, 4096}} {
		benchGemm(b, sz.m, sz.n, sz.k, true, false)
	}
}

func benchGemm(b *testing.B, m, n, k int, transA, transB bool) {
	p := Default()
	b.Run(fmt.Sprintf("%dx%dx%d/%s", m, n, k, transName(transA, transB)), func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		tc := gemmCase{transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, beta: 0}
		a, bm, c := gemmOperands(&tc, rng)
		runtime.GC() // collect the last case's operands now, not while timing (CPU time counts GC)
		c0, _ := processCPUTime()
		for b.Loop() {
			Gemm(p, transA, transB, m, n, k, 1, a, tc.lda, bm, tc.ldb, 0, c, tc.ldc)
		}
		c1, _ := processCPUTime()
		flops := 2 * float64(m*n*k) * float64(b.N)
		b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		if c1 > c0 {
			// Throughput over the CPU time the threads had: robust to other
			// processes taking turns on a shared machine.
			b.ReportMetric(flops*float64(p.Threads())/(c1-c0).Seconds()/1e9, "cpuGFLOP/s")
		}
	})
}

func BenchmarkGemmSmall(b *testing.B) {
	p := Default()
	for _, s := range []int{8, 16, 32, 64, 128} {
		b.Run(fmt.Sprint(s), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			tc := gemmCase{m: s, n: s, k: s, alpha: 1}
			a, bm, c := gemmOperands(&tc, rng)
			for b.Loop() {
				Gemm(p, false, false, s, s, s, 1, a, tc.lda, bm, tc.ldb, 0, c, tc.ldc)
			}
			b.ReportMetric(2*float64(s*s*s)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
