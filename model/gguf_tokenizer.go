package model

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/internal/atomicfile"
	"github.com/mai-llm/mai/tokenizer"
)

// keyMAITokenizer names the MAI tokenizer (mai_tokenizer.json's
// "tokenizer", e.g. "byte") a GGUF was written with.
const keyMAITokenizer = "mai.tokenizer"

// ggufTok is llama.cpp's tokenizer metadata plus MAI's tokenizer name.
type ggufTok struct {
	gguf.Tokenizer
	MAIName string
}

// byteToUnicode is GPT-2's reversible map from bytes to printable runes,
// which byte-level BPE vocabularies (tokenizer.json, GGUF "gpt2") use.
var byteToUnicode = func() [256]rune {
	var t [256]rune
	n := 0
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// ggufTokenizerFor builds the tokenizer metadata for a model saved from dir
// (see GGUFOptions.TokenizerDir).
func ggufTokenizerFor(c *Config, dir string) (ggufTok, error) {
	special := func(t *gguf.Tokenizer) {
		if t.Special == nil {
			t.Special = map[string]int{}
		}
		if c.BOS >= 0 && c.BOS < len(t.Tokens) {
			t.Special["bos"] = c.BOS
		}
		if c.EOS >= 0 && c.EOS < len(t.Tokens) {
			t.Special["eos"] = c.EOS
		}
	}
	if dir != "" {
		name := ""
		if b, err := os.ReadFile(filepath.Join(dir, "mai_tokenizer.json")); err == nil {
			var v struct {
				Tokenizer string `json:"tokenizer"`
			}
			if err := json.Unmarshal(b, &v); err != nil {
				return ggufTok{}, fmt.Errorf("%s: %w", filepath.Join(dir, "mai_tokenizer.json"), err)
			}
			name = v.Tokenizer
		}
		tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
		tc, _ := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
		switch {
		case err == nil:
		case name != "" && name != "byte":
			tk, err := tokenizer.Load(name)
			if err != nil {
				return ggufTok{}, fmt.Errorf("tokenizer %q: %w", name, err)
			}
			if tj, err = tk.MarshalHF(); err != nil {
				return ggufTok{}, err
			}
			if tc, err = tk.MarshalHFConfig(); err != nil {
				return ggufTok{}, err
			}
		case name == "byte" && c.Vocab >= 256:
			t := byteTokenizer(c)
			special(&t)
			return ggufTok{Tokenizer: t, MAIName: "byte"}, nil
		default:
			tj = nil
		}
		if tj != nil {
			t, err := ggufTokenizerFromHF(tj, tc, c.Vocab)
			if err != nil {
				return ggufTok{}, err
			}
			special(&t)
			return ggufTok{Tokenizer: t, MAIName: name}, nil
		}
	}
	if c.Vocab >= 256 && c.Family == "mai" {
		t := byteTokenizer(c)
		special(&t)
		return ggufTok{Tokenizer: t, MAIName: "byte"}, nil
	}
	t := gguf.Tokenizer{Model: "gpt2", Pre: "default", Merges: []string{}}
	for i := range c.Vocab {
		t.Tokens = append(t.Tokens, fmt.Sprintf("[TOKEN%d]", i))
		t.Types = append(t.Types, gguf.TokenUserDefined)
	}
	special(&t)
	return ggufTok{Tokenizer: t}, nil
}

// byteTokenizer is MAI's byte-level tokenizer as llama.cpp's byte-level BPE
// with no merges: ids 0..255 are the bytes, 256 end-of-text.
func byteTokenizer(c *Config) gguf.Tokenizer {
	t := gguf.Tokenizer{Model: "gpt2", Pre: "default", Merges: []string{}}
	for i := range c.Vocab {
		switch {
		case i < 256:
			t.Tokens = append(t.Tokens, string(byteToUnicode[i]))
			t.Types = append(t.Types, gguf.TokenNormal)
		case i == 256:
			t.Tokens = append(t.Tokens, "<|endoftext|>")
			t.Types = append(t.Types, gguf.TokenControl)
		default:
			t.Tokens = append(t.Tokens, fmt.Sprintf("[PAD%d]", i))
			t.Types = append(t.Types, gguf.TokenUnused)
		}
	}
	return t
}

// hfTokenizerJSON is the part of tokenizer.json that GGUF needs.
type hfTokenizerJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type         string            `json:"type"`
		Vocab        map[string]int    `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		ByteFallback bool              `json:"byte_fallback"`
	} `json:"model"`
}

// ggufPreNames maps MAI's split patterns to llama.cpp's pre-tokenizer names.
var ggufPreNames = map[string]string{
	tokenizer.PatternGPT2:         "gpt-2",
	tokenizer.PatternCL100KLegacy: "llama-bpe",
	tokenizer.PatternQwen2:        "qwen2",
	tokenizer.PatternO200K:        "gpt-4o",
}

// ggufTokenizerFromHF converts a tokenizer.json (and its
// tokenizer_config.json, which may be nil) into llama.cpp's tokenizer of
// vocab tokens (padded as convert_hf_to_gguf.py pads): byte-level BPE into
// "gpt2", SentencePiece-style BPE with byte fallback into "llama" (see
// ggufSentencePieceFromHF).
func ggufTokenizerFromHF(tj, tc []byte, vocab int) (gguf.Tokenizer, error) {
	var h hfTokenizerJSON
	if err := json.Unmarshal(tj, &h); err != nil {
		return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json: %w", err)
	}
	if h.Model.Type == "BPE" && h.Model.ByteFallback {
		return ggufSentencePieceFromHF(tj, tc, vocab)
	}
	if h.Model.Type != "BPE" {
		return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json: only BPE tokenizers (byte-level, or SentencePiece-style with byte_fallback) convert to GGUF here, not model type %q", h.Model.Type)
	}
	n := vocab
	for _, id := range h.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range h.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > vocab {
		return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json has ids up to %d, the model's vocabulary is %d", n-1, vocab)
	}
	t := gguf.Tokenizer{Model: "gpt2", Pre: "default", Tokens: make([]string, n), Types: make([]int32, n), Merges: []string{}}
	set := make([]bool, n)
	for s, id := range h.Model.Vocab {
		if id < 0 {
			return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json: negative id %d", id)
		}
		t.Tokens[id], t.Types[id], set[id] = s, gguf.TokenNormal, true
	}
	for _, a := range h.AddedTokens {
		if a.ID < 0 {
			return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json: negative id %d", a.ID)
		}
		typ := gguf.TokenUserDefined
		if a.Special {
			typ = gguf.TokenControl
		}
		t.Tokens[a.ID], t.Types[a.ID], set[a.ID] = a.Content, typ, true
	}
	for i := range t.Tokens {
		if !set[i] {
			t.Tokens[i], t.Types[i] = fmt.Sprintf("[PAD%d]", i), gguf.TokenUnused
		}
	}
	for _, raw := range h.Model.Merges {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			t.Merges = append(t.Merges, s)
			continue
		}
		var pair []string
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json: merge %s is neither \"a b\" nor [a, b]", raw)
		}
		t.Merges = append(t.Merges, pair[0]+" "+pair[1])
	}
	var pre struct {
		Pattern struct {
			Regex string `json:"Regex"`
		} `json:"pattern"`
		Pretokenizers []json.RawMessage `json:"pretokenizers"`
	}
	steps := []json.RawMessage{h.PreTokenizer}
	if json.Unmarshal(h.PreTokenizer, &pre) == nil && len(pre.Pretokenizers) > 0 {
		steps = pre.Pretokenizers
	}
	for _, s := range steps {
		var p struct {
			Pattern struct {
				Regex string `json:"Regex"`
			} `json:"pattern"`
		}
		if json.Unmarshal(s, &p) == nil {
			if name, ok := ggufPreNames[p.Pattern.Regex]; ok {
				t.Pre = name
			}
		}
	}
	if len(tc) > 0 {
		var cfg map[string]any
		if err := json.Unmarshal(tc, &cfg); err != nil {
			return gguf.Tokenizer{}, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		t.AddBOS, _ = cfg["add_bos_token"].(bool)
		t.AddEOS, _ = cfg["add_eos_token"].(bool)
		t.ChatTemplate, _ = cfg["chat_template"].(string)
	}
	return t, nil
}

// ggufSentencePieceFromHF converts a SentencePiece-style tokenizer.json
// into llama.cpp's "llama" tokenizer: tokens by id with types (control,
// user-defined, unknown, byte) and scores that make llama.cpp's
// best-score-first merging apply the BPE merges in their order (see
// tokenizer.SentencePieceFromHF), and tokenizer.ggml.add_space_prefix from
// the normalizer or Metaspace pre-tokenizer.
func ggufSentencePieceFromHF(tj, tc []byte, vocab int) (gguf.Tokenizer, error) {
	v, err := tokenizer.SentencePieceFromHF(tj, tc)
	if err != nil {
		return gguf.Tokenizer{}, err
	}
	if len(v.Tokens) > vocab {
		return gguf.Tokenizer{}, fmt.Errorf("tokenizer.json has ids up to %d, the model's vocabulary is %d", len(v.Tokens)-1, vocab)
	}
	t := gguf.Tokenizer{Model: "llama", Tokens: v.Tokens, Scores: v.Scores, Types: v.Types,
		AddBOS: v.AddBOS, AddEOS: v.AddEOS, AddSpacePrefix: new(v.AddSpacePrefix), ChatTemplate: v.ChatTemplate,
		Special: map[string]int{}}
	for i := len(t.Tokens); i < vocab; i++ {
		t.Tokens = append(t.Tokens, fmt.Sprintf("[PAD%d]", i))
		t.Scores = append(t.Scores, 0)
		t.Types = append(t.Types, gguf.TokenUnused)
	}
	for role, id := range map[string]int{"unknown": v.Unknown, "bos": v.BOS, "eos": v.EOS} {
		if id >= 0 {
			t.Special[role] = id
		}
	}
	return t, nil
}

// ggufPrePatterns maps llama.cpp's pre-tokenizer names to split patterns.
var ggufPrePatterns = map[string]string{
	"gpt-2": tokenizer.PatternGPT2, "default": tokenizer.PatternGPT2,
	"llama-bpe": tokenizer.PatternCL100KLegacy, "llama3": tokenizer.PatternCL100KLegacy,
	"qwen2": tokenizer.PatternQwen2, "gpt-4o": tokenizer.PatternO200K,
}

// WriteGGUFTokenizer writes the tokenizer of a GGUF file into the model
// folder dir: mai_tokenizer.json for a MAI byte-level model, or
// tokenizer.json and tokenizer_config.json for llama.cpp's byte-level BPE
// ("gpt2") and SentencePiece ("llama") tokenizers, the latter as
// transformers converts them (see writeSentencePieceHF). Other tokenizer
// kinds are skipped with a warning.
func WriteGGUFTokenizer(f *gguf.File, dir string) error {
	if name, ok := f.String(keyMAITokenizer); ok && name != "" {
		b, _ := json.Marshal(map[string]string{"tokenizer": name})
		if err := atomicfile.WriteFile(filepath.Join(dir, "mai_tokenizer.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
		if name == "byte" {
			return nil
		}
	}
	t, err := gguf.ReadTokenizer(f)
	if err != nil {
		slog.Warn("gguf has no tokenizer; the folder gets none", "file", f.Path())
		return nil
	}
	if t.Model == "llama" {
		return writeSentencePieceHF(t, dir)
	}
	if t.Model != "gpt2" {
		slog.Warn("gguf tokenizer kind is not converted to tokenizer.json (only byte-level BPE and SentencePiece BPE are)", "kind", t.Model)
		return nil
	}
	if t.Types != nil && len(t.Types) != len(t.Tokens) {
		return fmt.Errorf("gguf tokenizer: %d tokens and %d types", len(t.Tokens), len(t.Types))
	}
	vocab := map[string]int{}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var adds []added
	for id, s := range t.Tokens {
		typ := gguf.TokenNormal
		if t.Types != nil {
			typ = t.Types[id]
		}
		switch typ {
		case gguf.TokenControl, gguf.TokenUserDefined:
			adds = append(adds, added{ID: id, Content: s, Special: typ == gguf.TokenControl})
		case gguf.TokenUnused:
			continue
		}
		if _, dup := vocab[s]; !dup {
			vocab[s] = id
		}
	}
	pattern, ok := ggufPrePatterns[t.Pre]
	if !ok {
		pattern = tokenizer.PatternGPT2
		slog.Warn("unknown gguf pre-tokenizer; using GPT-2's split pattern", "pre", t.Pre)
	}
	pat, _ := json.Marshal(pattern)
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": adds, "normalizer": nil,
		"pre_tokenizer": json.RawMessage(`{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(pat) +
			`},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}`),
		"post_processor": json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`),
		"decoder":        json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`),
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": nonNil(t.Merges)},
	}
	b, err := json.Marshal(tj)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "tokenizer.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	cfg := map[string]any{"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false,
		"add_bos_token": t.AddBOS, "add_eos_token": t.AddEOS}
	roles := map[string]string{"bos": "bos_token", "eos": "eos_token", "unknown": "unk_token", "padding": "pad_token"}
	for _, role := range slices.Sorted(maps.Keys(t.Special)) {
		if k, ok := roles[role]; ok && t.Special[role] >= 0 && t.Special[role] < len(t.Tokens) {
			cfg[k] = t.Tokens[t.Special[role]]
		}
	}
	if t.ChatTemplate != "" {
		cfg["chat_template"] = t.ChatTemplate
	}
	b, _ = json.MarshalIndent(cfg, "", "  ")
	return atomicfile.WriteFile(filepath.Join(dir, "tokenizer_config.json"), append(b, '\n'), 0o644)
}

