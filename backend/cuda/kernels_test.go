//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/format/quant"
)

// Every op of Device is checked here against backend/cpu (the oracle) on
// random inputs, for f32 and bf16 activations, on two devices:
//
//   - "emu": the kernel sources compiled with g++ against a CPU emulation
//     of CUDA (emu/), run when g++ is installed;
//   - "cuda": the real GPU through the driver, run when one is found.
//
// Each skips with the reason when unavailable. For bf16 the inputs are
// rounded to bf16 first, so both sides see the same values.
//
// Tolerances, on |got-want| <= tol*(|want| + rms(want)) elementwise (the
// measure backend/cpu's own tests use): f32 1e-5 (forward and backward;
// only the summation order differs), bf16 1e-2 (outputs and accumulated
// gradients are rounded to 8 mantissa bits, 2^-8 = 0.4%, at most twice).

const (
	tolF32  = 1e-5
	tolBF16 = 1e-2
)

var (
	emuDevice  = sync.OnceValues(openEmu)
	cudaDevice = sync.OnceValues(func() (*Device, error) {
		d, err := Open(Options{})
		if err != nil {
			return nil, err
		}
		i := d.Info()
		fmt.Fprintf(os.Stderr, "cuda: testing on %s (sm_%d, %d SMs, kernels for sm_%d, NVRTC %s, %s, compile %v)\n",
			i.Name, i.SM, i.SMs, i.Arch, i.NVRTCVersion, i.BLAS, i.CompileTime)
		return d, nil
	})
)

// forDevices runs fn on each available device as a subtest named after it.
func forDevices(t *testing.T, fn func(t *testing.T, d *Device)) {
	t.Helper()
	for _, dv := range []struct {
		name string
		open func() (*Device, error)
		env  string
	}{{"emu", emuDevice, "MAI_CUDA_EMU"}, {"cuda", cudaDevice, "MAI_CUDA_GPU"}} {
		t.Run(dv.name, func(t *testing.T) {
			if os.Getenv(dv.env) == "off" {
				t.Skipf("%s=off", dv.env)
			}
			d, err := dv.open()
			if err != nil {
				t.Skipf("no %s device: %s", dv.name, shortReason(err))
			}
			fn(t, d)
		})
	}
}

// shortReason is the first clause of a why-not error (a missing library's
// full search list is in `mai gpu info`).
func shortReason(err error) string {
	var le *LibraryError
	if errors.As(err, &le) {
		return fmt.Sprintf("%s not found (%s); `mai gpu info` says where it was looked for", le.Lib, le.What)
	}
	return err.Error()
}

// forTypes runs fn for f32 and bf16 activations with their tolerance.
func forTypes(t *testing.T, fn func(t *testing.T, dt DType, tol float64)) {
	for _, c := range []struct {
		dt  DType
		tol float64
	}{{F32, tolF32}, {BF16, tolBF16}} {
		t.Run(c.dt.String(), func(t *testing.T) { fn(t, c.dt, c.tol) })
	}
}

var cpuPool = sync.OnceValue(func() *cpu.Pool { return cpu.NewPool(1) })

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x637564)) }

// rvec returns n values uniform in [-s, s), rounded to dt.
func rvec(r *rand.Rand, dt DType, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((r.Float64()*2 - 1) * s)
	}
	return rounded(dt, x)
}

// rounded rounds x in place to dt's precision (identity for f32).
func rounded(dt DType, x []float32) []float32 {
	if dt == BF16 {
		for i, v := range x {
			x[i] = quant.BF16ToF32(quant.F32ToBF16(v))
		}
	}
	return x
}

func up(t *testing.T, d *Device, dt DType, x any) *Buffer {
	t.Helper()
	b, err := d.FromHost(dt, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(b) })
	return b
}

