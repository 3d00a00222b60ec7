package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// This file checks every fused kernel (everything but GEMM) against an
// independent float64 reference written with straightforward loops: forward
// outputs directly, backward kernels against central finite differences of
// the reference. For a random upstream gradient g the scalar checked is
// L(x) = Σ g·f(x), so the expected gradient is ∂L/∂x, estimated in float64
// with h = 1e-6 (truncation and rounding error both far below the
// tolerances used). Every kernel runs on pools of 1 and 3 workers, at sizes
// large enough to split across the 3, and must give bit-identical results
// when run twice on the same pool.

// Tolerances, relative to |want| + rms(want) elementwise (see expectClose).
// Forward kernels accumulate in float32 in places (dot products, the
// softmax normalisation), so ~1e-6 is typical; backward kernels work in
// float32 on values of order one, ~1e-6..1e-5 typical. Each check also
// proves that it would catch a result scaled by 1.01.
const (
	fwdTol = 1e-5
	bwdTol = 2e-5
	fdStep = 1e-6
)

var kernelPools = sync.OnceValue(func() []*Pool { return []*Pool{NewPool(1), NewPool(3)} })

// forPools runs fn once per test pool as a subtest.
func forPools(t *testing.T, fn func(t *testing.T, p *Pool)) {
	for _, p := range kernelPools() {
		t.Run(fmt.Sprintf("threads=%d", p.Threads()), func(t *testing.T) { fn(t, p) })
	}
}

func kRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d6169)) }

// randVec returns n values uniform in [-s, s).
func randVec(r *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((r.Float64()*2 - 1) * s)
	}
	return x
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// delta64 returns after-before in float64 (exact for float32 inputs): the
// part a backward kernel accumulated into a pre-filled gradient.
func delta64(after, before []float32) []float64 {
	y := make([]float64, len(after))
	for i := range after {
		y[i] = float64(after[i]) - float64(before[i])
	}
	return y
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// numGrad estimates ∂loss/∂x by central differences, perturbing x in place.
// NaN entries (padding that must never be read) get gradient 0.
func numGrad(x []float64, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i, xi := range x {
		if math.IsNaN(xi) {
			continue
		}
		x[i] = xi + fdStep
		lp := loss()
		x[i] = xi - fdStep
		lm := loss()
		x[i] = xi
		g[i] = (lp - lm) / (2 * fdStep)
	}
	return g
}

// closeErr returns the largest |got-want| / (|want| + rms(want)) and its index.
func closeErr(got, want []float64) (float64, int) {
	var ss float64
	for _, w := range want {
		ss += w * w
	}
	rms := math.Sqrt(ss / float64(max(1, len(want))))
	worst, at := 0.0, -1
	for i := range want {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(got[i]) != math.IsNaN(want[i]) || math.IsInf(got[i], 0) {
			return math.Inf(1), i
		}
		if rms == 0 && d == 0 {
			continue
		}
		if e := d / (math.Abs(want[i]) + rms); e > worst || at < 0 {
			worst, at = e, i
		}
	}
	return worst, at
}

// expectClose fails t unless got matches want within tol, and also unless
// got scaled by 1.01 would have failed (so the check can catch a 1% error).
func expectClose(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", name, len(got), len(want))
	}
	e, i := closeErr(got, want)
	if e > tol {
		t.Errorf("%s: error %.3g > tol %g at [%d]: got %.9g want %.9g", name, e, tol, i, got[i], want[i])
		return
	}
	if testing.Verbose() {
		t.Logf("%s: max rel error %.3g (tol %g)", name, e, tol)
	}
	scaled := slices.Clone(got)
	nonzero := false
	for j := range scaled {
		scaled[j] *= 1.01
		nonzero = nonzero || want[j] != 0
	}
	if es, _ := closeErr(scaled, want); nonzero && es <= tol {
		t.Errorf("%s: tolerance %g too loose to catch a 1%% error (scaled error %.3g)", name, tol, es)
	}
}

// expectBits fails t unless two runs gave bit-identical slices.
func expectBits(t *testing.T, a, b [][]float32) {
	t.Helper()
	for k := range a {
		for i := range a[k] {
			if math.Float32bits(a[k][i]) != math.Float32bits(b[k][i]) {
				t.Errorf("output %d not bit-identical across runs at [%d]: %v vs %v", k, i, a[k][i], b[k][i])
				return
			}
		}
	}
}

// ---- references ----

func refRMSNorm(x, w []float64, n, d int, eps float64) []float64 {
	y := make([]float64, n*d)
	for i := 0; i < n; i++ {
		var ss float64
		for j := 0; j < d; j++ {
			ss += x[i*d+j] * x[i*d+j]
		}
		r := 1 / math.Sqrt(ss/float64(d)+eps)
		for j := 0; j < d; j++ {
			y[i*d+j] = x[i*d+j] * r * w[j]
		}
	}
	return y
}

