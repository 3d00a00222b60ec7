package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/tokenizer"
)

func init() {
	cmd := &cobra.Command{
		Use:   "tokenizer",
		Short: "Train, inspect and run byte-level BPE tokenizers (tiktoken and Hugging Face formats)",
	}
	cmd.AddCommand(tokTrainCmd(), tokEncodeCmd(), tokDecodeCmd(), tokInfoCmd(), tokChatCmd())
	rootCmd.AddCommand(cmd)
}

// tokFlags adds --encoding and --tokenizer and returns a loader for them.
func tokFlags(cmd *cobra.Command) func() (*tokenizer.Tokenizer, error) {
	var enc, path string
	cmd.Flags().StringVar(&enc, "encoding", "cl100k_base", "tokenizer by name: "+strings.Join(tokenizer.Names(), ", "))
	cmd.Flags().StringVar(&path, "tokenizer", "", "tokenizer by path: a directory (model or saved tokenizer), tokenizer.json or .tiktoken file; overrides --encoding")
	return func() (*tokenizer.Tokenizer, error) {
		if path != "" {
			return tokenizer.Load(path)
		}
		return tokenizer.Load(enc)
	}
}

func readInput(file string) (string, error) {
	var b []byte
	var err error
	if file == "" || file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("reading input: %w", err)
	}
	return string(b), nil
}

func tokTrainCmd() *cobra.Command {
	var (
		inputs, specials, exts       []string
		out, pattern, name           string
		vocab, reserved, minFreq, wk int
		maxBytes                     int64
		holdout                      float64
		writeTiktoken                bool
	)
	cmd := &cobra.Command{
		Use:   "train --input PATH... --out DIR",
		Short: "Train a byte-level BPE tokenizer on text, code trees or JSONL, and save it as tokenizer.json",
		Example: `  mai tokenizer train --input $(go env GOROOT)/src --vocab-size 32768 --holdout 0.05 --out tok32k
  mai tokenizer train --input corpus.jsonl.gz --pattern cl100k --reserved 64 --out tok`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(inputs) == 0 || out == "" {
				return fmt.Errorf("tokenizer train: --input and --out are required")
			}
			corpus := &tokenizer.Corpus{Paths: inputs, HoldOut: holdout, MaxBytes: maxBytes, Exts: exts}
			opts := tokenizer.TrainOptions{
				Name: name, VocabSize: vocab, Pattern: tokenizer.PatternByName(pattern),
				Reserved: reserved, MinFrequency: minFreq, Workers: wk,
				Progress: func(p tokenizer.TrainProgress) {
					slog.Info("tokenizer train", "phase", p.Phase, "MB", p.Bytes>>20, "words", p.Words,
						"merges", p.Merges, "target", p.Target, "elapsed", p.Elapsed.Round(time.Millisecond))
				},
			}
			if cmd.Flags().Changed("specials") {
				opts.Specials = specials
			}
			start := time.Now()
			tok, err := tokenizer.Train(cmd.Context(), corpus.Texts(), opts)
			if corpus.Err != nil {
				return corpus.Err
			}
			if err != nil {
				return err
			}
			if err := tok.Save(out); err != nil {
				return err
			}
			if writeTiktoken {
				f, err := os.Create(out + "/tokenizer.tiktoken")
				if err != nil {
					return fmt.Errorf("tokenizer train: %w", err)
				}
				if err := tok.WriteTiktoken(f); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("tokenizer train: %w", err)
				}
			}
			fmt.Printf("trained %d ids on %d files (%.1f MB) in %s; saved to %s\n",
				tok.VocabSize(), corpus.Files, float64(corpus.Bytes)/1e6, time.Since(start).Round(time.Second), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&inputs, "input", nil, "text/code files or directories, or .jsonl[.gz] with a \"text\" field (repeatable)")
	f.StringVar(&out, "out", "", "directory to write tokenizer.json and tokenizer_config.json to")
	f.IntVar(&vocab, "vocab-size", 32768, "ids in all: 256 bytes + merges + specials + reserved")
	f.StringVar(&pattern, "pattern", "o200k", "split pattern: o200k, cl100k, llama3, qwen2, gpt2, none, or a regular expression")
	f.StringSliceVar(&specials, "specials", tokenizer.DefaultSpecials, "special tokens, ids after the merges")
	f.IntVar(&reserved, "reserved", 0, "extra reserved special ids <|reserved_N|>")
	f.IntVar(&minFreq, "min-frequency", 2, "stop when the best pair is rarer than this")
	f.IntVar(&wk, "workers", 0, "goroutines for splitting and counting (0: all cores)")
	f.Int64Var(&maxBytes, "max-bytes", 0, "stop reading text after this many bytes (0: all)")
	f.Float64Var(&holdout, "holdout", 0, "fraction of files kept out for evaluation (mai tokenizer info --eval with the same value)")
	f.StringVar(&name, "name", "", "tokenizer name (default mai-bpe-<vocab size>)")
	f.StringSliceVar(&exts, "ext", nil, "read only files ending with these suffixes (e.g. .go,.md)")
	f.BoolVar(&writeTiktoken, "tiktoken", false, "also write tokenizer.tiktoken (tiktoken rank file)")
	return cmd
}