func down(t *testing.T, d *Device, b *Buffer) []float32 {
	t.Helper()
	x := make([]float32, b.Len())
	if err := d.Download(x, b); err != nil {
		t.Fatal(err)
	}
	return x
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// expectClose fails when any |got-want| > tol*(|want| + rms(want)).
func expectClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	var ss float64
	for _, w := range want {
		ss += float64(w) * float64(w)
	}
	rms := math.Sqrt(ss / float64(max(1, len(want))))
	worst, wi := 0.0, -1
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) && math.IsNaN(g) || math.IsInf(w, 0) && g == w {
			continue
		}
		e := math.Abs(g-w) / (math.Abs(w) + rms + 1e-30)
		if math.IsNaN(g) || e > worst {
			worst, wi = e, i
			if math.IsNaN(g) {
				worst = math.Inf(1)
			}
		}
	}
	if worst > tol {
		t.Errorf("%s: element %d is %v, want %v (error %.3g > tolerance %.0e; rms %.3g)", name, wi, got[wi], want[wi], worst, tol, rms)
	}
}

func clone(x []float32) []float32 { return slices.Clone(x) }

func TestActivations(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			r := rng(1)
			const n = 3000
			g, u, dout := rvec(r, dt, n, 4), rvec(r, dt, n, 2), rvec(r, dt, n, 1)
			dg0, du0 := rvec(r, dt, n, 0.1), rvec(r, dt, n, 0.1)

			want := make([]float32, n)
			cpu.SwiGLUForward(p, want, g, u)
			out := up(t, d, dt, make([]float32, n))
			must(t, d.SwiGLUForward(out, up(t, d, dt, g), up(t, d, dt, u)))
			expectClose(t, "swiglu", down(t, d, out), want, tol)

			wdg, wdu := clone(dg0), clone(du0)
			cpu.SwiGLUBackward(p, wdg, wdu, dout, g, u)
			bdg, bdu := up(t, d, dt, dg0), up(t, d, dt, du0)
			must(t, d.SwiGLUBackward(bdg, bdu, up(t, d, dt, dout), up(t, d, dt, g), up(t, d, dt, u)))
			expectClose(t, "swiglu dg", down(t, d, bdg), wdg, tol)
			expectClose(t, "swiglu du", down(t, d, bdu), wdu, tol)

			for _, approx := range []bool{true, false} {
				cpu.GELUForward(p, want, g, approx)
				must(t, d.GELUForward(out, up(t, d, dt, g), approx))
				expectClose(t, fmt.Sprintf("gelu approx=%v", approx), down(t, d, out), want, tol)
				wdx := clone(dg0)
				cpu.GELUBackward(p, wdx, dout, g, approx)
				bdx := up(t, d, dt, dg0)
				must(t, d.GELUBackward(bdx, up(t, d, dt, dout), up(t, d, dt, g), approx))
				expectClose(t, fmt.Sprintf("gelu dx approx=%v", approx), down(t, d, bdx), wdx, tol)
			}
		})
	})
}

