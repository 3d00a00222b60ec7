package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

// withVec runs fn with the assembly routines on (when the CPU has them) and
// off, as subtests.
func withVec(t *testing.T, fn func(t *testing.T)) {
	saved := vecAVX2
	defer func() { setVecAVX2(saved) }()
	for _, on := range []bool{false, true} {
		if on && !saved {
			continue
		}
		setVecAVX2(on)
		t.Run(fmt.Sprintf("asm=%v", on), fn)
	}
}

// TestExpAccuracy bounds the relative error of the fast exponential (scalar
// and vector) against math.Exp over its whole range, and checks its edges.
func TestExpAccuracy(t *testing.T) {
	withVec(t, func(t *testing.T) {
		const n = 1 << 16
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(-87 + 175*float64(i)/n)
		}
		dst := make([]float32, n)
		vExpSub(dst, src, 0)
		worst := 0.0
		for i, x := range src {
			want := math.Exp(float64(x))
			if e := math.Abs(float64(dst[i])-want) / want; e > worst {
				worst = e
			}
		}
		t.Logf("max relative error %.3g", worst)
		if worst > 3e-7 {
			t.Errorf("max relative error %.3g > 3e-7", worst)
		}
		edge := []float32{-1000, -88, 88.5, 1000, float32(math.NaN()), 0, float32(math.Inf(-1)), float32(math.Inf(1))}
		out := make([]float32, len(edge))
		vExpSub(out, edge, 0)
		for i, x := range edge {
			got := out[i]
			switch {
			case math.IsNaN(float64(x)):
				if !math.IsNaN(float64(got)) {
					t.Errorf("exp(NaN) = %v", got)
				}
			case x == 0:
				if got != 1 {
					t.Errorf("exp(0) = %v", got)
				}
			case x < 0:
				if got < 0 || got > 1.2e-38 {
					t.Errorf("exp(%v) = %v, want tiny", x, got)
				}
			default:
				if math.IsInf(float64(got), 0) || got < 1e38 {
					t.Errorf("exp(%v) = %v, want large and finite", x, got)
				}
			}
		}
	})
}

// vecSizes covers empty vectors, the assembly bodies and the scalar tails.
var vecSizes = []int{0, 1, 7, 8, 9, 16, 31, 32, 33, 63, 100}

func vecRand(seed uint64, n int, s float64) []float32 { return randVec(kRand(seed), n, s) }