func refLayerNorm(x, w, b []float64, n, d int, eps float64) (y, mean, rstd []float64) {
	y, mean, rstd = make([]float64, n*d), make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < d; j++ {
			s += x[i*d+j]
		}
		m := s / float64(d)
		var v float64
		for j := 0; j < d; j++ {
			v += (x[i*d+j] - m) * (x[i*d+j] - m)
		}
		r := 1 / math.Sqrt(v/float64(d)+eps)
		mean[i], rstd[i] = m, r
		for j := 0; j < d; j++ {
			y[i*d+j] = (x[i*d+j]-m)*r*w[j] + b[j]
		}
	}
	return y, mean, rstd
}

func refSilu(x float64) float64 { return x / (1 + math.Exp(-x)) }

func refGELUExact(x float64) float64 { return x * 0.5 * math.Erfc(-x/math.Sqrt2) }

func refGELUTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

func refSoftmax(x []float64, n, d int) []float64 {
	y := make([]float64, n*d)
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < d; j++ {
			s += math.Exp(x[i*d+j])
		}
		for j := 0; j < d; j++ {
			y[i*d+j] = math.Exp(x[i*d+j]) / s
		}
	}
	return y
}

// refLogSumExp of one row, shifted by the max for large logits.
func refLogSumExp(row []float64) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, v)
	}
	var s float64
	for _, v := range row {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// refAttention is naive masked softmax attention with a full score matrix.
// It returns out [B,Tq,H,D] and the log-sum-exp of each score row [B,H,Tq].
func refAttention(a Attn, q, k, v []float64) (out, lse []float64) {
	out = make([]float64, a.B*a.Tq*a.H*a.D)
	lse = make([]float64, a.B*a.H*a.Tq)
	scores := make([]float64, a.Tk)
	for b := 0; b < a.B; b++ {
		for h := 0; h < a.H; h++ {
			kh := h * a.KV / a.H // head h reads KV head h / (H/KV)
			for t := 0; t < a.Tq; t++ {
				pos := a.Offset + t
				qo := ((b*a.Tq+t)*a.H + h) * a.D
				var z float64
				m := math.Inf(-1)
				for s := 0; s < a.Tk; s++ {
					scores[s] = math.Inf(-1)
					if s > pos || (a.Window > 0 && pos-s >= a.Window) {
						continue
					}
					ko := b*a.KStride + (s*a.KV+kh)*a.D
					var x float64
					for d := 0; d < a.D; d++ {
						x += q[qo+d] * k[ko+d]
					}
					scores[s] = x * float64(a.Scale)
					m = math.Max(m, scores[s])
				}
				for s := 0; s < a.Tk; s++ {
					scores[s] = math.Exp(scores[s] - m)
					z += scores[s]
				}
				for s := 0; s < a.Tk; s++ {
					if scores[s] == 0 {
						continue
					}
					vo := b*a.KStride + (s*a.KV+kh)*a.D
					for d := 0; d < a.D; d++ {
						out[qo+d] += scores[s] / z * v[vo+d]
					}
				}
				lse[(b*a.H+h)*a.Tq+t] = m + math.Log(z)
			}
		}
	}
	return out, lse
}

// ropeTables returns Cos and Sin tables [maxPos, rot/2] for base theta.
func ropeTables(maxPos, rot int, theta float64) (cos, sin []float32) {
	half := rot / 2
	cos, sin = make([]float32, maxPos*half), make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			ang := float64(p) * math.Pow(theta, -float64(2*i)/float64(rot))
			cos[p*half+i], sin[p*half+i] = float32(math.Cos(ang)), float32(math.Sin(ang))
		}
	}
	return cos, sin
}

// refRoPE is Hugging Face's apply_rotary_pos_emb on the first rot
// dimensions of each head: x*cat(cos,cos) + rotate_half(x)*cat(sin,sin),
// with rotate_half(x) = cat(-x2, x1); the rest passes through.
func refRoPE(x []float64, pos []int32, heads, d, rot int, cos, sin []float32) []float64 {
	half := rot / 2
	y := slices.Clone(x)
	rh := make([]float64, rot)
	for n, p := range pos {
		for h := 0; h < heads; h++ {
			xi := x[(n*heads+h)*d:][:d]
			for i := 0; i < half; i++ {
				rh[i], rh[i+half] = -xi[i+half], xi[i]
			}
			for i := 0; i < rot; i++ {
				c := float64(cos[int(p)*half+i%half])
				s := float64(sin[int(p)*half+i%half])
				y[(n*heads+h)*d+i] = xi[i]*c + rh[i]*s
			}
		}
	}
	return y
}