func TestElementwise(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			r := rng(2)
			const rows, cols = 37, 19
			n := rows * cols
			a, b := rvec(r, dt, n, 2), rvec(r, dt, n, 2)
			bias := rvec(r, F32, cols, 1)
			want := make([]float32, n)
			for i := range want {
				want[i] = a[i] + b[i]
			}
			y := up(t, d, dt, make([]float32, n))
			must(t, d.Add(y, up(t, d, dt, a), up(t, d, dt, b)))
			expectClose(t, "add", down(t, d, y), want, tol)

			ya := up(t, d, dt, a)
			must(t, d.Axpy(ya, up(t, d, dt, b), -0.5))
			for i := range want {
				want[i] = a[i] - 0.5*b[i]
			}
			expectClose(t, "axpy", down(t, d, ya), want, tol)

			must(t, d.Scale(ya, 3))
			for i := range want {
				want[i] *= 3
			}
			expectClose(t, "scale", down(t, d, ya), want, tol)

			yb := up(t, d, dt, a)
			must(t, d.BiasAdd(yb, up(t, d, F32, bias), rows, cols))
			for i := range want {
				want[i] = a[i] + bias[i%cols]
			}
			expectClose(t, "bias add", down(t, d, yb), want, tol)

			db0 := rvec(r, F32, cols, 1)
			wdb := clone(db0)
			for i := range a {
				wdb[i%cols] += a[i]
			}
			db := up(t, d, F32, db0)
			must(t, d.BiasGrad(db, up(t, d, dt, a), rows, cols))
			got := down(t, d, db)
			expectClose(t, "bias grad", got, wdb, tolF32*10) // sums of 37 terms of bf16-exact inputs, in f32
			must(t, d.Upload(db, db0))
			must(t, d.BiasGrad(db, up(t, d, dt, a), rows, cols))
			if again := down(t, d, db); !slices.Equal(again, got) {
				t.Error("bias grad is not bit-identical run to run")
			}

			// Rows scaled by a per-row factor, and per-row dot products
			// (a MoE gate and its gradient), against float64.
			sc := rvec(r, F32, rows, 2)
			ys := up(t, d, dt, make([]float32, n))
			must(t, d.ScaleRows(ys, up(t, d, dt, a), up(t, d, F32, sc), rows, cols))
			dots := make([]float32, rows)
			for i := range want {
				want[i] = a[i] * sc[i/cols]
			}
			expectClose(t, "scale rows", down(t, d, ys), rounded(dt, want), tol)
			for i := 0; i < rows; i++ {
				var s float64
				for j := 0; j < cols; j++ {
					s += float64(a[i*cols+j]) * float64(b[i*cols+j])
				}
				dots[i] = float32(s)
			}
			out := up(t, d, F32, make([]float32, rows))
			must(t, d.RowDot(out, up(t, d, dt, a), up(t, d, dt, b), rows, cols))
			expectClose(t, "row dot", down(t, d, out), dots, tolF32*10)
		})
	})
}

func TestSoftmaxKernel(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			for _, sz := range [][2]int{{5, 7}, {3, 1500}} {
				n, dim := sz[0], sz[1]
				r := rng(3)
				x, g, dx0 := rvec(r, dt, n*dim, 5), rvec(r, dt, n*dim, 1), rvec(r, dt, n*dim, 0.1)
				y := make([]float32, n*dim)
				cpu.SoftmaxForward(p, y, x, n, dim)
				out := up(t, d, dt, make([]float32, n*dim))
				must(t, d.SoftmaxForward(out, up(t, d, dt, x), n, dim))
				gy := down(t, d, out)
				expectClose(t, "softmax", gy, y, tol)
				// The backward from the device's own y (rounded as stored).
				wdx := clone(dx0)
				cpu.SoftmaxBackward(p, wdx, g, gy, n, dim)
				bdx := up(t, d, dt, dx0)
				must(t, d.SoftmaxBackward(bdx, up(t, d, dt, g), out, n, dim))
				expectClose(t, "softmax dx", down(t, d, bdx), wdx, tol)
			}
		})
	})
}

func TestCrossEntropyKernel(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			for _, v := range []int{11, 3001} {
				const n = 9
				r := rng(4)
				logits := rvec(r, dt, n*v, 6)
				targets := make([]int32, n)
				for i := range targets {
					targets[i] = int32(r.IntN(v))
				}
				targets[2], targets[7] = -1, -100 // ignored rows
				losses, lse := make([]float32, n), make([]float32, n)
				count := cpu.CrossEntropyForward(p, losses, lse, logits, targets, n, v)
				if got := CountTargets(targets); got != count {
					t.Fatalf("CountTargets = %d, cpu counted %d", got, count)
				}
				bl, bs := up(t, d, F32, make([]float32, n)), up(t, d, F32, make([]float32, n))
				blog, btg := up(t, d, dt, logits), up(t, d, I32, targets)
				must(t, d.CrossEntropyForward(bl, bs, blog, btg, n, v))
				expectClose(t, fmt.Sprintf("v=%d losses", v), down(t, d, bl), losses, tolF32) // math in f32 on the same inputs
				expectClose(t, fmt.Sprintf("v=%d lse", v), down(t, d, bs), lse, tolF32)

				var sum float64
				for _, l := range losses {
					sum += float64(l)
				}
				mean := up(t, d, F32, []float32{42})
				must(t, d.LossMean(mean, bl, n, count))
				expectClose(t, "loss mean", down(t, d, mean), []float32{float32(sum / float64(count))}, tolF32)

				scale := float32(1) / float32(count)
				dl0 := rvec(r, dt, n*v, 0.01)
				wdl := clone(dl0)
				cpu.CrossEntropyBackward(p, wdl, logits, lse, targets, n, v, scale)
				bdl := up(t, d, dt, dl0)
				must(t, d.CrossEntropyBackward(bdl, blog, bs, btg, n, v, scale))
				expectClose(t, fmt.Sprintf("v=%d dlogits", v), down(t, d, bdl), wdl, tol)
			}
		})
	})
}

