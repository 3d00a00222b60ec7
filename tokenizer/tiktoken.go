package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// ParseTiktoken reads a tiktoken rank file: one token per line, its bytes in
// standard base64, a space, and its rank.
func ParseTiktoken(r io.Reader) (map[string]int, error) {
	ranks := make(map[string]int, 1<<16)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimRight(sc.Bytes(), "\r")
		if len(text) == 0 {
			continue
		}
		sp := bytes.IndexByte(text, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("tokenizer: tiktoken line %d: want \"<base64> <rank>\", got %q", line, clip(text))
		}
		tok := make([]byte, base64.StdEncoding.DecodedLen(sp))
		n, err := base64.StdEncoding.Decode(tok, text[:sp])
		if err != nil {
			return nil, fmt.Errorf("tokenizer: tiktoken line %d: bad base64 token %q: %w", line, clip(text[:sp]), err)
		}
		if n == 0 {
			return nil, fmt.Errorf("tokenizer: tiktoken line %d: empty token", line)
		}
		rank, err := strconv.Atoi(string(text[sp+1:]))
		if err != nil || rank < 0 || rank >= 1<<30 {
			return nil, fmt.Errorf("tokenizer: tiktoken line %d: bad rank %q", line, clip(text[sp+1:]))
		}
		key := string(tok[:n])
		if old, dup := ranks[key]; dup {
			return nil, fmt.Errorf("tokenizer: tiktoken line %d: token %q repeated (ranks %d and %d)", line, key, old, rank)
		}
		ranks[key] = rank
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: reading tiktoken ranks (line %d): %w", line+1, err)
	}
	if len(ranks) == 0 {
		return nil, fmt.Errorf("tokenizer: tiktoken file holds no tokens")
	}
	return ranks, nil
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// WriteTiktoken writes the mergeable tokens of a byte-level tokenizer as a
// tiktoken rank file, ordered by rank. Special tokens are not part of the
// format.
func (t *Tokenizer) WriteTiktoken(w io.Writer) error {
	if t.kind != kindByteLevel {
		return fmt.Errorf("tokenizer: %s is not a byte-level tokenizer; tiktoken files hold byte-level ranks only", t.name)
	}
	bw := bufio.NewWriter(w)
	ids := make([]int, 0, len(t.m.vocab))
	for _, id := range t.m.vocab {
		ids = append(ids, int(id))
	}
	slices.Sort(ids)
	for _, id := range ids {
		bw.WriteString(base64.StdEncoding.EncodeToString([]byte(t.decodeTab[id])))
		bw.WriteByte(' ')
		bw.WriteString(strconv.Itoa(id))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// encodingSpec describes an OpenAI encoding.
type encodingSpec struct {
	file     string
	pattern  string
	specials map[string]int
	nRanks   int
}

var openAIEncodings = map[string]encodingSpec{
	"cl100k_base": {file: "cl100k_base.tiktoken", pattern: PatternCL100K, nRanks: 100256, specials: map[string]int{
		"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276,
	}},
	"o200k_base": {file: "o200k_base.tiktoken", pattern: PatternO200K, nRanks: 199998, specials: map[string]int{
		"<|endoftext|>": 199999, "<|endofprompt|>": 200018,
	}},
	"p50k_base": {file: "p50k_base.tiktoken", pattern: PatternGPT2, nRanks: 50280, specials: map[string]int{"<|endoftext|>": 50256}},
	"r50k_base": {file: "r50k_base.tiktoken", pattern: PatternGPT2, nRanks: 50256, specials: map[string]int{"<|endoftext|>": 50256}},
	"gpt2":      {file: "r50k_base.tiktoken", pattern: PatternGPT2, nRanks: 50256, specials: map[string]int{"<|endoftext|>": 50256}},
}

// Names lists the tokenizers Load knows by name.
func Names() []string {
	names := []string{"byte", "cl100k_base", "cl100k_base_legacy", "o200k_base", "o200k_harmony", "p50k_base", "r50k_base", "gpt2"}
	return names
}

// builtins is the registry of named tokenizers, each built once.
var builtins = func() map[string]func() (*Tokenizer, error) {
	m := map[string]func() (*Tokenizer, error){
		"byte": sync.OnceValues(newByteTokenizer),
	}
	for name, spec := range openAIEncodings {
		m[name] = sync.OnceValues(func() (*Tokenizer, error) { return loadOpenAI(name, spec) })
	}
	m["cl100k_base_legacy"] = sync.OnceValues(func() (*Tokenizer, error) {
		spec := openAIEncodings["cl100k_base"]
		spec.pattern = PatternCL100KLegacy
		return loadOpenAI("cl100k_base_legacy", spec)
	})
	m["o200k_harmony"] = sync.OnceValues(func() (*Tokenizer, error) {
		spec := openAIEncodings["o200k_base"]
		sp := map[string]int{
			"<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|endofprompt|>": 200018,
			"<|return|>": 200002, "<|constrain|>": 200003, "<|channel|>": 200005, "<|start|>": 200006,
			"<|end|>": 200007, "<|message|>": 200008, "<|call|>": 200012,
		}
		for _, id := range []int{200000, 200001, 200004, 200009, 200010, 200011} {
			sp[fmt.Sprintf("<|reserved_%d|>", id)] = id
		}
		for id := 200013; id < 201088; id++ {
			if id != 200018 {
				sp[fmt.Sprintf("<|reserved_%d|>", id)] = id
			}
		}
		spec.specials = sp
		return loadOpenAI("o200k_harmony", spec)
	})
	return m
}()

func loadOpenAI(name string, spec encodingSpec) (*Tokenizer, error) {
	f, err := assets.Assets.Open(spec.file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: embedded ranks: %w", name, err)
	}
	defer f.Close()
	ranks, err := ParseTiktoken(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	return fromRanks(name, spec.pattern, ranks, spec.specials)
}

// newByteTokenizer is the "byte" tokenizer: ids 0..255 are the bytes and 256
// is <|endoftext|>.
func newByteTokenizer() (*Tokenizer, error) {
	ranks := make(map[string]int, 256)
	for b := range 256 {
		ranks[string([]byte{byte(b)})] = b
	}
	return fromRanks("byte", "", ranks, map[string]int{"<|endoftext|>": 256})
}

// LoadTiktoken reads a .tiktoken rank file. An empty pattern picks the
// pattern and special tokens of the OpenAI encoding with the same number of
// ranks (cl100k_base, o200k_base, p50k_base, r50k_base), else the cl100k_base
// pattern with <|endoftext|> after the last rank. A nil specials map means
// those defaults.
func LoadTiktoken(path, pattern string, specials map[string]int) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	ranks, err := ParseTiktoken(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	if pattern == "" || specials == nil {
		defPattern, defSpecials := PatternCL100K, map[string]int{"<|endoftext|>": len(ranks)}
		for _, spec := range openAIEncodings {
			if spec.nRanks == len(ranks) {
				defPattern, defSpecials = spec.pattern, spec.specials
				break
			}
		}
		if pattern == "" {
			pattern = defPattern
		}
		if specials == nil {
			specials = defSpecials
		}
	}
	return fromRanks(path, pattern, ranks, specials)
}
