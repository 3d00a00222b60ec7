//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// TestGemm checks Device.Gemm against cpu.Gemm for every transpose
// combination, alpha/beta, padded strides, and f32 or bf16 inputs (with f32
// or bf16 outputs). Tolerance relative to |want|+rms: f32 1e-5 (f32
// accumulation, no TF32); bf16 inputs 1e-4 with an f32 output (products of
// bf16 values are exact in f32, but tensor cores add them in an order and
// with an internal alignment of their own) and 1e-2 with a bf16 output.
func TestGemm(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		p := cpuPool()
		sizes := [][3]int{{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 96, 128}}
		if d.Info().Name != "emulator" {
			sizes = append(sizes, [3]int{512, 384, 768}, [3]int{1000, 1, 257})
		}
		for _, types := range []struct{ in, out DType }{{F32, F32}, {BF16, F32}, {BF16, BF16}} {
			for _, sz := range sizes {
				for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
					m, n, k := sz[0], sz[1], sz[2]
					name := fmt.Sprintf("%v->%v/%dx%dx%d/tA=%v,tB=%v", types.in, types.out, m, n, k, tr[0], tr[1])
					t.Run(name, func(t *testing.T) {
						r := rng(uint64(m*n + k))
						ra, ca := m, k
						if tr[0] {
							ra, ca = k, m
						}
						rb, cb := k, n
						if tr[1] {
							rb, cb = n, k
						}
						lda, ldb, ldc := ca+3, cb+1, n+2
						a := rvec(r, types.in, ra*lda, 1)
						b := rvec(r, types.in, rb*ldb, 1)
						c0 := rvec(r, types.out, m*ldc, 1)
						for _, ab := range [][2]float32{{1, 0}, {0.5, -2}} {
							want := clone(c0)
							cpu.Gemm(p, tr[0], tr[1], m, n, k, ab[0], a, lda, b, ldb, ab[1], want, ldc)
							bc := up(t, d, types.out, c0)
							must(t, d.Gemm(tr[0], tr[1], m, n, k, ab[0], up(t, d, types.in, a), lda, up(t, d, types.in, b), ldb, ab[1], bc, ldc))
							tol := tolF32
							if types.in == BF16 {
								tol = 1e-4
							}
							if types.out == BF16 {
								tol = tolBF16
								rounded(BF16, want)
							}
							expectClose(t, fmt.Sprintf("alpha=%v beta=%v", ab[0], ab[1]), down(t, d, bc), want, tol)
						}
					})
				}
			}
		}
	})
}

// TestGemmBetaZeroIgnoresC checks that with beta == 0, C's old contents
// (NaN here) are never read.
func TestGemmBetaZeroIgnoresC(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rng(9)
		a, b := rvec(r, F32, 6*4, 1), rvec(r, F32, 4*5, 1)
		c := make([]float32, 6*5)
		for i := range c {
			c[i] = float32(math.NaN())
		}
		want := make([]float32, 6*5)
		cpu.Gemm(cpuPool(), false, false, 6, 5, 4, 1, a, 4, b, 5, 0, want, 5)
		bc := up(t, d, F32, c)
		must(t, d.Gemm(false, false, 6, 5, 4, 1, up(t, d, F32, a), 4, up(t, d, F32, b), 5, 0, bc, 5))
		expectClose(t, "c", down(t, d, bc), want, tolF32)
	})
}

func TestCast(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rng(10)
		x := rvec(r, F32, 5000, 100)
		x = append(x, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
			1.00390625, 1.01171875, 3.4e38, 1e-40, -1e-45) // ties to even, overflow to inf, subnormals
		src := up(t, d, F32, x)
		dst := up(t, d, BF16, make([]float32, len(x)))
		must(t, d.Cast(dst, src))
		bits := make([]uint16, len(x))
		must(t, d.Download(bits, dst))
		for i, v := range x {
			if want := quant.F32ToBF16(v); bits[i] != want {
				t.Fatalf("cast %v (%#08x): got %#04x, want %#04x", v, math.Float32bits(v), bits[i], want)
			}
		}
		back := up(t, d, F32, make([]float32, len(x)))
		must(t, d.Cast(back, dst))
		got := down(t, d, back)
		for i := range x {
			want := quant.BF16ToF32(bits[i])
			if math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Fatalf("widen %#04x: got %v, want %v", bits[i], got[i], want)
			}
		}
	})
}