func TestNormKernels(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			for _, sz := range [][2]int{{13, 24}, {5, 1100}} {
				n, dim := sz[0], sz[1]
				t.Run(fmt.Sprintf("n%d_d%d", n, dim), func(t *testing.T) {
					r := rng(5)
					x, x2, g := rvec(r, dt, n*dim, 2), rvec(r, dt, n*dim, 1), rvec(r, dt, n*dim, 1)
					w, b := rvec(r, F32, dim, 1.5), rvec(r, F32, dim, 0.5)
					dx0, dw0, db0 := rvec(r, dt, n*dim, 0.1), rvec(r, F32, dim, 0.1), rvec(r, F32, dim, 0.1)
					const eps = 1e-5

					// RMSNorm, plain and fused with the residual add.
					y, rstd := make([]float32, n*dim), make([]float32, n*dim)
					cpu.RMSNormForward(p, y, rstd, x, w, n, dim, eps)
					bx, bw := up(t, d, dt, x), up(t, d, F32, w)
					by, brs := up(t, d, dt, make([]float32, n*dim)), up(t, d, F32, make([]float32, n))
					must(t, d.RMSNormForward(by, brs, bx, bw, n, dim, eps))
					expectClose(t, "rmsnorm", down(t, d, by), y, tol)
					expectClose(t, "rmsnorm rstd", down(t, d, brs), rstd[:n], tolF32)

					sum := make([]float32, n*dim)
					for i := range sum {
						sum[i] = x[i] + x2[i]
					}
					rounded(dt, sum)
					cpu.RMSNormForward(p, y, rstd, sum, w, n, dim, eps)
					bsum := up(t, d, dt, make([]float32, n*dim))
					must(t, d.AddRMSNormForward(bsum, by, brs, bx, up(t, d, dt, x2), bw, n, dim, eps))
					expectClose(t, "add+rmsnorm sum", down(t, d, bsum), sum, tol)
					expectClose(t, "add+rmsnorm", down(t, d, by), y, tol)

					wdx, wdw := clone(dx0), clone(dw0)
					cpu.RMSNormBackward(p, wdx, wdw, g, sum, w, rstd, n, dim)
					bdx, bdw := up(t, d, dt, dx0), up(t, d, F32, dw0)
					bg := up(t, d, dt, g)
					must(t, d.RMSNormBackward(bdx, bdw, bg, bsum, bw, brs, n, dim))
					expectClose(t, "rmsnorm dx", down(t, d, bdx), wdx, tol)
					gotDW := down(t, d, bdw)
					expectClose(t, "rmsnorm dw", gotDW, wdw, max(tol, 5*tolF32))
					must(t, d.Upload(bdw, dw0))
					must(t, d.RMSNormBackward(bdx, bdw, bg, bsum, bw, brs, n, dim))
					if !slices.Equal(down(t, d, bdw), gotDW) {
						t.Error("rmsnorm dw is not bit-identical run to run")
					}
					must(t, d.RMSNormBackward(bdx, nil, bg, bsum, bw, brs, n, dim)) // fixed weight

					// LayerNorm, with and without bias, plain and fused.
					for _, withBias := range []bool{true, false} {
						bb, bbuf := b, up(t, d, F32, b)
						if !withBias {
							bb, bbuf = nil, nil
						}
						mean := make([]float32, n)
						cpu.LayerNormForward(p, y, mean, rstd, x, w, bb, n, dim, eps)
						bm, brs2 := up(t, d, F32, make([]float32, n)), up(t, d, F32, make([]float32, n))
						must(t, d.LayerNormForward(by, bm, brs2, bx, bw, bbuf, n, dim, eps))
						expectClose(t, fmt.Sprintf("layernorm bias=%v", withBias), down(t, d, by), y, tol)
						expectClose(t, "layernorm mean", down(t, d, bm), mean, tolF32)
						expectClose(t, "layernorm rstd", down(t, d, brs2), rstd[:n], tolF32)

						cpu.LayerNormForward(p, y, mean, rstd, sum, w, bb, n, dim, eps)
						must(t, d.AddLayerNormForward(bsum, by, bm, brs2, bx, up(t, d, dt, x2), bw, bbuf, n, dim, eps))
						expectClose(t, "add+layernorm", down(t, d, by), y, tol)

						wdx, wdw, wdb := clone(dx0), clone(dw0), clone(db0)
						var wdbArg []float32
						var bdb *Buffer
						if withBias {
							wdbArg, bdb = wdb, up(t, d, F32, db0)
						}
						cpu.LayerNormBackward(p, wdx, wdw, wdbArg, g, sum, w, mean, rstd, n, dim)
						bdx, bdw := up(t, d, dt, dx0), up(t, d, F32, dw0)
						must(t, d.LayerNormBackward(bdx, bdw, bdb, bg, bsum, bw, bm, brs2, n, dim))
						expectClose(t, "layernorm dx", down(t, d, bdx), wdx, tol)
						expectClose(t, "layernorm dw", down(t, d, bdw), wdw, max(tol, 5*tolF32))
						if withBias {
							expectClose(t, "layernorm db", down(t, d, bdb), wdb, max(tol, 5*tolF32))
						}
					}
				})
			}
		})
	})
}

