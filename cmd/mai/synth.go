package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/synth"
)

func init() {
	var (
		configPath, out, cacheDir, reportPath, baseURL, apiKey, model, tok string
		kinds, inputs, headers                                             []string
		count, concurrency, maxAttempts, maxTokens, logprobs               int
		rpm, tpm, temperature, topP, priceIn, priceOut                     float64
		seed                                                               uint64
		timeout                                                            string
		verifyCode, emitText, printConfig, quiet                           bool
	)
	cmd := &cobra.Command{
		Use:   "synth [--config synth.yaml] --model NAME [--kinds instruct,chat,textbook,code] [--count N] [--input docs.jsonl]",
		Short: "Generate synthetic training data (chat JSONL) with a teacher model over an OpenAI-compatible API",
		Long: `Generate synthetic data with a teacher model: instruction/response pairs, multi-turn chats,
textbook passages over a topic tree, Go exercises with solutions and tests, and rewrites of
web documents (--input JSONL of {"id","text"}). The output is chat JSONL for SFT:
{"id":...,"messages":[{"role":...,"content":...}],"meta":{...}}.

The teacher is any OpenAI-compatible endpoint: --base-url (or $MAI_TEACHER_BASE_URL,
$OPENAI_BASE_URL), key from $MAI_TEACHER_API_KEY or $OPENAI_API_KEY, --model (or
$MAI_TEACHER_MODEL). Every answer is cached on disk (--cache, default OUT.cache): an
interrupted run is resumed by running the same command again, and finished requests are
never sent twice. Templates and seed lists are built in; --config overlays a YAML file on
them (--print-config shows the merged configuration). See docs/synth.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := synth.DefaultConfig()
			if configPath != "" {
				var err error
				if cfg, err = synth.LoadConfig(configPath); err != nil {
					return err
				}
			}
			fl := cmd.Flags()
			set := func(name string, apply func()) {
				if fl.Changed(name) {
					apply()
				}
			}
			set("out", func() { cfg.Output = out })
			set("cache", func() { cfg.CacheDir = cacheDir })
			set("report", func() { cfg.Report = reportPath })
			set("base-url", func() { cfg.Teacher.BaseURL = baseURL })
			set("api-key", func() { cfg.Teacher.APIKey = apiKey })
			set("model", func() { cfg.Teacher.Model = model })
			set("concurrency", func() { cfg.Concurrency = concurrency })
			set("rpm", func() { cfg.Limits.RequestsPerMinute = rpm })
			set("tpm", func() { cfg.Limits.TokensPerMinute = tpm })
			set("max-attempts", func() { cfg.Retry.MaxAttempts = maxAttempts })
			set("temperature", func() { cfg.Sampling.Temperature = temperature })
			set("top-p", func() { cfg.Sampling.TopP = topP })
			set("max-tokens", func() { cfg.Sampling.MaxTokens = maxTokens })
			set("price-input", func() { cfg.Price.InputPerMillion = priceIn })
			set("price-output", func() { cfg.Price.OutputPerMillion = priceOut })
			set("logprobs", func() { cfg.Logprobs = logprobs })
			set("seed", func() { cfg.Seed = seed })
			set("tokenizer", func() { cfg.Tokenizer = tok })
			set("emit-text", func() { cfg.EmitText = emitText })
			if fl.Changed("timeout") {
				d, err := time.ParseDuration(timeout)
				if err != nil {
					return fmt.Errorf("--timeout: %w", err)
				}
				cfg.Retry.Timeout = d
			}
			if len(headers) > 0 && cfg.Teacher.Headers == nil {
				cfg.Teacher.Headers = map[string]string{}
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return fmt.Errorf("--header %q: want \"Name: value\"", h)
				}
				cfg.Teacher.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			if err := synth.ApplySelection(&cfg, kinds, fl.Changed("count"), count, inputs); err != nil {
				return err
			}
			if fl.Changed("verify-code") {
				for _, g := range cfg.Generators {
					if g.Kind == "code" {
						g.Verify = verifyCode
					}
				}
			}
			cfg.Teacher.ResolveEnv(os.Getenv)
			if printConfig {
				b, err := cfg.YAML()
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(b)
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := synth.Options{}
			if !quiet {
				opts.Progress = os.Stderr
			}
			rep, err := synth.Run(ctx, cfg, opts)
			if rep != nil && !quiet {
				rep.WriteTable(os.Stdout)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML file overlaid on the built-in templates and seed lists")
	f.StringVarP(&out, "out", "o", "synth.jsonl", "output chat JSONL")
	f.StringVar(&cacheDir, "cache", "", "answer cache directory (default OUT.cache)")
	f.StringVar(&reportPath, "report", "", "JSON report (default OUT.report.json)")
	f.StringVar(&baseURL, "base-url", "", "teacher API base URL, e.g. http://127.0.0.1:8080/v1 (default $MAI_TEACHER_BASE_URL, $OPENAI_BASE_URL)")
	f.StringVar(&apiKey, "api-key", "", "teacher API key (better: $MAI_TEACHER_API_KEY or $OPENAI_API_KEY)")
	f.StringVar(&model, "model", "", "teacher model (default $MAI_TEACHER_MODEL)")
	f.StringArrayVar(&headers, "header", nil, "extra HTTP header \"Name: value\" (repeatable)")
	f.StringSliceVar(&kinds, "kinds", nil, "generators to run (instruct, chat, textbook, code, rewrite or configured names); others get count 0")
	f.IntVarP(&count, "count", "n", 0, "items per selected generator")
	f.StringArrayVar(&inputs, "input", nil, "JSONL documents {\"id\",\"text\"} to rewrite (repeatable; selects the rewrite generator)")
	f.IntVar(&concurrency, "concurrency", 8, "items in flight at once")
	f.Float64Var(&rpm, "rpm", 0, "requests per minute limit (0: none)")
	f.Float64Var(&tpm, "tpm", 0, "tokens per minute limit, prompt plus completion (0: none)")
	f.IntVar(&maxAttempts, "max-attempts", 8, "attempts per request before the item fails")
	f.StringVar(&timeout, "timeout", "10m", "timeout of one attempt")
	f.Float64Var(&temperature, "temperature", 0.8, "sampling temperature")
	f.Float64Var(&topP, "top-p", 0, "nucleus sampling (0: the server's default)")
	f.IntVar(&maxTokens, "max-tokens", 1024, "output token limit per answer")
	f.Float64Var(&priceIn, "price-input", 0, "USD per 1M input tokens, for the cost report")
	f.Float64Var(&priceOut, "price-output", 0, "USD per 1M output tokens, for the cost report")
	f.IntVar(&logprobs, "logprobs", 0, "store the top-K log probabilities of every assistant token (distillation)")
	f.Uint64Var(&seed, "seed", 1, "seed of every random choice")
	f.StringVar(&tok, "tokenizer", "", "tokenizer for token estimates (e.g. o200k_base; default bytes/4)")
	f.BoolVar(&verifyCode, "verify-code", false, "run go test on each code exercise, drop failures (runs teacher code: sandbox it)")
	f.BoolVar(&emitText, "emit-text", false, "also write \"text\" (the assistant text) for mai data prepare")
	f.BoolVar(&printConfig, "print-config", false, "print the merged configuration as YAML and exit")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress and no table")
	rootCmd.AddCommand(cmd)
}
