package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// The training step on a Device is checked against the CPU path (model's
// forward on an nn tape, its backward, nn.ClipGrads, nn.AdamW), on two
// devices:
//
//   - "emu": backend/cuda's kernels compiled with g++ against its CPU
//     emulation of CUDA (cuda.OpenEmulator), run where g++ is installed;
//   - "cuda": a real GPU, run where one opens.
//
// Each skips with the reason when unavailable; MAI_CUDA_EMU=off and
// MAI_CUDA_GPU=off skip one.
//
// Tolerances (f32 throughout; only summation orders differ):
//   - loss: 1e-5 relative; gradient norm: 1e-5 relative;
//   - gradients, per tensor: |got-want| <= 1e-4·(|want| + rms(want) +
//     1e-3·rms(all gradients)). Most tensors agree to 1e-6 on the emulator;
//     the query and key projections of later layers to about 1e-5, their
//     gradient being a difference of nearly equal terms while the softmax
//     is near uniform (small initial weights). The floor covers a gradient
//     that is zero in exact arithmetic: the key bias (softmax ignores a
//     per-query constant), whose values on both sides are rounding noise;
//   - AdamW: the device's parameters equal the CPU AdamW applied to the
//     device's own clipped gradients within 1e-6·lr + 4e-7·|p| (the same
//     arithmetic: bit-identical on the emulator; a GPU may fuse
//     multiply-adds);
//     end to end, parameters are within 0.05·lr of the CPU path's (a first
//     AdamW step moves a parameter by g/(|g|+eps)·lr, which for |g| near
//     eps turns a gradient's last-bit difference into a visible one).

const (
	tolLoss = 1e-5
	tolGrad = 1e-4
)

func TestMain(m *testing.M) {
	// Several classifier chunks per batch (5 rows of the tiny vocabulary).
	ceChunkBytes = 5 * 4 * 257
	os.Exit(m.Run())
}

var (
	emuDevice  = sync.OnceValues(cuda.OpenEmulator)
	cudaDevice = sync.OnceValues(func() (*cuda.Device, error) { return cuda.Open(cuda.Options{}) })
)

