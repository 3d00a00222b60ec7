package gguf

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/format/safetensors"
)

// HFSource is a checkpoint in Hugging Face naming: a *safetensors.File or
// *safetensors.Set.
type HFSource interface {
	Names() []string
	Info(name string) (safetensors.Info, bool)
	Float32(name string) ([]float32, []int, error)
}

// ConvertOptions controls ConvertHF.
type ConvertOptions struct {
	// Params are the model hyperparameters; Arch is required.
	Params ModelParams
	// Tokenizer is written when non-nil. llama.cpp needs one to load a
	// model; Model "none" gives a vocabulary-free model driven by token ids.
	Tokenizer *Tokenizer
	// Type is the storage type of the matrices (the zero value is F32,
	// ggml's type 0). Vectors (norms, biases) and MoE routers stay F32, as
	// llama.cpp keeps them. A matrix whose rows do not divide into Type's
	// blocks falls back as llama.cpp's quantizer does (Q4_K to Q5_0, Q5_K to
	// Q5_1, Q6_K to Q8_0), and to F16 when rows do not divide into 32.
	Type quant.Type
	// OutputType, when not zero (F32), is used instead of Type for
	// output.weight (llama.cpp's Q4_K_M uses Q6_K there).
	OutputType quant.Type
	// TypeFor, when set, chooses the type of every tensor instead of the
	// rules above; it gets the GGUF name and the row-major shape.
	TypeFor func(name string, shape []int) quant.Type
	// Extra metadata, set after the standard keys.
	Extra []KV
}

// ConvertHF prepares a GGUF Writer holding the llama-family model src in
// llama.cpp's layout: tensors renamed (GGUFName), Q/K rows permuted where
// the architecture needs it (NeedsQKPermute), per-expert matrices stacked,
// and metadata from opts. Tensor data is read from src only when the
// Writer writes, one tensor at a time. Unknown tensor names are an error,
// except rotary_emb.inv_freq buffers, which are skipped.
func ConvertHF(src HFSource, opts ConvertOptions) (*Writer, error) {
	p := opts.Params
	w := NewWriter()
	if err := w.SetModelParams(p); err != nil {
		return nil, err
	}
	if err := w.Set(KeyQuantizationVersion, uint32(2)); err != nil {
		return nil, err
	}
	typ := opts.Type
	if !typ.CanQuantize() {
		return nil, fmt.Errorf("gguf: cannot store weights as %v", typ)
	}
	if ft, ok := FileTypeFor(typ); ok {
		if err := w.Set(KeyFileType, uint32(ft)); err != nil {
			return nil, err
		}
	}
	if opts.Tokenizer != nil {
		if err := w.SetTokenizer(*opts.Tokenizer); err != nil {
			return nil, err
		}
	}
	for _, kv := range opts.Extra {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			return nil, err
		}
	}

	type stacked struct {
		experts map[int]string // expert index to HF name
	}
	plain := map[string]string{} // GGUF name to HF name
	stacks := map[string]*stacked{}
	for _, hf := range src.Names() {
		if strings.HasSuffix(hf, "rotary_emb.inv_freq") {
			continue
		}
		g, expert, ok := GGUFName(hf)
		if !ok {
			return nil, fmt.Errorf("gguf: no GGUF name for tensor %q", hf)
		}
		if expert < 0 {
			if prev, dup := plain[g]; dup {
				return nil, fmt.Errorf("gguf: tensors %q and %q both map to %q", prev, hf, g)
			}
			plain[g] = hf
			continue
		}
		s := stacks[g]
		if s == nil {
			s = &stacked{experts: map[int]string{}}
			stacks[g] = s
		}
		s.experts[expert] = hf
	}
	names := slices.Collect(func(yield func(string) bool) {
		for g := range plain {
			if !yield(g) {
				return
			}
		}
		for g := range stacks {
			if !yield(g) {
				return
			}
		}
	})
	slices.SortFunc(names, compareTensorNames)

	for _, g := range names {
		if hf, ok := plain[g]; ok {
			if err := addConverted(w, src, g, hf, p, opts); err != nil {
				return nil, err
			}
			continue
		}
		s := stacks[g]
		n := len(s.experts)
		if p.ExpertCount > 0 && n != p.ExpertCount {
			return nil, fmt.Errorf("gguf: %s has %d experts, ExpertCount is %d", g, n, p.ExpertCount)
		}
		hfs := make([]string, n)
		for e := range n {
			hf, ok := s.experts[e]
			if !ok {
				return nil, fmt.Errorf("gguf: %s: expert %d missing", g, e)
			}
			hfs[e] = hf
		}
		if err := addStacked(w, src, g, hfs, opts); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// compareTensorNames orders token_embd first, then blocks by number, then
// output_norm and output, as llama.cpp's converter does.
func compareTensorNames(a, b string) int {
	rank := func(s string) (int, int, string) {
		switch {
		case strings.HasPrefix(s, "token_embd."):
			return 0, 0, s
		case strings.HasPrefix(s, "blk."):
			rest := strings.TrimPrefix(s, "blk.")
			ns, sub, _ := strings.Cut(rest, ".")
			n, _ := strconv.Atoi(ns)
			return 1, n, sub
		}
		return 2, 0, s
	}
	ra, na, sa := rank(a)
	rb, nb, sb := rank(b)
	return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(na, nb), strings.Compare(sa, sb))
}

