package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/model"
)

func init() {
	var (
		typ, outType, src, out string
		keepEmbd               bool
	)
	cmd := &cobra.Command{
		Use:   "quantize",
		Short: "Quantize a model's weights into a GGUF file (q8_0, q4_0, q4_K, q6_K, f16, bf16)",
		Example: `  mai quantize --type q4_K --model runs/tiny --out tiny-q4_K.gguf
  mai quantize --type q8_0 --model model-f32.gguf --out model-q8_0.gguf`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if src == "" || out == "" {
				return fmt.Errorf("give --model PATH and --out FILE.gguf")
			}
			t, err := model.ParseQuantType(typ)
			if err != nil {
				return err
			}
			opts := model.QuantizeOptions{Type: t, KeepEmbedding: keepEmbd}
			if outType != "" {
				if opts.OutputType, err = model.ParseQuantType(outType); err != nil {
					return err
				}
			}
			if err := model.QuantizeFile(src, out, opts); err != nil {
				return fmt.Errorf("quantize: %w", err)
			}
			info, err := model.Inspect(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, %s\n", out, byteSize(float64(info.FileBytes)), model.FormatMix(info.Mix))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "q8_0", "weight type: q8_0, q4_0, q4_K (or f16, bf16, q6_K, q5_0...)")
	f.StringVar(&outType, "output-type", "", "type of the output head (default: as llama-quantize, q6_K for 4-bit types)")
	f.BoolVar(&keepEmbd, "keep-embedding", false, "keep an untied token embedding in f32")
	f.StringVar(&src, "model", "", "model folder, run directory or .gguf file")
	f.StringVar(&out, "out", "", "output .gguf file")
	rootCmd.AddCommand(cmd)
}
