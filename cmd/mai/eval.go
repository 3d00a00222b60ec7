package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/eval"
)

func init() {
	var (
		spec                    eval.BackendSpec
		tasks, out, samplesOut  string
		opt                     eval.Options
		ks                      string
		temperature             float64
		asJSON, list            bool
		timeout                 time.Duration
		stride, maxDocs         int
		ids, shards, split      string
		quantTypes              string
		texts                   []string
		plotPath, title, metric string
	)
	backendFlags := func(c *cobra.Command) {
		f := c.Flags()
		f.StringVar(&spec.Model, "model", "", "model folder (MAI or Hugging Face), training run directory or .gguf file")
		f.StringVar(&spec.Server, "server", "", "OpenAI-compatible server URL (uses /v1/completions with echo and logprobs)")
		f.StringVar(&spec.ServerModel, "server-model", "", "model name on the server (default: the first it lists)")
		f.StringVar(&spec.Tokenizer, "tokenizer", "", `with --server: send token ids, tokenized with this ("byte", a name, a folder or a .gguf file); default sends text`)
		f.IntVar(&spec.MaxLength, "max-length", 0, "with --server: the model's context in tokens (default: what the server says, else 2048)")
		spec.APIKey = os.Getenv("OPENAI_API_KEY")
	}
	runFlags := func(c *cobra.Command) {
		f := c.Flags()
		f.StringVar(&tasks, "tasks", "", "comma-separated built-in task names (or all) and task files (JSONL; HellaSwag, ARC, MMLU as published)")
		f.IntVar(&opt.Limit, "limit", 0, "score at most this many items per task (a seeded sample; 0: all)")
		f.IntVar(&opt.NumFewshot, "num-fewshot", 0, "few-shot examples per prompt (0: each task's default; -1: none)")
		f.Uint64Var(&opt.Seed, "seed", 1234, "seed for few-shot examples, --limit sampling and generation")
		f.IntVar(&opt.Stride, "stride", 0, "perplexity sliding-window step in tokens (0: half the context)")
		f.IntVar(&opt.Samples, "samples", 1, "completions per code task (n of pass@k)")
		f.StringVar(&ks, "k", "1,10", "pass@k values to report (k ≤ --samples)")
		f.Float64Var(&temperature, "temperature", -1, "sampling temperature for generation (default: 0, or 0.8 with --samples > 1)")
		f.IntVar(&opt.MaxTokens, "max-tokens", 0, "generation budget (0: each task's)")
		f.DurationVar(&timeout, "timeout", 10*time.Second, "wall-time limit of one code test run")
	}
	prepare := func() error {
		for _, p := range strings.Split(ks, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, err := strconv.Atoi(p)
			if err != nil || k < 1 {
				return fmt.Errorf("--k: %q is not a positive integer", p)
			}
			opt.Ks = append(opt.Ks, k)
		}
		if temperature >= 0 {
			opt.Temperature = &temperature
		}
		opt.Sandbox.Timeout = timeout
		return nil
	}

	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a model: perplexity, multiple-choice, generation and Go code tasks",
		Example: `  mai eval --model runs/tiny --tasks go-next-line,go-doc-match,go-ppl
  mai eval --server http://localhost:8080 --tasks hellaswag_val.jsonl --limit 500 --json
  mai eval --model runs/tiny --tasks go-code --samples 10 --k 1,10
  mai eval --list`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				for _, n := range eval.Builtin() {
					t, err := eval.LoadTask(n)
					if err != nil {
						return err
					}
					fmt.Printf("%-14s %-16s %4d items  %s\n", n, t.Kind, len(t.Items), t.About)
				}
				return nil
			}
			if err := prepare(); err != nil {
				return err
			}
			ts, err := eval.LoadTasks(tasks)
			if err != nil {
				return err
			}
			b, err := eval.OpenBackend(cmd.Context(), spec)
			if err != nil {
				return err
			}
			opt.KeepSamples = samplesOut != ""
			res, err := eval.Run(cmd.Context(), b, ts, opt)
			if err != nil {
				return err
			}
			if samplesOut != "" {
				if err := writeJSON(samplesOut, res); err != nil {
					return err
				}
				for i := range res.Tasks {
					res.Tasks[i].Samples = nil
				}
			}
			if out != "" {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(res)
			}
			return eval.WriteTable(os.Stdout, res)
		},
	}
	backendFlags(cmd)
	runFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the results as JSON instead of a table")
	f.StringVar(&out, "out", "", "also write the results as JSON to this file")
	f.StringVar(&samplesOut, "samples-out", "", "write every item's prompt, prediction and score as JSON to this file")
	f.BoolVar(&list, "list", false, "list the built-in tasks")

	ppl := &cobra.Command{
		Use:   "ppl",
		Short: "Perplexity of token ids, or perplexity and bits per byte of held-out text or shards",
		Example: `  mai eval ppl --model model/testdata/hf/llama --ids 1,2,3,4 --json
  mai eval ppl --model runs/tiny --text held-out/ --stride 128
  mai eval ppl --model runs/tiny --shards runs/tiny/data --split val --docs 200
  mai eval ppl --model runs/tiny --quant f32,q8_0,q4_0,q4_K --text held-out.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ids != "" && (len(texts) > 0 || shards != "") || len(texts) > 0 && shards != "" {
				return fmt.Errorf("give one of --ids, --text and --shards")
			}
			if quantTypes != "" {
				if spec.Model == "" || spec.Server != "" {
					return fmt.Errorf("--quant needs --model (a local model to quantize), not --server")
				}
				in := eval.QuantInput{Stride: stride}
				var err error
				switch {
				case ids != "":
					if in.IDs, err = eval.ParseIDs(ids); err != nil {
						return fmt.Errorf("--ids: %w", err)
					}
				case shards != "":
					in.Texts, err = eval.ShardTexts(shards, split, maxDocs)
				case len(texts) > 0:
					in.Texts, err = eval.ReadTexts(texts)
				default:
					return fmt.Errorf("nothing to score: give --ids 1,2,3, --text FILE|DIR or --shards DIR")
				}
				if err != nil {
					return err
				}
				rows, err := eval.PerplexityByQuant(cmd.Context(), spec.Model, strings.Split(quantTypes, ","), in)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(rows)
				}
				return eval.WriteQuantTable(cmd.OutOrStdout(), rows)
			}
			b, err := eval.OpenBackend(cmd.Context(), spec)
			if err != nil {
				return err
			}
			var p *eval.Perplexity
			switch {
			case ids != "":
				seq, err := eval.ParseIDs(ids)
				if err != nil {
					return fmt.Errorf("--ids: %w", err)
				}
				if p, err = eval.PerplexityIDs(cmd.Context(), b, seq, stride); err != nil {
					return err
				}
			case len(texts) > 0 || shards != "":
				var tx []string
				if shards != "" {
					tx, err = eval.ShardTexts(shards, split, maxDocs)
				} else {
					tx, err = eval.ReadTexts(texts)
				}
				if err != nil {
					return err
				}
				if p, err = eval.PerplexityTexts(cmd.Context(), b, tx, stride); err != nil {
					return err
				}
			default:
				return fmt.Errorf("nothing to score: give --ids 1,2,3, --text FILE|DIR or --shards DIR")
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(p)
			}
			fmt.Printf("tokens %d  nll %.4f  ppl %.4f", p.Tokens, p.NLL, p.PPL)
			if p.Bytes > 0 {
				fmt.Printf("  bytes %d  bits/byte %.4f  byte ppl %.4f  word ppl %.2f", p.Bytes, p.BitsPerByte, p.BytePerplexity, p.WordPerplexity)
			}
			fmt.Println()
			return nil
		},
	}
	backendFlags(ppl)
	pf := ppl.Flags()
	pf.StringVar(&ids, "ids", "", "token ids to score, comma-separated")
	pf.StringArrayVar(&texts, "text", nil, "held-out text: a file, a .jsonl with a text field, or a folder (repeatable)")
	pf.StringVar(&shards, "shards", "", "shard directory (mai data prepare): documents decoded and scored as text")
	pf.StringVar(&split, "split", "val", "shard split")
	pf.IntVar(&maxDocs, "docs", 0, "score at most this many shard documents (0: all)")
	pf.IntVar(&stride, "stride", 0, "sliding-window step in tokens (0: half the context)")
	pf.BoolVar(&asJSON, "json", false, `print {"tokens", "nll", "ppl", ...} as JSON`)
	pf.StringVar(&quantTypes, "quant", "", "compare weight types: comma-separated, e.g. f32,q8_0,q4_0,q4_K (f32: the model as loaded; the first is the reference of the deltas); one row each")
	cmd.AddCommand(ppl)

	compare := &cobra.Command{
		Use:   "compare RUN|RESULTS.json ...",
		Short: "Evaluate every checkpoint of training runs and plot scores over steps",
		Example: `  mai eval compare runs/small --tasks go-next-line,go-doc-match,go-ppl --limit 200 --plot scores.png
  mai eval compare runs/a runs/b --tasks go-ppl
  mai eval compare a.json b.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := prepare(); err != nil {
				return err
			}
			var ts []*eval.Task
			var series []eval.Series
			for _, a := range args {
				name := filepath.Base(filepath.Clean(a))
				if st, err := os.Stat(a); err == nil && !st.IsDir() {
					var r eval.Results
					if err := readJSON(a, &r); err != nil {
						return err
					}
					series = append(series, eval.ResultSeries(strings.TrimSuffix(name, ".json"), []*eval.Results{&r})...)
					continue
				}
				if ts == nil {
					var err error
					if ts, err = eval.LoadTasks(tasks); err != nil {
						return err
					}
				}
				rs, err := eval.EvalRun(cmd.Context(), a, ts, opt, eval.LocalOptions{})
				if err != nil {
					return err
				}
				series = append(series, eval.ResultSeries(name, rs)...)
				if m, err := eval.ReadTrainMetrics(filepath.Join(a, "metrics.jsonl")); err == nil {
					series = append(series, eval.TrainSeries(name, m, strings.Split(metric, ",")...)...)
				}
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(series)
			}
			if err := eval.WriteSeriesTable(os.Stdout, series); err != nil {
				return err
			}
			if plotPath != "" {
				if err := eval.Plot(plotPath, title, series); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "plot written to %s\n", plotPath)
			}
			return nil
		},
	}
	runFlags(compare)
	cf := compare.Flags()
	cf.StringVar(&plotPath, "plot", "", "write a PNG of the metrics over training steps")
	cf.StringVar(&title, "title", "", "plot title")
	cf.StringVar(&metric, "train-metrics", "val_loss", "metrics.jsonl fields to plot beside the scores (comma-separated)")
	cf.BoolVar(&asJSON, "json", false, "print the series as JSON instead of a table")
	cmd.AddCommand(compare)
	rootCmd.AddCommand(cmd)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