// ---- tests ----

func TestRMSNormKernel(t *testing.T) {
	const n, d, eps = 37, 23, 1e-5
	for _, withDW := range []bool{true, false} {
		t.Run(fmt.Sprintf("dw=%v", withDW), func(t *testing.T) {
			forPools(t, func(t *testing.T, p *Pool) {
				r := kRand(1)
				x, w := randVec(r, n*d, 2), randVec(r, d, 1.5)
				g := randVec(r, n*d, 1)
				dx0, dw0 := randVec(r, n*d, 0.1), randVec(r, d, 0.1)
				run := func() [][]float32 {
					y, rstd, y2 := make([]float32, n*d), make([]float32, n), make([]float32, n*d)
					RMSNormForward(p, y, rstd, x, w, n, d, eps)
					RMSNormForward(p, y2, nil, x, w, n, d, eps) // rstd is optional
					dx := slices.Clone(dx0)
					var dw []float32
					if withDW {
						dw = slices.Clone(dw0)
					}
					RMSNormBackward(p, dx, dw, g, x, w, rstd, n, d)
					return [][]float32{y, rstd, y2, dx, dw}
				}
				got := run()
				x64, w64, g64 := to64(x), to64(w), to64(g)
				want := refRMSNorm(x64, w64, n, d, eps)
				expectClose(t, "y", to64(got[0]), want, fwdTol)
				expectClose(t, "y(rstd nil)", to64(got[2]), want, fwdTol)
				wantR := make([]float64, n)
				for i := range wantR {
					var ss float64
					for j := 0; j < d; j++ {
						ss += x64[i*d+j] * x64[i*d+j]
					}
					wantR[i] = 1 / math.Sqrt(ss/d+eps)
				}
				expectClose(t, "rstd", to64(got[1]), wantR, fwdTol)
				loss := func() float64 { return dot64(g64, refRMSNorm(x64, w64, n, d, eps)) }
				expectClose(t, "dx", delta64(got[3], dx0), numGrad(x64, loss), bwdTol)
				if withDW {
					expectClose(t, "dw", delta64(got[4], dw0), numGrad(w64, loss), bwdTol)
				}
				expectBits(t, got, run())
			})
		})
	}
}

func TestLayerNormKernel(t *testing.T) {
	const n, d, eps = 37, 21, 1e-5
	for _, tc := range []struct{ bias, dw bool }{{true, true}, {false, true}, {true, false}} {
		t.Run(fmt.Sprintf("bias=%v,dw=%v", tc.bias, tc.dw), func(t *testing.T) {
			forPools(t, func(t *testing.T, p *Pool) {
				r := kRand(2)
				x, w, b := randVec(r, n*d, 2), randVec(r, d, 1.5), randVec(r, d, 1)
				for i := range x { // a row offset so the mean matters
					x[i] += float32(i / d % 5)
				}
				g := randVec(r, n*d, 1)
				dx0, dw0, db0 := randVec(r, n*d, 0.1), randVec(r, d, 0.1), randVec(r, d, 0.1)
				var bk []float32
				if tc.bias {
					bk = b
				}
				run := func() [][]float32 {
					y, mean, rstd := make([]float32, n*d), make([]float32, n), make([]float32, n)
					LayerNormForward(p, y, mean, rstd, x, w, bk, n, d, eps)
					dx := slices.Clone(dx0)
					var dw, db []float32
					if tc.dw {
						dw = slices.Clone(dw0)
					}
					if tc.bias {
						db = slices.Clone(db0)
					}
					LayerNormBackward(p, dx, dw, db, g, x, w, mean, rstd, n, d)
					return [][]float32{y, mean, rstd, dx, dw, db}
				}
				got := run()
				x64, w64, g64 := to64(x), to64(w), to64(g)
				b64 := make([]float64, d)
				if tc.bias {
					b64 = to64(b)
				}
				wantY, wantM, wantR := refLayerNorm(x64, w64, b64, n, d, eps)
				expectClose(t, "y", to64(got[0]), wantY, fwdTol)
				expectClose(t, "mean", to64(got[1]), wantM, fwdTol)
				expectClose(t, "rstd", to64(got[2]), wantR, fwdTol)
				loss := func() float64 {
					y, _, _ := refLayerNorm(x64, w64, b64, n, d, eps)
					return dot64(g64, y)
				}
				expectClose(t, "dx", delta64(got[3], dx0), numGrad(x64, loss), bwdTol)
				if tc.dw {
					expectClose(t, "dw", delta64(got[4], dw0), numGrad(w64, loss), bwdTol)
				}
				if tc.bias {
					expectClose(t, "db", delta64(got[5], db0), numGrad(b64, loss), bwdTol)
				}
				expectBits(t, got, run())
			})
		})
	}
}

