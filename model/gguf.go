package model

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/format/quant"
)

// KeyMAIConfig is the GGUF metadata key under which MAI stores its full
// Config as JSON, so that a MAI model read back from its own GGUF is the
// same model (llama.cpp ignores the key).
const KeyMAIConfig = "mai.config"

// ggufArch is the llama.cpp architecture a config is written as.
func ggufArch(c *Config) (string, error) {
	mt, _ := exportFamily(c)
	switch mt {
	case "llama", "mistral", "mixtral":
		return "llama", nil
	case "qwen2":
		return "qwen2", nil
	case "qwen2_moe":
		return "qwen2moe", nil
	case "qwen3":
		return "qwen3", nil
	case "qwen3_moe":
		return "qwen3moe", nil
	case "phi3":
		return "phi3", nil
	case "gpt2":
		return "gpt2", nil
	}
	return "", fmt.Errorf("gguf: no llama.cpp architecture for model family %q", mt)
}

// familyOfArch maps a llama.cpp architecture to a Hugging Face model_type.
func familyOfArch(arch string, experts int) (string, error) {
	switch arch {
	case "llama":
		if experts > 0 {
			return "mixtral", nil
		}
		return "llama", nil
	case "qwen2":
		return "qwen2", nil
	case "qwen2moe":
		return "qwen2_moe", nil
	case "qwen3":
		return "qwen3", nil
	case "qwen3moe":
		return "qwen3_moe", nil
	case "phi3":
		return "phi3", nil
	case "gpt2":
		return "gpt2", nil
	}
	return "", fmt.Errorf("gguf: architecture %q is not supported (supported: llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gpt2)", arch)
}

// ggufTensor is one GGUF tensor made of canonical parameters: one, several
// concatenated along rows (fused q/k/v, Phi-3's gate/up), or stacked
// experts (Stack: shape [len(Parts), rows, cols]). Permute is the head count
// of a Q or K projection whose rows llama.cpp's llama architecture wants in
// its interleaved RoPE order (0: none).
type ggufTensor struct {
	Name    string
	Parts   []string
	Stack   bool
	Permute int
}

// ggufTensors lists the GGUF tensors of a config for llama.cpp's arch.
func ggufTensors(c *Config, arch string) ([]ggufTensor, error) {
	var out []ggufTensor
	idx := map[string]int{}
	add := func(name, part string, stack bool) {
		if i, ok := idx[name]; ok {
			out[i].Parts = append(out[i].Parts, part)
			return
		}
		idx[name] = len(out)
		out = append(out, ggufTensor{Name: name, Parts: []string{part}, Stack: stack})
	}
	fuseQKV := arch == "phi3" || arch == "gpt2"
	for _, s := range layout(c) {
		n := s.name
		if n == "model.embed_positions.weight" {
			add("position_embd.weight", n, false)
			continue
		}
		g, expert, ok := gguf.GGUFName(n)
		if !ok {
			return nil, fmt.Errorf("gguf: no GGUF name for parameter %q", n)
		}
		if fuseQKV {
			for _, p := range []string{".attn_q.", ".attn_k.", ".attn_v."} {
				g = strings.Replace(g, p, ".attn_qkv.", 1)
			}
		}
		if arch == "phi3" {
			g = strings.Replace(g, ".ffn_gate.", ".ffn_up.", 1) // gate_up_proj: gate rows first
		}
		add(g, n, expert >= 0)
	}
	if c.Tied && (arch == "qwen2moe" || arch == "qwen3moe" || arch == "phi3") {
		// llama.cpp has no tied-output fallback for these: store the head.
		out = append(out, ggufTensor{Name: "output.weight", Parts: []string{"model.embed_tokens.weight"}})
	}
	if gguf.NeedsQKPermute(arch) {
		for i := range out {
			switch {
			case strings.Contains(out[i].Name, ".attn_q."):
				out[i].Permute = c.Heads
			case strings.Contains(out[i].Name, ".attn_k."):
				out[i].Permute = c.KVHeads
			}
		}
	}
	return out, nil
}

