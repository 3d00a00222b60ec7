// Package gpu is the transformer's training step and decode on a
// backend/cuda Device: the forward pass, the loss, the backward pass,
// gradient clipping and AdamW, written out op by op over device buffers as
// llm.c's train_gpt2.cu does, for the families MAI's presets use: RMSNorm
// or LayerNorm, RoPE or learned positions, grouped-query attention
// (optional QK-norm and sliding window), SwiGLU or GELU MLPs, optional
// biases, a tied or untied head, and mixture-of-experts layers (top-k
// routing, normalized gates, shared expert, load-balancing and z losses;
// moe.go).
//
// It is not a second model definition: the parameters keep model.Model's
// flat layout (one f32 buffer for the weights, one for the gradients, at
// the same offsets), so a checkpoint is a download into a model.Model and
// the optimizer works on the same segments. The arithmetic is the CPU
// path's (nn and backend/cpu), with the same fusions: each residual sum is
// computed with the norm after it, and the classifier runs with the
// cross-entropy a chunk of rows at a time, its gradient taken at once, so
// the [B·T, V] logits are never held whole. Activations are f32; GEMM
// operands may be bf16 (EnableBF16).
//
// Forward with a Cache is prefill and incremental decoding (decode.go),
// model.Model.Forward with a KV cache on the device.
//
// Not yet here: RoPE scaling other than linear and llama3, bf16 activation
// storage, an expert capacity factor.
package gpu

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/model"
)

// tensor is one parameter: views of the weight and gradient buffers (and
// of the weights' bf16 copy in BF16 mode).
type tensor struct {
	w, g, wb *cuda.Buffer
}

// layer holds a block's parameters (nil views where the config has none).
type layer struct {
	attnNorm, attnNormB, mlpNorm, mlpNormB tensor
	q, k, v, o, qb, kb, vb, ob             tensor
	qNorm, kNorm                           tensor
	mlp                                    mlpW // dense layers
	// Mixture-of-experts layers.
	moe        bool
	router     tensor
	experts    []mlpW
	shared     *mlpW
	sharedGate tensor
}

// mlpW is one MLP's parameters and hidden size.
type mlpW struct {
	gate, up, down, gateB, upB, downB tensor
	hidden                            int
}

// Model is a model.Model's parameters and gradients on a device, with the
// activations of the last forward pass.
type Model struct {
	Cfg model.Config
	Dev *cuda.Device
	// Params and Grads are f32 buffers in model.Model's flat layout.
	Params, Grads *cuda.Buffer
	// ParamsBF16 is the parameters rounded to bf16, the GEMMs' weights in
	// BF16 mode (nil otherwise); Update keeps it current.
	ParamsBF16 *cuda.Buffer

	bf16 bool
	offs map[*cuda.Buffer]int // each weight view's offset

	segs   []cuda.Segment
	embed  tensor
	pos    tensor
	fnorm  tensor // final norm
	fnormB tensor
	head   tensor
	layers []layer

	cos, sin *cuda.Buffer // RoPE tables [MaxSeq, rot/2]
	acts     *acts        // sized for the last batch shape
}

// Supported reports why the cuda training step cannot run a config, or nil.
func Supported(c *model.Config) error {
	var why []string
	if c.Pos == "rope" && c.RopeScaling != nil {
		switch c.RopeScaling.Type {
		case "", "linear", "llama3":
		default:
			why = append(why, fmt.Sprintf("RoPE scaling %q", c.RopeScaling.Type))
		}
	}
	if c.HeadDim > 256 {
		why = append(why, fmt.Sprintf("head dimension %d (the attention kernels take up to 256)", c.HeadDim))
	}
	if len(why) > 0 {
		return fmt.Errorf("gpu: the cuda training step does not support %s yet (family %q); train it with --device cpu", strings.Join(why, ", "), c.Family)
	}
	return nil
}