// ropeTables returns Hugging Face RoPE tables [maxPos, rot/2].
func ropeTables(maxPos, rot int, theta float64) (cos, sin []float32) {
	half := rot / 2
	cos, sin = make([]float32, maxPos*half), make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(theta, -2*float64(i)/float64(rot))
			cos[p*half+i], sin[p*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return cos, sin
}

func TestRoPEKernel(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			const n, maxPos = 37, 50
			for _, tc := range []struct{ heads, dim, rot int }{{3, 10, 10}, {3, 10, 6}, {2, 64, 32}} {
				r := rng(6)
				cos, sin := ropeTables(maxPos, tc.rot, 10000)
				rp := &cpu.RoPE{Heads: tc.heads, D: tc.dim, Rot: tc.rot, Cos: cos, Sin: sin}
				pos := make([]int32, n)
				for i := range pos {
					pos[i] = int32(r.IntN(maxPos))
				}
				w := n * tc.heads * tc.dim
				x, g, dx0 := rvec(r, dt, w, 2), rvec(r, dt, w, 1), rvec(r, dt, w, 0.1)
				y := make([]float32, w)
				rp.Forward(p, y, x, pos)
				grp := &RoPE{Heads: tc.heads, D: tc.dim, Rot: tc.rot, Cos: up(t, d, F32, cos), Sin: up(t, d, F32, sin)}
				bpos := up(t, d, I32, pos)
				by := up(t, d, dt, make([]float32, w))
				must(t, d.RoPEForward(grp, by, up(t, d, dt, x), bpos))
				name := fmt.Sprintf("h%d_d%d_rot%d", tc.heads, tc.dim, tc.rot)
				expectClose(t, name+" y", down(t, d, by), y, tol)
				wdx := clone(dx0)
				rp.Backward(p, wdx, g, pos)
				bdx := up(t, d, dt, dx0)
				must(t, d.RoPEBackward(grp, bdx, up(t, d, dt, g), bpos))
				expectClose(t, name+" dx", down(t, d, bdx), wdx, tol)
			}
		})
	})
}

