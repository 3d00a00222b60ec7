package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/mai-llm/mai/internal/atomicfile"
)

// family is a small adapter from a Hugging Face model_type to Config and to
// file tensor names: which canonical tensors make up each file tensor.
type family struct {
	// config fills family-specific fields from config.json.
	config func(c *Config, h hfJSON) error
	// files maps canonical parameters to file tensors.
	files func(c *Config) []fileTensor
	// export writes family-specific config.json keys.
	export func(c *Config, h map[string]any)
}

// fileTensor is one tensor in a checkpoint file made of canonical parts
// concatenated along rows, transposed on disk when Transpose (GPT-2 Conv1D).
type fileTensor struct {
	Name      string
	Parts     []string
	Transpose bool
}

// families is the registry of supported model_type values.
var families = map[string]family{}

// Families lists supported Hugging Face model types.
func Families() []string {
	var out []string
	for k := range families {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type hfJSON map[string]any

func (h hfJSON) num(keys ...string) (float64, bool) {
	for _, k := range keys {
		if v, ok := h[k].(float64); ok {
			return v, true
		}
	}
	return 0, false
}

func (h hfJSON) int(def int, keys ...string) int {
	if v, ok := h.num(keys...); ok {
		return int(v)
	}
	return def
}

func (h hfJSON) float(def float64, keys ...string) float64 {
	if v, ok := h.num(keys...); ok {
		return v
	}
	return def
}

func (h hfJSON) bool(def bool, key string) bool {
	if v, ok := h[key].(bool); ok {
		return v
	}
	return def
}

func (h hfJSON) str(def string, key string) string {
	if v, ok := h[key].(string); ok {
		return v
	}
	return def
}

// tokenID reads a token id that may be a number or a list (first entry).
func (h hfJSON) tokenID(key string) int {
	switch v := h[key].(type) {
	case float64:
		return int(v)
	case []any:
		if len(v) > 0 {
			if f, ok := v[0].(float64); ok {
				return int(f)
			}
		}
	}
	return -1
}

// tokenIDs reads the ids after the first of a token-id list (none for a
// single number).
func (h hfJSON) tokenIDs(key string) []int {
	l, ok := h[key].([]any)
	if !ok || len(l) < 2 {
		return nil
	}
	var out []int
	for _, v := range l[1:] {
		if f, ok := v.(float64); ok {
			out = append(out, int(f))
		}
	}
	return out
}

// mergeGenerationConfig adds the end-of-sequence ids of a folder's
// generation_config.json, which generation follows (it often lists more
// than config.json).
func mergeGenerationConfig(c *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // optional
	}
	var h hfJSON
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	ids := h.tokenIDs("eos_token_id")
	if first := h.tokenID("eos_token_id"); first >= 0 {
		ids = append([]int{first}, ids...)
	}
	for _, id := range ids {
		if id < 0 || id >= c.Vocab {
			continue
		}
		switch {
		case c.EOS < 0:
			c.EOS = id
		case id != c.EOS && !slices.Contains(c.EOSExtra, id):
			c.EOSExtra = append(c.EOSExtra, id)
		}
	}
	return nil
}

// ReadConfig reads a Hugging Face config.json into a Config.
func ReadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read model config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig parses the bytes of a Hugging Face config.json.
func ParseConfig(b []byte) (Config, error) {
	var h hfJSON
	if err := json.Unmarshal(b, &h); err != nil {
		return Config{}, fmt.Errorf("parse config.json: %w", err)
	}
	mt := h.str("", "model_type")
	fam, ok := families[mt]
	if !ok {
		return Config{}, fmt.Errorf("config.json: unknown model_type %q (supported: %s)", mt, strings.Join(Families(), ", "))
	}
	c := Config{
		Family:  mt,
		Vocab:   h.int(0, "vocab_size"),
		Dim:     h.int(0, "hidden_size", "n_embd"),
		Layers:  h.int(0, "num_hidden_layers", "n_layer"),
		Heads:   h.int(0, "num_attention_heads", "n_head"),
		FFN:     h.int(0, "intermediate_size", "n_inner"),
		MaxSeq:  h.int(2048, "max_position_embeddings", "n_positions"),
		NormEps: h.float(1e-5, "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"),
		Norm:    "rmsnorm", Pos: "rope", MLP: "swiglu",
		Act:  h.str("silu", "hidden_act"),
		Tied: h.bool(false, "tie_word_embeddings"),
		BOS:  h.tokenID("bos_token_id"), EOS: h.tokenID("eos_token_id"),
	}
	c.EOSExtra = h.tokenIDs("eos_token_id")
	c.KVHeads = h.int(c.Heads, "num_key_value_heads")
	if c.Heads > 0 {
		c.HeadDim = h.int(c.Dim/c.Heads, "head_dim")
	}
	if err := readRope(&c, h); err != nil {
		return Config{}, err
	}
	if err := fam.config(&c, h); err != nil {
		return Config{}, err
	}
	if h.str("", "mai_family") == "mai" {
		c.Family = "mai" // a MAI preset saved as its nearest HF architecture
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config.json (%s): %w", mt, err)
	}
	return c, nil
}

// readRope reads both the transformers-5 rope_parameters object and the older
// top-level rope_theta / rope_scaling keys.
func readRope(c *Config, h hfJSON) error {
	c.RopeTheta = h.float(10000, "rope_theta")
	c.PartialRotary = h.float(0, "partial_rotary_factor")
	var rs map[string]any
	if p, ok := h["rope_parameters"].(map[string]any); ok {
		if v, ok := p["rope_theta"].(float64); ok {
			c.RopeTheta = v
		}
		if v, ok := p["partial_rotary_factor"].(float64); ok {
			c.PartialRotary = v
		}
		rs = p
	}
	if p, ok := h["rope_scaling"].(map[string]any); ok {
		rs = p
	}
	if rs == nil {
		return nil
	}
	b, _ := json.Marshal(rs)
	var s RopeScaling
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("config.json: rope scaling: %w", err)
	}
	if t, ok := rs["rope_type"].(string); ok {
		s.Type = t
	}
	switch s.Type {
	case "", "default":
		return nil
	case "linear", "dynamic", "yarn", "llama3":
		if s.Factor == 0 {
			return fmt.Errorf("config.json: rope scaling %q needs a factor", s.Type)
		}
		c.RopeScaling = &s
		return nil
	case "longrope", "su":
		s.Type = "longrope"
		// Phi-3 keeps original_max_position_embeddings at the top level,
		// where transformers' longrope reads it.
		if v := h.int(0, "original_max_position_embeddings"); v > 0 {
			s.OriginalMaxPos = v
		}
		c.RopeScaling = &s
		return nil
	}
	return fmt.Errorf("config.json: unsupported rope scaling type %q (supported: linear, dynamic, yarn, llama3, longrope)", s.Type)
}

