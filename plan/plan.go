// Package plan works out the arithmetic of a training run at scale: parameters
// (total and active), FLOPs per token, compute-optimal tokens, memory per GPU
// under data, ZeRO, tensor, pipeline and expert parallelism and activation
// recomputation, a parallel layout that fits, and the time and cost of the
// run on a given cluster at an assumed model-FLOPs utilization.
//
// Every formula and default is documented, with its source, in docs/plan.md.
package plan

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/model"
)

// ChinchillaTokensPerParam is the compute-optimal ratio of training tokens to
// parameters from Hoffmann et al. 2022 ("Training Compute-Optimal Large
// Language Models"), about 20.
const ChinchillaTokensPerParam = 20

// DefaultHeadroom is the fraction of GPU memory a layout leaves free for
// allocator fragmentation, temporary buffers and spikes.
const DefaultHeadroom = 0.10

// DefaultMaxSeq caps the default training sequence length: long-context
// models are pretrained mostly at 4K-8K and extended at the end.
const DefaultMaxSeq = 8192

// Bounds on what the planner accepts, so that absurd inputs fail clearly
// instead of overflowing or searching for ever.
const (
	maxGPUs    = 10_000_000
	maxLayers  = 10_000
	maxExperts = 100_000
	maxParams  = 1e16
	maxPP      = 256 // deepest pipeline searched
)

// Options describes a run to plan. Zero values select documented defaults.
type Options struct {
	Model     model.Config // the model to train
	ModelName string       // how to call it in reports

	GPU  GPU // accelerator (see LookupGPU); its fields may be overridden
	GPUs int // GPUs in the cluster

	Tokens            float64 // training tokens; 0 = compute-optimal (ChinchillaTokensPerParam)
	Seq               int     // sequence length; 0 = min(model context, DefaultMaxSeq)
	GlobalBatchTokens float64 // tokens per optimizer step; 0 = DefaultGlobalBatch
	MFU               float64 // assumed model-FLOPs utilization; 0 = DefaultMFU
	PriceUSD          float64 // $ per GPU-hour; 0 = the GPU's default
	Headroom          float64 // fraction of memory kept free; 0 = DefaultHeadroom
	KernelEfficiency  float64 // time model's compute efficiency; 0 = DefaultKernelEfficiency

	Fix Constraint // dimensions of the layout to pin; the rest are searched
}

// Result is a worked-out plan. Times, GPU-hours and cost come from the assumed
// MFU; the layout carries an independent modeled step time (communication,
// pipeline bubble, recomputation) as a cross-check.
type Result struct {
	Model         string  `json:"model"`
	Family        string  `json:"family"`
	MoE           bool    `json:"moe"`
	TotalParams   int64   `json:"total_params"`
	ActiveParams  int64   `json:"active_params"`
	FLOPsPerToken float64 `json:"flops_per_token"`
	Seq           int     `json:"seq"`

	Tokens               float64 `json:"tokens"`
	ComputeOptimalTokens float64 `json:"compute_optimal_tokens"`
	TokensPerParam       float64 `json:"tokens_per_param"`
	TotalFLOPs           float64 `json:"total_flops"`

	GPU       GPU     `json:"gpu"`
	GPUs      int     `json:"gpus"`
	MFU       float64 `json:"mfu"`
	MFUSource string  `json:"mfu_source"`

	GlobalBatchTokens float64 `json:"global_batch_tokens"`
	Steps             float64 `json:"steps"`
	StepTimeS         float64 `json:"step_time_s"` // at the assumed MFU
	Days              float64 `json:"days"`
	GPUHours          float64 `json:"gpu_hours"` // every GPU of the cluster, for the whole run
	PriceUSD          float64 `json:"price_per_gpu_hour"`
	CostUSD           float64 `json:"cost_usd"`

	ModeledDays     float64 `json:"modeled_days"` // at the layout model's step time
	ModeledGPUHours float64 `json:"modeled_gpu_hours"`

	MemoryPerGPUGB float64  `json:"memory_per_gpu_gb"`
	Layout         Layout   `json:"layout"`
	Alternatives   []Layout `json:"alternatives,omitempty"`
	Notes          []string `json:"notes,omitempty"`
}