// forDevices runs fn on each available device as a subtest named after it.
func forDevices(t *testing.T, fn func(t *testing.T, d *cuda.Device)) {
	t.Helper()
	for _, dv := range []struct {
		name string
		open func() (*cuda.Device, error)
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

func shortReason(err error) string {
	var le *cuda.LibraryError
	if errors.As(err, &le) {
		return fmt.Sprintf("%s not found (%s); `mai gpu info` says where it was looked for", le.Lib, le.What)
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// configs are the families the step supports, at tiny sizes.
func configs(t *testing.T) map[string]model.Config {
	t.Helper()
	tiny, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	tiny.Layers = 2
	gpt2, err := model.Preset("gpt2-124m")
	if err != nil {
		t.Fatal(err)
	}
	gpt2.Vocab, gpt2.Dim, gpt2.Layers, gpt2.Heads, gpt2.KVHeads, gpt2.HeadDim, gpt2.FFN, gpt2.MaxSeq = 97, 64, 2, 4, 4, 16, 256, 32
	qwen := tiny // untied, QKV bias, QK-norm, sliding window, partial rotary, llama3 scaling
	qwen.Tied, qwen.QKVBias, qwen.QKNorm, qwen.SlidingWindow, qwen.PartialRotary = false, true, true, 5, 0.5
	qwen.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}
	moe, err := model.Preset("tiny-moe") // top-2 of 8 experts, normalized gates, a gated shared expert, aux and z losses
	if err != nil {
		t.Fatal(err)
	}
	moe.Layers, moe.MoEEvery = 2, 2 // a dense layer, then a MoE one
	moe.FFN = 96
	return map[string]model.Config{"tiny": tiny, "gpt2": gpt2, "qwen": qwen, "moe": moe}
}

// batchOf returns random ids and targets, a few targets ignored.
func batchOf(c *model.Config, b, t int, seed uint64) (x, y []int32) {
	rng := rand.New(rand.NewPCG(seed, 7))
	x, y = make([]int32, b*t), make([]int32, b*t)
	for i := range x {
		x[i], y[i] = int32(rng.IntN(c.Vocab)), int32(rng.IntN(c.Vocab))
		if i%7 == 3 {
			y[i] = -1
		}
	}
	return x, y
}

// cpuStep is the reference: one step of the CPU path, as train.Trainer
// runs it with one micro-batch.
type cpuStep struct {
	m    *model.Model
	opt  *nn.AdamW
	pool *cpu.Pool
}

func newPair(t *testing.T, d *cuda.Device, c model.Config) (*cpuStep, *Model, *cuda.AdamW) {
	t.Helper()
	m, err := model.New(c, true)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	// Non-trivial norm weights and biases, so their gradients matter.
	rng := rand.New(rand.NewPCG(5, 5))
	for _, p := range m.Tensors {
		if p.Decay {
			continue
		}
		for i := range p.V.Data {
			p.V.Data[i] += float32(rng.NormFloat64() * 0.1)
		}
	}
	g, err := Upload(d, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Free() })
	opt, err := g.NewAdamW(0.9, 0.95, 1e-8, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { opt.Free() })
	p := cpu.NewPool(1)
	m.Pool = p
	return &cpuStep{m: m, opt: nn.NewAdamW(len(m.Params), 0.9, 0.95, 1e-8, 0.1), pool: p}, g, opt
}

func (s *cpuStep) forwardBackward(t *testing.T, x, y []int32, b, tt int, pk *model.Packed) float64 {
	t.Helper()
	tp := nn.NewTape(s.pool, true)
	s.m.ZeroGrad()
	loss, _, _, err := s.m.LossPacked(tp, x, y, b, tt, pk)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	return float64(loss.Data[0])
}

func (s *cpuStep) update(clip, lr float64) float64 {
	n := nn.ClipGrads(s.m.Grads, clip)
	s.opt.Update(s.pool, s.m.Params, s.m.Grads, s.m.Segments(), lr)
	return n
}

// gpuStep is the same step on the device.
func gpuStep(t *testing.T, g *Model, opt *cuda.AdamW, x, y []int32, b, tt int, pk *model.Packed, clip, lr float64, grads, clipped []float32) (loss, norm float64) {
	t.Helper()
	if err := g.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	l, err := g.ForwardBackward(x, y, b, tt, pk, 1)
	if err != nil {
		t.Fatal(err)
	}
	loss = l.Loss
	if grads != nil {
		if err := g.DownloadGrads(grads); err != nil {
			t.Fatal(err)
		}
	}
	if norm, err = g.ClipGrads(clip); err != nil {
		t.Fatal(err)
	}
	if clipped != nil {
		if err := g.DownloadGrads(clipped); err != nil {
			t.Fatal(err)
		}
	}
	if err := opt.Update(g.Params, g.Grads, lr, nil); err != nil {
		t.Fatal(err)
	}
	return loss, norm
}

func rms(x []float32) float64 {
	var ss float64
	for _, w := range x {
		ss += float64(w) * float64(w)
	}
	return math.Sqrt(ss / float64(max(1, len(x))))
}

// worst returns the largest |got-want| / (|want| + rms(want) + floor) over
// a tensor.
func worst(got, want []float32, floor float64) float64 {
	rms := rms(want) + floor
	var e float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		den := math.Abs(float64(want[i])) + rms
		switch {
		case math.IsNaN(d):
			return math.Inf(1)
		case den == 0 && d > 0:
			return math.Inf(1)
		case den > 0:
			e = max(e, d/den)
		}
	}
	return e
}

func TestTrainStepMatchesCPU(t *testing.T) {
	forDevices(t, func(t *testing.T, d *cuda.Device) {
		for name, c := range configs(t) {
			t.Run(name, func(t *testing.T) {
				ref, g, opt := newPair(t, d, c)
				const b, tt, clip, lr = 2, 12, 0.5, 1e-2
				x, y := batchOf(&c, b, tt, 1)
				wantLoss := ref.forwardBackward(t, x, y, b, tt, nil)
				wantGrads := append([]float32(nil), ref.m.Grads...)
				start := append([]float32(nil), ref.m.Params...)
				wantNorm := ref.update(clip, lr)
				grads, clipped := make([]float32, len(ref.m.Grads)), make([]float32, len(ref.m.Grads))
				loss, norm := gpuStep(t, g, opt, x, y, b, tt, nil, clip, lr, grads, clipped)
				if math.Abs(loss-wantLoss) > tolLoss*math.Abs(wantLoss) {
					t.Errorf("loss %.7f, CPU %.7f", loss, wantLoss)
				}
				if math.Abs(norm-wantNorm) > tolLoss*wantNorm {
					t.Errorf("gradient norm %.7g, CPU %.7g", norm, wantNorm)
				}
				if wantNorm <= clip {
					t.Errorf("gradient norm %.3g does not exercise clipping at %g", wantNorm, clip)
				}
				worstGrad, floor := 0.0, 1e-3*rms(wantGrads)
				for _, p := range ref.m.Tensors {
					k := p.V.Len()
					e := worst(grads[p.Off:p.Off+k], wantGrads[p.Off:p.Off+k], floor)
					worstGrad = max(worstGrad, e)
					if e > tolGrad {
						t.Errorf("gradient of %s off by %.3g (tolerance %g)", p.Name, e, tolGrad)
					}
				}
				params := make([]float32, len(ref.m.Params))
				if err := d.Download(params, g.Params); err != nil {
					t.Fatal(err)
				}
				worstParam := 0.0
				for i, want := range ref.m.Params {
					worstParam = max(worstParam, math.Abs(float64(params[i])-float64(want))/lr)
				}
				if worstParam > 0.05 {
					t.Errorf("parameters after AdamW differ from the CPU path's by up to %.3g·lr", worstParam)
				}
				// The CPU AdamW on the device's clipped gradients, from the
				// parameters before the step.
				o := nn.NewAdamW(len(start), 0.9, 0.95, 1e-8, 0.1)
				o.Update(ref.pool, start, clipped, ref.m.Segments(), lr)
				worstAdam := 0.0
				for i, want := range start {
					// A GPU may fuse multiply-adds where the CPU rounds twice:
					// a few ulps of the parameter.
					d := math.Abs(float64(params[i])-float64(want)) - 4e-7*math.Abs(float64(want))
					worstAdam = max(worstAdam, d/lr)
				}
				if worstAdam > 1e-6 {
					t.Errorf("device AdamW differs from the CPU AdamW on the same gradients by up to %.3g·lr", worstAdam)
				}
				t.Logf("loss %.6f (CPU %.6f), grad norm %.6f (CPU %.6f), worst gradient error %.2g, parameters within %.2g·lr of the CPU path, AdamW within %.2g·lr",
					loss, wantLoss, norm, wantNorm, worstGrad, worstParam, worstAdam)
			})
		}
	})
}

// TestStepsMatchCPU runs three optimizer steps, the first with two
// accumulated micro-batches and the last over packed documents, and
// compares the losses and final parameters with the CPU path.
func TestStepsMatchCPU(t *testing.T) {
	forDevices(t, func(t *testing.T, d *cuda.Device) {
		for _, name := range []string{"tiny", "moe"} {
			t.Run(name, func(t *testing.T) { stepsMatchCPU(t, d, configs(t)[name]) })
		}
	})
}

func stepsMatchCPU(t *testing.T, d *cuda.Device, c model.Config) {
	{
		ref, g, opt := newPair(t, d, c)
		const b, tt, clip = 2, 10, 1.0
		for step := range 3 {
			lr := 3e-3 * float64(step+1)
			accum := 1
			if step == 0 {
				accum = 2
			}
			var pk *model.Packed
			if step == 2 {
				// Two documents per row: positions restart at 4.
				pk = &model.Packed{Pos: make([]int32, b*tt), Start: make([]int32, b*tt)}
				for i := range pk.Pos {
					p := i % tt
					if p >= 4 {
						pk.Pos[i], pk.Start[i] = int32(p-4), 4
					} else {
						pk.Pos[i] = int32(p)
					}
				}
			}
			// CPU: as train.Trainer accumulates micro-batches.
			ref.m.ZeroGrad()
			tp := nn.NewTape(ref.pool, true)
			var want, got float64
			for k := range accum {
				x, y := batchOf(&c, b, tt, uint64(10*step+k))
				tp.Reset()
				loss, _, _, err := ref.m.LossPacked(tp, x, y, b, tt, pk)
				if err != nil {
					t.Fatal(err)
				}
				if err := tp.Backward(tp.WeightedSum([]*nn.Var{loss}, []float32{1 / float32(accum)})); err != nil {
					t.Fatal(err)
				}
				want += float64(loss.Data[0]) / float64(accum)
			}
			wantNorm := ref.update(clip, lr)
			// Device.
			if err := g.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
			for k := range accum {
				x, y := batchOf(&c, b, tt, uint64(10*step+k))
				l, err := g.ForwardBackward(x, y, b, tt, pk, 1/float32(accum))
				if err != nil {
					t.Fatal(err)
				}
				got += l.Loss / float64(accum)
			}
			norm, err := g.ClipGrads(clip)
			if err != nil {
				t.Fatal(err)
			}
			if err := opt.Update(g.Params, g.Grads, lr, nil); err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-want) > tolLoss*want || math.Abs(norm-wantNorm) > tolLoss*wantNorm {
				t.Errorf("step %d: loss %.7f grad norm %.7f, CPU %.7f and %.7f", step, got, norm, want, wantNorm)
			}
			t.Logf("step %d: loss %.6f (CPU %.6f), grad norm %.6f (CPU %.6f)", step, got, want, norm, wantNorm)
		}
		// Validation loss (forward only) after the steps, and the downloaded
		// parameters.
		x, y := batchOf(&c, b, tt, 99)
		tp := nn.NewTape(ref.pool, false)
		_, ce, _, err := ref.m.Loss(tp, x, y, b, tt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.Loss(x, y, b, tt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(ce.Data[0]); math.Abs(got.CE-want) > 1e-4*want {
			t.Errorf("validation loss %.7f, CPU %.7f", got.CE, want)
		}
		m2, err := model.New(c, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.DownloadParams(m2); err != nil {
			t.Fatal(err)
		}
		worstParam := 0.0
		for i, want := range ref.m.Params {
			worstParam = max(worstParam, math.Abs(float64(m2.Params[i])-float64(want)))
		}
		if worstParam > 0.05*3e-3*3 {
			t.Errorf("parameters after three steps differ by up to %.3g", worstParam)
		}
	}
}

func TestUnsupportedAndBadInput(t *testing.T) {
	yarn, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	yarn.RopeScaling = &model.RopeScaling{Type: "yarn", Factor: 4}
	if err := Supported(&yarn); err == nil {
		t.Error("yarn RoPE scaling is reported supported")
	}
	forDevices(t, func(t *testing.T, d *cuda.Device) {
		c := configs(t)["tiny"]
		_, g, _ := newPair(t, d, c)
		x, y := batchOf(&c, 1, 4, 1)
		for name, f := range map[string]func() error{
			"target outside the vocabulary": func() error {
				y2 := append([]int32(nil), y...)
				y2[1] = int32(c.Vocab)
				_, err := g.Loss(x, y2, 1, 4, nil)
				return err
			},
			"id outside the vocabulary": func() error {
				x2 := append([]int32(nil), x...)
				x2[0] = -2
				_, err := g.Loss(x2, y, 1, 4, nil)
				return err
			},
			"shape": func() error { _, err := g.Loss(x, y, 2, 4, nil); return err },
			"too long": func() error {
				n := c.MaxSeq + 1
				_, err := g.Loss(make([]int32, n), make([]int32, n), 1, n, nil)
				return err
			},
		} {
			if err := f(); err == nil {
				t.Errorf("%s: no error", name)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
	})
}

// TestTrainStepBF16 runs the step with bf16 GEMM operands (EnableBF16)
// against the f32 CPU path: loss within 2e-3 relative; each gradient within
// 2e-2 in norm (‖got-want‖ ≤ 2e-2·(‖want‖ + 1e-3·rms(all)·√len); operands
// rounded to 8 mantissa bits, 2⁻⁹ relative each, through a few dozen
// dependent ops: 7e-3 measured on the emulator); the AdamW step on the
// device's gradients as in TestTrainStepMatchesCPU, and the bf16 weights
// the rounding of the f32 ones, bit for bit.
func TestTrainStepBF16(t *testing.T) {
	forDevices(t, func(t *testing.T, d *cuda.Device) {
		for _, name := range []string{"tiny", "gpt2"} {
			t.Run(name, func(t *testing.T) {
				c := configs(t)[name]
				ref, g, opt := newPair(t, d, c)
				if err := g.EnableBF16(); err != nil {
					t.Fatal(err)
				}
				const b, tt, lr = 2, 12, 1e-2
				x, y := batchOf(&c, b, tt, 1)
				wantLoss := ref.forwardBackward(t, x, y, b, tt, nil)
				start := append([]float32(nil), ref.m.Params...)
				if err := g.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				loss, err := g.ForwardBackward(x, y, b, tt, nil, 1)
				if err != nil {
					t.Fatal(err)
				}
				grads := make([]float32, len(start))
				if err := g.DownloadGrads(grads); err != nil {
					t.Fatal(err)
				}
				if err := g.Update(opt, lr); err != nil {
					t.Fatal(err)
				}
				if math.Abs(loss.Loss-wantLoss) > 2e-3*wantLoss {
					t.Errorf("loss %.6f, CPU %.6f", loss, wantLoss)
				}
				floor := 1e-3 * rms(ref.m.Grads)
				worstGrad := 0.0
				for _, p := range ref.m.Tensors {
					k := p.V.Len()
					got, want := grads[p.Off:p.Off+k], ref.m.Grads[p.Off:p.Off+k]
					var dd, ww float64
					for i := range want {
						dd += (float64(got[i]) - float64(want[i])) * (float64(got[i]) - float64(want[i]))
						ww += float64(want[i]) * float64(want[i])
					}
					e := math.Sqrt(dd) / (math.Sqrt(ww) + floor*math.Sqrt(float64(k)))
					worstGrad = max(worstGrad, e)
					if !(e <= 2e-2) {
						t.Errorf("gradient of %s off by %.3g in norm", p.Name, e)
					}
				}
				o := nn.NewAdamW(len(start), 0.9, 0.95, 1e-8, 0.1)
				o.Update(ref.pool, start, grads, ref.m.Segments(), lr)
				params := make([]float32, len(start))
				if err := d.Download(params, g.Params); err != nil {
					t.Fatal(err)
				}
				bf := make([]uint16, len(start))
				if err := d.Download(bf, g.ParamsBF16); err != nil {
					t.Fatal(err)
				}
				for i := range start {
					if math.Abs(float64(params[i])-float64(start[i])) > 1e-6*lr+4e-7*math.Abs(float64(start[i])) {
						t.Fatalf("parameter %d: %g after the device AdamW, %g after the CPU's on the same gradients", i, params[i], start[i])
					}
					if want := quantBF16(params[i]); bf[i] != want {
						t.Fatalf("bf16 parameter %d: %#04x, want %#04x (%g rounded)", i, bf[i], want, params[i])
					}
				}
				t.Logf("loss %.6f (CPU f32 %.6f), worst gradient error %.2g in norm", loss.Loss, wantLoss, worstGrad)
			})
		}
	})
}

// quantBF16 rounds to bf16 bits, nearest even (format/quant's rounding).
func quantBF16(f float32) uint16 {
	b := math.Float32bits(f)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
