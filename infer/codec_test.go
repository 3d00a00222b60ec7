package infer

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/tokenizer"
)

// TestOpenCodecGGUF opens the tokenizer of a GGUF file (what mai generate
// and mai serve do with --model x.gguf): the ids are those of the
// tokenizer.json the file was converted from, not the byte fallback.
func TestOpenCodecGGUF(t *testing.T) {
	src := filepath.Join("..", "tokenizer", "testdata", "hf", "llama2")
	f, err := os.Open(filepath.Join(src, "tokenizer.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tj, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vocab, cfg.Layers = 32000, 1
	m, err := model.New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tokenizer.json": tj, "tokenizer_config.json": tc} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := filepath.Join(t.TempDir(), "m.gguf")
	if err := model.Convert(dir, "gguf", g, model.ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	want, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCodec(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Hello, world!", "  func main() {}", "Привет, мир 你好"} {
		if a, b := got.Encode(s), want.Encode(s); !slices.Equal(a, b) {
			t.Errorf("%q: GGUF codec ids %v, want %v", s, a, b)
		}
	}
	if _, err := OpenCodec(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("a missing GGUF file opened")
	}
}