func TestEmbeddingKernel(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			const vocab, dim, n = 23, 40, 57
			r := rng(7)
			w := rvec(r, F32, vocab*dim, 1)
			ids := make([]int32, n)
			for i := range ids {
				ids[i] = int32(r.IntN(vocab / 2)) // repeats
			}
			g := rvec(r, dt, n*dim, 1)
			dw0 := rvec(r, F32, vocab*dim, 0.1)
			want := make([]float32, n*dim)
			for i, id := range ids {
				copy(want[i*dim:], w[int(id)*dim:int(id+1)*dim])
			}
			rounded(dt, want)
			wdw := clone(dw0)
			for i, id := range ids {
				for j := 0; j < dim; j++ {
					wdw[int(id)*dim+j] += g[i*dim+j]
				}
			}
			idx, err := d.NewEmbedIndex(ids, vocab)
			must(t, err)
			defer idx.Free()
			out := up(t, d, dt, make([]float32, n*dim))
			must(t, d.EmbeddingForward(out, up(t, d, F32, w), idx, dim))
			expectClose(t, "embedding", down(t, d, out), want, 0) // a copy (rounded for bf16): exact
			bdw := up(t, d, F32, dw0)
			bg := up(t, d, dt, g)
			must(t, d.EmbeddingBackward(bdw, bg, idx, dim))
			got := down(t, d, bdw)
			expectClose(t, "embedding dw", got, wdw, 5*tolF32)
			must(t, d.Upload(bdw, dw0))
			must(t, d.EmbeddingBackward(bdw, bg, idx, dim))
			if !slices.Equal(down(t, d, bdw), got) {
				t.Error("embedding dw is not bit-identical run to run")
			}
		})
	})
}