// Upload copies m's parameters to dev and allocates gradients there. m must
// be a float32 model (not quantized).
func Upload(dev *cuda.Device, m *model.Model) (*Model, error) {
	if err := Supported(&m.Cfg); err != nil {
		return nil, err
	}
	if m.Quantized() {
		return nil, errors.New("gpu: the model is quantized; training needs float32 weights")
	}
	g := &Model{Cfg: m.Cfg, Dev: dev}
	var err error
	if g.Params, err = dev.FromHost(cuda.F32, m.Params); err != nil {
		return nil, fmt.Errorf("gpu: upload parameters: %w", err)
	}
	if g.Grads, err = dev.Alloc(cuda.F32, len(m.Params)); err != nil {
		g.Free()
		return nil, fmt.Errorf("gpu: allocate gradients: %w", err)
	}
	if err := dev.Zero(g.Grads); err != nil {
		g.Free()
		return nil, err
	}
	if err := g.bind(m); err != nil {
		g.Free()
		return nil, err
	}
	if m.Cfg.Pos == "rope" {
		cos, sin := ropeTables(&m.Cfg, m.Cfg.MaxSeq)
		if g.cos, err = dev.FromHost(cuda.F32, cos); err == nil {
			g.sin, err = dev.FromHost(cuda.F32, sin)
		}
		if err != nil {
			g.Free()
			return nil, fmt.Errorf("gpu: RoPE tables: %w", err)
		}
	}
	return g, nil
}

// bind makes views of every named parameter, as model.Model's bind does.
func (g *Model) bind(m *model.Model) error {
	byName := map[string]tensor{}
	g.offs = map[*cuda.Buffer]int{}
	for _, p := range m.Tensors {
		w, err := g.Params.View(p.Off, p.V.Len())
		if err != nil {
			return err
		}
		gr, err := g.Grads.View(p.Off, p.V.Len())
		if err != nil {
			return err
		}
		byName[p.Name] = tensor{w: w, g: gr}
		g.offs[w] = p.Off
		g.segs = append(g.segs, cuda.Segment{Off: p.Off, Len: p.V.Len(), Decay: p.Decay})
	}
	p := func(name string) tensor { return byName[name] }
	c := &g.Cfg
	g.embed = p("model.embed_tokens.weight")
	g.pos = p("model.embed_positions.weight")
	g.fnorm, g.fnormB = p("model.norm.weight"), p("model.norm.bias")
	g.head = p("lm_head.weight")
	if c.Tied {
		g.head = g.embed
	}
	if g.embed.w == nil || g.fnorm.w == nil || g.head.w == nil {
		return errors.New("gpu: the model lacks its embedding, final norm or head")
	}
	g.layers = make([]layer, c.Layers)
	for l := range g.layers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		L := &g.layers[l]
		L.attnNorm, L.attnNormB = p(pre+"input_layernorm.weight"), p(pre+"input_layernorm.bias")
		L.mlpNorm, L.mlpNormB = p(pre+"post_attention_layernorm.weight"), p(pre+"post_attention_layernorm.bias")
		a := pre + "self_attn."
		L.q, L.k, L.v, L.o = p(a+"q_proj.weight"), p(a+"k_proj.weight"), p(a+"v_proj.weight"), p(a+"o_proj.weight")
		L.qb, L.kb, L.vb, L.ob = p(a+"q_proj.bias"), p(a+"k_proj.bias"), p(a+"v_proj.bias"), p(a+"o_proj.bias")
		L.qNorm, L.kNorm = p(a+"q_norm.weight"), p(a+"k_norm.weight")
		if L.q.w == nil || L.o.w == nil {
			return fmt.Errorf("gpu: layer %d lacks a projection", l)
		}
		mlp := func(f string, hidden int) (mlpW, error) {
			w := mlpW{gate: p(f + "gate_proj.weight"), up: p(f + "up_proj.weight"), down: p(f + "down_proj.weight"),
				gateB: p(f + "gate_proj.bias"), upB: p(f + "up_proj.bias"), downB: p(f + "down_proj.bias"), hidden: hidden}
			if w.up.w == nil || w.down.w == nil || (c.MLP == "swiglu" && w.gate.w == nil) {
				return w, fmt.Errorf("gpu: layer %d lacks an MLP projection (%s)", l, f)
			}
			return w, nil
		}
		var err error
		if !c.IsMoE(l) {
			if L.mlp, err = mlp(pre+"mlp.", c.FFN); err != nil {
				return err
			}
			continue
		}
		L.moe = true
		L.router = p(pre + "mlp.gate.weight")
		if L.router.w == nil {
			return fmt.Errorf("gpu: layer %d lacks its router", l)
		}
		for e := 0; e < c.Experts; e++ {
			w, err := mlp(fmt.Sprintf("%smlp.experts.%d.", pre, e), c.ExpertHidden())
			if err != nil {
				return err
			}
			L.experts = append(L.experts, w)
		}
		if c.SharedExperts > 0 {
			w, err := mlp(pre+"mlp.shared_expert.", sharedHidden(c))
			if err != nil {
				return err
			}
			L.shared = &w
			L.sharedGate = p(pre + "mlp.shared_expert_gate.weight")
		}
	}
	return nil
}