// permuteRows reorders the rows (rowBytes each) of each head between
// Hugging Face's rotate-half order and llama.cpp's interleaved order, as
// gguf.PermuteQK does for float32 values; it works on any row-wise storage
// type. inverse undoes the permutation.
func permuteRows(b []byte, heads, rowBytes int, inverse bool) ([]byte, error) {
	if heads <= 0 || rowBytes <= 0 || len(b)%(heads*rowBytes) != 0 {
		return nil, fmt.Errorf("permute: %d bytes do not split into %d heads of %d-byte rows", len(b), heads, rowBytes)
	}
	hd := len(b) / rowBytes / heads
	if hd%2 != 0 {
		return nil, fmt.Errorf("permute: head dimension %d is odd", hd)
	}
	out := make([]byte, len(b))
	for h := range heads {
		for i := range hd / 2 {
			for j := range 2 {
				dst, src := h*hd+2*i+j, h*hd+j*hd/2+i
				if inverse {
					dst, src = src, dst
				}
				copy(out[dst*rowBytes:(dst+1)*rowBytes], b[src*rowBytes:(src+1)*rowBytes])
			}
		}
	}
	return out, nil
}

// GGUFOptions controls SaveGGUF.
type GGUFOptions struct {
	// Name is general.name; optional.
	Name string
	// TokenizerDir is a model folder whose tokenizer (tokenizer.json,
	// tokenizer_config.json, or mai_tokenizer.json naming one) is embedded
	// as llama.cpp's tokenizer metadata. Without one, a MAI model of 256 or
	// more tokens gets MAI's byte-level tokenizer (ids 0..255 are bytes) and
	// other models placeholder tokens (they can run on token ids only).
	TokenizerDir string
}

// SaveGGUF writes the model as a GGUF v3 file that llama.cpp and Ollama
// load: llama.cpp's architecture keys and tensor names, Q/K rows permuted
// where llama.cpp's architecture rotates adjacent pairs, experts stacked,
// each tensor in the type the model stores it (float32 unless quantized,
// see Quantize), the tokenizer, and MAI's Config under KeyMAIConfig.
func (m *Model) SaveGGUF(path string, opts GGUFOptions) error {
	c := &m.Cfg
	arch, err := ggufArch(c)
	if err != nil {
		return err
	}
	if arch == "qwen2moe" && c.NormTopK {
		slog.Warn("llama.cpp's qwen2moe does not renormalize the top-k expert weights; this model does, so llama.cpp's outputs will differ from MAI's", "model", opts.Name)
	}
	w := gguf.NewWriter()
	if err := w.SetModelParams(ggufParams(c, arch, opts.Name)); err != nil {
		return fmt.Errorf("save gguf: %w", err)
	}
	cj, err := json.Marshal(c)
	if err != nil {
		return err
	}
	dominant := m.dominantType()
	kvs := []gguf.KV{
		{Key: gguf.KeyQuantizationVersion, Value: uint32(2)},
		{Key: KeyMAIConfig, Value: string(cj)},
	}
	if ft, ok := gguf.FileTypeFor(dominant); ok {
		kvs = append(kvs, gguf.KV{Key: gguf.KeyFileType, Value: uint32(ft)})
	}
	kvs = append(kvs, ggufExtraKeys(c, arch)...)
	for _, kv := range kvs {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			return fmt.Errorf("save gguf: %w", err)
		}
	}
	tok, err := ggufTokenizerFor(c, opts.TokenizerDir)
	if err != nil {
		return fmt.Errorf("save gguf: %w", err)
	}
	if err := w.SetTokenizer(tok.Tokenizer); err != nil {
		return fmt.Errorf("save gguf: %w", err)
	}
	if tok.MAIName != "" {
		if err := w.Set(keyMAITokenizer, tok.MAIName); err != nil {
			return err
		}
	}
	ts, err := ggufTensors(c, arch)
	if err != nil {
		return err
	}
	for _, t := range ts {
		gt, err := m.ggufTensorData(t)
		if err != nil {
			return fmt.Errorf("save gguf: %s: %w", t.Name, err)
		}
		if err := w.Add(gt); err != nil {
			return fmt.Errorf("save gguf: %w", err)
		}
	}
	if extra := ropeFactorTensors(c, arch); len(extra) > 0 {
		for _, t := range extra {
			if err := w.Add(t); err != nil {
				return fmt.Errorf("save gguf: %w", err)
			}
		}
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("save gguf: %w", err)
		}
	}
	if err := w.WriteFile(path); err != nil {
		return fmt.Errorf("save gguf: %w", err)
	}
	return nil
}

// dominantType is the storage type holding most parameters of the matrices.
func (m *Model) dominantType() quant.Type {
	count := map[quant.Type]int64{}
	for _, p := range m.Tensors {
		if quantizable(p.Name, p.V.Shape) {
			count[m.StorageType(p.Name)] += int64(p.V.Len())
		}
	}
	best, n := quant.F32, int64(-1)
	for t, c := range count {
		if c > n || (c == n && t < best) {
			best, n = t, c
		}
	}
	return best
}

