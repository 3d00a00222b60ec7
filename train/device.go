package train

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/model/gpu"
)

// deviceState is a trainer whose step runs on a GPU (Config.Device): the
// parameters, gradients and AdamW moments live on the device; the host
// model (and t.Opt's moments) are brought up to date before validation,
// evaluation and checkpoints.
type deviceState struct {
	dev   *cuda.Device
	owned bool // closed with the trainer
	model *gpu.Model
	opt   *cuda.AdamW
	stale bool // the host copies are older than the device's
}

// openDevice moves the step to the device Config.Device names ("" and
// "cpu": stay on the CPU; "auto": the GPU when one opens and the model is
// supported; "cuda": the GPU or an error).
func (t *Trainer) openDevice() error {
	name := t.Cfg.Device
	if name == "" {
		name = "cpu"
	}
	if name != "cpu" && (t.Comm.Size() > 1 || t.par != nil || t.distill != nil) {
		const why = "the cuda step runs one process, without an expert capacity factor or distillation, for now"
		if name == "auto" {
			slog.Info("device", "train", "cpu", "why", why)
			name = "cpu"
		} else {
			return errors.New("train: --device cuda: " + why + "; train this run with --device cpu")
		}
	}
	dev, err := gpu.OpenDevice(name, &t.Model.Cfg)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if dev == nil {
		return nil
	}
	if err := t.attachDevice(dev, true); err != nil {
		dev.Close()
		return err
	}
	t.gpu.owned = true
	return nil
}

// attachDevice moves the step to dev (the caller keeps it open), with bf16
// GEMM operands when bf16 (mixed precision, as --device cuda trains; f32
// otherwise).
func (t *Trainer) attachDevice(dev *cuda.Device, bf16 bool) error {
	g, err := gpu.Upload(dev, t.Model)
	if err == nil && bf16 {
		err = g.EnableBF16()
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	opt, err := g.NewAdamW(t.Opt.Beta1, t.Opt.Beta2, t.Opt.Eps, t.Opt.WeightDecay)
	if err == nil && t.Opt.Step > 0 { // resumed: the checkpoint's moments
		if err = dev.Upload(opt.M, t.Opt.M); err == nil {
			err = dev.Upload(opt.V, t.Opt.V)
		}
		opt.Step = t.Opt.Step
	}
	if err != nil {
		g.Free()
		return fmt.Errorf("train: device optimizer: %w", err)
	}
	// The host gradients are not used: clearing them every step would cost
	// a pass over the parameters' size for nothing.
	t.Model.Grads = t.Model.Grads[:0]
	t.gpu = &deviceState{dev: dev, model: g, opt: opt}
	return nil
}

// microBatch runs micro-batch k of accum on the device (the gradients are
// cleared at k == 0) and returns its loss, cross-entropy and MoE load.
func (s *deviceState) microBatch(k int, x, y []int32, b, t int, pk *model.Packed, accum int) (loss, ce float64, load [][]float32, err error) {
	if k == 0 {
		if err := s.model.ZeroGrad(); err != nil {
			return 0, 0, nil, err
		}
	}
	l, err := s.model.ForwardBackward(x, y, b, t, pk, 1/float32(accum))
	return l.Loss, l.CE, l.Load, err
}

// update applies AdamW on the device.
func (s *deviceState) update(lr float64) error {
	s.stale = true
	return s.model.Update(s.opt, lr)
}

// pullDevice brings the host model and optimizer state up to date with the
// device (nothing to do on the CPU or when they are current).
func (t *Trainer) pullDevice() error {
	s := t.gpu
	if s == nil || !s.stale {
		return nil
	}
	if err := s.model.DownloadParams(t.Model); err != nil {
		return fmt.Errorf("train: download parameters: %w", err)
	}
	if err := s.dev.Download(t.Opt.M, s.opt.M); err != nil {
		return fmt.Errorf("train: download optimizer state: %w", err)
	}
	if err := s.dev.Download(t.Opt.V, s.opt.V); err != nil {
		return fmt.Errorf("train: download optimizer state: %w", err)
	}
	t.Opt.Step = s.opt.Step
	s.stale = false
	return nil
}

// closeDevice releases the device (after pulling its state to the host).
func (t *Trainer) closeDevice() error {
	s := t.gpu
	if s == nil {
		return nil
	}
	err := t.pullDevice()
	t.gpu = nil
	err = errors.Join(err, s.opt.Free(), s.model.Free())
	if s.owned {
		err = errors.Join(err, s.dev.Close())
	}
	return err
}

// benchDevice is BenchTrain on a GPU: the same steps (forward, backward,
// clipping, AdamW), timed from the host with a device sync per step.
func benchDevice(bc BenchConfig, c model.Config, m *model.Model, dev *cuda.Device, x, y []int32) (*BenchResult, error) {
	g, err := gpu.Upload(dev, m)
	if err == nil {
		err = g.EnableBF16()
	}
	if err != nil {
		return nil, fmt.Errorf("bench train: %w", err)
	}
	defer g.Free()
	opt, err := g.NewAdamW(0.9, 0.95, 1e-8, 0.1)
	if err != nil {
		return nil, fmt.Errorf("bench train: %w", err)
	}
	defer opt.Free()
	var wall []float64
	for s := 0; s <= bc.Steps; s++ {
		t0 := time.Now()
		err := g.ZeroGrad()
		if err == nil {
			_, err = g.ForwardBackward(x, y, bc.Batch, bc.Seq, nil, 1)
		}
		if err == nil {
			_, err = g.ClipGrads(1)
		}
		if err == nil {
			err = g.Update(opt, 1e-4)
		}
		if err == nil {
			err = dev.Sync()
		}
		if err != nil {
			return nil, fmt.Errorf("bench train: step %d: %w", s, err)
		}
		if s > 0 { // the first step warms the pool and cuBLAS
			wall = append(wall, time.Since(t0).Seconds())
		}
	}
	total, _ := c.Params()
	i := dev.Info()
	r := &BenchResult{Preset: bc.Preset, Params: total, Batch: bc.Batch, Seq: bc.Seq,
		Device: fmt.Sprintf("cuda: %s (sm_%d, %s, bf16 GEMMs, f32 activations)", i.Name, i.SM, i.BLAS), MsPerStep: 1000 * median(wall), FLOPsPerToken: c.FLOPsPerToken(bc.Seq)}
	r.TokensPerS = float64(bc.Batch*bc.Seq) / median(wall)
	r.GFLOPS = r.FLOPsPerToken * r.TokensPerS / 1e9
	return r, nil
}

// validateDevice is Validate on the device: the same batches, read in
// order, through the device model's forward pass.
func (t *Trainer) validateDevice(n int) (float64, error) {
	return t.validateBatches(n, func(x, y []int32, B, T int) (float64, error) {
		l, err := t.gpu.model.Loss(x, y, B, T, nil)
		if err != nil {
			return 0, fmt.Errorf("validate: %w", err)
		}
		return l.CE, nil
	})
}