// TestVecPrimitives checks every primitive against float64 arithmetic.
func TestVecPrimitives(t *testing.T) {
	const tol = 2e-6
	close := func(t *testing.T, name string, got []float32, want []float64) {
		t.Helper()
		e, i := closeErr(to64(got), want)
		if e > tol {
			t.Errorf("%s: error %.3g at [%d]: got %v want %v", name, e, i, got[i], want[i])
		}
	}
	scalar := func(t *testing.T, name string, got float32, want float64) {
		t.Helper()
		if math.Abs(float64(got)-want) > tol*(math.Abs(want)+1) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	withVec(t, func(t *testing.T) {
		for _, n := range vecSizes {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				a, b, c := vecRand(1, n, 2), vecRand(2, n, 2), vecRand(3, n, 2)
				y0 := vecRand(4, n, 1)
				a64, b64, c64, y64 := to64(a), to64(b), to64(c), to64(y0)
				want := make([]float64, n)
				var s float64

				s = 0
				for i := range a64 {
					s += a64[i] * b64[i]
				}
				scalar(t, "dot", vDot(a, b), s)
				s = 0
				for i := range a64 {
					s += a64[i] * b64[i] * c64[i]
				}
				scalar(t, "dot3", vDot3(a, b, c), s)
				s = 0
				for i := range a64 {
					s += a64[i]
				}
				scalar(t, "sum", vSum(a), s)
				s = 0
				for i := range a64 {
					s += (a64[i] - 0.3) * (a64[i] - 0.3)
				}
				scalar(t, "sumsq", vSumSq(a, 0.3), s)
				if n > 0 {
					scalar(t, "max", vMax(a), slices.Max(a64))
				}

				y := slices.Clone(y0)
				vAxpy(y, 0.7, a)
				for i := range want {
					want[i] = y64[i] + float64(float32(0.7))*a64[i]
				}
				close(t, "axpy", y, want)
				y = slices.Clone(y0)
				vScale(y, 1.5)
				for i := range want {
					want[i] = 1.5 * y64[i]
				}
				close(t, "scale", y, want)
				vAdd(y, a, b)
				for i := range want {
					want[i] = a64[i] + b64[i]
				}
				close(t, "add", y, want)

				var sum float64
				m := float32(0.5)
				got := vExpSub(y, a, m)
				for i := range want {
					want[i] = math.Exp(a64[i] - 0.5)
					sum += want[i]
				}
				close(t, "expsub", y, want)
				scalar(t, "expsub sum", got, sum)
				scalar(t, "expsum", vExpSum(a, m), sum)
				vExpScale(y, a, m, 0.25)
				for i := range want {
					want[i] *= 0.25
				}
				close(t, "expscale", y, want)
				acc := slices.Clone(y0)
				vExpScaleAcc(acc, a, m, 0.25)
				for i := range want {
					want[i] += y64[i]
				}
				close(t, "expscaleacc", acc, want)

				vSwiGLU(y, a, b)
				for i := range want {
					want[i] = a64[i] * sig(a64[i]) * b64[i]
				}
				close(t, "swiglu", y, want)
				dg, du := slices.Clone(y0), slices.Clone(c)
				vSwiGLUBack(dg, du, c, a, b)
				wdg, wdu := make([]float64, n), make([]float64, n)
				for i := range want {
					s := sig(a64[i])
					wdu[i] = c64[i] + c64[i]*a64[i]*s
					wdg[i] = y64[i] + c64[i]*b64[i]*s*(1+a64[i]*(1-s))
				}
				close(t, "swiglu dg", dg, wdg)
				close(t, "swiglu du", du, wdu)

				gelu := func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(0.7978845608028654*(x+0.044715*x*x*x))) }
				vGELUTanh(y, a)
				for i := range want {
					want[i] = gelu(a64[i])
				}
				close(t, "gelu", y, want)
				dx := slices.Clone(y0)
				vGELUTanhBack(dx, c, a)
				for i := range want {
					h := 1e-6
					want[i] = y64[i] + c64[i]*(gelu(a64[i]+h)-gelu(a64[i]-h))/(2*h)
				}
				close(t, "gelu back", dx, want)

				vMulScale(y, a, b, 0.5)
				for i := range want {
					want[i] = a64[i] * 0.5 * b64[i]
				}
				close(t, "mulscale", y, want)

				for _, withW := range []bool{true, false} {
					dx, dw := slices.Clone(y0), slices.Clone(c)
					if !withW {
						dw = nil
					}
					vRMSBack(dx, dw, a, b, c, 0.5, 0.25)
					wdx, wdw := make([]float64, n), make([]float64, n)
					for i := range wdx {
						wdx[i] = y64[i] + 0.5*a64[i]*c64[i] - 0.25*b64[i]
						wdw[i] = c64[i] + 0.5*a64[i]*b64[i]
					}
					close(t, "rms dx", dx, wdx)
					if withW {
						close(t, "rms dw", dw, wdw)
					}
				}

				for _, bias := range []bool{true, false} {
					bb := b
					if !bias {
						bb = nil
					}
					vLNFwd(y, a, c, bb, 0.1, 1.3)
					for i := range want {
						want[i] = (a64[i] - float64(float32(0.1))) * float64(float32(1.3)) * c64[i]
						if bias {
							want[i] += b64[i]
						}
					}
					close(t, "ln fwd", y, want)
					dx, dw, db := slices.Clone(y0), slices.Clone(c), slices.Clone(b)
					if !bias {
						dw, db = nil, nil
					}
					sg, sgx := vLNBackSums(a, b, c, 0.1, 1.3)
					var wsg, wsgx float64
					for i := range a64 {
						gw := a64[i] * b64[i]
						wsg += gw
						wsgx += gw * (c64[i] - float64(float32(0.1))) * float64(float32(1.3))
					}
					scalar(t, "ln sg", sg, wsg)
					scalar(t, "ln sgx", sgx, wsgx)
					vLNBack(dx, dw, db, a, b, c, 0.1, 1.3, 0.2, 0.4)
					wdx, wdw, wdb := make([]float64, n), make([]float64, n), make([]float64, n)
					for i := range wdx {
						xh := (c64[i] - float64(float32(0.1))) * float64(float32(1.3))
						wdx[i] = y64[i] + float64(float32(1.3))*(a64[i]*b64[i]-float64(float32(0.2))-xh*float64(float32(0.4)))
						wdw[i] = c64[i] + a64[i]*xh
						wdb[i] = b64[i] + a64[i]
					}
					close(t, "ln dx", dx, wdx)
					if bias {
						close(t, "ln dw", dw, wdw)
						close(t, "ln db", db, wdb)
					}
				}
			})
		}
	})
}

