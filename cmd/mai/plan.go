package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/plan"
)

// planFlags holds the flags of `mai plan`.
type planFlags struct {
	model, gpu, tokens, globalBatch  string
	gpus, seq, gpusPerNode           int
	mfu, price, gpuMem, nvlink, net  float64
	headroom, kernelEff              float64
	asJSON                           bool
	tp, pp, vpp, ep, dp, zero, micro int
	recompute                        string
}

func init() {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Work out parameters, memory, parallel layout, time and cost of a training run",
		Long: `Plan a pretraining run: parameters (total/active), FLOPs per token, compute-optimal
tokens, memory per GPU under DP/ZeRO/TP/PP/EP and activation recomputation, the fastest
parallel layout that fits, and time, GPU-hours and cost at an assumed MFU.

GPUs: ` + strings.Join(plan.GPUs(), ", ") + `. Counts take K, M, B, T suffixes (15.6T, 300B).
See docs/plan.md for every formula, default and source.`,
		Example: `  mai plan --model mai-1-500b --gpu h100 --gpus 15000 --tokens 10T
  mai plan --model path/to/config.json --gpu a100 --gpus 1024 --tokens 300B --seq 2048 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPlan(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "model preset name or path to a Hugging Face config.json (or its directory)")
	fl.StringVar(&f.gpu, "gpu", "h100", "GPU type: "+strings.Join(plan.GPUs(), ", "))
	fl.IntVar(&f.gpus, "gpus", 0, "number of GPUs in the cluster")
	fl.StringVar(&f.tokens, "tokens", "", "training tokens, e.g. 15.6T (default: compute-optimal, 20 per parameter)")
	fl.Float64Var(&f.mfu, "mfu", 0, "assumed model-FLOPs utilization in (0,1] (default: from published runs, printed with its source)")
	fl.IntVar(&f.seq, "seq", 0, "sequence length (default: the model's context, at most 8192)")
	fl.StringVar(&f.globalBatch, "global-batch", "", "tokens per optimizer step, e.g. 16M (default: DeepSeek LLM's compute-optimal batch fit)")
	fl.Float64Var(&f.price, "price", 0, "USD per GPU-hour (default: per GPU type)")
	fl.Float64Var(&f.gpuMem, "gpu-mem", 0, "override GPU memory, GB")
	fl.Float64Var(&f.nvlink, "nvlink", 0, "override intra-node bandwidth per GPU and direction, GB/s")
	fl.Float64Var(&f.net, "net", 0, "override inter-node bandwidth per GPU and direction, GB/s")
	fl.IntVar(&f.gpusPerNode, "gpus-per-node", 0, "override GPUs per NVLink node (default 8)")
	fl.Float64Var(&f.headroom, "headroom", 0, "fraction of GPU memory left free (default 0.10)")
	fl.Float64Var(&f.kernelEff, "kernel-eff", 0, "layout model: fraction of peak reached while computing (default 0.65)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON instead of tables")
	fl.IntVar(&f.tp, "tp", 0, "pin tensor-parallel size (default: searched over 1, 2, 4, 8)")
	fl.IntVar(&f.pp, "pp", 0, "pin pipeline-parallel size (default: searched)")
	fl.IntVar(&f.vpp, "vpp", 0, "pin interleaved pipeline chunks per GPU (default: searched over 1, 2, 3, 4, 8)")
	fl.IntVar(&f.ep, "ep", 0, "pin expert-parallel size (default: searched over divisors of the expert count)")
	fl.IntVar(&f.dp, "dp", 0, "pin data-parallel size (default: as many replicas as fit)")
	fl.IntVar(&f.zero, "zero", -1, "pin ZeRO stage 0-3 (default: searched)")
	fl.StringVar(&f.recompute, "recompute", "", "pin activation recomputation: none, selective or full (default: searched)")
	fl.IntVar(&f.micro, "micro-batch", 0, "pin sequences per micro-batch (default: searched over 1, 2, 4, 8)")
	rootCmd.AddCommand(cmd)
}

// runPlan turns flags into plan.Options and prints the result.
func runPlan(cmd *cobra.Command, f *planFlags) error {
	cfg, name, notes, err := plan.LoadModel(f.model)
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	gpu, err := plan.LookupGPU(f.gpu)
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	for _, o := range []struct {
		v   float64
		dst *float64
		fl  string
	}{{f.gpuMem, &gpu.MemoryGB, "--gpu-mem"}, {f.nvlink, &gpu.NVLinkGBs, "--nvlink"}, {f.net, &gpu.NetGBs, "--net"}} {
		if o.v < 0 {
			return fmt.Errorf("plan: %s must be positive, got %g", o.fl, o.v)
		}
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if f.gpusPerNode < 0 {
		return fmt.Errorf("plan: --gpus-per-node must be positive, got %d", f.gpusPerNode)
	}
	if f.gpusPerNode > 0 {
		gpu.GPUsPerNode = f.gpusPerNode
	}
	if f.gpus <= 0 {
		return fmt.Errorf("plan: --gpus is required and must be positive")
	}
	opts := plan.Options{Model: cfg, ModelName: name, GPU: gpu, GPUs: f.gpus, Seq: f.seq,
		MFU: f.mfu, PriceUSD: f.price, Headroom: f.headroom, KernelEfficiency: f.kernelEff}
	opts.Fix = plan.Constraint{TP: f.tp, PP: f.pp, VPP: f.vpp, EP: f.ep, DP: f.dp,
		Recompute: plan.Recompute(f.recompute), MicroBatch: f.micro}
	if f.zero >= 0 {
		z := f.zero
		opts.Fix.ZeRO = &z
	}
	if f.tokens != "" {
		if opts.Tokens, err = plan.ParseCount(f.tokens); err != nil {
			return fmt.Errorf("plan: --tokens: %w", err)
		}
	}
	if f.globalBatch != "" {
		if opts.GlobalBatchTokens, err = plan.ParseCount(f.globalBatch); err != nil {
			return fmt.Errorf("plan: --global-batch: %w", err)
		}
	}
	r, err := plan.Plan(opts)
	if err != nil {
		return err
	}
	r.Notes = append(notes, r.Notes...)
	out := cmd.OutOrStdout()
	if f.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("plan: writing JSON: %w", err)
		}
		return nil
	}
	if err := plan.WriteText(out, r); err != nil {
		return fmt.Errorf("plan: writing report: %w", err)
	}
	return nil
}
