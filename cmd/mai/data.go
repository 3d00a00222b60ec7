package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mai-llm/mai/data"
	"github.com/spf13/cobra"
)

func init() {
	dataCmd := &cobra.Command{
		Use:   "data",
		Short: "Prepare training data: read, clean, deduplicate, tokenize and shard; inspect shards",
	}
	dataCmd.AddCommand(dataPrepareCmd(), dataInspectCmd())
	rootCmd.AddCommand(dataCmd)
}

func dataPrepareCmd() *cobra.Command {
	var (
		configPath, output, tok, emit, workDir, reportJSON string
		inputs, langs, evalSets                            []string
		workers                                            int
		valFrac                                            float64
		shardTokens                                        int64
		noFilters, noDedup, noPII, fresh, quiet, noExt     bool
	)
	cmd := &cobra.Command{
		Use:   "prepare (--config pipeline.yaml | --input PATH... --output DIR)",
		Short: "Run the data pipeline into token shards (resumable: rerun the same command after an interruption)",
		Long: `Run the data pipeline: read inputs (directories of text and code, .jsonl[.gz|.zst] with a
"text" field, .parquet, .warc[.gz]), extract web page text, filter (length, language, Gopher
quality and repetition, C4, FineWeb), redact PII, decontaminate, remove exact and near
duplicates, mix, tokenize and write shards with a validation split.

With --config, a YAML file describes sources, weights and every stage (see docs/data.md); the
flags given explicitly override it. Without, each --input is one source and all stages run
with their defaults.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := data.DefaultConfig()
			if configPath != "" {
				var err error
				if cfg, err = data.LoadConfig(configPath); err != nil {
					return err
				}
			}
			for i, in := range inputs {
				name := fmt.Sprintf("input%d", i)
				cfg.Sources = append(cfg.Sources, data.SourceConfig{Name: name, Inputs: []string{in}})
			}
			fl := cmd.Flags()
			if fl.Changed("output") || cfg.Output == "" {
				cfg.Output = output
			}
			if fl.Changed("tokenizer") {
				cfg.Tokenizer = tok
			}
			if fl.Changed("emit-jsonl") {
				cfg.EmitJSONL = emit
			}
			if fl.Changed("work-dir") {
				cfg.WorkDir = workDir
			}
			if fl.Changed("workers") {
				cfg.Workers = workers
			}
			if fl.Changed("val-fraction") {
				cfg.Shards.ValFraction = valFrac
			}
			if fl.Changed("shard-tokens") {
				cfg.Shards.ShardTokens = shardTokens
			}
			if fl.Changed("languages") {
				cfg.Filters.Language.Languages = langs
			}
			if fl.Changed("eval") {
				cfg.Decon.EvalFiles = evalSets
			}
			if noExt {
				cfg.Read.NoExtension = true
			}
			if noFilters {
				cfg.Filters = data.FilterConfig{}
			}
			if noDedup {
				cfg.Dedup.Exact, cfg.Dedup.Near = false, false
			}
			if noPII {
				cfg.PII.Enabled = false
			}
			if cfg.Output == "" {
				return fmt.Errorf("data prepare: --output (or output: in the config) is required")
			}
			cfg.Fresh = fresh
			if !quiet {
				cfg.Progress = os.Stderr
				if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					cfg.ProgressTTY = true
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := data.Prepare(ctx, cfg)
			if err != nil {
				return fmt.Errorf("data prepare: %w", err)
			}
			rep.WriteTable(cmd.OutOrStdout())
			if reportJSON != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(reportJSON, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("data prepare: write report: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "shards and report.json in %s\n", cfg.Output)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "pipeline YAML file")
	f.StringArrayVar(&inputs, "input", nil, "input file, directory or glob (repeatable; each is one source)")
	f.StringVarP(&output, "output", "o", "", "output shard directory")
	f.StringVar(&tok, "tokenizer", "byte", "tokenizer name (byte, cl100k_base, o200k_base, ...) or path")
	f.StringVar(&emit, "emit-jsonl", "", "also write the cleaned documents as JSONL into this directory")
	f.StringVar(&workDir, "work-dir", "", "intermediate results for resuming (default OUTPUT/.work)")
	f.StringVar(&reportJSON, "report", "", "also write the JSON report to this file")
	f.IntVar(&workers, "workers", 0, "parallel workers (default: all cores)")
	f.Float64Var(&valFrac, "val-fraction", 0.005, "fraction of documents held out for validation")
	f.Int64Var(&shardTokens, "shard-tokens", data.DefaultShardTokens, "maximum tokens per shard file")
	f.StringSliceVar(&langs, "languages", []string{"en"}, "languages kept by the language filter (ISO 639-1)")
	f.StringArrayVar(&evalSets, "eval", nil, "evaluation set to decontaminate against (JSONL or text; repeatable)")
	f.BoolVar(&noExt, "read-no-extension", false, "read files without an extension in directories as text (e.g. fortunes)")
	f.BoolVar(&noFilters, "no-filters", false, "turn off all quality filters")
	f.BoolVar(&noDedup, "no-dedup", false, "turn off exact and near dedup")
	f.BoolVar(&noPII, "no-pii", false, "turn off PII redaction")
	f.BoolVar(&fresh, "fresh", false, "discard an earlier interrupted run instead of resuming it")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	return cmd
}

func dataInspectCmd() *cobra.Command {
	var (
		split, tok string
		samples    int
		verify     bool
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Show shard statistics, a token histogram and sample documents",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			name := tok
			if name == "" {
				if m, err := data.ReadManifest(dir); err == nil {
					name = m.Tokenizer
				}
			}
			var dec data.Decoder
			if name != "" {
				if e, err := data.LoadEncoder(name); err == nil {
					dec, _ = e.(data.Decoder)
				}
			}
			in, err := data.Inspect(dir, split, samples, dec, verify)
			if err != nil {
				return fmt.Errorf("data inspect: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			in.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&split, "split", "train", "split to inspect (train or val)")
	f.StringVar(&tok, "tokenizer", "", "tokenizer for decoding samples (default: the one in the manifest)")
	f.IntVar(&samples, "samples", 2, "number of sample documents to print")
	f.BoolVar(&verify, "verify", false, "verify every shard's checksum")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
