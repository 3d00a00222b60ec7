package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Load returns a tokenizer by name ("cl100k_base", "o200k_base", "gpt2",
// "byte", ... see [Names]) or by path: a .tiktoken rank file, a Hugging Face
// tokenizer.json, or a directory holding tokenizer.json (and
// tokenizer_config.json), as [Tokenizer.Save] writes. Named tokenizers are
// built once and shared.
func Load(nameOrPath string) (*Tokenizer, error) {
	if f, ok := builtins[nameOrPath]; ok {
		return f()
	}
	fi, err := os.Stat(nameOrPath)
	if err != nil {
		if os.IsNotExist(err) && !strings.ContainsAny(nameOrPath, `/\.`) {
			return nil, fmt.Errorf("tokenizer: %q is neither a known tokenizer (%s) nor a file", nameOrPath, strings.Join(Names(), ", "))
		}
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if fi.IsDir() {
		return loadDir(nameOrPath)
	}
	switch {
	case strings.HasSuffix(nameOrPath, ".tiktoken"):
		return LoadTiktoken(nameOrPath, "", nil)
	case strings.HasSuffix(nameOrPath, ".json"):
		return LoadHF(nameOrPath, filepath.Join(filepath.Dir(nameOrPath), "tokenizer_config.json"))
	}
	return nil, fmt.Errorf("tokenizer: %s: unknown tokenizer file type (want .tiktoken, tokenizer.json or a directory)", nameOrPath)
}

// loadDir loads the tokenizer saved in a directory.
func loadDir(dir string) (*Tokenizer, error) {
	tj := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(tj); err == nil {
		return LoadHF(tj, filepath.Join(dir, "tokenizer_config.json"))
	}
	if _, err := os.Stat(filepath.Join(dir, "vocab.bpe")); err == nil {
		return LoadGPT2(filepath.Join(dir, "encoder.json"), filepath.Join(dir, "vocab.bpe"))
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.tiktoken"))
	if len(matches) == 1 {
		return LoadTiktoken(matches[0], "", nil)
	}
	return nil, fmt.Errorf("tokenizer: %s holds no tokenizer.json, encoder.json+vocab.bpe or single .tiktoken file", dir)
}
