package model

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/tensor"
)

// DefaultShardBytes is the largest safetensors file written before a
// checkpoint is split into shards with an index, as Hugging Face does.
const DefaultShardBytes = 5 << 30

// Load reads a Hugging Face model folder (config.json + safetensors, single
// or sharded) into a model. withGrad allocates gradients for training.
func Load(dir string, withGrad bool) (*Model, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load model: %s is not a directory (want a folder with config.json and *.safetensors)", dir)
	}
	cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	if err := mergeGenerationConfig(&cfg, filepath.Join(dir, "generation_config.json")); err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	defer set.Close()
	// Refuse a config that claims more parameters than the files hold before
	// allocating for it.
	var stored int64
	for _, n := range set.Names() {
		if in, ok := set.Info(n); ok {
			stored += in.NumElements()
		}
	}
	if total, _ := cfg.Params(); total > stored {
		return nil, fmt.Errorf("load model %s: config.json describes %d parameters but the safetensors files hold %d values: the config does not match the weights", dir, total, stored)
	}
	m, err := New(cfg, withGrad)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	if err := m.readWeights(set); err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	return m, nil
}

func (m *Model) readWeights(set *safetensors.Set) error {
	fam, ok := families[m.Cfg.Family]
	if !ok {
		return fmt.Errorf("unknown model family %q", m.Cfg.Family)
	}
	used := map[string]bool{}
	have := map[string]bool{}
	for _, n := range set.Names() {
		have[n] = true
	}
	for _, ft := range fam.files(&m.Cfg) {
		name := ft.Name
		if !have[name] && strings.HasPrefix(name, "transformer.") && have[strings.TrimPrefix(name, "transformer.")] {
			name = strings.TrimPrefix(name, "transformer.")
		}
		if !have[name] {
			return fmt.Errorf("tensor %q is missing from the checkpoint", ft.Name)
		}
		data, shape, err := set.Float32(name)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		used[name] = true
		if err := m.scatter(ft, data, shape); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	var extra []string
	for n := range have {
		if !used[n] && !ignorable(n, &m.Cfg) {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		slog.Warn("checkpoint tensors not used by the model", "count", len(extra), "first", extra[0])
	}
	return nil
}

func ignorable(name string, c *Config) bool {
	return strings.HasSuffix(name, "rotary_emb.inv_freq") || strings.HasSuffix(name, "attn.bias") ||
		strings.HasSuffix(name, "attn.masked_bias") || (c.Tied && name == "lm_head.weight")
}

// scatter copies a file tensor into its canonical parts.
func (m *Model) scatter(ft fileTensor, data []float32, shape []int) error {
	parts := make([]*Param, len(ft.Parts))
	total := 0
	for i, p := range ft.Parts {
		v, ok := m.byName[p]
		if !ok {
			return fmt.Errorf("internal: no parameter %q", p)
		}
		parts[i] = &Param{Name: p, V: v}
		total += v.Len()
	}
	if len(data) != total {
		return fmt.Errorf("shape %v does not match the config (want %d elements in %s)", shape, total, describeParts(parts))
	}
	if ft.Transpose {
		if len(shape) != 2 {
			return fmt.Errorf("want a 2-D tensor, have shape %v", shape)
		}
		data = transpose(data, shape[0], shape[1])
	} else if len(ft.Parts) == 1 && !tensor.SameShape(squeeze(shape), squeeze(parts[0].V.Shape)) {
		return fmt.Errorf("shape %v does not match the config's %v", shape, parts[0].V.Shape)
	}
	off := 0
	for _, p := range parts {
		off += copy(p.V.Data, data[off:])
	}
	return nil
}

// Save writes the model as a Hugging Face folder: config.json,
// generation_config.json and safetensors (sharded above maxShard bytes;
// 0 means DefaultShardBytes) in dtype "f32", "bf16" or "f16".
func (m *Model) Save(dir, dtype string, maxShard int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if maxShard <= 0 {
		maxShard = DefaultShardBytes
	}
	mt, fam := exportFamily(&m.Cfg)
	exp := m.Cfg
	exp.Family = mt
	var ts []safetensors.Tensor
	for _, ft := range fam.files(&exp) {
		data, shape := m.gather(ft)
		var t safetensors.Tensor
		switch dtype {
		case "", "f32":
			t = safetensors.F32Tensor(ft.Name, shape, data)
		case "bf16":
			t = safetensors.BF16Tensor(ft.Name, shape, data)
		case "f16":
			t = safetensors.F16Tensor(ft.Name, shape, data)
		default:
			return fmt.Errorf("save model: unsupported dtype %q (want f32, bf16 or f16)", dtype)
		}
		ts = append(ts, t)
	}
	meta := map[string]string{"format": "pt"}
	if err := safetensors.WriteDir(dir, ts, meta, maxShard); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := WriteConfig(dir, &m.Cfg); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

func (m *Model) gather(ft fileTensor) ([]float32, []int) {
	var data []float32
	rows := 0
	var shape []int
	for _, p := range ft.Parts {
		v := m.byName[p]
		data = append(data, v.Data...)
		shape = v.Shape
		rows += v.Shape[0]
	}
	if len(ft.Parts) > 1 {
		shape = append([]int{rows}, shape[1:]...)
	} else {
		shape = append([]int(nil), shape...)
	}
	if ft.Transpose {
		data = transpose(data, shape[0], shape[1])
		shape[0], shape[1] = shape[1], shape[0]
	}
	return data, shape
}

func transpose(a []float32, r, c int) []float32 {
	out := make([]float32, len(a))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[j*r+i] = a[i*c+j]
		}
	}
	return out
}

func squeeze(s []int) []int {
	var out []int
	for _, d := range s {
		if d != 1 {
			out = append(out, d)
		}
	}
	return out
}

func describeParts(ps []*Param) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" + ")
		}
		fmt.Fprintf(&b, "%s%v", p.Name, p.V.Shape)
	}
	return b.String()
}
