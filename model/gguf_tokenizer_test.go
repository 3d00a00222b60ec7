package model

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/tokenizer"
)

// sentencePieceFolder writes a tiny Llama model with the Llama 2 / Mistral
// tokenizer of tokenizer/testdata (a SentencePiece-style tokenizer.json
// equal to transformers.js's) into a folder.
func sentencePieceFolder(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "tokenizer", "testdata", "hf", "llama2")
	f, err := os.Open(filepath.Join(src, "tokenizer.json.gz"))
	if err != nil {
		t.Skipf("no SentencePiece tokenizer in testdata: %v", err)
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
	cfg := familyConfigs()["llama"]
	cfg.Vocab, cfg.Dim, cfg.HeadDim, cfg.FFN, cfg.Layers = 32000, 16, 4, 16, 1
	m, err := New(cfg, false)
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
	return dir
}

// spTestTexts is the tokenizer package's multilingual set, line by line,
// with code indented by runs of spaces.
func spTestTexts(t *testing.T) []string {
	data, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "multilingual.txt"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{string(data), " leading space", "two  spaces", "\tfunc main() {\n\t\tx := 1\n    return\n}\n", "aaaaaaaa", "<0x41> ▁x"}
	for line := range strings.SplitSeq(string(data), "\n") {
		if line != "" {
			texts = append(texts, line)
		}
	}
	return texts
}

// TestGGUFSentencePieceTokenizer converts a Hugging Face folder with a
// SentencePiece-style tokenizer to GGUF and back (mai convert's path): the
// GGUF holds llama.cpp's "llama" tokenizer (scores, types, byte tokens), the
// folder written from it encodes the multilingual set to the same ids as the
// original tokenizer.json, and, where node-llama-cpp is installed, so does
// llama.cpp itself on the GGUF.
func TestGGUFSentencePieceTokenizer(t *testing.T) {
	dir := sentencePieceFolder(t)
	tmp := t.TempDir()
	g := filepath.Join(tmp, "m.gguf")
	if err := Convert(dir, "gguf", g, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := gguf.ReadTokenizer(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if gt.Model != "llama" || len(gt.Tokens) != 32000 || len(gt.Scores) != 32000 || gt.Types[0] != gguf.TokenUnknown ||
		gt.Types[1] != gguf.TokenControl || gt.Types[3] != gguf.TokenByte || gt.Types[1000] != gguf.TokenNormal ||
		gt.Special["unknown"] != 0 || gt.Special["bos"] != 1 || gt.Special["eos"] != 2 || !gt.AddBOS ||
		gt.AddSpacePrefix == nil || !*gt.AddSpacePrefix || gt.Merges != nil {
		t.Fatalf("gguf tokenizer: model %q, %d tokens, %d scores, types %v, special %v, add bos %v, space prefix %v, %d merges",
			gt.Model, len(gt.Tokens), len(gt.Scores), gt.Types[:4], gt.Special, gt.AddBOS, gt.AddSpacePrefix, len(gt.Merges))
	}
	out := filepath.Join(tmp, "back")
	if err := Convert(g, "hf", out, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	orig, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tokenizer.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	texts := spTestTexts(t)
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = orig.Encode(s)
		if got := back.Encode(s); !slices.Equal(got, want[i]) {
			t.Fatalf("text %d (%q...): the converted folder's ids differ from the original's from token %d", i, clip(s), firstDiff(got, want[i]))
		}
		if got, w := back.Decode(want[i]), orig.Decode(want[i]); got != w {
			t.Fatalf("decode: %q, want %q", got, w)
		}
	}
	if got, w := back.AddSpecialTokens([]int{9}), orig.AddSpecialTokens([]int{9}); !slices.Equal(got, w) {
		t.Errorf("AddSpecialTokens: %v, want %v", got, w)
	}
	t.Logf("%d texts: same ids from the original tokenizer.json and the one converted through GGUF", len(texts))

	// llama.cpp itself on the GGUF.
	entry := nodeLlamaCppEntry(t)
	got := llamaCppTokenize(t, entry, g, texts)
	for i := range texts {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("text %d (%q...): llama.cpp's ids differ from MAI's from token %d", i, clip(texts[i]), firstDiff(got[i], want[i]))
		}
	}
	t.Logf("llama.cpp agrees on all %d texts", len(texts))
}

func clip(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40])
	}
	return s
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// tokenizeScript tokenizes each text with llama.cpp (vocabulary only, no
// BOS, special tokens as text).
const tokenizeScript = `
const [, , pkg, modelPath, textsPath, outPath] = process.argv;
const fs = await import("node:fs");
const { getLlama, LlamaLogLevel } = await import(pkg);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, vocabOnly: true });
const out = JSON.parse(fs.readFileSync(textsPath, "utf8")).map((s) => Array.from(model.tokenize(s, false)));
fs.writeFileSync(outPath, JSON.stringify(out));
await model.dispose();
await llama.dispose();
`

func llamaCppTokenize(t *testing.T, entry, gguf string, texts []string) [][]int {
	t.Helper()
	dir := t.TempDir()
	script, in, out := filepath.Join(dir, "tok.mjs"), filepath.Join(dir, "texts.json"), filepath.Join(dir, "out.json")
	b, _ := json.Marshal(texts)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(tokenizeScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, entry, gguf, in, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node-llama-cpp: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ids [][]int
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(texts) {
		t.Fatalf("llama.cpp returned %d results for %d texts", len(ids), len(texts))
	}
	return ids
}
