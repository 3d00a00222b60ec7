package data

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// DecontamConfig drops training documents that share a long word n-gram with an
// evaluation set.
type DecontamConfig struct {
	// EvalFiles are JSONL files (every string field of an object is one example's
	// text) or plain text files (one example per non-empty line). .gz/.zst work.
	EvalFiles []string `yaml:"eval_files" json:"eval_files"`
	// NGram is the n-gram length in normalized words (13 by default).
	NGram int `yaml:"ngram" json:"ngram"`
}

// decontaminator holds the n-gram hashes of the evaluation sets.
type decontaminator struct {
	n      int
	ngrams map[uint64]struct{}
}

// newDecontaminator loads the evaluation sets; nil when none are configured.
func newDecontaminator(c *DecontamConfig) (*decontaminator, error) {
	if len(c.EvalFiles) == 0 {
		return nil, nil
	}
	if c.NGram <= 0 {
		c.NGram = 13
	}
	d := &decontaminator{n: c.NGram, ngrams: map[uint64]struct{}{}}
	for _, p := range c.EvalFiles {
		if err := d.load(p); err != nil {
			return nil, fmt.Errorf("decontamination set %s: %w", p, err)
		}
	}
	return d, nil
}

func (d *decontaminator) load(path string) error {
	r, closeFn, err := openMaybeCompressed(path)
	if err != nil {
		return err
	}
	defer closeFn()
	br := bufio.NewReaderSize(r, 1<<20)
	isJSON := strings.Contains(strings.ToLower(path), ".json")
	for {
		line, err := br.ReadString('\n')
		if t := strings.TrimSpace(line); t != "" {
			if isJSON {
				var v any
				if jerr := json.Unmarshal([]byte(t), &v); jerr != nil {
					return fmt.Errorf("invalid JSON line: %w", jerr)
				}
				var parts []string
				collectStrings(v, &parts)
				for _, s := range parts {
					d.add(s)
				}
			} else {
				d.add(t)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			collectStrings(x[k], out)
		}
	}
}

func (d *decontaminator) add(text string) {
	ws := normalizeWords(text)
	hs := wordHashes(ws)
	for i := 0; i+d.n <= len(hs); i++ {
		d.ngrams[ngramHash(hs[i:i+d.n])] = struct{}{}
	}
}

// contaminated reports whether the text shares an n-gram with the evaluation sets.
func (d *decontaminator) contaminated(ws []string) bool {
	hs := wordHashes(ws)
	for i := 0; i+d.n <= len(hs); i++ {
		if _, ok := d.ngrams[ngramHash(hs[i:i+d.n])]; ok {
			return true
		}
	}
	return false
}

func wordHashes(ws []string) []uint64 {
	hs := make([]uint64, len(ws))
	for i, w := range ws {
		hs[i] = hashString(w)
	}
	return hs
}