// ggufTensorData gathers one GGUF tensor from the model's parameters, in
// their common storage type (float32 when the parts differ).
func (m *Model) ggufTensorData(t ggufTensor) (gguf.Tensor, error) {
	vars := make([]*Param, len(t.Parts))
	typ := m.StorageType(t.Parts[0])
	rows := 0
	for i, p := range t.Parts {
		v, ok := m.byName[p]
		if !ok {
			return gguf.Tensor{}, fmt.Errorf("no parameter %q", p)
		}
		vars[i] = &Param{Name: p, V: v}
		rows += v.Shape[0]
		if m.StorageType(p) != typ {
			typ = quant.F32
		}
	}
	shape0 := vars[0].V.Shape
	var shape []int
	switch {
	case t.Stack:
		shape = append([]int{len(vars)}, shape0...)
	case len(vars) > 1:
		shape = append([]int{rows}, shape0[1:]...)
	default:
		shape = slices.Clone(shape0)
	}
	var data []byte
	for _, p := range vars {
		if typ == quant.F32 {
			b := make([]byte, 4*p.V.Len())
			quant.EncodeF32(b, p.V.Data)
			data = append(data, b...)
		} else {
			data = append(data, m.q.stored[p.Name].bytes()...)
		}
	}
	if t.Permute > 0 {
		cols := 1
		if len(shape) > 1 {
			cols = shape[len(shape)-1]
		}
		rb, err := typ.RowBytes(int64(cols))
		if err != nil {
			return gguf.Tensor{}, err
		}
		if data, err = permuteRows(data, t.Permute, int(rb), false); err != nil {
			return gguf.Tensor{}, err
		}
	}
	return gguf.Tensor{Name: t.Name, Type: typ, Shape: shape, Data: data}, nil
}

// ggufParams derives llama.cpp's hyperparameters from a config.
func ggufParams(c *Config, arch, name string) gguf.ModelParams {
	p := gguf.ModelParams{
		Arch: arch, Name: name, ContextLength: c.MaxSeq, EmbeddingLength: c.Dim, BlockCount: c.Layers,
		FeedForwardLength: c.FFN, HeadCount: c.Heads, HeadCountKV: c.KVHeads,
		RMSNormEpsilon: float32(c.NormEps), VocabSize: c.Vocab,
	}
	if p.FeedForwardLength == 0 {
		p.FeedForwardLength = c.ExpertHidden()
	}
	if c.HeadDim*c.Heads != c.Dim {
		p.KeyLength, p.ValueLength = c.HeadDim, c.HeadDim
	}
	if c.Pos == "rope" {
		p.RopeFreqBase = float32(c.RopeTheta)
		p.RopeDimensionCount = c.RotaryDim()
	}
	if c.Experts > 0 {
		p.ExpertCount, p.ExpertUsedCount = c.Experts, c.TopK
		if arch != "llama" {
			p.ExpertFeedForwardLength = c.ExpertHidden()
		}
	}
	return p
}

// ggufExtraKeys are the architecture keys beyond ModelParams: layer-norm
// epsilon (GPT-2), RoPE scaling, sliding window, the shared expert.
func ggufExtraKeys(c *Config, arch string) []gguf.KV {
	k := func(s string) string { return gguf.ArchKey(arch, s) }
	var kvs []gguf.KV
	if c.Norm == "layernorm" {
		kvs = append(kvs, gguf.KV{Key: k("attention.layer_norm_epsilon"), Value: float32(c.NormEps)})
	}
	if c.SlidingWindow > 0 {
		kvs = append(kvs, gguf.KV{Key: k("attention.sliding_window"), Value: uint32(c.SlidingWindow)})
	}
	if c.SharedExperts > 0 {
		sh := c.SharedFFN
		if sh == 0 {
			sh = c.SharedExperts * c.ExpertHidden()
		}
		kvs = append(kvs, gguf.KV{Key: k("expert_shared_feed_forward_length"), Value: uint32(sh)})
	}
	if rs := c.RopeScaling; rs != nil && c.Pos == "rope" {
		switch rs.Type {
		case "linear", "yarn":
			kvs = append(kvs, gguf.KV{Key: k("rope.scaling.type"), Value: rs.Type},
				gguf.KV{Key: k("rope.scaling.factor"), Value: float32(rs.Factor)})
		}
		if rs.OriginalMaxPos > 0 {
			kvs = append(kvs, gguf.KV{Key: k("rope.scaling.original_context_length"), Value: uint32(rs.OriginalMaxPos)})
		}
		if rs.Type == "longrope" {
			_, scale := ropeInvFreq(c, c.MaxSeq)
			kvs = append(kvs, gguf.KV{Key: k("rope.scaling.attn_factor"), Value: float32(scale)})
		}
	}
	return kvs
}