func tokEncodeCmd() *cobra.Command {
	var (
		file                   string
		allowSpecial, asJSON   bool
		count, withModelTokens bool
	)
	cmd := &cobra.Command{
		Use:   "encode [--encoding NAME | --tokenizer PATH] [--file F]",
		Short: "Encode text from --file or standard input into token ids",
		Long: `Encode text into token ids. The text is ordinary text: "<|endoftext|>" is encoded as the
characters it is made of, unless --allow-special, which turns special-token text into its id.`,
		Example: `  echo -n "hello world" | mai tokenizer encode --encoding o200k_base --json
  mai tokenizer encode --tokenizer runs/tiny/model --file prompt.txt`,
	}
	load := tokFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tok, err := load()
		if err != nil {
			return err
		}
		text, err := readInput(file)
		if err != nil {
			return err
		}
		var ids []int
		if allowSpecial {
			ids = tok.EncodeWithSpecial(text)
		} else {
			ids = tok.Encode(text)
		}
		if withModelTokens {
			ids = tok.AddSpecialTokens(ids)
		}
		switch {
		case count:
			fmt.Println(len(ids))
		case asJSON:
			if ids == nil {
				ids = []int{}
			}
			b, _ := json.Marshal(map[string][]int{"ids": ids})
			fmt.Println(string(b))
		default:
			s := make([]string, len(ids))
			for i, id := range ids {
				s[i] = fmt.Sprint(id)
			}
			fmt.Println(strings.Join(s, " "))
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "read the text from this file (default: standard input)")
	f.BoolVar(&allowSpecial, "allow-special", false, "recognize special tokens such as <|endoftext|> in the text")
	f.BoolVar(&asJSON, "json", false, `print {"ids": [...]}`)
	f.BoolVar(&count, "count", false, "print only the number of tokens")
	f.BoolVar(&withModelTokens, "add-special-tokens", false, "add the tokens the model expects around a sequence (e.g. Llama 2's <s>)")
	return cmd
}

func tokDecodeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "decode [--encoding NAME | --tokenizer PATH] [ID...]",
		Short:   "Decode token ids (arguments, --file or standard input; plain numbers or JSON) into text",
		Example: `  mai tokenizer decode --encoding cl100k_base 9906 1917`,
	}
	load := tokFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tok, err := load()
		if err != nil {
			return err
		}
		in := strings.Join(args, " ")
		if len(args) == 0 {
			if in, err = readInput(file); err != nil {
				return err
			}
		}
		ids, err := tokenizer.ParseIDs(in)
		if err != nil {
			return err
		}
		text, err := tok.DecodeStrict(ids)
		if err != nil {
			return err
		}
		_, err = os.Stdout.WriteString(text)
		return err
	}
	cmd.Flags().StringVar(&file, "file", "", "read the ids from this file (default: arguments, else standard input)")
	return cmd
}

