package tokenizer

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

func TestCorpus(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "plain text")
	write("src/main.go", "package main")
	write("bin.dat", "\x00\x01\x02binary")
	write("latin1.txt", "caf\xe9")
	write(".git/HEAD", "ref: hidden")
	write("docs.jsonl", `{"text":"doc one"}`+"\n\n"+`{"content":"doc two"}`+"\n")
	f, _ := os.Create(filepath.Join(dir, "more.jsonl.gz"))
	zw := gzip.NewWriter(f)
	zw.Write([]byte(`{"text":"zipped"}` + "\n"))
	zw.Close()
	f.Close()

	c := &Corpus{Paths: []string{dir}}
	got := slices.Collect(c.Texts())
	want := []string{"plain text", "doc one", "doc two", "zipped", "package main"}
	if c.Err != nil || !slices.Equal(got, want) {
		t.Fatalf("texts %q, err %v; want %q", got, c.Err, want)
	}
	if c.Files != 4 || c.Bytes != int64(len("plain textdoc onedoc twozippedpackage main")) {
		t.Errorf("files %d bytes %d", c.Files, c.Bytes)
	}
	c = &Corpus{Paths: []string{dir}, Exts: []string{".go"}}
	if got := slices.Collect(c.Texts()); !slices.Equal(got, []string{"package main"}) {
		t.Errorf("ext filter: %q", got)
	}
	c = &Corpus{Paths: []string{dir}, MaxBytes: 12}
	if got := slices.Collect(c.Texts()); len(got) != 2 {
		t.Errorf("max bytes: %q", got)
	}
	// Held-out and training parts are disjoint and cover everything.
	train := slices.Collect((&Corpus{Paths: []string{dir}, HoldOut: 0.5}).Texts())
	eval := slices.Collect((&Corpus{Paths: []string{dir}, HoldOut: 0.5, Eval: true}).Texts())
	all := append(train, eval...)
	slices.Sort(all)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("split: train %q eval %q", train, eval)
	}
	write("bad.jsonl", "{not json}\n")
	c = &Corpus{Paths: []string{dir}}
	for range c.Texts() {
	}
	if c.Err == nil {
		t.Error("bad JSONL: no error")
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := mustLoad(t, "o200k_base")
	texts := multilingual(t)
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(texts); i += 3 {
				if !slices.Equal(tok.Encode(texts[i]), want[i]) || tok.Count(texts[i]) != len(want[i]) {
					t.Errorf("goroutine %d: text %d differs", g, i)
				}
				tok.Decode(want[i])
				if _, err := RenderChatTemplate(DefaultChatTemplate, []Message{{Role: "user", Content: texts[i]}}, true, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
