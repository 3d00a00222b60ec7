package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/format/gguf"
)

// smallGGUF returns the bytes of a tiny MAI model saved as GGUF.
func smallGGUF(t testing.TB) []byte {
	cfg := familyConfigs()["llama"]
	cfg.Layers, cfg.Vocab = 1, 40
	m, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	path := filepath.Join(t.TempDir(), "s.gguf")
	if err := m.SaveGGUF(path, GGUFOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadGGUFBytes(t testing.TB, b []byte) (*Model, error) {
	path := filepath.Join(t.TempDir(), "f.gguf")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadGGUF(path)
}

// TestLoadGGUFBadFiles: truncated or corrupted files and configs that claim
// more than the file holds are refused with an error.
func TestLoadGGUFBadFiles(t *testing.T) {
	good := smallGGUF(t)
	if _, err := loadGGUFBytes(t, good); err != nil {
		t.Fatalf("the good file: %v", err)
	}
	for _, n := range []int{0, 3, 10, 100, len(good) / 2, len(good) - 1} {
		if _, err := loadGGUFBytes(t, good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: want an error", n)
		}
	}
	// A config that claims a huge model: refused before allocating it.
	f, err := gguf.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []func(c *Config){
		func(c *Config) { c.Layers = 1 << 30 },
		func(c *Config) { c.Vocab = 1 << 40 },
		func(c *Config) { c.FFN = 1 << 40 },
		func(c *Config) { c.Experts, c.TopK, c.ExpertFFN = 1<<20, 1, 8 },
	} {
		s, _ := f.String(KeyMAIConfig)
		var c Config
		json.Unmarshal([]byte(s), &c)
		edit(&c)
		cj, _ := json.Marshal(c)
		w := gguf.NewWriter()
		for _, kv := range f.KV {
			v := kv.Value
			if kv.Key == KeyMAIConfig {
				v = string(cj)
			}
			if kv.Key != gguf.KeyAlignment {
				w.Set(kv.Key, v)
			}
		}
		for _, ti := range f.Tensors {
			b, _ := f.Bytes(ti.Name)
			w.Add(gguf.Tensor{Name: ti.Name, Type: ti.Type, Shape: ti.Shape(), Data: b})
		}
		var sb strings.Builder
		if err := w.Encode(&sb); err != nil {
			t.Fatal(err)
		}
		if _, err := loadGGUFBytes(t, []byte(sb.String())); err == nil {
			t.Errorf("config %s: want an error", cj)
		} else {
			t.Logf("refused: %v", err)
		}
	}
}

// FuzzLoadGGUF loads arbitrary bytes as a GGUF model: errors, never panics.
func FuzzLoadGGUF(f *testing.F) {
	good := smallGGUF(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := loadGGUFBytes(t, b)
		if err == nil && m.Cfg.Validate() != nil {
			t.Fatal("loaded an invalid config")
		}
	})
}