// WriteConfig writes config.json (and generation_config.json) for the
// nearest Hugging Face architecture, so transformers can load the folder.
func WriteConfig(dir string, c *Config) error {
	mt, fam := exportFamily(c)
	h := map[string]any{
		"model_type":              mt,
		"architectures":           []string{archName(mt)},
		"vocab_size":              c.Vocab,
		"hidden_size":             c.Dim,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"head_dim":                c.HeadDim,
		"intermediate_size":       c.FFN,
		"max_position_embeddings": c.MaxSeq,
		"rms_norm_eps":            c.NormEps,
		"hidden_act":              c.Act,
		"tie_word_embeddings":     c.Tied,
		"rope_theta":              c.RopeTheta,
		"torch_dtype":             "float32",
		"mai_family":              c.Family,
	}
	if c.BOS >= 0 {
		h["bos_token_id"] = c.BOS
	}
	if ids := c.EOSIDs(); len(ids) > 1 {
		h["eos_token_id"] = ids
	} else if c.EOS >= 0 {
		h["eos_token_id"] = c.EOS
	}
	if c.RopeScaling != nil {
		rs := map[string]any{}
		b, _ := json.Marshal(c.RopeScaling)
		_ = json.Unmarshal(b, &rs)
		rs["rope_type"] = c.RopeScaling.Type
		h["rope_scaling"] = rs
		if c.RopeScaling.Type == "longrope" && c.RopeScaling.OriginalMaxPos > 0 {
			h["original_max_position_embeddings"] = c.RopeScaling.OriginalMaxPos
		}
	}
	if c.ZLossCoef > 0 {
		h["mai_z_loss_coef"] = c.ZLossCoef
	}
	fam.export(c, h)
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	gen := map[string]any{"_from_model_config": true}
	if c.BOS >= 0 {
		gen["bos_token_id"] = c.BOS
	}
	if ids := c.EOSIDs(); len(ids) > 1 {
		gen["eos_token_id"] = ids
	} else if c.EOS >= 0 {
		gen["eos_token_id"] = c.EOS
	}
	b, _ = json.MarshalIndent(gen, "", "  ")
	return atomicfile.WriteFile(filepath.Join(dir, "generation_config.json"), append(b, '\n'), 0o644)
}

// exportFamily picks the Hugging Face architecture a config is saved as.
func exportFamily(c *Config) (string, family) {
	if f, ok := families[c.Family]; ok && c.Family != "mai" {
		return c.Family, f
	}
	if c.Experts > 0 {
		return "qwen2_moe", families["qwen2_moe"]
	}
	return "llama", families["llama"]
}

func archName(mt string) string {
	switch mt {
	case "gpt2":
		return "GPT2LMHeadModel"
	case "qwen2_moe":
		return "Qwen2MoeForCausalLM"
	case "qwen3_moe":
		return "Qwen3MoeForCausalLM"
	case "phi3":
		return "Phi3ForCausalLM"
	}
	parts := strings.Split(mt, "_")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "") + "ForCausalLM"
}
