package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

func init() {
	var (
		dir, prompt, promptIDs string
		maxTokens              int
		s                      infer.Sampling
		stops                  []string
		asJSON, keepF32        bool
		kvType                 string
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Continue a prompt with a model",
		Example: `  mai generate --model mai-quickstart --prompt 'func main() {' --max-tokens 200
  mai generate --model hf-folder --prompt-ids 1,2,3 --max-tokens 24 --temperature 0 --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			kv, err := model.ParseKVType(kvType)
			if err != nil {
				return err
			}
			d := dir
			if !strings.HasSuffix(dir, ".gguf") {
				if d, err = model.ResolveDir(dir); err != nil {
					return err
				}
			}
			// Generation never trains: a quantized GGUF file's matrices stay
			// in their stored form only (the kernels run them as stored).
			m, err := model.LoadAnyWith(d, model.LoadOptions{NoFloat32Copy: !keepF32})
			if err != nil {
				return err
			}
			codec, err := infer.OpenCodec(d)
			if err != nil && promptIDs == "" {
				return err
			}
			var ids []int32
			switch {
			case promptIDs != "" && prompt != "":
				return fmt.Errorf("give --prompt or --prompt-ids, not both")
			case promptIDs != "":
				if ids, err = parseIDs(promptIDs); err != nil {
					return err
				}
			case prompt != "":
				for _, id := range codec.Encode(prompt) {
					ids = append(ids, int32(id))
				}
			default:
				return fmt.Errorf("no prompt: give --prompt TEXT or --prompt-ids 1,2,3")
			}
			opt := infer.Options{MaxTokens: maxTokens, Sampling: s, Stop: stops, KV: kv}
			for _, e := range m.Cfg.EOSIDs() {
				opt.EOS = append(opt.EOS, int32(e))
			}
			dec := func(ids []int32) string {
				if codec == nil {
					return ""
				}
				x := make([]int, len(ids))
				for i, v := range ids {
					x[i] = int(v)
				}
				return codec.Decode(x)
			}
			opt.Decode = dec
			// Stream text as it comes, unless stop strings may still cut it.
			stream := !asJSON && len(stops) == 0 && codec != nil
			var gen []int32
			printed := 0
			if stream {
				fmt.Print(prompt)
			}
			res, err := infer.Generate(cmd.Context(), m, ids, opt, func(id int32) bool {
				if stream {
					gen = append(gen, id)
					t := dec(gen)
					for len(t) > printed && !utf8.ValidString(t[printed:]) {
						t = t[:len(t)-1] // hold back an incomplete character
					}
					fmt.Print(t[printed:])
					printed = len(t)
				}
				return true
			})
			if err != nil {
				return err
			}
			if asJSON {
				all := append(append([]int32(nil), ids...), res.IDs...)
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"ids": all, "text": res.Text, "finish_reason": res.FinishReason})
			}
			if stream {
				fmt.Println(res.Text[min(printed, len(res.Text)):])
			} else {
				fmt.Println(prompt + res.Text)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "model", "", "model folder or training run directory")
	f.StringVar(&prompt, "prompt", "", "prompt text")
	f.BoolVar(&keepF32, "keep-f32", false, "also keep float32 copies of quantized weights (more memory, same output)")
	f.StringVar(&kvType, "kv-cache", "f32", "KV cache type: f32 or f16 (half the memory and of the bytes decode reads at long contexts)")
	f.StringVar(&promptIDs, "prompt-ids", "", "prompt as comma-separated token ids")
	f.IntVar(&maxTokens, "max-tokens", 128, "tokens to generate")
	f.Float64Var(&s.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	f.IntVar(&s.TopK, "top-k", 0, "keep the k most likely tokens (0: off)")
	f.Float64Var(&s.TopP, "top-p", 1, "nucleus sampling mass")
	f.Float64Var(&s.MinP, "min-p", 0, "drop tokens below this fraction of the best one's probability")
	f.Float64Var(&s.RepetitionPenalty, "repetition-penalty", 1, "penalty for tokens already seen")
	f.Uint64Var(&s.Seed, "seed", 0, "sampling seed")
	f.StringArrayVar(&stops, "stop", nil, "stop string (repeatable)")
	f.BoolVar(&asJSON, "json", false, `print {"ids": [...prompt and generated ids...], "text": "..."}`)
	cmd.MarkFlagRequired("model")
	rootCmd.AddCommand(cmd)
}

func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--prompt-ids: %q is not a token id", p)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--prompt-ids: no ids")
	}
	return ids, nil
}
