package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
)

// Patterns names the built-in split patterns for command lines and configs.
var Patterns = map[string]string{
	"o200k":         PatternO200K,
	"cl100k":        PatternCL100K,
	"cl100k_legacy": PatternCL100KLegacy,
	"llama3":        PatternCL100KLegacy,
	"qwen2":         PatternQwen2,
	"gpt2":          PatternGPT2,
	"none":          "",
}

// PatternByName returns a named pattern (see [Patterns]); any other string
// is taken as a regular expression.
func PatternByName(name string) string {
	if p, ok := Patterns[name]; ok {
		return p
	}
	return name
}

// Info summarizes a tokenizer.
type Info struct {
	Name         string         `json:"name"`
	Kind         string         `json:"kind"` // "byte-level BPE" or "SentencePiece-style BPE"
	VocabSize    int            `json:"vocab_size"`
	Merges       int            `json:"merges"`
	Specials     map[string]int `json:"specials"`
	EOT          int            `json:"eot"`
	BOS          int            `json:"bos"`
	Pattern      string         `json:"pattern,omitempty"`
	ChatTemplate bool           `json:"chat_template"`
}

// Info describes the tokenizer.
func (t *Tokenizer) Info() Info {
	kind := "byte-level BPE"
	if t.kind == kindSentencePiece {
		kind = "SentencePiece-style BPE with byte fallback"
	}
	merges := len(t.mergeList)
	if t.m.merges == nil {
		merges = max(0, len(t.m.vocab)-256)
	}
	pattern := t.split.pattern
	if pattern == patternCL100KPortable {
		pattern = PatternCL100K
	}
	for name, p := range Patterns {
		if p == pattern && p != "" && name != "llama3" {
			pattern = name
		}
	}
	return Info{
		Name: t.name, Kind: kind, VocabSize: t.VocabSize(), Merges: merges, Specials: t.Specials(),
		EOT: t.eot, BOS: t.bos, Pattern: pattern,
		ChatTemplate: t.cfg.ChatTemplate != "" || t.specials["<|im_start|>"] > 0,
	}
}

// ParseIDs reads token ids written as a JSON array, a JSON object with an
// "ids" array, or numbers separated by spaces or commas.
func ParseIDs(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "["); i >= 0 {
		j := strings.LastIndex(s, "]")
		if j < i {
			return nil, fmt.Errorf("tokenizer: ids: unbalanced [ ]")
		}
		s = s[i+1 : j]
	}
	var ids []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' }) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: ids: %q is not a token id", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