// elementwise derivative by central difference of a scalar reference.
func scalarDeriv(f func(float64) float64, x float64) float64 {
	return (f(x+fdStep) - f(x-fdStep)) / (2 * fdStep)
}

func TestActivationKernels(t *testing.T) {
	const n = 3*4096 + 17 // splits across 3 workers (grain 4096)
	type unary struct {
		name string
		ref  func(float64) float64
		fwd  func(p *Pool, y, x []float32)
		bwd  func(p *Pool, dx, g, x []float32)
	}
	gelu := func(approx bool) (func(p *Pool, y, x []float32), func(p *Pool, dx, g, x []float32)) {
		return func(p *Pool, y, x []float32) { GELUForward(p, y, x, approx) },
			func(p *Pool, dx, g, x []float32) { GELUBackward(p, dx, g, x, approx) }
	}
	ef, eb := gelu(false)
	tf, tb := gelu(true)
	for _, tc := range []unary{
		{"gelu-exact", refGELUExact, ef, eb},
		{"gelu-tanh", refGELUTanh, tf, tb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forPools(t, func(t *testing.T, p *Pool) {
				r := kRand(3)
				x, g, dx0 := randVec(r, n, 6), randVec(r, n, 1), randVec(r, n, 0.1)
				run := func() [][]float32 {
					y, dx := make([]float32, n), slices.Clone(dx0)
					tc.fwd(p, y, x)
					tc.bwd(p, dx, g, x)
					return [][]float32{y, dx}
				}
				got := run()
				wantY, wantDX := make([]float64, n), make([]float64, n)
				for i, v := range to64(x) {
					wantY[i] = tc.ref(v)
					wantDX[i] = float64(g[i]) * scalarDeriv(tc.ref, v)
				}
				expectClose(t, "y", to64(got[0]), wantY, fwdTol)
				expectClose(t, "dx", delta64(got[1], dx0), wantDX, bwdTol)
				expectBits(t, got, run())
			})
		})
	}
	t.Run("swiglu", func(t *testing.T) {
		forPools(t, func(t *testing.T, p *Pool) {
			r := kRand(4)
			gt, u, g := randVec(r, n, 8), randVec(r, n, 2), randVec(r, n, 1)
			dg0, du0 := randVec(r, n, 0.1), randVec(r, n, 0.1)
			run := func() [][]float32 {
				y, dg, du := make([]float32, n), slices.Clone(dg0), slices.Clone(du0)
				SwiGLUForward(p, y, gt, u)
				SwiGLUBackward(p, dg, du, g, gt, u)
				return [][]float32{y, dg, du}
			}
			got := run()
			wantY, wantDG, wantDU := make([]float64, n), make([]float64, n), make([]float64, n)
			for i := range wantY {
				a, b := float64(gt[i]), float64(u[i])
				wantY[i] = refSilu(a) * b
				wantDG[i] = float64(g[i]) * b * scalarDeriv(refSilu, a)
				wantDU[i] = float64(g[i]) * refSilu(a)
			}
			expectClose(t, "y", to64(got[0]), wantY, fwdTol)
			expectClose(t, "dg", delta64(got[1], dg0), wantDG, bwdTol)
			expectClose(t, "du", delta64(got[2], du0), wantDU, bwdTol)
			expectBits(t, got, run())
		})
	})
}

func TestSoftmaxKernel(t *testing.T) {
	const n, d = 131, 13 // grain 64 rows: 3 workers get work
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(5)
		x, g, dx0 := randVec(r, n*d, 4), randVec(r, n*d, 1), randVec(r, n*d, 0.1)
		for j := 0; j < d; j++ { // a row of large logits: must not overflow
			x[j] += 90
		}
		run := func() [][]float32 {
			y, dx := make([]float32, n*d), slices.Clone(dx0)
			SoftmaxForward(p, y, x, n, d)
			SoftmaxBackward(p, dx, g, y, n, d)
			return [][]float32{y, dx}
		}
		got := run()
		x64, g64 := to64(x), to64(g)
		shifted := func() []float64 { // exp(90) is fine in float64
			return refSoftmax(x64, n, d)
		}
		expectClose(t, "y", to64(got[0]), shifted(), fwdTol)
		loss := func() float64 { return dot64(g64, shifted()) }
		expectClose(t, "dx", delta64(got[1], dx0), numGrad(x64, loss), bwdTol)
		expectBits(t, got, run())
	})
}