// writeSentencePieceHF writes llama.cpp's SentencePiece tokenizer t as
// tokenizer.json and tokenizer_config.json: BPE with byte fallback over
// merges derived from the scores as transformers derives them (the GGUF's
// own tokenizer.ggml.merges when it has them, as transformers does too),
// "▁" for spaces, and a leading "▁" unless add_space_prefix is false.
func writeSentencePieceHF(t gguf.Tokenizer, dir string) error {
	n := len(t.Tokens)
	if t.Types != nil && len(t.Types) != n || t.Scores != nil && len(t.Scores) != n {
		return fmt.Errorf("gguf tokenizer: %d tokens, %d scores and %d types", n, len(t.Scores), len(t.Types))
	}
	if t.Scores == nil && t.Merges == nil {
		return fmt.Errorf("gguf tokenizer: a SentencePiece tokenizer without scores or merges")
	}
	v := &tokenizer.SentencePieceVocab{Tokens: t.Tokens, Scores: t.Scores, Types: t.Types, Merges: t.Merges,
		AddSpacePrefix: t.AddSpacePrefix == nil || *t.AddSpacePrefix, Unknown: -1, BOS: -1, EOS: -1,
		AddBOS: t.AddBOS, AddEOS: t.AddEOS, ChatTemplate: t.ChatTemplate}
	for role, p := range map[string]*int{"unknown": &v.Unknown, "bos": &v.BOS, "eos": &v.EOS} {
		if id, ok := t.Special[role]; ok && id >= 0 && id < n {
			*p = id
		}
	}
	tj, tc, err := v.MarshalHF()
	if err != nil {
		return fmt.Errorf("gguf tokenizer: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tc, 0o644)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WithGGUFTokenizer writes the tokenizer of the GGUF file at path into a
// temporary folder (see WriteGGUFTokenizer), calls fn with that folder and
// removes it. Readers that take a model folder (tokenizers, chat templates)
// thus read a GGUF file's tokenizer the same way.
func WithGGUFTokenizer(path string, fn func(dir string) error) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mai-gguf-tokenizer-")
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: tokenizer: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	err = WriteGGUFTokenizer(f, tmp)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: tokenizer: %w", path, err)
	}
	_, errMAI := os.Stat(filepath.Join(tmp, "mai_tokenizer.json"))
	_, errHF := os.Stat(filepath.Join(tmp, "tokenizer.json"))
	if errMAI != nil && errHF != nil {
		return fmt.Errorf("%s holds no tokenizer MAI can read (byte-level BPE, SentencePiece and MAI tokenizers are)", path)
	}
	return fn(tmp)
}
