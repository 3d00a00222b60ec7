package plan

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/mai-llm/mai/model"
)

// options builds plan options for a model file or preset on a named GPU.
func options(t *testing.T, modelSpec, gpu string, gpus int, tokens float64, seq int, batch float64) Options {
	t.Helper()
	c, name, _, err := LoadModel(modelSpec)
	if err != nil {
		t.Fatal(err)
	}
	g, err := LookupGPU(gpu)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Model: c, ModelName: name, GPU: g, GPUs: gpus, Tokens: tokens, Seq: seq, GlobalBatchTokens: batch}
}

// TestPublishedRuns checks that the planner, given a published run's model,
// cluster, tokens and batch and nothing else (default MFU), lands within ±30%
// of the GPU-hours the authors reported. Sources are cited in docs/plan.md.
func TestPublishedRuns(t *testing.T) {
	tests := []struct {
		name          string
		model, gpu    string
		gpus          int
		tokens        float64
		seq           int
		batch         float64
		reportedHours float64
	}{
		// Llama 3.1 model card: 30.84M H100-80GB hours for 405B; Llama 3
		// report: 15.6T tokens, 8K sequences, 16M-token batches, 16K H100s.
		{"Llama 3.1 405B", "testdata/llama-3.1-405b.json", "h100", 16384, 15.6e12, 8192, 2048 * 8192, 30.84e6},
		// Narayanan et al. 2021 §5.1: GPT-3 175B, 300B tokens, 1024 A100s,
		// batch 1536, 140 TFLOP/s per GPU: 34 days.
		{"GPT-3 175B on 1024 A100", "testdata/gpt3-175b.json", "a100", 1024, 300e9, 2048, 1536 * 2048, 34 * 24 * 1024},
		// Narayanan et al. 2021 Table 2 (PTD-P, 174.6B, batch 1536, 300B
		// tokens): 84, 43 and 23 days on 384, 768 and 1536 GPUs.
		{"GPT-3 175B on 384 A100", "testdata/gpt3-175b.json", "a100", 384, 300e9, 2048, 1536 * 2048, 84 * 24 * 384},
		{"GPT-3 175B on 768 A100", "testdata/gpt3-175b.json", "a100", 768, 300e9, 2048, 1536 * 2048, 43 * 24 * 768},
		{"GPT-3 175B on 1536 A100", "testdata/gpt3-175b.json", "a100", 1536, 300e9, 2048, 1536 * 2048, 23 * 24 * 1536},
		// Narayanan et al. 2021 §5.1: 1T model, 450B tokens, 3072 A100s,
		// 163 TFLOP/s per GPU: 84 days.
		{"1T on 3072 A100", "testdata/megatron-1t.json", "a100", 3072, 450e9, 2048, 3072 * 2048, 84 * 24 * 3072},
		// DeepSeek-V3 report: pre-training 2.664M H800 hours, 14.8T tokens,
		// 2048 H800s, 4K sequences, batch up to 15360 sequences (MLA and FP8
		// are outside this model; see docs/plan.md).
		{"DeepSeek-V3 on 2048 H800", "testdata/deepseek-v3.json", "h800", 2048, 14.8e12, 4096, 15360 * 4096, 2.664e6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Plan(options(t, tc.model, tc.gpu, tc.gpus, tc.tokens, tc.seq, tc.batch))
			if err != nil {
				t.Fatal(err)
			}
			ratio := r.GPUHours / tc.reportedHours
			t.Logf("%s: %.3gM GPU-hours at %.0f%% MFU vs %.3gM reported (%+.0f%%); modeled %.3gM (%+.0f%%), layout TP%d PP%d EP%d DP%d",
				tc.name, r.GPUHours/1e6, 100*r.MFU, tc.reportedHours/1e6, 100*(ratio-1),
				r.ModeledGPUHours/1e6, 100*(r.ModeledGPUHours/tc.reportedHours-1), r.Layout.TP, r.Layout.PP, r.Layout.EP, r.Layout.DP)
			if math.Abs(ratio-1) > 0.30 {
				t.Errorf("GPU-hours %.4g vs reported %.4g: off by %+.0f%%, more than 30%%", r.GPUHours, tc.reportedHours, 100*(ratio-1))
			}
			if r.MemoryPerGPUGB > r.Layout.Memory.BudgetGB || r.MemoryPerGPUGB > r.GPU.MemoryGB {
				t.Errorf("layout needs %.1f GB per GPU, over the budget %.1f", r.MemoryPerGPUGB, r.Layout.Memory.BudgetGB)
			}
		})
	}
}