func TestCrossEntropyKernel(t *testing.T) {
	const n, v, scale = 37, 29, 0.37
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(6)
		logits := randVec(r, n*v, 3)
		for j := 0; j < v; j++ { // large logits must not overflow
			logits[2*v+j] += 80
		}
		targets := make([]int32, n)
		want := 0
		for i := range targets {
			targets[i] = int32(r.IntN(v))
			if i%5 == 1 {
				targets[i] = -1 // ignored
				if i%10 == 6 {
					targets[i] = -100 // any negative target is ignored
				}
			} else {
				want++
			}
		}
		dl0 := randVec(r, n*v, 0.1)
		run := func() ([][]float32, int) {
			losses, lse := make([]float32, n), make([]float32, n)
			for i := range losses {
				losses[i] = float32(math.NaN()) // must be overwritten, ignored rows with 0
			}
			c := CrossEntropyForward(p, losses, lse, logits, targets, n, v)
			dl := slices.Clone(dl0)
			CrossEntropyBackward(p, dl, logits, lse, targets, n, v, scale)
			return [][]float32{losses, lse, dl}, c
		}
		got, count := run()
		if count != want {
			t.Errorf("count = %d, want %d", count, want)
		}
		l64 := to64(logits)
		refLosses := func() ([]float64, []float64) {
			losses, lse := make([]float64, n), make([]float64, n)
			for i := 0; i < n; i++ {
				lse[i] = refLogSumExp(l64[i*v : i*v+v])
				if targets[i] >= 0 {
					losses[i] = lse[i] - l64[i*v+int(targets[i])]
				}
			}
			return losses, lse
		}
		wantL, wantLSE := refLosses()
		expectClose(t, "losses", to64(got[0]), wantL, fwdTol)
		expectClose(t, "lse", to64(got[1]), wantLSE, fwdTol)
		loss := func() float64 {
			l, _ := refLosses()
			var s float64
			for _, x := range l {
				s += scale * x
			}
			return s
		}
		dl := delta64(got[2], dl0)
		expectClose(t, "dlogits", dl, numGrad(l64, loss), bwdTol)
		for i := range targets {
			if targets[i] < 0 && slices.ContainsFunc(dl[i*v:i*v+v], func(x float64) bool { return x != 0 }) {
				t.Errorf("ignored row %d got a gradient", i)
			}
		}
		got2, _ := run()
		expectBits(t, got, got2)
	})
}

