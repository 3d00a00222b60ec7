package plan

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes a plan as readable tables.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	kind := "dense"
	if r.MoE {
		kind = "MoE"
	}
	fmt.Fprintf(&b, "Plan: %s on %d × %s\n\n", r.Model, r.GPUs, r.GPU.Name)

	t := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(t, "Model\t%s (%s)\n", r.Family, kind)
	fmt.Fprintf(t, "  parameters\t%s total, %s active\n", FormatCount(float64(r.TotalParams)), FormatCount(float64(r.ActiveParams)))
	fmt.Fprintf(t, "  FLOPs per token\t%.3g (training, sequence %d)\n", r.FLOPsPerToken, r.Seq)
	fmt.Fprintf(t, "  tokens\t%s (%.0f per %sparameter; compute-optimal %s)\n", FormatCount(r.Tokens), r.TokensPerParam,
		map[bool]string{true: "active "}[r.MoE], FormatCount(r.ComputeOptimalTokens))
	fmt.Fprintf(t, "  training FLOPs\t%.3g\n", r.TotalFLOPs)
	fmt.Fprintf(t, "Cluster\t%d × %s: %.0f TFLOP/s BF16, %.0f GB, NVLink %.0f GB/s, network %.0f GB/s per GPU\n",
		r.GPUs, r.GPU.Name, r.GPU.PeakTFLOPS, r.GPU.MemoryGB, r.GPU.NVLinkGBs, r.GPU.NetGBs)
	fmt.Fprintf(t, "  assumed MFU\t%.0f%%\n", 100*r.MFU)
	fmt.Fprintf(t, "  MFU source\t%s\n", r.MFUSource)
	t.Flush()

	l := r.Layout
	fmt.Fprintf(&b, "\nLayout\n")
	t = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	pp := fmt.Sprintf("%d", l.PP)
	if l.VPP > 1 {
		pp += fmt.Sprintf(" (interleaved, %d chunks per GPU)", l.VPP)
	}
	fmt.Fprintf(t, "  tensor parallel (TP)\t%d\n", l.TP)
	fmt.Fprintf(t, "  pipeline parallel (PP)\t%s\n", pp)
	if r.MoE {
		fmt.Fprintf(t, "  expert parallel (EP)\t%d\n", l.EP)
	}
	fmt.Fprintf(t, "  data parallel (DP)\t%d\n", l.DP)
	fmt.Fprintf(t, "  ZeRO stage\t%d\n", l.ZeRO)
	fmt.Fprintf(t, "  recomputation\t%s\n", l.Recompute)
	fmt.Fprintf(t, "  micro-batch\t%d × %d tokens, %d per step per replica\n", l.MicroBatch, r.Seq, l.GradAccum)
	fmt.Fprintf(t, "  global batch\t%s tokens\n", FormatCount(l.GlobalBatchTokens))
	fmt.Fprintf(t, "  GPUs used\t%d of %d\n", l.GPUsUsed, r.GPUs)
	t.Flush()

	m := l.Memory
	fmt.Fprintf(&b, "\nMemory per GPU (%s pipeline stage)\n", m.Stage)
	t = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, gb float64) { fmt.Fprintf(t, "  %s\t%.1f GB\t\n", name, gb) }
	row("weights (BF16)", m.WeightsGB)
	row("gradients (BF16)", m.GradientsGB)
	row("optimizer (FP32 master, m, v)", m.OptimizerGB)
	row("activations", m.ActivationsGB)
	row("buffers", m.BuffersGB)
	row("total", m.TotalGB)
	fmt.Fprintf(t, "  budget (%.0f GB less headroom)\t%.1f GB\t\n", r.GPU.MemoryGB, m.BudgetGB)
	t.Flush()

	s := l.Time
	fmt.Fprintf(&b, "\nModeled step (communication and bubble model)\n")
	t = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	sec := func(name string, v float64) { fmt.Fprintf(t, "  %s\t%.3f s\t\n", name, v) }
	sec("compute", s.ComputeS)
	if s.RecomputeS > 0 {
		sec("  of which recomputation", s.RecomputeS)
	}
	sec("pipeline bubble", s.BubbleS)
	sec("tensor-parallel comm", s.TPCommS)
	if r.MoE {
		sec("expert all-to-all", s.EPCommS)
	}
	sec("pipeline send/recv", s.PPCommS)
	sec("data-parallel comm", s.DPCommS)
	sec("optimizer", s.OptimizerS)
	sec("step", s.StepS)
	fmt.Fprintf(t, "  modeled MFU\t%.1f%%\t\n", 100*s.MFU)
	t.Flush()

	fmt.Fprintf(&b, "\nTime and cost (at the assumed %.0f%% MFU)\n", 100*r.MFU)
	t = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(t, "  step time\t%.2f s × %.0f steps\n", r.StepTimeS, r.Steps)
	fmt.Fprintf(t, "  wall clock\t%.1f days\n", r.Days)
	fmt.Fprintf(t, "  GPU-hours\t%s\n", FormatCount(r.GPUHours))
	fmt.Fprintf(t, "  cost\t$%s at $%.2f per GPU-hour\n", FormatCount(r.CostUSD), r.PriceUSD)
	fmt.Fprintf(t, "  modeled\t%.1f days, %s GPU-hours, $%s\n", r.ModeledDays, FormatCount(r.ModeledGPUHours), FormatCount(r.ModeledGPUHours*r.PriceUSD))
	t.Flush()

	if len(r.Alternatives) > 0 {
		fmt.Fprintf(&b, "\nOther layouts that fit (best of each TP×PP×EP shape)\n")
		t = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(t, "  TP\tPP\tVPP\tEP\tDP\tZeRO\trecompute\tmb\tGB/GPU\tstep s\tMFU\t\n")
		for _, a := range r.Alternatives {
			fmt.Fprintf(t, "  %d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%.1f\t%.2f\t%.1f%%\t\n",
				a.TP, a.PP, a.VPP, a.EP, a.DP, a.ZeRO, a.Recompute, a.MicroBatch, a.Memory.TotalGB, a.Time.StepS, 100*a.Time.MFU)
		}
		t.Flush()
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(&b, "\nNotes\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