// sharedHidden is the shared expert block's hidden size (model's layout).
func sharedHidden(c *model.Config) int {
	if c.SharedFFN > 0 {
		return c.SharedFFN
	}
	return c.SharedExperts * c.ExpertHidden()
}

// maxHidden is the largest MLP hidden size of any layer.
func maxHidden(c *model.Config) int {
	h := c.FFN
	if c.Experts > 0 {
		h = max(h, c.ExpertHidden())
		if c.SharedExperts > 0 {
			h = max(h, sharedHidden(c))
		}
	}
	return h
}

// all lists every parameter view.
func (g *Model) all() []*tensor {
	ts := []*tensor{&g.embed, &g.pos, &g.fnorm, &g.fnormB, &g.head}
	mlp := func(w *mlpW) {
		ts = append(ts, &w.gate, &w.up, &w.down, &w.gateB, &w.upB, &w.downB)
	}
	for l := range g.layers {
		L := &g.layers[l]
		ts = append(ts, &L.attnNorm, &L.attnNormB, &L.mlpNorm, &L.mlpNormB, &L.q, &L.k, &L.v, &L.o, &L.qb, &L.kb, &L.vb, &L.ob,
			&L.qNorm, &L.kNorm, &L.router, &L.sharedGate)
		mlp(&L.mlp)
		for e := range L.experts {
			mlp(&L.experts[e])
		}
		if L.shared != nil {
			mlp(L.shared)
		}
	}
	return ts
}

// EnableBF16 switches the GEMMs to bf16 operands with f32 accumulation and
// f32 outputs (tensor cores; the way mixed-precision training runs them):
// weights come from a bf16 copy of the parameters that Update refreshes,
// activations and gradients are rounded to bf16 as they enter a GEMM.
// Everything else (norms, attention, softmax, the loss, the weight
// gradients' accumulation and AdamW) stays f32.
func (g *Model) EnableBF16() error {
	if g.bf16 {
		return nil
	}
	b, err := g.Dev.Alloc(cuda.BF16, g.Params.Len())
	if err != nil {
		return fmt.Errorf("gpu: bf16 parameters: %w", err)
	}
	if err := g.Dev.Cast(b, g.Params); err != nil {
		g.Dev.Free(b)
		return err
	}
	g.ParamsBF16, g.bf16 = b, true
	if g.acts != nil { // sized without the cast buffers
		if err := g.acts.free(g.Dev); err != nil {
			return err
		}
		g.acts = nil
	}
	set := func(t *tensor) error {
		if t.w == nil {
			return nil
		}
		var err error
		t.wb, err = b.View(g.offs[t.w], t.w.Len())
		return err
	}
	var errs []error
	for _, t := range g.all() {
		errs = append(errs, set(t))
	}
	return errors.Join(errs...)
}

// Update applies one AdamW step with learning rate lr (and refreshes the
// bf16 weights in BF16 mode, in the same pass).
func (g *Model) Update(opt *cuda.AdamW, lr float64) error {
	return opt.Update(g.Params, g.Grads, lr, g.ParamsBF16)
}

// Segments describes the flat buffers for the optimizer (where weight
// decay applies), as model.Model.Segments.
func (g *Model) Segments() []cuda.Segment { return g.segs }

// NewAdamW returns a device AdamW over the model's parameters.
func (g *Model) NewAdamW(beta1, beta2, eps, wd float64) (*cuda.AdamW, error) {
	return g.Dev.NewAdamW(g.Params.Len(), beta1, beta2, eps, wd, g.segs)
}