// DefaultGlobalBatch is the global batch, in tokens, assumed for a run of
// totalFLOPs: the compute-optimal batch fitted by DeepSeek-AI 2024 ("DeepSeek
// LLM", B_opt = 0.292·C^0.3271 tokens), clamped to [0.5M, 64M] tokens.
func DefaultGlobalBatch(totalFLOPs float64) float64 {
	b := 0.2920 * math.Pow(totalFLOPs, 0.3271)
	return math.Min(math.Max(b, 0.5e6), 64e6)
}

// Plan works out a training run.
func Plan(o Options) (*Result, error) {
	cfg := o.Model
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	switch {
	case o.GPUs < 1:
		return nil, fmt.Errorf("plan: GPU count must be at least 1, got %d", o.GPUs)
	case o.GPU.PeakTFLOPS <= 0 || o.GPU.MemoryGB <= 0:
		return nil, fmt.Errorf("plan: GPU %q needs a positive peak TFLOP/s and memory", o.GPU.Name)
	case o.GPU.NVLinkGBs <= 0 || o.GPU.NetGBs <= 0 || o.GPU.HBMGBs <= 0:
		return nil, fmt.Errorf("plan: GPU %q needs positive NVLink, network and HBM bandwidths", o.GPU.Name)
	case o.Tokens < 0 || math.IsNaN(o.Tokens) || math.IsInf(o.Tokens, 0):
		return nil, fmt.Errorf("plan: tokens must be positive, got %g", o.Tokens)
	case o.Seq < 0:
		return nil, fmt.Errorf("plan: sequence length must be positive, got %d", o.Seq)
	case o.GlobalBatchTokens < 0 || math.IsNaN(o.GlobalBatchTokens) || math.IsInf(o.GlobalBatchTokens, 0):
		return nil, fmt.Errorf("plan: global batch must be positive, got %g tokens", o.GlobalBatchTokens)
	case o.MFU < 0 || o.MFU > 1 || math.IsNaN(o.MFU):
		return nil, fmt.Errorf("plan: MFU must be in (0, 1], got %g", o.MFU)
	case o.PriceUSD < 0 || math.IsNaN(o.PriceUSD) || math.IsInf(o.PriceUSD, 0):
		return nil, fmt.Errorf("plan: price must be non-negative, got %g", o.PriceUSD)
	case o.Headroom < 0 || o.Headroom >= 0.9 || math.IsNaN(o.Headroom):
		return nil, fmt.Errorf("plan: headroom must be in [0, 0.9), got %g", o.Headroom)
	case o.Fix.TP < 0 || o.Fix.PP < 0 || o.Fix.VPP < 0 || o.Fix.EP < 0 || o.Fix.DP < 0 || o.Fix.MicroBatch < 0:
		return nil, fmt.Errorf("plan: pinned layout sizes must be positive")
	case o.Fix.ZeRO != nil && (*o.Fix.ZeRO < 0 || *o.Fix.ZeRO > 3):
		return nil, fmt.Errorf("plan: ZeRO stage must be 0, 1, 2 or 3, got %d", *o.Fix.ZeRO)
	case o.Fix.Recompute != "" && o.Fix.Recompute != RecomputeNone && o.Fix.Recompute != RecomputeSelective && o.Fix.Recompute != RecomputeFull:
		return nil, fmt.Errorf("plan: recompute must be none, selective or full, got %q", o.Fix.Recompute)
	case o.KernelEfficiency < 0 || o.KernelEfficiency > 1 || math.IsNaN(o.KernelEfficiency):
		return nil, fmt.Errorf("plan: kernel efficiency must be in (0, 1], got %g", o.KernelEfficiency)
	}
	total, active := cfg.Params()
	switch {
	case o.GPUs > maxGPUs:
		return nil, fmt.Errorf("plan: %d GPUs is more than this planner handles (%d)", o.GPUs, maxGPUs)
	case cfg.Layers > maxLayers || cfg.Experts > maxExperts:
		return nil, fmt.Errorf("plan: %d layers and %d experts: the planner handles at most %d layers and %d experts", cfg.Layers, cfg.Experts, maxLayers, maxExperts)
	case float64(total) <= 0 || splitParams(&cfg, 1).total() > maxParams:
		// counted in float64 too: int64 parameter counts can wrap
		return nil, fmt.Errorf("plan: the model has %.3g parameters, outside the planner's range (1 to %.0e)", splitParams(&cfg, 1).total(), maxParams)
	}
	gpu := o.GPU
	if gpu.GPUsPerNode <= 0 {
		gpu.GPUsPerNode = 8
	}
	seq := o.Seq
	if seq == 0 {
		seq = min(cfg.MaxSeq, DefaultMaxSeq)
	}
	moe := cfg.Experts > 0
	r := &Result{
		Model: o.ModelName, Family: cfg.Family, MoE: moe,
		TotalParams: total, ActiveParams: active,
		FLOPsPerToken: cfg.FLOPsPerToken(seq), Seq: seq,
		GPU: gpu, GPUs: o.GPUs,
	}
	if r.Model == "" {
		r.Model = cfg.Family
	}
	// Chinchilla's fit is for dense models; for MoE, 20 tokens per active
	// parameter is the floor usually quoted, and real MoE runs go far beyond.
	base := float64(total)
	if moe {
		base = float64(active)
	}
	r.ComputeOptimalTokens = ChinchillaTokensPerParam * base
	r.Tokens = o.Tokens
	if r.Tokens == 0 {
		r.Tokens = r.ComputeOptimalTokens
		per := "parameter"
		if moe {
			per = "active parameter"
		}
		r.Notes = append(r.Notes, fmt.Sprintf("no token budget given: using the compute-optimal %s tokens (%d per %s)",
			FormatCount(r.Tokens), ChinchillaTokensPerParam, per))
	}
	r.TokensPerParam = r.Tokens / base
	r.TotalFLOPs = r.FLOPsPerToken * r.Tokens

	def := DefaultMFU(gpu, moe)
	r.MFU, r.MFUSource = o.MFU, "given with --mfu"
	if r.MFU == 0 {
		r.MFU, r.MFUSource = def.MFU, def.Source
	}
	r.PriceUSD = o.PriceUSD
	if r.PriceUSD == 0 {
		r.PriceUSD = gpu.PriceUSD
	}
	headroom := o.Headroom
	if headroom == 0 {
		headroom = DefaultHeadroom
	}
	eff := o.KernelEfficiency
	if eff == 0 {
		eff = DefaultKernelEfficiency
	}
	batch := o.GlobalBatchTokens
	if batch == 0 {
		batch = DefaultGlobalBatch(r.TotalFLOPs)
	}

	dense, moeShape := layerShapes(&cfg)
	sp := &searchSpace{
		cfg: &cfg, split: splitParams(&cfg, seq), dense: dense, moe: moeShape,
		gpu: gpu, gpus: o.GPUs, seq: seq, batch: batch,
		budget: gpu.MemoryGB * 1e9 * (1 - headroom), eff: eff, flopsTok: r.FLOPsPerToken, fix: o.Fix,
	}
	layouts, err := sp.search()
	if err != nil {
		if len(layouts) > 0 {
			r.Layout = layouts[0]
			r.MemoryPerGPUGB = r.Layout.Memory.TotalGB
		}
		return r, fmt.Errorf("plan: %w", err)
	}
	r.Layout = layouts[0]
	if len(layouts) > 1 {
		r.Alternatives = layouts[1:min(len(layouts), 6)]
	}
	r.MemoryPerGPUGB = r.Layout.Memory.TotalGB
	r.GlobalBatchTokens = r.Layout.GlobalBatchTokens
	r.Steps = math.Ceil(r.Tokens / r.GlobalBatchTokens)

	used := float64(r.Layout.GPUsUsed)
	peak := gpu.PeakTFLOPS * 1e12
	r.StepTimeS = r.FLOPsPerToken * r.GlobalBatchTokens / (used * peak * r.MFU)
	seconds := r.TotalFLOPs / (used * peak * r.MFU)
	r.Days = seconds / 86400
	r.GPUHours = float64(o.GPUs) * seconds / 3600
	r.CostUSD = r.GPUHours * r.PriceUSD
	modeled := r.Tokens / r.GlobalBatchTokens * r.Layout.Time.StepS
	r.ModeledDays = modeled / 86400
	r.ModeledGPUHours = float64(o.GPUs) * modeled / 3600

	if spare := o.GPUs - r.Layout.GPUsUsed; spare > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("the layout uses %d of %d GPUs; %d stay spare (hot standby) and are billed", r.Layout.GPUsUsed, o.GPUs, spare))
	}
	if rel := math.Abs(r.GlobalBatchTokens-batch) / batch; rel > 0.01 {
		r.Notes = append(r.Notes, fmt.Sprintf("global batch rounded from %s to %s tokens to fill whole micro-batches on %d data-parallel ranks",
			FormatCount(batch), FormatCount(r.GlobalBatchTokens), r.Layout.DP))
	}
	if m := r.Layout.Time.MFU; m < 0.8*r.MFU {
		r.Notes = append(r.Notes, fmt.Sprintf("the layout model reaches only %.0f%% MFU on this layout, below the assumed %.0f%%: the assumed time may be optimistic", 100*m, 100*r.MFU))
	} else if m > 1.25*r.MFU {
		r.Notes = append(r.Notes, fmt.Sprintf("the layout model allows %.0f%% MFU; the assumed %.0f%% is what published end-to-end runs reached (failures, restarts, stragglers and long-context phases included)", 100*m, 100*r.MFU))
	}
	if r.TokensPerParam < 0.5*ChinchillaTokensPerParam {
		r.Notes = append(r.Notes, fmt.Sprintf("%.1f tokens per parameter is well below compute-optimal (~%d): a smaller model trained longer would do better for the same compute", r.TokensPerParam, ChinchillaTokensPerParam))
	}
	return r, nil
}

