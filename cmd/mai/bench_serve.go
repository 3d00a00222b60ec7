package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/serve/loadgen"
)

func init() {
	var (
		cfg    loadgen.Config
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Load-test an OpenAI-compatible server: tokens/s, TTFT and inter-token latency at several concurrencies",
		Long: `Load-test a running OpenAI-compatible server (mai serve, llama.cpp's
llama-server, vLLM, ...). For each --streams level, that many clients each send
--requests-per-stream streamed requests one after another; every request asks
for --max-tokens tokens (with ignore_eos, so none stops early) after a prompt of
--prompt-tokens common words (about one token each; the table shows the
server's own count). Reported per level: aggregate output tokens/s, requests/s,
time to first token and inter-token latency percentiles, failures.`,
		Example: `  mai bench serve --url http://127.0.0.1:8080/v1 --model tiny
  mai bench serve --url http://127.0.0.1:8080/v1 --model m --streams 1,8,32 --prompt-tokens 128 --max-tokens 128 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.APIKey == "" {
				cfg.APIKey = os.Getenv("MAI_API_KEY")
			}
			if !asJSON {
				cfg.Progress = func(n int) { fmt.Fprintf(os.Stderr, "%d streams...\n", n) }
			}
			r, err := loadgen.Run(cmd.Context(), cfg)
			if err != nil {
				return fmt.Errorf("bench serve: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return loadgen.WriteTable(cmd.OutOrStdout(), r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080/v1", "API base URL")
	f.StringVar(&cfg.Model, "model", "", "model name to request")
	f.StringVar(&cfg.APIKey, "api-key", "", "API key (default $MAI_API_KEY)")
	f.BoolVar(&cfg.Chat, "chat", false, "send /chat/completions instead of /completions")
	f.IntSliceVar(&cfg.Streams, "streams", []int{1, 8, 32}, "concurrency levels")
	f.IntVar(&cfg.PromptWords, "prompt-tokens", 128, "prompt length in words (about one token each)")
	f.IntVar(&cfg.MaxTokens, "max-tokens", 128, "max_tokens of each request")
	f.IntVar(&cfg.RequestsPerStream, "requests-per-stream", 4, "requests each stream sends in turn")
	f.BoolVar(&cfg.IgnoreEOS, "ignore-eos", true, `send "ignore_eos": true (an extension; turn off for servers that reject it)`)
	f.IntVar(&cfg.Warmup, "warmup", 1, "uncounted requests sent first (-1: none)")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of the prompts' words (0: random, so a rerun misses the server's prefix cache)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "longest one request may take")
	f.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's process id on this Linux machine: report its CPU time and output tokens per CPU-second")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.MarkFlagRequired("model")
	benchCmd.AddCommand(cmd)
}
