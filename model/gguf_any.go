package model

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/internal/atomicfile"
)

// IsGGUF reports whether path is a file that starts with the GGUF magic.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return string(b[:]) == gguf.Magic
}

// LoadAny loads a model for inference from what a user names: a .gguf file
// (quantized weights stay quantized), a Hugging Face model folder, or a
// training run directory (through its latest checkpoint; see ResolveDir).
func LoadAny(path string) (*Model, error) { return LoadAnyWith(path, LoadOptions{}) }

// LoadAnyWith is LoadAny with options (they apply to GGUF files: folders
// hold float32 or 16-bit weights that load as float32).
func LoadAnyWith(path string, opts LoadOptions) (*Model, error) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		if IsGGUF(path) {
			return LoadGGUFWith(path, opts)
		}
		return nil, fmt.Errorf("load model: %s is a file but not GGUF (want a .gguf file, a model folder or a run directory)", path)
	}
	dir, err := ResolveDir(path)
	if err != nil {
		return nil, err
	}
	return Load(dir, false)
}

// ConvertOptions controls Convert.
type ConvertOptions struct {
	// DType is the weight type written: f32 (default), bf16 or f16 for
	// folders; those or q8_0, q4_0, q4_K (and the other ggml types) for GGUF.
	DType string
	// MaxShard is the shard size of folders (0: DefaultShardBytes).
	MaxShard int64
	// Name is general.name of a GGUF file.
	Name string
}

// Convert reads the model at from (see LoadAny) and writes it to out as
// "hf" (a Hugging Face folder of the nearest architecture), "mai" (the same
// folder, keeping a MAI preset's family) or "gguf" (one file), with its
// tokenizer.
func Convert(from, to, out string, opts ConvertOptions) error {
	m, err := LoadAny(from)
	if err != nil {
		return err
	}
	srcDir := ""
	if st, err := os.Stat(from); err == nil && st.IsDir() {
		if srcDir, err = ResolveDir(from); err != nil {
			return err
		}
	}
	switch to {
	case "gguf":
		if opts.DType != "" && !strings.EqualFold(opts.DType, "f32") {
			t, err := ParseQuantType(opts.DType)
			if err != nil {
				return err
			}
			if err := m.Quantize(QuantizeOptions{Type: t}); err != nil {
				return err
			}
		}
		name := opts.Name
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(filepath.Clean(from)), ".gguf")
		}
		return m.SaveGGUF(out, GGUFOptions{Name: name, TokenizerDir: srcDir})
	case "hf", "mai":
		dt := strings.ToLower(opts.DType)
		if to == "hf" && m.Cfg.Family == "mai" {
			// A plain HF folder: the config names only the HF architecture.
			mt, _ := exportFamily(&m.Cfg)
			m.Cfg.Family = mt
		}
		if err := m.Save(out, dt, opts.MaxShard); err != nil {
			return err
		}
		return copyTokenizer(from, srcDir, out)
	}
	return fmt.Errorf("convert: unknown target %q (want hf, gguf or mai)", to)
}

