package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/train"
)

func init() {
	var o train.QuickstartOptions
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Train a small model on the Go standard library for a few minutes, then complete Go code with it",
		RunE: func(cmd *cobra.Command, args []string) error {
			return train.Quickstart(cmd.Context(), o, os.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Corpus, "corpus", "", "folder of text/source files (default: $(go env GOROOT)/src)")
	f.StringVar(&o.Preset, "preset", "tiny", "model preset")
	f.Float64Var(&o.Minutes, "minutes", 3, "training time budget")
	f.StringVar(&o.Out, "out", "./mai-quickstart", "run directory")
	f.IntVar(&o.Threads, "threads", 0, "CPU threads (0: all cores)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed")
	f.Int64Var(&o.MaxBytes, "max-bytes", 24<<20, "corpus bytes to read, spread over the tree")
	rootCmd.AddCommand(cmd)
}