func TestAttentionKernels(t *testing.T) {
	cases := []struct {
		name string
		a    Attn
		cap  int // KV-cache capacity per batch entry (>= Tk); 0 means Tk
	}{
		{"mha", Attn{B: 2, Tq: 7, Tk: 7, H: 3, KV: 3, D: 5}, 0},
		{"gqa-kv2", Attn{B: 2, Tq: 9, Tk: 9, H: 4, KV: 2, D: 5}, 0},
		{"mqa-kv1", Attn{B: 2, Tq: 9, Tk: 9, H: 4, KV: 1, D: 7}, 0},
		{"window3", Attn{B: 2, Tq: 11, Tk: 11, H: 4, KV: 2, D: 5, Window: 3}, 0},
		{"window1", Attn{B: 1, Tq: 5, Tk: 5, H: 2, KV: 1, D: 4, Window: 1}, 0},
		{"window-wider-than-seq", Attn{B: 1, Tq: 6, Tk: 6, H: 2, KV: 2, D: 3, Window: 50}, 0},
		{"kvcache", Attn{B: 2, Tq: 3, Tk: 10, H: 4, KV: 2, D: 5, Offset: 7}, 13},
		{"decode", Attn{B: 3, Tq: 1, Tk: 9, H: 4, KV: 1, D: 6, Offset: 8}, 12},
		{"kvcache-window", Attn{B: 2, Tq: 4, Tk: 12, H: 4, KV: 2, D: 3, Offset: 8, Window: 5}, 15},
		{"long", Attn{B: 1, Tq: 21, Tk: 21, H: 2, KV: 1, D: 4}, 0},
		{"long-window", Attn{B: 1, Tq: 19, Tk: 19, H: 2, KV: 2, D: 3, Window: 6}, 0},
		{"long-kvcache", Attn{B: 1, Tq: 17, Tk: 23, H: 2, KV: 1, D: 3, Offset: 6}, 25},
	}
	// Each case runs with the kernels' own tiling and again with tiles of 4
	// queries by 8 keys (tiled even for one query), so that small problems
	// cross tile and key-block edges.
	bq, bk, tmin := attnBQ, attnBK, attnTileMin
	defer func() { attnBQ, attnBK, attnTileMin = bq, bk, tmin }()
	for _, tc := range cases {
		for _, small := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/smalltiles=%v", tc.name, small), func(t *testing.T) {
				attnBQ, attnBK, attnTileMin = bq, bk, tmin
				if small {
					attnBQ, attnBK, attnTileMin = 4, 8, 1
				}
				forPools(t, func(t *testing.T, p *Pool) {
					a := tc.a
					capT := max(tc.cap, a.Tk)
					a.KStride = capT * a.KV * a.D
					a.Scale = float32(1 / math.Sqrt(float64(a.D)))
					r := kRand(7)
					nq, nk := a.B*a.Tq*a.H*a.D, a.B*a.KStride
					q, g := randVec(r, nq, 2), randVec(r, nq, 1)
					k, v := randVec(r, nk, 2), randVec(r, nk, 1)
					for b := 0; b < a.B; b++ { // cache slots past Tk must never be read
						for i := a.Tk * a.KV * a.D; i < a.KStride; i++ {
							k[b*a.KStride+i] = float32(math.NaN())
							v[b*a.KStride+i] = float32(math.NaN())
						}
					}
					dq0, dk0, dv0 := randVec(r, nq, 0.1), randVec(r, nk, 0.1), randVec(r, nk, 0.1)
					run := func() [][]float32 {
						out, lse := make([]float32, nq), make([]float32, a.B*a.H*a.Tq)
						AttentionForward(p, &a, out, lse, q, k, v)
						dq, dk, dv := slices.Clone(dq0), slices.Clone(dk0), slices.Clone(dv0)
						AttentionBackward(p, &a, dq, dk, dv, g, out, lse, q, k, v)
						return [][]float32{out, lse, dq, dk, dv}
					}
					got := run()
					q64, k64, v64, g64 := to64(q), to64(k), to64(v), to64(g)
					wantO, wantL := refAttention(a, q64, k64, v64)
					expectClose(t, "out", to64(got[0]), wantO, fwdTol)
					expectClose(t, "lse", to64(got[1]), wantL, fwdTol)
					loss := func() float64 {
						o, _ := refAttention(a, q64, k64, v64)
						return dot64(g64, o)
					}
					expectClose(t, "dq", delta64(got[2], dq0), numGrad(q64, loss), bwdTol)
					expectClose(t, "dk", delta64(got[3], dk0), numGrad(k64, loss), bwdTol)
					expectClose(t, "dv", delta64(got[4], dv0), numGrad(v64, loss), bwdTol)
					expectBits(t, got, run())
				})
			})
		}
	}
}

func TestRoPEKernel(t *testing.T) {
	const n, maxPos = 37, 50
	for _, tc := range []struct{ heads, d, rot int }{{3, 10, 10}, {3, 10, 6}, {2, 8, 4}, {2, 32, 32}, {1, 40, 24}} {
		t.Run(fmt.Sprintf("h%d_d%d_rot%d", tc.heads, tc.d, tc.rot), func(t *testing.T) {
			forPools(t, func(t *testing.T, p *Pool) {
				r := kRand(8)
				cos, sin := ropeTables(maxPos, tc.rot, 10000)
				rp := &RoPE{Heads: tc.heads, D: tc.d, Rot: tc.rot, Cos: cos, Sin: sin}
				pos := make([]int32, n)
				for i := range pos {
					pos[i] = int32(r.IntN(maxPos))
				}
				w := n * tc.heads * tc.d
				x, g, dx0 := randVec(r, w, 2), randVec(r, w, 1), randVec(r, w, 0.1)
				run := func() [][]float32 {
					y, dx := make([]float32, w), slices.Clone(dx0)
					rp.Forward(p, y, x, pos)
					rp.Backward(p, dx, g, pos)
					return [][]float32{y, dx}
				}
				got := run()
				dxTo := slices.Clone(dx0) // overwritten, not accumulated
				rp.BackwardTo(p, dxTo, g, pos)
				for i := range dxTo {
					dxTo[i] += dx0[i]
				}
				expectClose(t, "dx (BackwardTo)", to64(dxTo), to64(got[1]), fwdTol)
				x64, g64 := to64(x), to64(g)
				expectClose(t, "y", to64(got[0]), refRoPE(x64, pos, tc.heads, tc.d, tc.rot, cos, sin), fwdTol)
				loss := func() float64 { return dot64(g64, refRoPE(x64, pos, tc.heads, tc.d, tc.rot, cos, sin)) }
				expectClose(t, "dx", delta64(got[1], dx0), numGrad(x64, loss), bwdTol)
				expectBits(t, got, run())
			})
		})
	}
}

