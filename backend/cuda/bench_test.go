//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"testing"
	"time"
)

// Benchmarks on the real GPU (skipped elsewhere). Each times b.N
// iterations with CUDA events and reports device throughput; ns/op is the
// host's view (it includes the device thread hand-off per launch).

// devFill returns a buffer of n values uniform in [-s, s), made on the
// host (zeros, made on the device, when s is 0).
func devFill(b *testing.B, d *Device, dt DType, n int, s float64) *Buffer {
	b.Helper()
	if s == 0 {
		buf, err := d.Alloc(dt, n)
		if err == nil {
			err = d.Zero(buf)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Free(buf) })
		return buf
	}
	r := rng(uint64(n))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((r.Float64()*2 - 1) * s)
	}
	buf, err := d.FromHost(dt, x)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Free(buf) })
	return buf
}

// timeIt runs fn b.N times (after one warm-up) and returns the device time
// per iteration.
func timeIt(b *testing.B, d *Device, fn func() error) time.Duration {
	b.Helper()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	el, err := d.Time(func() error {
		for i := 0; i < b.N; i++ {
			if err := fn(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	per := el / time.Duration(b.N)
	b.ReportMetric(float64(per.Nanoseconds())/1e3, "dev-us/op")
	return per
}

func BenchmarkDeviceGemm(b *testing.B) {
	d := needGPU(b)
	for _, c := range []struct {
		name    string
		in, out DType
		m, n, k int
	}{
		{"bf16-8192", BF16, BF16, 8192, 8192, 8192},
		{"bf16-4096", BF16, BF16, 4096, 4096, 4096},
		{"bf16-f32out-4096", BF16, F32, 4096, 4096, 4096},
		{"f32-4096", F32, F32, 4096, 4096, 4096},
		{"gpt2-mlp-fwd-bf16", BF16, BF16, 16384, 3072, 768}, // x·Wᵀ, B*T=16384
		{"gpt2-lmhead-bf16", BF16, BF16, 16384, 50304, 768}, // logits
	} {
		b.Run(c.name, func(b *testing.B) {
			a := devFill(b, d, c.in, c.m*c.k, 1)
			w := devFill(b, d, c.in, c.n*c.k, 1)
			out := devFill(b, d, c.out, c.m*c.n, 0)
			per := timeIt(b, d, func() error {
				return d.Gemm(false, true, c.m, c.n, c.k, 1, a, c.k, w, c.k, 0, out, c.n)
			})
			b.ReportMetric(2*float64(c.m)*float64(c.n)*float64(c.k)/per.Seconds()/1e12, "TFLOP/s")
		})
	}
}

func BenchmarkDeviceAttention(b *testing.B) {
	d := needGPU(b)
	for _, c := range []struct {
		name             string
		B, T, H, KV, Dim int
	}{
		{"gpt2-B8-T1024-H12-D64", 8, 1024, 12, 12, 64},
		{"llama-B2-T2048-H32-KV8-D128", 2, 2048, 32, 8, 128},
	} {
		a := &Attn{B: c.B, Tq: c.T, Tk: c.T, H: c.H, KV: c.KV, D: c.Dim, KStride: c.T * c.KV * c.Dim, Scale: float32(1 / math.Sqrt(float64(c.Dim)))}
		nq, nk := c.B*c.T*c.H*c.Dim, c.B*c.T*c.KV*c.Dim
		// Causal: half the T×T scores; 2 GEMM-like products of 2·D flops each.
		fwdFlops := 2 * 2 * float64(c.B*c.H) * float64(c.T) * float64(c.T) / 2 * float64(c.Dim)
		q, k, v := devFill(b, d, BF16, nq, 1), devFill(b, d, BF16, nk, 1), devFill(b, d, BF16, nk, 1)
		out, lse := devFill(b, d, BF16, nq, 0), devFill(b, d, F32, c.B*c.H*c.T, 0)
		b.Run(c.name+"/fwd", func(b *testing.B) {
			per := timeIt(b, d, func() error { return d.AttentionForward(a, out, lse, q, k, v) })
			b.ReportMetric(fwdFlops/per.Seconds()/1e12, "TFLOP/s")
		})
		dq, dk, dv, g := devFill(b, d, BF16, nq, 0), devFill(b, d, BF16, nk, 0), devFill(b, d, BF16, nk, 0), devFill(b, d, BF16, nq, 1)
		b.Run(c.name+"/bwd", func(b *testing.B) {
			per := timeIt(b, d, func() error { return d.AttentionBackward(a, dq, dk, dv, g, out, lse, q, k, v) })
			b.ReportMetric(2.5*fwdFlops/per.Seconds()/1e12, "TFLOP/s")
		})
	}
}

// BenchmarkDeviceMemoryBound reports the bandwidth of the bandwidth-bound
// kernels at GPT-2 124M training sizes (B*T = 16384 rows of 768, bf16).
func BenchmarkDeviceMemoryBound(b *testing.B) {
	d := needGPU(b)
	const rows, dim, vocab = 16384, 768, 50304
	x := devFill(b, d, BF16, rows*dim, 1)
	x2 := devFill(b, d, BF16, rows*dim, 1)
	y := devFill(b, d, BF16, rows*dim, 0)
	sum := devFill(b, d, BF16, rows*dim, 0)
	w := devFill(b, d, F32, dim, 1)
	dw := devFill(b, d, F32, dim, 0)
	rstd := devFill(b, d, F32, rows, 0)
	gbps := func(b *testing.B, bytes float64, per time.Duration) {
		b.ReportMetric(bytes/per.Seconds()/1e9, "GB/s")
	}
	b.Run("add-rmsnorm-fwd", func(b *testing.B) {
		per := timeIt(b, d, func() error { return d.AddRMSNormForward(sum, y, rstd, x, x2, w, rows, dim, 1e-5) })
		gbps(b, 4*rows*dim*2, per)
	})
	b.Run("rmsnorm-bwd", func(b *testing.B) {
		per := timeIt(b, d, func() error { return d.RMSNormBackward(y, dw, x2, sum, w, rstd, rows, dim) })
		gbps(b, 4*rows*dim*2, per)
	})
	b.Run("swiglu-fwd", func(b *testing.B) {
		per := timeIt(b, d, func() error { return d.SwiGLUForward(y, x, x2) })
		gbps(b, 3*rows*dim*2, per)
	})
	const xrows = 4096
	logits := devFill(b, d, BF16, xrows*vocab, 3)
	targets, err := d.FromHost(I32, make([]int32, xrows))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Free(targets)
	losses, lse := devFill(b, d, F32, xrows, 0), devFill(b, d, F32, xrows, 0)
	b.Run("xent-fwd-V50304", func(b *testing.B) {
		per := timeIt(b, d, func() error { return d.CrossEntropyForward(losses, lse, logits, targets, xrows, vocab) })
		gbps(b, xrows*vocab*2, per)
	})
	b.Run("xent-bwd-V50304", func(b *testing.B) {
		per := timeIt(b, d, func() error { return d.CrossEntropyBackward(logits, logits, lse, targets, xrows, vocab, 1e-9) })
		gbps(b, 3*xrows*vocab*2, per)
	})
	const params = 124 << 20
	p, g := devFill(b, d, F32, params, 1), devFill(b, d, F32, params, 1e-3)
	pbf := devFill(b, d, BF16, params, 0)
	opt, err := d.NewAdamW(params, 0.9, 0.95, 1e-8, 0.1, []Segment{{Off: 0, Len: params, Decay: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer opt.Free()
	b.Run("adamw-124M", func(b *testing.B) {
		per := timeIt(b, d, func() error { return opt.Update(p, g, 1e-4, pbf) })
		gbps(b, params*(4*7+2), per)
	})
	b.Run("gradnorm-124M", func(b *testing.B) {
		per := timeIt(b, d, func() error { _, err := d.GradNorm(g); return err })
		gbps(b, params*4, per)
	})
}

// BenchmarkDeviceLaunch measures the host cost of one small op: the hand-off
// to the device thread, argument packing and cuLaunchKernel.
func BenchmarkDeviceLaunch(b *testing.B) {
	d := needGPU(b)
	x := devFill(b, d, F32, 256, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Scale(x, 1); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDeviceCopy reports host-device bandwidth, pageable and pinned.
func BenchmarkDeviceCopy(b *testing.B) {
	d := needGPU(b)
	const n = 64 << 20 // floats: 256 MiB
	buf := devFill(b, d, F32, n, 0)
	host := make([]float32, n)
	pinned, err := d.AllocHost(n * 4)
	if err != nil {
		b.Fatal(err)
	}
	defer pinned.Free()
	for _, c := range []struct {
		name string
		h    []float32
	}{{"pageable", host}, {"pinned", pinned.Float32()}} {
		b.Run(c.name+"/htod", func(b *testing.B) {
			b.SetBytes(n * 4)
			for i := 0; i < b.N; i++ {
				if err := d.Upload(buf, c.h); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/dtoh", func(b *testing.B) {
			b.SetBytes(n * 4)
			for i := 0; i < b.N; i++ {
				if err := d.Download(c.h, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