// ropeFactorTensors are llama.cpp's per-dimension RoPE frequency divisors:
// rope_freqs for llama3 scaling (as convert_hf_to_gguf.py writes them) and
// rope_factors_long/short for Phi-3's longrope.
func ropeFactorTensors(c *Config, arch string) []gguf.Tensor {
	rs := c.RopeScaling
	if rs == nil || c.Pos != "rope" {
		return nil
	}
	half := c.RotaryDim() / 2
	switch rs.Type {
	case "llama3":
		plain := *c
		plain.RopeScaling = nil
		base, _ := ropeInvFreq(&plain, c.MaxSeq)
		scaled, _ := ropeInvFreq(c, c.MaxSeq)
		f := make([]float32, half)
		for i := range f {
			f[i] = base[i] / scaled[i]
		}
		return []gguf.Tensor{{Name: "rope_freqs.weight", Type: quant.F32, Shape: []int{half}, Float32: f}}
	case "longrope":
		fs := func(v []float64) []float32 {
			out := make([]float32, half)
			for i := range out {
				out[i] = 1
				if i < len(v) {
					out[i] = float32(v[i])
				}
			}
			return out
		}
		long := rs.LongFactor
		if len(long) == 0 {
			long = rs.ShortFactor
		}
		return []gguf.Tensor{
			{Name: "rope_factors_long.weight", Type: quant.F32, Shape: []int{half}, Float32: fs(long)},
			{Name: "rope_factors_short.weight", Type: quant.F32, Shape: []int{half}, Float32: fs(rs.ShortFactor)},
		}
	}
	return nil
}

// LoadGGUF reads a GGUF model file written by MAI or by llama.cpp's
// converter for a supported architecture (llama, including Mistral and
// Mixtral; qwen2; qwen2moe; qwen3; qwen3moe; phi3; gpt2). Tensors in a type
// the CPU kernels run (Q8_0, Q4_0, Q4_K, F16, BF16) are kept in that type
// for inference; other types are decoded to float32 (and kept as they are
// for SaveGGUF).
func LoadGGUF(path string) (*Model, error) { return LoadGGUFWith(path, LoadOptions{}) }

// LoadOptions controls how a model is loaded.
type LoadOptions struct {
	// NoFloat32Copy keeps the weights that the CPU kernels run (Q8_0, Q4_0,
	// Q4_K, F16, BF16 matrices) only in their stored form: the model takes
	// their stored size in memory instead of that plus four bytes per
	// weight. Forward without gradients runs as usual; anything that reads
	// parameters as float32 — training, ForwardPaged, saving as float32,
	// the GPU upload — needs Model.Materialize first (Forward with a
	// gradient tape calls it).
	NoFloat32Copy bool
}

// LoadGGUFWith is LoadGGUF with options.
func LoadGGUFWith(path string, opts LoadOptions) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	cfg, err := ConfigFromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	// Bound the config by what the file holds before walking its layout.
	if cfg.Layers > len(f.Tensors) || cfg.Experts > len(f.Tensors)*1024 {
		return nil, fmt.Errorf("load model %s: config claims %d layers and %d experts, the file holds %d tensors", path, cfg.Layers, cfg.Experts, len(f.Tensors))
	}
	var stored int64
	for _, t := range f.Tensors {
		stored += t.NumElements()
	}
	if total, _ := cfg.Params(); total > stored {
		return nil, fmt.Errorf("load model %s: the config describes %d parameters but the file holds %d values", path, total, stored)
	}
	arch, err := ggufArch(&cfg)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	ts, err := ggufTensors(&cfg, arch)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	// Check every tensor before allocating for the config, so that a file
	// that claims huge sizes is refused without the allocation.
	for _, t := range ts {
		info, ok := f.Tensor(t.Name)
		if !ok {
			return nil, fmt.Errorf("load model %s: tensor %q is missing", path, t.Name)
		}
		if want := ggufWantShape(&cfg, t); !slices.Equal(info.Shape(), want) {
			return nil, fmt.Errorf("load model %s: tensor %q has shape %v, the config needs %v", path, t.Name, info.Shape(), want)
		}
	}
	m, err := New(cfg, false)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	for _, t := range ts {
		if err := m.readGGUFTensor(f, t, opts.NoFloat32Copy); err != nil {
			return nil, fmt.Errorf("load model %s: tensor %q: %w", path, t.Name, err)
		}
	}
	return m, nil
}