// TestRoPETables checks the reference tables against the definition used
// by Hugging Face: position 0 is the identity and angle(p, i) = p·θ^(-2i/rot).
func TestRoPETables(t *testing.T) {
	cos, sin := ropeTables(4, 8, 10000)
	for i := 0; i < 4; i++ {
		if cos[i] != 1 || sin[i] != 0 {
			t.Fatalf("position 0, pair %d: cos %v sin %v", i, cos[i], sin[i])
		}
	}
	if got, want := float64(sin[3*4+1]), math.Sin(3*math.Pow(10000, -0.25)); math.Abs(got-want) > 1e-7 {
		t.Errorf("sin(3, 1) = %v, want %v", got, want)
	}
}

// TestCEChunkKernels folds logits chunk by chunk (7 columns of 29, the last
// chunk partial) and checks the log-sum-exp, the losses and the in-place
// logit gradient against float64 references and finite differences.
func TestCEChunkKernels(t *testing.T) {
	const n, v, cw, scale = 13, 29, 7, 0.37
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(9)
		logits := randVec(r, n*v, 3)
		for j := 0; j < v; j++ { // large logits must not overflow
			logits[3*v+j] += 80
		}
		logits[5*v+25] += 30 // a late chunk raises the running max
		targets := make([]int32, n)
		for i := range targets {
			targets[i] = int32(r.IntN(v))
			if i%4 == 2 {
				targets[i] = -1
			}
		}
		chunkOf := func(c0, w int) []float32 {
			c := make([]float32, n*w)
			for i := 0; i < n; i++ {
				copy(c[i*w:(i+1)*w], logits[i*v+c0:i*v+c0+w])
			}
			return c
		}
		run := func() [][]float32 {
			m, s, tl := make([]float32, n), make([]float32, n), make([]float32, n)
			for c0 := 0; c0 < v; c0 += cw {
				w := min(cw, v-c0)
				CEChunkForward(p, chunkOf(c0, w), m, s, tl, targets, n, w, c0, c0 == 0)
			}
			losses, lse := make([]float32, n), make([]float32, n)
			CEChunkLoss(losses, lse, m, s, tl, targets, n)
			dl := make([]float32, n*v)
			for c0 := 0; c0 < v; c0 += cw {
				w := min(cw, v-c0)
				c := chunkOf(c0, w)
				CEChunkBackward(p, c, lse, targets, n, w, c0, scale)
				for i := 0; i < n; i++ {
					copy(dl[i*v+c0:i*v+c0+w], c[i*w:(i+1)*w])
				}
			}
			return [][]float32{losses, lse, dl}
		}
		got := run()
		l64 := to64(logits)
		refLosses := func() (losses, lse []float64) {
			losses, lse = make([]float64, n), make([]float64, n)
			for i := 0; i < n; i++ {
				lse[i] = refLogSumExp(l64[i*v : i*v+v])
				if targets[i] >= 0 {
					losses[i] = lse[i] - l64[i*v+int(targets[i])]
				}
			}
			return losses, lse
		}
		wantL, wantLSE := refLosses()
		expectClose(t, "losses", to64(got[0]), wantL, fwdTol)
		expectClose(t, "lse", to64(got[1]), wantLSE, fwdTol)
		loss := func() float64 {
			l, _ := refLosses()
			var s float64
			for _, x := range l {
				s += scale * x
			}
			return s
		}
		expectClose(t, "dlogits", to64(got[2]), numGrad(l64, loss), bwdTol)
		expectBits(t, got, run())
	})
}

// TestMatVec checks the decode matrix-vector products, with and without
// accumulation, against float64, for 1 to MatVecRows rows.
func TestMatVec(t *testing.T) {
	const n, k = 301, 67
	forPools(t, func(t *testing.T, p *Pool) {
		for m := 1; m <= MatVecRows; m++ {
			for _, beta := range []float32{0, 1} {
				r := kRand(uint64(10 + m))
				x, w, y0 := randVec(r, m*k, 1), randVec(r, n*k, 1), randVec(r, m*n, 1)
				run := func() [][]float32 {
					y := slices.Clone(y0)
					if beta == 0 {
						for i := range y {
							y[i] = float32(math.NaN()) // not read
						}
					}
					MatVec(p, m, n, k, x, w, beta, y)
					return [][]float32{y}
				}
				got := run()
				want := make([]float64, m*n)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						s := float64(beta) * float64(y0[i*n+j])
						for l := 0; l < k; l++ {
							s += float64(x[i*k+l]) * float64(w[j*k+l])
						}
						want[i*n+j] = s
					}
				}
				expectClose(t, fmt.Sprintf("m=%d beta=%v", m, beta), to64(got[0]), want, fwdTol)
				expectBits(t, got, run())
			}
		}
	})
}