// storageType picks the type of one tensor (see ConvertOptions.Type).
func storageType(g string, shape []int, opts ConvertOptions) quant.Type {
	if opts.TypeFor != nil {
		return opts.TypeFor(g, shape)
	}
	typ := opts.Type
	if strings.HasPrefix(g, "output.") && opts.OutputType != quant.F32 {
		typ = opts.OutputType
	}
	if len(shape) < 2 || strings.Contains(g, "ffn_gate_inp") {
		return quant.F32
	}
	row := shape[len(shape)-1]
	fallback := map[quant.Type]quant.Type{quant.Q4_K: quant.Q5_0, quant.Q5_K: quant.Q5_1, quant.Q6_K: quant.Q8_0}
	for row%typ.BlockSize() != 0 {
		if f, ok := fallback[typ]; ok {
			typ = f
			continue
		}
		return quant.F16
	}
	return typ
}

func addConverted(w *Writer, src HFSource, g, hf string, p ModelParams, opts ConvertOptions) error {
	shape, err := sourceShape(src, hf)
	if err != nil {
		return err
	}
	if len(shape) > MaxDims {
		return fmt.Errorf("gguf: tensor %q has %d dimensions", hf, len(shape))
	}
	heads := 0
	if NeedsQKPermute(p.Arch) {
		switch {
		case strings.Contains(g, ".attn_q."):
			heads = p.HeadCount
		case strings.Contains(g, ".attn_k."):
			heads = p.HeadCountKV
		}
	}
	cols := 1
	if len(shape) > 1 {
		cols = shape[len(shape)-1]
	}
	load := func() ([]float32, error) {
		v, _, err := src.Float32(hf)
		if err != nil {
			return nil, err
		}
		if heads > 0 {
			return PermuteQK(v, heads, cols)
		}
		return v, nil
	}
	return w.Add(Tensor{Name: g, Type: storageType(g, shape, opts), Shape: shape, Source: load})
}

func addStacked(w *Writer, src HFSource, g string, hfs []string, opts ConvertOptions) error {
	shape, err := sourceShape(src, hfs[0])
	if err != nil {
		return err
	}
	if len(shape) != 2 {
		return fmt.Errorf("gguf: expert tensor %q has shape %v, want a matrix", hfs[0], shape)
	}
	for _, hf := range hfs[1:] {
		s, err := sourceShape(src, hf)
		if err != nil {
			return err
		}
		if !slices.Equal(s, shape) {
			return fmt.Errorf("gguf: expert tensors %q %v and %q %v differ in shape", hfs[0], shape, hf, s)
		}
	}
	full := append([]int{len(hfs)}, shape...)
	load := func() ([]float32, error) {
		per := shape[0] * shape[1]
		out := make([]float32, 0, len(hfs)*per)
		for _, hf := range hfs {
			v, _, err := src.Float32(hf)
			if err != nil {
				return nil, err
			}
			out = append(out, v...)
		}
		return out, nil
	}
	return w.Add(Tensor{Name: g, Type: storageType(g, full, opts), Shape: full, Source: load})
}

// sourceShape returns a tensor's shape without reading its data.
func sourceShape(src HFSource, name string) ([]int, error) {
	in, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("gguf: source has no tensor %q", name)
	}
	return in.Shape, nil
}

// ReadHF reads a llama-family GGUF model back into Hugging Face naming,
// calling fn for every tensor with its HF name, row-major shape and float32
// values: Q/K rows un-permuted where the architecture needs it, stacked
// experts split. Tensors without an HF name are an error.
func ReadHF(f *File, fn func(name string, shape []int, data []float32) error) error {
	p, err := ReadModelParams(f)
	if err != nil {
		return err
	}
	for _, t := range f.Tensors {
		data, shape, err := f.Float32(t.Name)
		if err != nil {
			return err
		}
		if IsExpertTensor(t.Name) {
			if len(shape) != 3 {
				return fmt.Errorf("gguf: expert tensor %q has shape %v", t.Name, shape)
			}
			per := shape[1] * shape[2]
			for e := range shape[0] {
				hf, ok := HFName(p.Arch, t.Name, e)
				if !ok {
					return fmt.Errorf("gguf: no HF name for %q", t.Name)
				}
				if err := fn(hf, slices.Clone(shape[1:]), data[e*per:(e+1)*per]); err != nil {
					return err
				}
			}
			continue
		}
		hf, ok := HFName(p.Arch, t.Name, -1)
		if !ok {
			return fmt.Errorf("gguf: no HF name for %q", t.Name)
		}
		if NeedsQKPermute(p.Arch) {
			heads := 0
			switch {
			case strings.Contains(t.Name, ".attn_q."):
				heads = p.HeadCount
			case strings.Contains(t.Name, ".attn_k."):
				heads = p.HeadCountKV
			}
			if heads > 0 {
				cols := 1
				if len(shape) > 1 {
					cols = shape[len(shape)-1]
				}
				if data, err = UnpermuteQK(data, heads, cols); err != nil {
					return fmt.Errorf("gguf: %s: %w", t.Name, err)
				}
			}
		}
		if err := fn(hf, shape, data); err != nil {
			return err
		}
	}
	return nil
}
