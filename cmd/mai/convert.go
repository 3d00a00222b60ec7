package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/model"
)

func init() {
	var (
		from, to, out, dtype, name string
		shardMB                    int64
	)
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Convert a model between Hugging Face folders, MAI checkpoints and GGUF",
		Example: `  mai convert --from runs/tiny --to gguf --out tiny.gguf
  mai convert --from hf-llama --to gguf --dtype q8_0 --out llama-q8_0.gguf
  mai convert --from model.gguf --to hf --dtype bf16 --out hf-folder`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || out == "" {
				return fmt.Errorf("give --from DIR|FILE and --out PATH")
			}
			err := model.Convert(from, to, out, model.ConvertOptions{DType: dtype, MaxShard: shardMB << 20, Name: name})
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\n", out, to)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "model folder, run directory or .gguf file")
	f.StringVar(&to, "to", "hf", "output format: hf, gguf or mai")
	f.StringVar(&out, "out", "", "output folder (hf, mai) or file (gguf)")
	f.StringVar(&dtype, "dtype", "f32", "weight type: f32, bf16, f16; for gguf also q8_0, q4_0, q4_K")
	f.StringVar(&name, "name", "", "general.name of a GGUF file (default: the source's name)")
	f.Int64Var(&shardMB, "shard-mb", 0, "shard folders above this many MiB (default 5 GiB)")
	rootCmd.AddCommand(cmd)
}
