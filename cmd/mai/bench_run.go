package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/train"
)

func init() {
	var bc train.BenchConfig
	var asJSON bool
	tr := &cobra.Command{
		Use:   "train",
		Short: "Measure training steps (forward, backward, AdamW) of a preset: tokens/s and GFLOP/s",
		Example: `  mai bench train --preset gpt2-124m --batch 4 --seq 64 --steps 10
  mai bench train --preset tiny --batch 16 --seq 128 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := train.BenchTrain(bc)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(r)
			}
			if r.Device != "" {
				fmt.Printf("preset %s (%s params), batch %d × seq %d, %s\n", r.Preset, human(float64(r.Params)), r.Batch, r.Seq, r.Device)
				fmt.Printf("step %.1f ms, %.0f tokens/s, %.1f GFLOP/s\n", r.MsPerStep, r.TokensPerS, r.GFLOPS)
				return nil
			}
			fmt.Printf("preset %s (%s params), batch %d × seq %d, %d threads, %s kernels\n", r.Preset, human(float64(r.Params)), r.Batch, r.Seq, r.Threads, r.ISA)
			fmt.Printf("step %.1f ms (CPU %.1f ms), %.0f tokens/s, %.1f GFLOP/s = %.0f%% of the measured %.1f GFLOP/s FMA peak\n",
				r.MsPerStep, r.CPUMsPerStep, r.TokensPerS, r.GFLOPS, 100*r.FractionOfPeak, r.PeakGFLOPS)
			return nil
		},
	}
	f := tr.Flags()
	f.StringVar(&bc.Preset, "preset", "gpt2-124m", "model preset")
	f.IntVar(&bc.Batch, "batch", 4, "sequences per step")
	f.IntVar(&bc.Seq, "seq", 64, "tokens per sequence")
	f.IntVar(&bc.Steps, "steps", 10, "timed steps (after one warm-up step)")
	f.IntVar(&bc.Threads, "threads", 0, "CPU threads (0: all cores)")
	f.StringVar(&bc.Device, "device", "auto", "where the step runs: cpu, cuda, or auto (cuda when a GPU opens, else cpu)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	benchCmd.AddCommand(tr)

	var (
		path, preset string
		prompt, gen  int
		threads      int
		genJSON      bool
		cpuProfile   string
		keepF32      bool
		kvType       string
	)
	g := &cobra.Command{
		Use:   "generate",
		Short: "Measure prompt processing and batch-1 decode tokens/s",
		Example: `  mai bench generate --model model.gguf --prompt-tokens 128 --gen-tokens 64
  mai bench generate --preset small --prompt-tokens 128 --gen-tokens 64 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var m *model.Model
			kv, err := model.ParseKVType(kvType)
			if err != nil {
				return err
			}
			switch {
			case path != "" && preset != "":
				return fmt.Errorf("give --model or --preset, not both")
			case path != "":
				m, err = model.LoadAnyWith(path, model.LoadOptions{NoFloat32Copy: !keepF32})
			case preset != "":
				var c model.Config
				if c, err = model.Preset(preset); err == nil {
					if m, err = model.New(c, false); err == nil {
						m.Init(1)
					}
				}
			default:
				return fmt.Errorf("give --model PATH or --preset NAME")
			}
			if err != nil {
				return err
			}
			m.Pool = cpu.NewPool(threads)
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			r, err := infer.BenchGenerate(m, prompt, gen, kv)
			if err != nil {
				return err
			}
			if genJSON {
				return json.NewEncoder(os.Stdout).Encode(r)
			}
			fmt.Printf("weights %s (%s resident), peak RSS %s\n", model.FormatMix(m.DTypeMix()), humanBytes(m.ResidentWeightBytes()), humanBytes(r.PeakRSS))
			fmt.Printf("pp%d %.1f tokens/s, tg%d %.1f tokens/s (%d threads, %s kernels, %s KV cache; CPU: prefill %.0f ms, decode %.2f ms/token)\n",
				r.PromptTokens, r.PromptTokensPS, r.GenTokens, r.TokensPerS, r.Threads, r.ISA, r.KV, r.PromptCPUMs, r.GenCPUMsPerToken)
			return nil
		},
	}
	f = g.Flags()
	f.StringVar(&path, "model", "", "model folder, run directory or .gguf file")
	f.StringVar(&preset, "preset", "", "random-weight preset instead of a model")
	f.IntVar(&prompt, "prompt-tokens", 128, "prompt tokens (prefill)")
	f.IntVar(&gen, "gen-tokens", 64, "generated tokens (decode, batch 1)")
	f.IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	f.BoolVar(&genJSON, "json", false, "print JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the timed part to this file")
	f.BoolVar(&keepF32, "keep-f32", false, "also keep float32 copies of quantized weights (as training and the serving engine need)")
	f.StringVar(&kvType, "kv-cache", "f32", "KV cache type: f32 or f16 (half the memory and of the bytes decode reads at long contexts)")
	benchCmd.AddCommand(g)
}

// humanBytes renders a byte count in MiB or GiB.
func humanBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