// TestTimeModelAgainstPublishedLayouts pins the layouts the papers used and
// checks that the modeled MFU is within ±30% of the MFU they measured.
func TestTimeModelAgainstPublishedLayouts(t *testing.T) {
	zero := func(z int) *int { return &z }
	tests := []struct {
		name       string
		model, gpu string
		gpus, seq  int
		batch      float64
		fix        Constraint
		mfu        float64 // reported model-FLOPs utilization
	}{
		// Korthikanti et al. 2022, Tables 3 and 5 (selective recomputation +
		// sequence parallelism, A100 80GB, no data parallelism).
		{"Korthikanti 22B", "testdata/megatron-22b.json", "a100", 8, 2048, 4 * 2048,
			Constraint{TP: 8, PP: 1, MicroBatch: 4, Recompute: RecomputeSelective}, 0.415},
		{"Korthikanti 175B", "testdata/gpt3-175b.json", "a100", 64, 2048, 64 * 2048,
			Constraint{TP: 8, PP: 8, VPP: 3, MicroBatch: 1, Recompute: RecomputeSelective}, 0.514},
		{"Korthikanti 530B", "testdata/megatron-530b.json", "a100", 280, 2048, 280 * 2048,
			Constraint{TP: 8, PP: 35, VPP: 3, MicroBatch: 1, Recompute: RecomputeSelective}, 0.560},
		{"Korthikanti 530B, 8-way DP on 2240 GPUs", "testdata/megatron-530b.json", "a100", 2240, 2048, 8 * 280 * 2048,
			Constraint{TP: 8, PP: 35, VPP: 3, MicroBatch: 1, Recompute: RecomputeSelective}, 0.542},
		{"Korthikanti 1T", "testdata/megatron-1t.json", "a100", 512, 2048, 512 * 2048,
			Constraint{TP: 8, PP: 64, VPP: 1, MicroBatch: 1, Recompute: RecomputeSelective}, 0.563},
		// Narayanan et al. 2021, Table 1 (full recomputation; their FLOP/s
		// count the recomputed forward, 8 instead of 6 per parameter, so MFU
		// is 3/4 of X/312): 145.6B at 148 and 1T at 163 TFLOP/s per GPU.
		{"Narayanan 145.6B on 1536", "testdata/megatron-145b.json", "a100", 1536, 2048, 2304 * 2048,
			Constraint{TP: 8, PP: 8, MicroBatch: 1, Recompute: RecomputeFull, ZeRO: zero(1)}, 0.75 * 148 / 312},
		{"Narayanan 1T on 3072", "testdata/megatron-1t.json", "a100", 3072, 2048, 3072 * 2048,
			Constraint{TP: 8, PP: 64, MicroBatch: 1, Recompute: RecomputeFull, ZeRO: zero(1)}, 0.75 * 163 / 312},
		// Llama 3 report, Table 4: TP8 PP16 DP128 on 16,384 H100s, 16M-token
		// batch, 400 TFLOP/s per GPU (41% BF16 MFU); TP8 PP16 DP64 on 8,192
		// GPUs, 430 TFLOP/s (43%).
		{"Llama 3 405B on 16K H100", "testdata/llama-3.1-405b.json", "h100", 16384, 8192, 2048 * 8192,
			Constraint{TP: 8, PP: 16, DP: 128}, 0.41},
		{"Llama 3 405B on 8K H100", "testdata/llama-3.1-405b.json", "h100", 8192, 8192, 2048 * 8192,
			Constraint{TP: 8, PP: 16, DP: 64}, 0.43},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, tc.model, tc.gpu, tc.gpus, 1e12, tc.seq, tc.batch)
			o.Fix = tc.fix
			r, err := Plan(o)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Layout.Time.MFU
			t.Logf("%s: modeled MFU %.1f%% vs reported %.1f%% (%+.0f%%), %.1f GB/GPU, VPP %d ZeRO-%d %s",
				tc.name, 100*got, 100*tc.mfu, 100*(got/tc.mfu-1), r.MemoryPerGPUGB, r.Layout.VPP, r.Layout.ZeRO, r.Layout.Recompute)
			if math.Abs(got/tc.mfu-1) > 0.30 {
				t.Errorf("modeled MFU %.3f vs reported %.3f: off by more than 30%%", got, tc.mfu)
			}
		})
	}
}