// TestVecOps checks the parallel vector operations of the tape.
func TestVecOps(t *testing.T) {
	const n, d = 3*4096 + 5, 37
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(12)
		a, b, y0 := randVec(r, n, 1), randVec(r, n, 1), randVec(r, n, 1)
		wantAdd, wantAxpy := make([]float64, n), make([]float64, n)
		for i := range wantAdd {
			wantAdd[i] = float64(a[i]) + float64(b[i])
			wantAxpy[i] = float64(y0[i]) + float64(float32(-0.3))*float64(a[i])
		}
		dst := make([]float32, n)
		Add(p, dst, a, b)
		expectClose(t, "add", to64(dst), wantAdd, fwdTol)
		y := slices.Clone(y0)
		Axpy(p, y, -0.3, a)
		expectClose(t, "axpy", to64(y), wantAxpy, fwdTol)
		Copy(p, y, a)
		expectClose(t, "copy", to64(y), to64(a), fwdTol)

		rows := n / d
		bias := randVec(r, d, 1)
		FillRows(p, dst, bias, rows, d)
		wantFill := make([]float64, rows*d)
		for i := range wantFill {
			wantFill[i] = float64(bias[i%d])
		}
		expectClose(t, "fillrows", to64(dst[:rows*d]), wantFill, fwdTol)
		db0 := randVec(r, d, 1)
		db := slices.Clone(db0)
		SumRows(p, db, a, rows, d)
		wantSum := to64(db0)
		for i := 0; i < rows*d; i++ {
			wantSum[i%d] += float64(a[i])
		}
		expectClose(t, "sumrows", to64(db), wantSum, fwdTol)
		db2 := slices.Clone(db0)
		SumRows(NewPool(1), db2, a, rows, d)
		expectBits(t, [][]float32{db}, [][]float32{db2}) // any thread count: same bits
	})
}

// TestAddNormKernels checks the fused residual+norm forward kernels against
// the float64 references of the sum and the norm.
func TestAddNormKernels(t *testing.T) {
	const n, d, eps = 37, 21, 1e-5
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(13)
		x, a, w, b := randVec(r, n*d, 2), randVec(r, n*d, 1), randVec(r, d, 1.5), randVec(r, d, 1)
		sum := make([]float64, n*d)
		for i := range sum {
			sum[i] = float64(x[i]) + float64(a[i])
		}
		s, h, rstd := make([]float32, n*d), make([]float32, n*d), make([]float32, n)
		AddRMSNormForward(p, s, h, rstd, x, a, w, n, d, eps)
		expectClose(t, "rms sum", to64(s), sum, fwdTol)
		expectClose(t, "rms h", to64(h), refRMSNorm(sum, to64(w), n, d, eps), fwdTol)
		mean := make([]float32, n)
		AddLayerNormForward(p, s, h, mean, rstd, x, a, w, b, n, d, eps)
		wantH, wantM, wantR := refLayerNorm(sum, to64(w), to64(b), n, d, eps)
		expectClose(t, "ln sum", to64(s), sum, fwdTol)
		expectClose(t, "ln h", to64(h), wantH, fwdTol)
		expectClose(t, "ln mean", to64(mean), wantM, fwdTol)
		expectClose(t, "ln rstd", to64(rstd), wantR, fwdTol)
	})
}

// TestSwiGLURows checks the row-wise SwiGLU over a fused [n, 2f] gate/up
// buffer, and its backward (which overwrites), against float64.
func TestSwiGLURows(t *testing.T) {
	const n, f = 3*16 + 5, 37
	forPools(t, func(t *testing.T, p *Pool) {
		r := kRand(14)
		gu, g := randVec(r, n*2*f, 6), randVec(r, n*f, 1)
		run := func() [][]float32 {
			y, dgu := make([]float32, n*f), randVec(kRand(15), n*2*f, 1) // dgu is overwritten
			SwiGLURows(p, y, gu, n, f)
			SwiGLURowsBackward(p, dgu, g, gu, n, f)
			return [][]float32{y, dgu}
		}
		got := run()
		wantY, wantD := make([]float64, n*f), make([]float64, n*2*f)
		for i := 0; i < n; i++ {
			for j := 0; j < f; j++ {
				a, b, gg := float64(gu[i*2*f+j]), float64(gu[i*2*f+f+j]), float64(g[i*f+j])
				wantY[i*f+j] = refSilu(a) * b
				wantD[i*2*f+j] = gg * b * scalarDeriv(refSilu, a)
				wantD[i*2*f+f+j] = gg * refSilu(a)
			}
		}
		expectClose(t, "y", to64(got[0]), wantY, fwdTol)
		expectClose(t, "dgu", to64(got[1]), wantD, bwdTol)
		expectBits(t, got, run())
	})
}
