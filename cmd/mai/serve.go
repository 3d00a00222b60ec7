package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/serve"
)

func init() {
	var (
		models, drafts, keys []string
		addr                 string
		cfg                  serve.Config
		ecfg                 infer.EngineConfig
		kvMiB                int64
		kvType               string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve models over an OpenAI-compatible HTTP API",
		Long: `Serve one or more models over the OpenAI HTTP API (/v1/chat/completions,
/v1/completions, /v1/embeddings, /v1/models), with streaming, Prometheus
/metrics, /health and a web chat page at /. Stop with Ctrl-C: running
streams finish first.`,
		Example: `  mai serve --model tiny=runs/tiny --addr 127.0.0.1:8080
  mai serve --model big=models/llama --model small=models/tiny --draft big=models/tiny --api-key secret`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(models) == 0 {
				return fmt.Errorf("no model: give --model NAME=DIR")
			}
			draftOf := map[string]string{}
			for _, d := range drafts {
				name, dir, err := serve.ParseModelFlag(d)
				if err != nil {
					return fmt.Errorf("--draft: %w", err)
				}
				draftOf[name] = dir
			}
			if k := os.Getenv("MAI_API_KEY"); k != "" {
				keys = append(keys, k)
			}
			cfg.APIKeys = keys
			ecfg.KVBytes = kvMiB << 20
			var err error
			if ecfg.KV, err = model.ParseKVType(kvType); err != nil {
				return err
			}
			var loaded []*serve.Model
			for _, mv := range models {
				name, dir, err := serve.ParseModelFlag(mv)
				if err != nil {
					return err
				}
				m, err := serve.LoadModel(name, dir, draftOf[name], ecfg)
				if err != nil {
					for _, l := range loaded {
						l.Close()
					}
					return err
				}
				delete(draftOf, name)
				loaded = append(loaded, m)
			}
			for name := range draftOf {
				return fmt.Errorf("--draft %s: no --model has that name", name)
			}
			s, err := serve.New(cfg, loaded...)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return s.ListenAndServe(ctx, addr)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&models, "model", nil, "model to serve as NAME=DIR (repeatable; DIR is a Hugging Face folder, MAI checkpoint or run directory)")
	f.StringArrayVar(&drafts, "draft", nil, "draft model for speculative decoding as NAME=DIR, NAME naming a served model")
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	f.StringArrayVar(&keys, "api-key", nil, "API key clients must send as Authorization: Bearer KEY (repeatable; also $MAI_API_KEY)")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 8<<20, "largest request body")
	f.IntVar(&cfg.MaxTokens, "max-tokens", 0, "largest max_tokens a request may ask for (0: the context length)")
	f.IntVar(&cfg.MaxConcurrent, "max-concurrent", 256, "requests generating at once; more get HTTP 429")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Minute, "longest a generation may run")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", time.Minute, "longest shutdown waits for running streams")
	f.IntVar(&ecfg.BlockSize, "block-size", 16, "positions per KV-cache block")
	f.IntVar(&ecfg.NumBlocks, "kv-blocks", 0, "KV-cache blocks per model (0: from --kv-memory)")
	f.Int64Var(&kvMiB, "kv-memory", 1024, "KV-cache memory per model in MiB, when --kv-blocks is 0")
	f.StringVar(&kvType, "kv-cache", "f32", "KV cache type: f32 or f16 (twice the tokens in --kv-memory, half the bytes decode reads)")
	f.IntVar(&ecfg.MaxSeqs, "max-seqs", 32, "sequences decoding together per model")
	f.IntVar(&ecfg.MaxBatchTokens, "max-batch-tokens", 512, "tokens per engine step (decode tokens plus prefill chunks)")
	f.BoolVar(&ecfg.NoPrefixCache, "no-prefix-cache", false, "do not reuse KV blocks of shared prompt prefixes")
	f.BoolVar(&ecfg.FloatDecode, "float-decode", false, "quantized models: run generated tokens through the float32 GEMM like prompts (more tokens per CPU-second at many streams, fewer at one)")
	f.IntVar(&ecfg.DraftTokens, "draft-tokens", 4, "tokens the draft model proposes per step")
	rootCmd.AddCommand(cmd)
}