func TestReductions(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rng(11)
		for _, n := range []int{1, 1000, 300001} {
			x := rvec(r, F32, n, 3)
			var s, ss float64
			for _, v := range x {
				s += float64(v)
				ss += float64(v) * float64(v)
			}
			b := up(t, d, F32, x)
			got, err := d.Sum(b)
			must(t, err)
			if math.Abs(got-s) > 1e-9*(math.Abs(s)+float64(n)) {
				t.Errorf("n=%d: sum %v, want %v", n, got, s)
			}
			gotSS, err := d.SumSquares(b)
			must(t, err)
			if math.Abs(gotSS-ss) > 1e-12*ss {
				t.Errorf("n=%d: sum of squares %v, want %v", n, gotSS, ss)
			}
			norm, err := d.GradNorm(b)
			must(t, err)
			if want := nn.GradNorm(x); math.Abs(norm-want) > 1e-12*want {
				t.Errorf("n=%d: grad norm %v, nn.GradNorm %v", n, norm, want)
			}
			if again, _ := d.Sum(b); again != got {
				t.Errorf("n=%d: sum not bit-identical run to run", n)
			}
		}
		// bf16 input
		x := rvec(r, BF16, 777, 2)
		var s float64
		for _, v := range x {
			s += float64(v)
		}
		got, err := d.Sum(up(t, d, BF16, x))
		must(t, err)
		if math.Abs(got-s) > 1e-9*777 {
			t.Errorf("bf16 sum %v, want %v", got, s)
		}
	})
}

func TestClipGrads(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rng(12)
		for _, maxNorm := range []float64{0, 1, 1e6} {
			x := rvec(r, F32, 5000, 1)
			want := clone(x)
			wantNorm := nn.ClipGrads(want, maxNorm)
			b := up(t, d, F32, x)
			norm, err := d.ClipGrads(b, maxNorm)
			must(t, err)
			if math.Abs(norm-wantNorm) > 1e-12*wantNorm {
				t.Errorf("max %v: norm %v, want %v", maxNorm, norm, wantNorm)
			}
			got := down(t, d, b)
			if !slices.Equal(got, want) {
				expectClose(t, fmt.Sprintf("max %v clipped", maxNorm), got, want, 1e-7)
			}
		}
	})
}

// TestAdamW runs a few steps of Device's AdamW and nn.AdamW on the same
// gradients; the arithmetic is the same float32 sequence, so the results
// agree to rounding (fused multiply-adds on the GPU).
func TestAdamW(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		const n = 40000
		segs := []nn.Segment{{Off: 0, Len: 30000, Decay: true}, {Off: 30000, Len: 9000, Decay: false}} // 1000 left untouched
		gsegs := make([]Segment, len(segs))
		for i, s := range segs {
			gsegs[i] = Segment{Off: s.Off, Len: s.Len, Decay: s.Decay}
		}
		r := rng(13)
		params := rvec(r, F32, n, 1)
		ref := nn.NewAdamW(n, 0.9, 0.95, 1e-8, 0.1)
		opt, err := d.NewAdamW(n, 0.9, 0.95, 1e-8, 0.1, gsegs)
		must(t, err)
		defer opt.Free()
		bp := up(t, d, F32, params)
		bbf := up(t, d, BF16, make([]float32, n))
		bg := up(t, d, F32, make([]float32, n))
		want := clone(params)
		for step := 1; step <= 3; step++ {
			grads := rvec(r, F32, n, 0.5)
			lr := 1e-3 * float64(step)
			ref.Update(cpuPool(), want, grads, segs, lr)
			must(t, d.Upload(bg, grads))
			must(t, opt.Update(bp, bg, lr, bbf))
		}
		got := down(t, d, bp)
		expectClose(t, "params", got, want, 1e-6)
		expectClose(t, "m", down(t, d, opt.M), ref.M, 1e-6)
		expectClose(t, "v", down(t, d, opt.V), ref.V, 1e-6)
		if !slices.Equal(got[39000:], params[39000:]) {
			t.Error("parameters outside every segment changed")
		}
		bf := down(t, d, bbf)
		for i := 0; i < 39000; i++ {
			if quant.F32ToBF16(got[i]) != quant.F32ToBF16(bf[i]) {
				t.Fatalf("bf16 copy %d: %v, params %v", i, bf[i], got[i])
			}
		}
	})
}

// TestTime checks that the event timer runs.
func TestTime(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		b := up(t, d, F32, make([]float32, 1<<12))
		dt, err := d.Time(func() error { return d.Scale(b, 2) })
		must(t, err)
		if dt < 0 {
			t.Errorf("elapsed %v", dt)
		}
	})
}

func TestPtrAlign(t *testing.T) {
	for _, c := range []struct {
		p    uintptr
		want uint32
	}{{0, 256}, {512, 256}, {0x7f0000000100, 256}, {0x7f0000000104, 4}, {0x7f0000000102, 2}, {0x7f0000000180, 128}, {0x7f0000000101, 1}} {
		if got := ptrAlign(c.p); got != c.want {
			t.Errorf("ptrAlign(%#x) = %d, want %d", c.p, got, c.want)
		}
	}
}