func TestAttentionKernels(t *testing.T) {
	cases := []struct {
		name   string
		a      cpu.Attn
		cap    int  // KV-cache capacity per batch entry (>= Tk); 0 means Tk
		packed bool // documents packed: Start per query
	}{
		{"mha", cpu.Attn{B: 2, Tq: 7, Tk: 7, H: 3, KV: 3, D: 5}, 0, false},
		{"gqa-kv2", cpu.Attn{B: 2, Tq: 9, Tk: 9, H: 4, KV: 2, D: 5}, 0, false},
		{"mqa-kv1", cpu.Attn{B: 2, Tq: 9, Tk: 9, H: 4, KV: 1, D: 7}, 0, false},
		{"window3", cpu.Attn{B: 2, Tq: 11, Tk: 11, H: 4, KV: 2, D: 5, Window: 3}, 0, false},
		{"window1", cpu.Attn{B: 1, Tq: 5, Tk: 5, H: 2, KV: 1, D: 4, Window: 1}, 0, false},
		{"kvcache", cpu.Attn{B: 2, Tq: 3, Tk: 10, H: 4, KV: 2, D: 5, Offset: 7}, 13, false},
		{"decode", cpu.Attn{B: 3, Tq: 1, Tk: 9, H: 4, KV: 1, D: 6, Offset: 8}, 12, false},
		{"kvcache-window", cpu.Attn{B: 2, Tq: 4, Tk: 12, H: 4, KV: 2, D: 3, Offset: 8, Window: 5}, 15, false},
		{"packed", cpu.Attn{B: 2, Tq: 40, Tk: 40, H: 2, KV: 1, D: 8}, 0, true},
		{"long-d64", cpu.Attn{B: 1, Tq: 70, Tk: 70, H: 2, KV: 1, D: 64}, 0, false},
		{"d128-window", cpu.Attn{B: 1, Tq: 45, Tk: 45, H: 2, KV: 2, D: 128, Window: 33}, 0, false},
		{"d256", cpu.Attn{B: 1, Tq: 9, Tk: 9, H: 1, KV: 1, D: 256}, 0, false},
	}
	forDevices(t, func(t *testing.T, d *Device) {
		forTypes(t, func(t *testing.T, dt DType, tol float64) {
			p := cpuPool()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					a := tc.a
					capT := max(tc.cap, a.Tk)
					a.KStride = capT * a.KV * a.D
					a.Scale = float32(1 / math.Sqrt(float64(a.D)))
					r := rng(8)
					nq, nk := a.B*a.Tq*a.H*a.D, a.B*a.KStride
					q, g := rvec(r, dt, nq, 2), rvec(r, dt, nq, 1)
					k, v := rvec(r, dt, nk, 2), rvec(r, dt, nk, 1)
					for b := 0; b < a.B; b++ { // cache slots past Tk must never be read
						for i := a.Tk * a.KV * a.D; i < a.KStride; i++ {
							k[b*a.KStride+i] = float32(math.NaN())
							v[b*a.KStride+i] = float32(math.NaN())
						}
					}
					var start *Buffer
					if tc.packed {
						a.Start = make([]int32, a.B*a.Tq)
						for b := 0; b < a.B; b++ {
							doc := int32(0)
							for t := 0; t < a.Tq; t++ {
								if t > 0 && r.IntN(6) == 0 {
									doc = int32(t)
								}
								a.Start[b*a.Tq+t] = doc
							}
						}
						start = up(t, d, I32, a.Start)
					}
					dq0, dk0, dv0 := rvec(r, dt, nq, 0.1), rvec(r, dt, nk, 0.1), rvec(r, dt, nk, 0.1)
					for b := 0; b < a.B; b++ { // gradients of unused cache slots stay as they are
						for i := a.Tk * a.KV * a.D; i < a.KStride; i++ {
							dk0[b*a.KStride+i], dv0[b*a.KStride+i] = 0, 0
						}
					}
					out, lse := make([]float32, nq), make([]float32, a.B*a.H*a.Tq)
					cpu.AttentionForward(p, &a, out, lse, q, k, v)
					// The backward's reference starts from out as the device
					// stores it (bf16-rounded), as the device's backward does.
					wdq, wdk, wdv := clone(dq0), clone(dk0), clone(dv0)
					cpu.AttentionBackward(p, &a, wdq, wdk, wdv, g, rounded(dt, clone(out)), lse, q, k, v)

					ga := &Attn{B: a.B, Tq: a.Tq, Tk: a.Tk, H: a.H, KV: a.KV, D: a.D, KStride: a.KStride, Offset: a.Offset, Window: a.Window, Scale: a.Scale, Start: start}
					bq, bk, bv := up(t, d, dt, q), up(t, d, dt, k), up(t, d, dt, v)
					bout, blse := up(t, d, dt, make([]float32, nq)), up(t, d, F32, make([]float32, len(lse)))
					must(t, d.AttentionForward(ga, bout, blse, bq, bk, bv))
					gotOut := down(t, d, bout)
					expectClose(t, "out", gotOut, rounded(dt, clone(out)), tol)
					expectClose(t, "lse", down(t, d, blse), lse, tolF32*2)

					// The backward from the device's own forward results.
					bdq, bdk, bdv := up(t, d, dt, dq0), up(t, d, dt, dk0), up(t, d, dt, dv0)
					bg := up(t, d, dt, g)
					run := func() [][]float32 {
						must(t, d.Upload(bdq, dq0))
						must(t, d.Upload(bdk, dk0))
						must(t, d.Upload(bdv, dv0))
						must(t, d.AttentionBackward(ga, bdq, bdk, bdv, bg, bout, blse, bq, bk, bv))
						return [][]float32{down(t, d, bdq), down(t, d, bdk), down(t, d, bdv)}
					}
					got := run()
					btol := tol
					if dt == F32 {
						btol = 2 * tolF32 // long sums of products in another order
					}
					expectClose(t, "dq", got[0], wdq, btol)
					expectClose(t, "dk", got[1], wdk, btol)
					expectClose(t, "dv", got[2], wdv, btol)
					again := run()
					for i := range got {
						if !slices.Equal(again[i], got[i]) {
							t.Errorf("backward output %d is not bit-identical run to run", i)
						}
					}
				})
			}
		})
	})
}