// ggufWantShape is the row-major shape a GGUF tensor must have for cfg.
func ggufWantShape(c *Config, t ggufTensor) []int {
	specs := map[string][]int{}
	for _, s := range layout(c) {
		specs[s.name] = s.shape
	}
	first := specs[t.Parts[0]]
	switch {
	case t.Stack:
		return append([]int{len(t.Parts)}, first...)
	case len(t.Parts) > 1:
		rows := 0
		for _, p := range t.Parts {
			rows += specs[p][0]
		}
		return append([]int{rows}, first[1:]...)
	}
	return slices.Clone(first)
}

func (m *Model) readGGUFTensor(f *gguf.File, t ggufTensor, noF32 bool) error {
	info, _ := f.Tensor(t.Name)
	raw, err := f.Bytes(t.Name)
	if err != nil {
		return err
	}
	shape := info.Shape()
	cols := 1 // a vector's rows are its elements
	if len(shape) > 1 {
		cols = shape[len(shape)-1]
	}
	rb, err := info.Type.RowBytes(int64(cols))
	if err != nil {
		return err
	}
	if t.Permute > 0 {
		if raw, err = permuteRows(raw, t.Permute, int(rb), true); err != nil {
			return err
		}
	}
	off := 0
	for _, p := range t.Parts {
		v := m.byName[p]
		n := v.Len() / max(cols, 1) * int(rb)
		part := raw[off : off+n]
		off += n
		if info.Type == quant.F32 {
			quant.DecodeF32(v.Data, part)
			continue
		}
		if !info.Type.CanDequantize() {
			return fmt.Errorf("type %v is not supported", info.Type)
		}
		if err := m.setStored(p, info.Type, part, !noF32); err != nil {
			return err
		}
	}
	return nil
}