// ZeroGrad clears the gradients.
func (g *Model) ZeroGrad() error { return g.Dev.Zero(g.Grads) }

// ClipGrads scales the gradients so that their global norm is at most
// maxNorm (nothing when maxNorm <= 0), as nn.ClipGrads, and returns the
// norm before clipping.
func (g *Model) ClipGrads(maxNorm float64) (float64, error) { return g.Dev.ClipGrads(g.Grads, maxNorm) }

// UploadParams copies m's parameters (same config) to the device.
func (g *Model) UploadParams(m *model.Model) error {
	if len(m.Params) != g.Params.Len() {
		return fmt.Errorf("gpu: upload: %d parameters into a device model of %d", len(m.Params), g.Params.Len())
	}
	if err := g.Dev.Upload(g.Params, m.Params); err != nil {
		return err
	}
	if g.ParamsBF16 != nil {
		return g.Dev.Cast(g.ParamsBF16, g.Params)
	}
	return nil
}

// DownloadParams copies the device parameters into m (for checkpoints,
// validation and evaluation on the CPU).
func (g *Model) DownloadParams(m *model.Model) error {
	if len(m.Params) != g.Params.Len() {
		return fmt.Errorf("gpu: download: a device model of %d parameters into %d", g.Params.Len(), len(m.Params))
	}
	return g.Dev.Download(m.Params, g.Params)
}

// DownloadGrads copies the gradients into dst (len = parameter count).
func (g *Model) DownloadGrads(dst []float32) error { return g.Dev.Download(dst, g.Grads) }

// Free releases the model's device memory.
func (g *Model) Free() error {
	var errs []error
	if g.acts != nil {
		errs = append(errs, g.acts.free(g.Dev))
		g.acts = nil
	}
	for _, b := range []**cuda.Buffer{&g.Params, &g.Grads, &g.ParamsBF16, &g.cos, &g.sin} {
		if *b != nil {
			errs = append(errs, g.Dev.Free(*b))
			*b = nil
		}
	}
	return errors.Join(errs...)
}

// OpenDevice opens the device a --device flag names, for training cfg:
// "cpu" gives nil; "cuda" the first GPU, or an error naming what is
// missing (as `mai gpu info` reports it) or what cfg needs that the cuda
// step lacks; "auto" the GPU when one opens and cfg is supported, else nil.
// It logs the choice and, for auto, why the CPU was chosen.
// MAI_CUDA_EMULATOR=1 opens the CPU emulator of the kernels instead of a
// GPU (cuda.OpenEmulator: needs g++, slow; for tests without a GPU).
func OpenDevice(name string, cfg *model.Config) (*cuda.Device, error) {
	switch name {
	case "cpu":
		slog.Info("device", "train", "cpu")
		return nil, nil
	case "cuda", "auto":
	default:
		return nil, fmt.Errorf("unknown device %q (want cpu, cuda or auto)", name)
	}
	if err := Supported(cfg); err != nil {
		if name == "auto" {
			slog.Info("device", "train", "cpu", "why", err.Error())
			return nil, nil
		}
		return nil, err
	}
	open, what := func() (*cuda.Device, error) { return cuda.Open(cuda.Options{}) }, "cuda"
	if os.Getenv("MAI_CUDA_EMULATOR") == "1" {
		// The kernels on the CPU emulator (needs g++; slow): for testing the
		// GPU path end to end on a machine without one.
		open, what = cuda.OpenEmulator, "cuda emulator (MAI_CUDA_EMULATOR=1)"
	}
	dev, err := open()
	if err != nil {
		if name == "auto" {
			slog.Info("device", "train", "cpu", "why", "no CUDA device opened (`mai gpu info` says why)")
			return nil, nil
		}
		return nil, fmt.Errorf("--device cuda: %w (`mai gpu info` lists what was looked for)", err)
	}
	i := dev.Info()
	slog.Info("device", "train", what, "gpu", i.Name, "sm", i.SM, "memory_gib", float64(i.Memory)/(1<<30), "blas", i.BLAS)
	return dev, nil
}
