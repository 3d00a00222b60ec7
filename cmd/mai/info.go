package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/plan"
)

func init() {
	var (
		preset, dir string
		seq         int
		list        bool
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Describe a model preset or folder: parameters, FLOPs per token, training memory",
		Example: `  mai info --preset gpt2-124m
  mai info --presets
  mai info --model runs/tiny --json
  mai info --model tiny-q4_K.gguf`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				return printPresets(seq)
			}
			var cfg model.Config
			var fi *model.FileInfo
			var err error
			source := ""
			switch {
			case preset != "" && dir != "":
				return fmt.Errorf("give --preset or --model, not both")
			case preset != "":
				cfg, err = model.Preset(preset)
				source = "preset " + preset
			case dir != "":
				if fi, err = model.Inspect(dir); err == nil {
					cfg, source = fi.Config, fi.Path
				}
			default:
				return fmt.Errorf("give --preset NAME, --model DIR or --presets")
			}
			if err != nil {
				return err
			}
			s := plan.Describe(cfg, seq)
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"source": source, "config": cfg, "summary": s, "file": fi})
			}
			printInfo(source, &cfg, s, fi)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&preset, "preset", "", "preset name")
	f.StringVar(&dir, "model", "", "model folder, run directory or .gguf file")
	f.IntVar(&seq, "seq", 0, "sequence length for FLOPs (default: the context length)")
	f.BoolVar(&list, "presets", false, "list all presets")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	rootCmd.AddCommand(cmd)
}

func printInfo(source string, c *model.Config, s plan.Summary, fi *model.FileInfo) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "model\t%s (%s)\n", source, c.Family)
	arch := fmt.Sprintf("%d layers, dim %d, %d heads (%d KV, head dim %d), vocab %d, context %d, %s, %s, %s",
		c.Layers, c.Dim, c.Heads, c.KVHeads, c.HeadDim, c.Vocab, c.MaxSeq, c.Norm, c.Pos, c.MLP)
	if c.Experts > 0 {
		arch += fmt.Sprintf(", MoE %d experts top-%d (expert ffn %d, %d shared)", c.Experts, c.TopK, c.ExpertHidden(), c.SharedExperts)
	} else {
		arch += fmt.Sprintf(", ffn %d", c.FFN)
	}
	fmt.Fprintf(w, "architecture\t%s\n", arch)
	fmt.Fprintf(w, "parameters\t%s total, %s active per token\n", human(float64(s.TotalParams)), human(float64(s.ActiveParams)))
	if fi != nil {
		fmt.Fprintf(w, "file\t%s, %s (%s), %s stored values\n", fi.Format, byteSize(float64(fi.FileBytes)), fi.Arch, human(float64(fi.Params)))
		fmt.Fprintf(w, "dtype mix\t%s\n", model.FormatMix(fi.Mix))
	}
	fmt.Fprintf(w, "training FLOPs/token\t%s\n", human(s.FLOPsPerToken))
	fmt.Fprintf(w, "weights\t%s (bf16), %s (f32)\n", byteSize(s.WeightBytesBF16), byteSize(s.WeightBytesF32))
	fmt.Fprintf(w, "gradients (f32)\t%s\n", byteSize(s.GradBytes))
	fmt.Fprintf(w, "AdamW state (f32 m, v)\t%s\n", byteSize(s.AdamBytes))
	fmt.Fprintf(w, "mixed-precision training\t%s before sharding (16 bytes/param), plus activations\n", byteSize(s.TrainBytesMixed))
	fmt.Fprintf(w, "compute-optimal tokens\t%s (20 per parameter)\n", human(s.ComputeOptimal))
	w.Flush()
}

func printPresets(seq int) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "preset\tfamily\tlayers\tdim\theads\texperts\ttotal\tactive\tFLOPs/token")
	for _, n := range model.Presets() {
		c, _ := model.Preset(n)
		s := plan.Describe(c, seq)
		ex := "-"
		if c.Experts > 0 {
			ex = fmt.Sprintf("%d (top %d)", c.Experts, c.TopK)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", n, c.Family, c.Layers, c.Dim, c.Heads, ex,
			human(float64(s.TotalParams)), human(float64(s.ActiveParams)), human(s.FLOPsPerToken))
	}
	return w.Flush()
}

func human(v float64) string {
	for _, u := range []struct {
		s string
		f float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if v >= u.f {
			return fmt.Sprintf("%.2f%s", v/u.f, u.s)
		}
	}
	return fmt.Sprintf("%.0f", v)
}

func byteSize(b float64) string {
	for _, u := range []struct {
		s string
		f float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= u.f {
			return fmt.Sprintf("%.2f %s", b/u.f, u.s)
		}
	}
	return fmt.Sprintf("%.0f B", b)
}