// TestAdamWUpdate checks the fused AdamW step against float64 arithmetic.
func TestAdamWUpdate(t *testing.T) {
	withVec(t, func(t *testing.T) {
		forPools(t, func(t *testing.T, pool *Pool) {
			const n = 3*(1<<14) + 13
			p, g := vecRand(1, n, 1), vecRand(2, n, 1)
			m, v := vecRand(3, n, 0.1), vecRand(4, n, 0.1)
			for i := range v {
				v[i] = v[i] * v[i]
			}
			hp := AdamHP{B1: 0.9, OneMinusB1: 0.1, B2: 0.95, OneMinusB2: 0.05, Decay: 0.999, StepSize: 0.01, SqrtBC2: 0.3, Eps: 1e-8}
			wp, wm, wv := make([]float64, n), make([]float64, n), make([]float64, n)
			for i := range wp {
				gi := float64(g[i])
				wm[i] = 0.9*float64(m[i]) + 0.1*gi
				wv[i] = 0.95*float64(v[i]) + 0.05*gi*gi
				wp[i] = float64(p[i])*float64(float32(0.999)) - float64(float32(0.01))*wm[i]/(math.Sqrt(wv[i])/float64(float32(0.3))+1e-8)
			}
			p1, m1, v1 := slices.Clone(p), slices.Clone(m), slices.Clone(v)
			AdamWUpdate(pool, p1, g, m1, v1, &hp)
			for _, c := range []struct {
				name string
				got  []float32
				want []float64
			}{{"p", p1, wp}, {"m", m1, wm}, {"v", v1, wv}} {
				if e, i := closeErr(to64(c.got), c.want); e > 1e-5 {
					t.Errorf("%s: error %.3g at %d: %v vs %v", c.name, e, i, c.got[i], c.want[i])
				}
			}
		})
	})
}

// TestSumSquares checks the float64 sum of squares (the gradient norm)
// against a float64 loop, and that it is the same for every thread count.
func TestSumSquares(t *testing.T) {
	withVec(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 13, 100, 3*sumSqChunk + 77} {
			x := vecRand(uint64(n), n, 3)
			var want float64
			for _, v := range x {
				want += float64(v) * float64(v)
			}
			var first float64
			for i, p := range kernelPools() {
				got := SumSquares(p, x)
				if math.Abs(got-want) > 1e-12*want {
					t.Errorf("n=%d threads=%d: %v, want %v", n, p.Threads(), got, want)
				}
				if i == 0 {
					first = got
				} else if got != first {
					t.Errorf("n=%d: %d threads give %v, 1 thread %v", n, p.Threads(), got, first)
				}
			}
			y := slices.Clone(x)
			Scale(kernelPools()[1], y, 0.5)
			for i := range y {
				if y[i] != 0.5*x[i] {
					t.Fatalf("Scale: [%d] = %v, want %v", i, y[i], 0.5*x[i])
				}
			}
		}
	})
}