// copyTokenizer puts the source's tokenizer into the folder out.
func copyTokenizer(from, srcDir, out string) error {
	if srcDir == "" {
		f, err := gguf.Open(from)
		if err != nil {
			return err
		}
		defer f.Close()
		return WriteGGUFTokenizer(f, out)
	}
	for _, n := range []string{"tokenizer.json", "tokenizer_config.json", "mai_tokenizer.json", "special_tokens_map.json"} {
		b, err := os.ReadFile(filepath.Join(srcDir, n))
		if err != nil {
			continue
		}
		if filepath.Clean(srcDir) == filepath.Clean(out) {
			continue
		}
		if err := atomicfile.WriteFile(filepath.Join(out, n), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// QuantizeFile reads the model at from (see LoadAny) and writes it to out as
// a GGUF file with its weight matrices in t (see Model.Quantize).
func QuantizeFile(from, out string, opts QuantizeOptions) error {
	m, err := LoadAny(from)
	if err != nil {
		return err
	}
	if err := m.Quantize(opts); err != nil {
		return err
	}
	srcDir := ""
	if st, err := os.Stat(from); err == nil && st.IsDir() {
		srcDir, _ = ResolveDir(from)
	}
	name := strings.TrimSuffix(filepath.Base(filepath.Clean(from)), ".gguf")
	if err := m.SaveGGUF(out, GGUFOptions{Name: name, TokenizerDir: srcDir}); err != nil {
		return err
	}
	if srcDir == "" {
		// The source GGUF's tokenizer: copy its metadata over unchanged.
		return copyGGUFTokenizer(from, out)
	}
	return nil
}

// copyGGUFTokenizer rewrites out with the tokenizer keys of the GGUF src.
func copyGGUFTokenizer(src, out string) error {
	f, err := gguf.Open(src)
	if err != nil {
		return err
	}
	t, terr := gguf.ReadTokenizer(f)
	mai, _ := f.String(keyMAITokenizer)
	f.Close()
	if terr != nil {
		return nil
	}
	g, err := gguf.Open(out)
	if err != nil {
		return err
	}
	w := gguf.NewWriter()
	for _, kv := range g.KV {
		if !strings.HasPrefix(kv.Key, "tokenizer.") && kv.Key != keyMAITokenizer && kv.Key != gguf.KeyAlignment {
			if err := w.Set(kv.Key, kv.Value); err != nil {
				g.Close()
				return err
			}
		}
	}
	if err := w.SetTokenizer(t); err != nil {
		g.Close()
		return err
	}
	if mai != "" {
		w.Set(keyMAITokenizer, mai)
	}
	for _, ti := range g.Tensors {
		b, err := g.Bytes(ti.Name)
		if err != nil {
			g.Close()
			return err
		}
		if err := w.Add(gguf.Tensor{Name: ti.Name, Type: ti.Type, Shape: ti.Shape(), Data: bytes.Clone(b)}); err != nil {
			g.Close()
			return err
		}
	}
	g.Close()
	return w.WriteFile(out)
}

// FileInfo describes a model on disk without loading its weights.
type FileInfo struct {
	Path   string `json:"path"`
	Format string `json:"format"` // "gguf" or "safetensors"
	Arch   string `json:"arch,omitempty"`
	Config Config `json:"config"`
	// Params counts the stored values; Mix counts them per storage type.
	Params int64            `json:"params"`
	Mix    map[string]int64 `json:"dtype_mix"`
	// FileBytes is the size of the weight files.
	FileBytes int64 `json:"file_bytes"`
}

// Inspect describes the model at path (a .gguf file, a model folder or a
// run directory) from its headers.
func Inspect(path string) (*FileInfo, error) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		if !IsGGUF(path) {
			return nil, fmt.Errorf("inspect %s: a file but not GGUF", path)
		}
		f, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cfg, err := ConfigFromGGUF(f)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", path, err)
		}
		fi := &FileInfo{Path: path, Format: "gguf", Config: cfg, Mix: map[string]int64{}, FileBytes: st.Size()}
		fi.Arch, _ = f.String(gguf.KeyArchitecture)
		for _, t := range f.Tensors {
			fi.Params += t.NumElements()
			fi.Mix[t.Type.String()] += t.NumElements()
		}
		return fi, nil
	}
	dir, err := ResolveDir(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	fi := &FileInfo{Path: dir, Format: "safetensors", Config: cfg, Mix: map[string]int64{}}
	fi.Arch, _ = exportFamily(&cfg)
	for _, n := range set.Names() {
		in, _ := set.Info(n)
		fi.Params += in.NumElements()
		fi.Mix[in.DType] += in.NumElements()
	}
	for _, f := range set.Files() {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
			fi.FileBytes += st.Size()
		}
	}
	return fi, nil
}
