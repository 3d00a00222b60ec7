package infer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/tokenizer"
)

// TestOpenCodecGGUF opens the tokenizer of a GGUF file (what mai generate
// and mai serve do with --model x.gguf): a model folder with a trained
// byte-level BPE tokenizer.json converts to GGUF, and the file's codec
// gives the folder's ids, not the byte fallback's.
func TestOpenCodecGGUF(t *testing.T) {
	text, err := os.ReadFile("codec.go")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Train(context.Background(), slices.Values([]string{string(text)}), tokenizer.TrainOptions{VocabSize: 400})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vocab, cfg.Layers = tok.VocabSize(), 1
	m, err := model.New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(t.TempDir(), "m.gguf")
	if err := model.Convert(dir, "gguf", g, model.ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := OpenCodec(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"func OpenCodec(dir string) (Codec, error) {", "  return nil, err", "if err != nil {\n\t\treturn nil, err\n\t}"} {
		a, b := got.Encode(s), tok.Encode(s)
		if !slices.Equal(a, b) || len(b) >= len(s) {
			t.Errorf("%q: GGUF codec ids %v, want %v (fewer than its %d bytes)", s, a, b, len(s))
		}
	}
	if _, err := OpenCodec(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("a missing GGUF file opened")
	}
}
