package tokenizer

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// saveReload saves tok and loads it back from the directory.
func saveReload(t *testing.T, tok *Tokenizer) *Tokenizer {
	t.Helper()
	dir := t.TempDir()
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(saved %s): %v", tok.Name(), err)
	}
	return back
}

func sameEncoding(t *testing.T, a, b *Tokenizer, texts []string) {
	t.Helper()
	for _, s := range texts {
		x, y := a.EncodeWithSpecial(s), b.EncodeWithSpecial(s)
		if !slices.Equal(x, y) {
			reportDiff(t, a.Name()+" reloaded", a, s, y, x)
			return
		}
		if a.Decode(x) != b.Decode(y) {
			t.Errorf("%s: decode differs after reload for %q", a.Name(), clipText(s))
			return
		}
	}
}

func sampleTexts(t *testing.T, every int) []string {
	texts := multilingual(t)
	files := goSourceFiles(t)
	for i := 0; i < len(files); i += every {
		if data, err := os.ReadFile(files[i]); err == nil && len(data) < 1<<20 {
			texts = append(texts, string(data))
		}
	}
	return texts
}

// TestSaveLoadRanks saves tiktoken vocabularies as tokenizer.json, whose
// merge list is derived from the ranks, and checks the reloaded tokenizer
// (which merges by the list, as Hugging Face does) encodes identically.
func TestSaveLoadRanks(t *testing.T) {
	every := 60
	if testing.Short() {
		every = 600
	}
	texts := sampleTexts(t, every)
	names := []string{"cl100k_base", "o200k_base", "gpt2", "byte"}
	if testing.Short() {
		names = []string{"cl100k_base", "byte"}
	}
	for _, name := range names {
		tok := mustLoad(t, name)
		back := saveReload(t, tok)
		if back.VocabSize() != tok.VocabSize() || back.EOT() != tok.EOT() {
			t.Errorf("%s: reloaded vocab %d eot %d, want %d %d", name, back.VocabSize(), back.EOT(), tok.VocabSize(), tok.EOT())
		}
		if back.split.kind != tok.split.kind {
			t.Errorf("%s: reloaded splitter kind %d, want %d (pattern not recognized)", name, back.split.kind, tok.split.kind)
		}
		sameEncoding(t, tok, back, texts)
	}
}

func TestSaveLoadTrained(t *testing.T) {
	texts := randomCorpus(5, 500)
	tok, err := Train(context.Background(), sliceSeq(texts), TrainOptions{VocabSize: 600, Reserved: 2})
	if err != nil {
		t.Fatal(err)
	}
	back := saveReload(t, tok)
	sameEncoding(t, tok, back, append(texts, multilingual(t)...))
	if back.Config().ChatTemplate != DefaultChatTemplate || back.Config().EOSToken != "<|endoftext|>" {
		t.Errorf("config not kept: %+v", back.Config())
	}
	if _, ok := back.SpecialID("<|reserved_1|>"); !ok {
		t.Error("reserved token lost")
	}
	// A second save of the reloaded tokenizer is byte-identical.
	d1, d2 := t.TempDir(), t.TempDir()
	back.Save(d1)
	saveReload(t, back).Save(d2)
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		a, _ := os.ReadFile(filepath.Join(d1, f))
		b, _ := os.ReadFile(filepath.Join(d2, f))
		if string(a) != string(b) {
			t.Errorf("%s differs between saves", f)
		}
	}
}

func TestSaveLoadHF(t *testing.T) {
	npm, why := npmDir(t)
	models := []string{"llama3", "llama2"}
	if testing.Short() {
		models = models[1:]
	}
	for _, model := range models {
		tj, cfg, ok := hfFiles(t, npm, model)
		if !ok {
			t.Logf("%s: skipped: no tokenizer.json (%s)", model, why)
			continue
		}
		tok, err := LoadHF(tj, cfg)
		if err != nil {
			t.Fatal(err)
		}
		back := saveReload(t, tok)
		sameEncoding(t, tok, back, hfTestTexts(t))
		if back.Config().ChatTemplate != tok.Config().ChatTemplate || back.BOS() != tok.BOS() || back.EOT() != tok.EOT() {
			t.Errorf("%s: config lost: %+v", model, back.Config())
		}
	}
}

// TestSavedLoadsInTransformersJS saves built-in, trained and Hugging Face
// tokenizers and checks that transformers.js (npm @lenml/tokenizers, run by
// node) loads each directory and encodes like MAI does. Skipped without node.
func TestSavedLoadsInTransformersJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found")
	}
	npm := mustNPM(t)
	trained, err := Train(context.Background(), sliceSeq(randomCorpus(5, 500)), TrainOptions{VocabSize: 600, Pattern: PatternCL100K})
	if err != nil {
		t.Fatal(err)
	}
	toks := map[string]*Tokenizer{"trained-cl100k-pattern": trained}
	names := []string{"cl100k_base", "o200k_base", "gpt2"}
	if testing.Short() {
		names = names[:1]
	}
	for _, n := range names {
		toks[n] = mustLoad(t, n)
	}
	llama2 := filepath.Join(npm, "node_modules", "@lenml", "tokenizer-llama2", "models", "tokenizer.json")
	if tok, err := Load(llama2); err == nil {
		toks["llama2"] = tok
	}
	var texts []string
	for _, s := range hfTestTexts(t) {
		if !strings.ContainsRune(s, '\uFEFF') { // JavaScript's \s matches U+FEFF
			texts = append(texts, s)
		}
	}
	base := t.TempDir()
	var dirs []string
	for name, tok := range toks {
		dir := filepath.Join(base, name)
		if err := tok.Save(dir); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	in, _ := json.Marshal(map[string]any{"dirs": dirs, "texts": texts})
	inPath := filepath.Join(base, "input.json")
	os.WriteFile(inPath, in, 0o644)
	script, _ := filepath.Abs("testdata/node/load_saved.cjs")
	cmd := exec.Command(node, script, inPath)
	cmd.Dir = npm
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	var ref map[string][][]int
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	for name, tok := range toks {
		got := ref[filepath.Join(base, name)]
		for i, s := range texts {
			if !reportDiff(t, name+" saved, in transformers.js", tok, s, tok.EncodeWithSpecial(s), got[i]) {
				break
			}
		}
	}
}
