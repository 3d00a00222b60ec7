package infer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mai-llm/mai/model"

	"github.com/mai-llm/mai/tokenizer"
)

// Codec turns text into token ids and back.
type Codec interface {
	Encode(text string) []int
	Decode(ids []int) string
	EOT() int
}

// ByteCodec is the byte-level tokenizer: ids 0..255 are bytes, 256 is
// end-of-text.
type ByteCodec struct{}

// Encode returns the UTF-8 bytes of text.
func (ByteCodec) Encode(text string) []int {
	out := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		out[i] = int(text[i])
	}
	return out
}

// Decode joins byte ids (ids outside 0..255 are dropped).
func (ByteCodec) Decode(ids []int) string {
	b := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < 256 {
			b = append(b, byte(id))
		}
	}
	return string(b)
}

// EOT is 256.
func (ByteCodec) EOT() int { return 256 }

// codecs maps a tokenizer name to a loader; other packages (the tokenizer)
// register theirs.
var codecs = map[string]func(dir string) (Codec, error){
	"byte": func(string) (Codec, error) { return ByteCodec{}, nil },
}

// RegisterCodec adds a tokenizer loader under a name.
func RegisterCodec(name string, open func(dir string) (Codec, error)) { codecs[name] = open }

// OpenCodec returns the tokenizer saved beside a model's weights, or the
// one in a GGUF file's metadata when dir names a .gguf file.
func OpenCodec(dir string) (Codec, error) {
	if strings.HasSuffix(dir, ".gguf") {
		var c Codec
		err := model.WithGGUFTokenizer(dir, func(tmp string) error {
			var err error
			c, err = OpenCodec(tmp)
			return err
		})
		return c, err
	}
	name := "byte"
	if b, err := os.ReadFile(filepath.Join(dir, "mai_tokenizer.json")); err == nil {
		var v struct {
			Tokenizer string `json:"tokenizer"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "mai_tokenizer.json"), err)
		}
		name = v.Tokenizer
	} else if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
		name = dir
	}
	if open, ok := codecs[name]; ok {
		return open(dir)
	}
	// A tokenizer saved beside the weights wins over the recorded name.
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
		name = dir
	}
	tk, err := tokenizer.Load(name)
	if err != nil {
		return nil, fmt.Errorf("model %s: tokenizer: %w", dir, err)
	}
	return tk, nil
}