func tokInfoCmd() *cobra.Command {
	var (
		eval, exts []string
		holdout    float64
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "info [--encoding NAME | --tokenizer PATH] [--eval DIR...]",
		Short: "Describe a tokenizer; with --eval, measure bytes per token on held-out text",
		Example: `  mai tokenizer info --encoding o200k_base
  mai tokenizer info --tokenizer tok32k --eval $(go env GOROOT)/src --holdout 0.05`,
	}
	load := tokFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tok, err := load()
		if err != nil {
			return err
		}
		info := tok.Info()
		type evalResult struct {
			Files         int     `json:"files"`
			Bytes         int64   `json:"bytes"`
			Tokens        int64   `json:"tokens"`
			BytesPerToken float64 `json:"bytes_per_token"`
			Seconds       float64 `json:"seconds"`
		}
		var ev *evalResult
		if len(eval) > 0 {
			corpus := &tokenizer.Corpus{Paths: eval, HoldOut: holdout, Eval: holdout > 0, Exts: exts}
			start := time.Now()
			ratio, nb, nt := tok.BytesPerToken(corpus.Texts())
			if corpus.Err != nil {
				return corpus.Err
			}
			ev = &evalResult{Files: corpus.Files, Bytes: nb, Tokens: nt, BytesPerToken: ratio, Seconds: time.Since(start).Seconds()}
		}
		if asJSON {
			b, _ := json.MarshalIndent(struct {
				tokenizer.Info
				Eval *evalResult `json:"eval,omitempty"`
			}{info, ev}, "", "  ")
			fmt.Println(string(b))
			return nil
		}
		fmt.Printf("name:          %s\nkind:          %s\nvocab size:    %d\nmerges:        %d\n", info.Name, info.Kind, info.VocabSize, info.Merges)
		fmt.Printf("special:       %d\nend of text:   %d\nbegin of seq:  %d\nsplit pattern: %s\nchat template: %v\n", len(info.Specials), info.EOT, info.BOS, info.Pattern, info.ChatTemplate)
		if ev != nil {
			fmt.Printf("eval:          %d files, %d bytes, %d tokens: %.3f bytes/token (%.1f MB/s)\n",
				ev.Files, ev.Bytes, ev.Tokens, ev.BytesPerToken, float64(ev.Bytes)/1e6/ev.Seconds)
		}
		return nil
	}
	f := cmd.Flags()
	f.StringSliceVar(&eval, "eval", nil, "files or directories of text to measure bytes per token on")
	f.Float64Var(&holdout, "holdout", 0, "evaluate only the held-out fraction of files (the same value given to train)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringSliceVar(&exts, "ext", nil, "evaluate only files ending with these suffixes (e.g. .go)")
	return cmd
}

func tokChatCmd() *cobra.Command {
	var (
		file   string
		noGen  bool
		encode bool
	)
	cmd := &cobra.Command{
		Use:     "chat [--encoding NAME | --tokenizer PATH] [--file messages.json]",
		Short:   `Render a chat ([{"role": ..., "content": ...}, ...]) with the tokenizer's chat template`,
		Example: `  echo '[{"role":"user","content":"Hi"}]' | mai tokenizer chat --tokenizer tok32k`,
	}
	load := tokFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tok, err := load()
		if err != nil {
			return err
		}
		in, err := readInput(file)
		if err != nil {
			return err
		}
		var msgs []tokenizer.Message
		if err := json.Unmarshal([]byte(in), &msgs); err != nil {
			return fmt.Errorf("messages: want a JSON list of {\"role\", \"content\"}: %w", err)
		}
		text, err := tok.ApplyChatTemplate(msgs, !noGen)
		if err != nil {
			return err
		}
		if encode {
			b, _ := json.Marshal(map[string][]int{"ids": tok.EncodeWithSpecial(text)})
			fmt.Println(string(b))
			return nil
		}
		_, err = os.Stdout.WriteString(text)
		return err
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "read the messages from this file (default: standard input)")
	f.BoolVar(&noGen, "no-generation-prompt", false, "do not end with the assistant header")
	f.BoolVar(&encode, "encode", false, `print the prompt's ids as {"ids": [...]}`)
	return cmd
}