// Summary is the size arithmetic of a model, for `mai info`.
type Summary struct {
	TotalParams     int64   `json:"total_params"`
	ActiveParams    int64   `json:"active_params"`
	FLOPsPerToken   float64 `json:"flops_per_token"`   // training (forward + backward) at seq
	WeightBytesBF16 float64 `json:"weight_bytes_bf16"` // 2 bytes per parameter
	WeightBytesF32  float64 `json:"weight_bytes_f32"`  // 4 bytes per parameter
	GradBytes       float64 `json:"grad_bytes"`        // FP32 gradients, 4 bytes per parameter (MAI's trainer)
	AdamBytes       float64 `json:"adam_bytes"`        // AdamW m and v in FP32, 8 bytes per parameter
	TrainBytesMixed float64 `json:"train_bytes_mixed"` // mixed-precision AdamW, 16 bytes per parameter, unsharded
	ComputeOptimal  float64 `json:"compute_optimal_tokens"`
}

// Describe returns the parameter, FLOP and memory arithmetic of a model at a
// sequence length (seq <= 0 uses the model's context length).
func Describe(cfg model.Config, seq int) Summary {
	if seq <= 0 {
		seq = cfg.MaxSeq
	}
	total, active := cfg.Params()
	t := float64(total)
	base := t
	if cfg.Experts > 0 {
		base = float64(active)
	}
	return Summary{
		TotalParams: total, ActiveParams: active, FLOPsPerToken: cfg.FLOPsPerToken(seq),
		WeightBytesBF16: 2 * t, WeightBytesF32: 4 * t, GradBytes: 4 * t, AdamBytes: 8 * t,
		TrainBytesMixed: MixedPrecisionBytes * t, ComputeOptimal: ChinchillaTokensPerParam * base,
	}
}
