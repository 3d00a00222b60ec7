// Command mai builds your own large language model: tokenizer, data, training,
// evaluation and serving in one binary.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the command registry: each command file adds itself in init.
var rootCmd = &cobra.Command{
	Use:           "mai",
	Short:         "Build your own large language model",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "mai: %v\n", err)
		os.Exit(1)
	}
}