// ConfigFromGGUF derives a model Config from GGUF metadata: MAI's own
// config when the file has one (checked against the architecture keys),
// otherwise from llama.cpp's keys and the tensors present.
func ConfigFromGGUF(f *gguf.File) (Config, error) {
	p, err := gguf.ReadModelParams(f)
	if err != nil {
		return Config{}, err
	}
	if s, ok := f.String(KeyMAIConfig); ok {
		var c Config
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return Config{}, fmt.Errorf("%s: %w", KeyMAIConfig, err)
		}
		if err := c.Validate(); err != nil {
			return Config{}, fmt.Errorf("%s: %w", KeyMAIConfig, err)
		}
		if c.Dim != p.EmbeddingLength || c.Layers != p.BlockCount || c.Heads != p.HeadCount {
			return Config{}, fmt.Errorf("%s (dim %d, %d layers, %d heads) disagrees with the architecture keys (%d, %d, %d)",
				KeyMAIConfig, c.Dim, c.Layers, c.Heads, p.EmbeddingLength, p.BlockCount, p.HeadCount)
		}
		return c, nil
	}
	fam, err := familyOfArch(p.Arch, p.ExpertCount)
	if err != nil {
		return Config{}, err
	}
	has := func(n string) bool { _, ok := f.Tensor(n); return ok }
	c := Config{
		Family: fam, Dim: p.EmbeddingLength, Layers: p.BlockCount, Heads: p.HeadCount, KVHeads: p.HeadCountKV,
		FFN: p.FeedForwardLength, MaxSeq: p.ContextLength, NormEps: float64(p.RMSNormEpsilon),
		Norm: "rmsnorm", Pos: "rope", MLP: "swiglu", Act: "silu", RopeTheta: float64(p.RopeFreqBase),
		Tied: !has("output.weight"), BOS: -1, EOS: -1,
	}
	if c.MaxSeq == 0 {
		c.MaxSeq = 2048
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.Heads > 0 {
		c.HeadDim = c.Dim / c.Heads
	}
	if p.KeyLength > 0 {
		c.HeadDim = p.KeyLength
	}
	if e, ok := f.Tensor("token_embd.weight"); ok && len(e.Dims) == 2 {
		c.Vocab = int(e.Dims[1])
	}
	if p.RopeDimensionCount > 0 && p.RopeDimensionCount < c.HeadDim {
		c.PartialRotary = float64(p.RopeDimensionCount) / float64(c.HeadDim)
	}
	c.QKVBias = has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias")
	c.OutBias = has("blk.0.attn_output.bias")
	c.MLPBias = has("blk.0.ffn_up.bias")
	c.QKNorm = has("blk.0.attn_q_norm.weight")
	if v, ok := f.Uint(gguf.ArchKey(p.Arch, "attention.sliding_window")); ok {
		c.SlidingWindow = int(v)
	}
	if p.ExpertCount > 0 {
		c.Experts, c.TopK = p.ExpertCount, p.ExpertUsedCount
		c.ExpertFFN = p.ExpertFeedForwardLength
		if c.ExpertFFN == 0 {
			c.ExpertFFN = c.FFN
		}
		c.NormTopK = fam == "mixtral" || fam == "qwen3_moe"
		if v, ok := f.Bool(gguf.ArchKey(p.Arch, "expert_weights_norm")); ok {
			c.NormTopK = v
		}
		if has("blk.0.ffn_up_shexp.weight") {
			c.SharedExperts = 1
			if v, ok := f.Uint(gguf.ArchKey(p.Arch, "expert_shared_feed_forward_length")); ok {
				c.SharedFFN = int(v)
			} else if t, ok := f.Tensor("blk.0.ffn_up_shexp.weight"); ok && len(t.Dims) == 2 {
				c.SharedFFN = int(t.Dims[1])
			}
			c.SharedGate = has("blk.0.ffn_gate_inp_shexp.weight")
		}
	}
	switch fam {
	case "qwen2", "qwen2_moe":
		c.QKVBias = true
	case "phi3":
		c.FFN = p.FeedForwardLength
	case "gpt2":
		c.Norm, c.NormBias, c.Pos, c.MLP, c.Act = "layernorm", true, "learned", "gelu", "gelu_new"
		c.RopeTheta = 0
		c.OutBias, c.MLPBias = true, true
		if v, ok := f.Float(gguf.ArchKey(p.Arch, "attention.layer_norm_epsilon")); ok {
			c.NormEps = v
		}
	}
	if t, ok := f.String(gguf.ArchKey(p.Arch, "rope.scaling.type")); ok && (t == "linear" || t == "yarn") {
		fac, _ := f.Float(gguf.ArchKey(p.Arch, "rope.scaling.factor"))
		orig, _ := f.Uint(gguf.ArchKey(p.Arch, "rope.scaling.original_context_length"))
		c.RopeScaling = &RopeScaling{Type: t, Factor: fac, OriginalMaxPos: int(orig)}
	}
	if has("rope_freqs.weight") {
		// llama3-style per-dimension divisors; MAI runs them as longrope
		// factors with no attention scaling, which is the same rotation.
		v, _, err := f.Float32("rope_freqs.weight")
		if err != nil {
			return Config{}, err
		}
		rs := &RopeScaling{Type: "longrope", AttnFactor: 1}
		for _, x := range v {
			rs.ShortFactor = append(rs.ShortFactor, float64(x))
		}
		c.RopeScaling = rs
	}
	if has("rope_factors_short.weight") {
		short, _, err := f.Float32("rope_factors_short.weight")
		if err != nil {
			return Config{}, err
		}
		rs := &RopeScaling{Type: "longrope"}
		for _, x := range short {
			rs.ShortFactor = append(rs.ShortFactor, float64(x))
		}
		if has("rope_factors_long.weight") {
			long, _, err := f.Float32("rope_factors_long.weight")
			if err != nil {
				return Config{}, err
			}
			for _, x := range long {
				rs.LongFactor = append(rs.LongFactor, float64(x))
			}
		}
		if v, ok := f.Uint(gguf.ArchKey(p.Arch, "rope.scaling.original_context_length")); ok {
			rs.OriginalMaxPos = int(v)
		}
		if v, ok := f.Float(gguf.ArchKey(p.Arch, "rope.scaling.attn_factor")); ok {
			rs.AttnFactor = v
		}
		c.RopeScaling = rs
	}
	if tok, err := gguf.ReadTokenizer(f); err == nil {
		if id, ok := tok.Special["bos"]; ok {
			c.BOS = id
		}
		if id, ok := tok.Special["eos"]; ok {
			c.EOS = id
		}
	}
	if math.IsNaN(c.NormEps) || c.NormEps <= 0 {
		c.NormEps = 1e-5
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