// TestMAI500BOn15000H100 is the reference target of the project.
func TestMAI500BOn15000H100(t *testing.T) {
	o := options(t, "mai-1-500b", "h100", 15000, 10e12, 0, 0)
	r, err := Plan(o)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Layout
	if r.MemoryPerGPUGB >= 80 || l.Memory.TotalGB > l.Memory.BudgetGB {
		t.Errorf("memory per GPU %.1f GB (budget %.1f): want under 80 GB with headroom", r.MemoryPerGPUGB, l.Memory.BudgetGB)
	}
	if l.TP*l.PP*l.DP != l.GPUsUsed || l.GPUsUsed > 15000 || l.GPUsUsed < 14000 {
		t.Errorf("layout TP%d×PP%d×DP%d = %d GPUs of 15000", l.TP, l.PP, l.DP, l.GPUsUsed)
	}
	if l.EP < 1 || o.Model.Experts%l.EP != 0 || (l.TP*l.DP)%l.EP != 0 {
		t.Errorf("EP %d must divide %d experts and TP×DP %d", l.EP, o.Model.Experts, l.TP*l.DP)
	}
	if !near(float64(r.TotalParams), 5.2e11, 0.05) || !near(float64(r.ActiveParams), 3.3e10, 0.1) {
		t.Errorf("params %d total / %d active, want ~520B / ~33B", r.TotalParams, r.ActiveParams)
	}
	if r.Days <= 0 || r.GPUHours <= 0 || r.CostUSD <= 0 || r.Steps <= 0 {
		t.Errorf("days %g, GPU-hours %g, cost %g, steps %g: want positive", r.Days, r.GPUHours, r.CostUSD, r.Steps)
	}
	// 6·N_active·D sanity check: the plan's FLOPs are within 15% of it
	// (attention adds the rest).
	if got, approx := r.TotalFLOPs, 6*float64(r.ActiveParams)*r.Tokens; got < approx*0.9 || got > approx*1.15 {
		t.Errorf("total FLOPs %.3g vs 6ND %.3g", got, approx)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Layout", "tensor parallel (TP)", "expert parallel (EP)", "Memory per GPU", "optimizer", "activations", "GPU-hours", "cost", "MFU source"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestPlanJSON(t *testing.T) {
	r, err := Plan(options(t, "8b", "h100", 64, 1e12, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"total_params", "active_params", "flops_per_token", "gpu_hours", "days", "memory_per_gpu_gb", "layout", "mfu", "mfu_source", "cost_usd", "compute_optimal_tokens"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	lay, _ := m["layout"].(map[string]any)
	for _, k := range []string{"tp", "pp", "ep", "dp", "zero", "recompute", "micro_batch", "memory"} {
		if _, ok := lay[k]; !ok {
			t.Errorf("layout JSON lacks %q", k)
		}
	}
	mem, _ := lay["memory"].(map[string]any)
	for _, k := range []string{"weights_gb", "gradients_gb", "optimizer_gb", "activations_gb", "total_gb"} {
		if _, ok := mem[k]; !ok {
			t.Errorf("memory JSON lacks %q", k)
		}
	}
}

func TestPlanDefaults(t *testing.T) {
	o := options(t, "8b", "h100", 64, 0, 0, 0)
	r, err := Plan(o)
	if err != nil {
		t.Fatal(err)
	}
	total, _ := o.Model.Params()
	if r.Tokens != 20*float64(total) || r.ComputeOptimalTokens != r.Tokens {
		t.Errorf("default tokens %g, want 20 × %d", r.Tokens, total)
	}
	if r.Seq != 8192 || r.MFU != 0.40 || r.PriceUSD != 2.50 || r.MFUSource == "" {
		t.Errorf("defaults: seq %d, MFU %g, price %g, source %q", r.Seq, r.MFU, r.PriceUSD, r.MFUSource)
	}
	// --mfu and --price override; halving the MFU doubles time and cost.
	o.MFU, o.PriceUSD = 0.20, 5
	r2, err := Plan(o)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r2.Days, 2*r.Days, 1e-9) || !near(r2.CostUSD, 4*r.CostUSD, 1e-9) || r2.MFUSource != "given with --mfu" {
		t.Errorf("override: days %g vs %g, cost %g vs %g", r2.Days, r.Days, r2.CostUSD, r.CostUSD)
	}
	// GPU-hours are independent of the GPU count at fixed MFU.
	o.MFU, o.PriceUSD, o.GPUs = 0, 0, 128
	r3, err := Plan(o)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r3.GPUHours, r.GPUHours, 1e-9) || !near(r3.Days, r.Days/2, 1e-9) {
		t.Errorf("128 GPUs: %g GPU-hours, %g days; 64 GPUs: %g, %g", r3.GPUHours, r3.Days, r.GPUHours, r.Days)
	}
	moe := DefaultMFU(o.GPU, true)
	dense := DefaultMFU(o.GPU, false)
	if moe.MFU >= dense.MFU || moe.Source == "" || dense.Source == "" {
		t.Errorf("MoE default MFU %g should sit below dense %g, with sources", moe.MFU, dense.MFU)
	}
}

func TestPlanErrors(t *testing.T) {
	good := options(t, "8b", "h100", 64, 1e12, 0, 0)
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no GPUs", func(o *Options) { o.GPUs = 0 }, "GPU count"},
		{"MFU over 1", func(o *Options) { o.MFU = 1.5 }, "MFU"},
		{"negative tokens", func(o *Options) { o.Tokens = -1 }, "tokens"},
		{"bad headroom", func(o *Options) { o.Headroom = 0.95 }, "headroom"},
		{"bad recompute", func(o *Options) { o.Fix.Recompute = "some" }, "recompute"},
		{"bad model", func(o *Options) { o.Model.Heads = 0 }, "heads"},
		{"unsatisfiable pin", func(o *Options) { o.Fix.TP = 3 }, "pinned"},
		{"absurd model", func(o *Options) { o.Model.Dim, o.Model.HeadDim = 1<<30, 1<<25 }, "parameters"},
		{"absurd cluster", func(o *Options) { o.GPUs = 1 << 40 }, "GPUs"},
		{"nothing fits", func(o *Options) {
			c, _, _, _ := LoadModel("testdata/llama-3.1-405b.json")
			o.Model, o.GPUs = c, 8
		}, "nothing fits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			_, err := Plan(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestLayoutMemoryMonotone checks that each memory-saving knob saves memory.
func TestLayoutMemoryMonotone(t *testing.T) {
	o := options(t, "testdata/llama-3.1-405b.json", "h100", 1024, 1e12, 8192, 16e6)
	c := o.Model
	dense, moe := layerShapes(&c)
	sp := &searchSpace{cfg: &c, split: splitParams(&c, 8192), dense: dense, moe: moe, gpu: o.GPU, gpus: 1024,
		seq: 8192, batch: 16e6, budget: 72e9, eff: DefaultKernelEfficiency, flopsTok: c.FLOPsPerToken(8192)}
	base := candidate{tp: 8, pp: 8, vpp: 1, ep: 1, dp: 16, zero: 0, mb: 1, rc: RecomputeNone}
	eval := func(cd candidate) Layout {
		l, ok := sp.evaluate(cd)
		if !ok {
			t.Fatalf("candidate %+v rejected", cd)
		}
		return l
	}
	prev := eval(base)
	for z := 1; z <= 3; z++ {
		cd := base
		cd.zero = z
		l := eval(cd)
		if l.Memory.TotalGB >= prev.Memory.TotalGB {
			t.Errorf("ZeRO-%d: %.1f GB, not below ZeRO-%d's %.1f", z, l.Memory.TotalGB, z-1, prev.Memory.TotalGB)
		}
		prev = l
	}
	prevAct := eval(base).Memory.ActivationsGB
	for _, rc := range []Recompute{RecomputeSelective, RecomputeFull} {
		cd := base
		cd.rc = rc
		l := eval(cd)
		if l.Memory.ActivationsGB >= prevAct || l.Time.RecomputeS <= 0 {
			t.Errorf("%s: activations %.1f GB (before %.1f), recompute time %g", rc, l.Memory.ActivationsGB, prevAct, l.Time.RecomputeS)
		}
		prevAct = l.Memory.ActivationsGB
	}
	// Halving TP doubles the weights each GPU holds.
	cd := base
	cd.tp, cd.dp = 4, 32
	if w4, w8 := eval(cd).Memory.WeightsGB, eval(base).Memory.WeightsGB; !near(w4, 2*w8, 0.02) {
		t.Errorf("TP4 weights %.2f GB, TP8 %.2f GB: want twice", w4, w8)
	}
	// More micro-batches shrink the pipeline bubble's share.
	few, many := base, base
	few.mb, many.mb = 8, 1
	lf, lm := eval(few), eval(many)
	if lf.Time.BubbleS/lf.Time.StepS <= lm.Time.BubbleS/lm.Time.StepS {
		t.Errorf("bubble share with %d micro-batches %.3f, with %d %.3f", lf.GradAccum, lf.Time.BubbleS/lf.Time.StepS, lm.GradAccum, lm.Time.BubbleS/lm.Time.StepS)
	}
}

func TestDescribe(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-moe", "mai-1-500b"} {
		c, err := model.Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		s := Describe(c, 0)
		total, active := c.Params()
		n := float64(total)
		if s.TotalParams != total || s.ActiveParams != active || s.FLOPsPerToken != c.FLOPsPerToken(c.MaxSeq) {
			t.Errorf("%s: %+v", name, s)
		}
		if s.WeightBytesBF16 != 2*n || s.WeightBytesF32 != 4*n || s.GradBytes != 4*n || s.AdamBytes != 8*n || s.TrainBytesMixed != 16*n {
			t.Errorf("%s: byte counts %+v for %d params", name, s, total)
		}
		if (c.Experts > 0) != (s.ActiveParams < s.TotalParams) {
			t.Errorf("%s: active %d vs total %d", name, s.ActiveParams, s.TotalParams)
		}
	}
}

func TestLookupGPU(t *testing.T) {
	for _, name := range []string{"h100", "H200", "a100", "a100-40", "a100-80gb", "h800", "b200"} {
		g, err := LookupGPU(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if g.PeakTFLOPS <= 0 || g.MemoryGB <= 0 || g.NVLinkGBs <= 0 || g.NetGBs <= 0 || g.PriceUSD <= 0 || g.Source == "" {
			t.Errorf("%s: incomplete spec %+v", name, g)
		}
	}
	if _, err := LookupGPU("v100"); err == nil || !strings.Contains(err.Error(), "h100") {
		t.Errorf("unknown GPU: %v", err)
	}
}

func BenchmarkPlanMAI500B(b *testing.B) {
	c, err := model.Preset("mai-1-500b")
	if err != nil {
		b.Fatal(err)
	}
	g, _ := LookupGPU("h100")
	o := Options{Model: c, GPU: g, GPUs: 15000, Tokens: 10e12}
	for b.Loop() {
		if _, err := Plan(o); err != nil {
			b.Fatal(err)
		}
	}
}