// TestAttendOne checks single-query attention over a strided cache against
// a float64 reference: head sizes on the vector path (64) and off it (48),
// GQA, one to 37 positions, on 1 and 3 threads.
func TestAttendOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	for _, d := range []int{64, 48} {
		for _, tk := range []int{1, 2, 9, 37} {
			for _, threads := range []int{1, 3} {
				const heads, kvHeads = 6, 2
				stride := kvHeads*d + 8 // rows padded, as a wider cache row would be
				q := make([]float32, heads*d)
				k := make([]float32, tk*stride)
				v := make([]float32, tk*stride)
				for _, s := range [][]float32{q, k, v} {
					for i := range s {
						s[i] = float32(rng.NormFloat64())
					}
				}
				out := make([]float32, heads*d)
				scale := float32(1 / math.Sqrt(float64(d)))
				AttendOne(NewPool(threads), out, q, k, v, tk, heads, kvHeads, d, stride, scale, make([]float32, heads*tk))
				for h := range heads {
					g := h / (heads / kvHeads)
					p := make([]float64, tk)
					var m, sum float64 = math.Inf(-1), 0
					for j := range tk {
						for i := range d {
							p[j] += float64(q[h*d+i]) * float64(k[j*stride+g*d+i])
						}
						p[j] *= float64(scale)
						m = math.Max(m, p[j])
					}
					for j := range p {
						p[j] = math.Exp(p[j] - m)
						sum += p[j]
					}
					for i := range d {
						var want float64
						for j := range tk {
							want += p[j] / sum * float64(v[j*stride+g*d+i])
						}
						if got := float64(out[h*d+i]); math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
							t.Fatalf("d=%d tk=%d threads=%d head %d [%d]: %v, want %v", d, tk, threads, h, i, got, want)
						}
					}
				}
			}
		}
	}
}

// TestRowsKernels checks vDotRows and vAxpyRows (decode attention over the
// keys and values of one head) against vDot and vAxpy row by row, bit for
// bit, for head sizes on and off the vector width and rows ld apart.
func TestRowsKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, d := range []int{8, 13, 64, 72, 96, 128, 200} {
		for _, n := range []int{1, 2, 37} {
			ld := d + 24
			q := qRandVec(rng, d, 1)
			kv := qRandVec(rng, (n-1)*ld+d, 1)
			got := make([]float32, n)
			vDotRows(q, kv, ld, got, 0.3)
			for s := range n {
				if want := 0.3 * vDot(q, kv[s*ld:][:d]); got[s] != want {
					t.Fatalf("d %d n %d: vDotRows[%d] = %g, vDot %g", d, n, s, got[s], want)
				}
			}
			a := qRandVec(rng, n, 1)
			y, want := qRandVec(rng, d, 1), make([]float32, d)
			copy(want, y)
			vAxpyRows(y, kv, ld, a)
			for s := range n {
				vAxpy(want, a[s], kv[s*ld:][:d])
			}
			if !slices.Equal(y, want) {
				t.Fatalf("d %d n %d: vAxpyRows differs from vAxpy row by row", d, n)
			}
		}
	}
}

// TestRowsKernelsF16 checks the half-precision row kernels against the
// float32 ones on the same (rounded) values: the same bits where both run
// the vector kernels (head sizes a multiple of 32), close otherwise.
func TestRowsKernelsF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for _, d := range []int{8, 64, 72, 96, 128} {
		for _, n := range []int{1, 5, 37} {
			ld := d + 24
			q := qRandVec(rng, d, 1)
			kv16 := make([]uint16, (n-1)*ld+d)
			quant.F32ToF16Slice(kv16, qRandVec(rng, len(kv16), 1))
			kv := make([]float32, len(kv16))
			quant.F16ToF32Slice(kv, kv16)
			same := func(what string, got, want []float32) {
				t.Helper()
				for i := range got {
					if d%32 == 0 && got[i] != want[i] || math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("d %d n %d: %s[%d] = %g, float32 kernel %g", d, n, what, i, got[i], want[i])
					}
				}
			}
			got, want := make([]float32, n), make([]float32, n)
			vDotRowsF16(q, kv16, ld, got, 0.3)
			vDotRows(q, kv, ld, want, 0.3)
			same("vDotRowsF16", got, want)
			a := qRandVec(rng, n, 1)
			y := qRandVec(rng, d, 1)
			y2 := slices.Clone(y)
			vAxpyRowsF16(y, kv16, ld, a)
			vAxpyRows(y2, kv, ld, a)
			same("vAxpyRowsF16", y, y2)
		}
	}
}
