package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mai-llm/mai/model"
)

// maxConfigBytes bounds the size of a config.json the planner reads.
const maxConfigBytes = 4 << 20

// hfConfig holds the Hugging Face config.json fields the planner reads. GPT-2
// style names (n_embd, n_layer, ...) are accepted as alternatives.
type hfConfig struct {
	ModelType string `json:"model_type"`

	HiddenSize            int   `json:"hidden_size"`
	NumHiddenLayers       int   `json:"num_hidden_layers"`
	NumAttentionHeads     int   `json:"num_attention_heads"`
	NumKeyValueHeads      int   `json:"num_key_value_heads"`
	HeadDim               int   `json:"head_dim"`
	IntermediateSize      int   `json:"intermediate_size"`
	VocabSize             int   `json:"vocab_size"`
	MaxPositionEmbeddings int   `json:"max_position_embeddings"`
	TieWordEmbeddings     *bool `json:"tie_word_embeddings"`

	NEmbd      int `json:"n_embd"`
	NLayer     int `json:"n_layer"`
	NHead      int `json:"n_head"`
	NInner     int `json:"n_inner"`
	NPositions int `json:"n_positions"`

	NumLocalExperts              int   `json:"num_local_experts"` // Mixtral
	NumExperts                   int   `json:"num_experts"`       // Qwen2-MoE
	NRoutedExperts               int   `json:"n_routed_experts"`  // DeepSeek
	NumExpertsPerTok             int   `json:"num_experts_per_tok"`
	MoEIntermediateSize          int   `json:"moe_intermediate_size"`
	SharedExpertIntermediateSize int   `json:"shared_expert_intermediate_size"`
	NSharedExperts               int   `json:"n_shared_experts"`
	DecoderSparseStep            int   `json:"decoder_sparse_step"`
	MoELayerFreq                 int   `json:"moe_layer_freq"`
	FirstKDenseReplace           int   `json:"first_k_dense_replace"`
	NormTopKProb                 *bool `json:"norm_topk_prob"`

	RopeTheta        float64 `json:"rope_theta"`
	RMSNormEps       float64 `json:"rms_norm_eps"`
	LayerNormEps     float64 `json:"layer_norm_eps"`
	LayerNormEpsilon float64 `json:"layer_norm_epsilon"`
	AttentionBias    *bool   `json:"attention_bias"`
	KVLoraRank       int     `json:"kv_lora_rank"`
}

// layerNormGELU lists model types whose blocks use LayerNorm and a GELU MLP.
var layerNormGELU = map[string]bool{"gpt2": true, "gpt_neox": true, "gptj": true, "phi": true, "opt": true, "bloom": true}

// ParseHFConfig reads a Hugging Face config.json into a model.Config. It
// reads the common fields only, so the result is right for parameter, FLOP
// and memory arithmetic but is not a complete model description; notes say
// where it approximates (for example DeepSeek's MLA attention or dense first
// layers).
func ParseHFConfig(data []byte) (model.Config, []string, error) {
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&h); err != nil {
		return model.Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	var notes []string
	pick := func(a, b int) int {
		if a != 0 {
			return a
		}
		return b
	}
	mt := strings.ToLower(h.ModelType)
	c := model.Config{
		Family: mt,
		Vocab:  h.VocabSize,
		Dim:    pick(h.HiddenSize, h.NEmbd),
		Layers: pick(h.NumHiddenLayers, h.NLayer),
		Heads:  pick(h.NumAttentionHeads, h.NHead),
		FFN:    pick(h.IntermediateSize, h.NInner),
		MaxSeq: pick(h.MaxPositionEmbeddings, h.NPositions),
		BOS:    -1, EOS: -1,
	}
	if c.Family == "" {
		c.Family = "unknown"
		notes = append(notes, "config.json has no model_type: assuming a Llama-style block (RMSNorm, SwiGLU, RoPE)")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.Vocab}, {"hidden_size", c.Dim}, {"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}} {
		if f.v <= 0 {
			return model.Config{}, nil, fmt.Errorf("config.json: %s must be a positive integer, got %d", f.name, f.v)
		}
	}
	if h.NumKeyValueHeads < 0 || h.HeadDim < 0 || c.FFN < 0 || c.MaxSeq < 0 || h.NumExpertsPerTok < 0 ||
		h.MoEIntermediateSize < 0 || h.SharedExpertIntermediateSize < 0 || h.NSharedExperts < 0 {
		return model.Config{}, nil, errors.New("config.json: sizes must not be negative")
	}
	c.KVHeads = pick(h.NumKeyValueHeads, c.Heads)
	c.HeadDim = h.HeadDim
	if c.HeadDim == 0 {
		if c.Dim%c.Heads != 0 {
			return model.Config{}, nil, fmt.Errorf("config.json: hidden_size %d is not a multiple of num_attention_heads %d and head_dim is not given", c.Dim, c.Heads)
		}
		c.HeadDim = c.Dim / c.Heads
	}
	if c.MaxSeq == 0 {
		c.MaxSeq = 4096
		notes = append(notes, "config.json has no max_position_embeddings: assuming 4096")
	}

	if layerNormGELU[mt] {
		c.Norm, c.NormBias, c.MLP, c.Act = "layernorm", true, "gelu", "gelu"
		c.QKVBias, c.OutBias, c.MLPBias = true, true, true
		c.Pos = "rope"
		if mt == "gpt2" || mt == "opt" {
			c.Pos = "learned"
		}
		if c.FFN == 0 {
			c.FFN = 4 * c.Dim
		}
		c.NormEps = pick64(h.LayerNormEps, h.LayerNormEpsilon, 1e-5)
	} else {
		c.Norm, c.MLP, c.Act, c.Pos = "rmsnorm", "swiglu", "silu", "rope"
		c.NormEps = pick64(h.RMSNormEps, 0, 1e-6)
	}
	c.RopeTheta = pick64(h.RopeTheta, 0, 10000)
	switch mt {
	case "qwen2", "qwen2_moe":
		c.QKVBias = true
	}
	if h.AttentionBias != nil && *h.AttentionBias {
		c.QKVBias, c.OutBias = true, true
	}
	c.Tied = mt == "gpt2" // transformers' default is true, but every modern config states it
	if h.TieWordEmbeddings != nil {
		c.Tied = *h.TieWordEmbeddings
	}

	c.Experts = h.NumLocalExperts
	for _, e := range []int{h.NumExperts, h.NRoutedExperts} {
		if c.Experts == 0 {
			c.Experts = e
		}
	}
	if c.Experts < 0 {
		return model.Config{}, nil, fmt.Errorf("config.json: number of experts must not be negative, got %d", c.Experts)
	}
	if c.Experts > 0 {
		c.TopK = h.NumExpertsPerTok
		c.ExpertFFN = pick(h.MoEIntermediateSize, c.FFN)
		if h.SharedExpertIntermediateSize > 0 {
			c.SharedExperts, c.SharedFFN, c.SharedGate = 1, h.SharedExpertIntermediateSize, mt == "qwen2_moe"
		} else if h.NSharedExperts > 0 {
			c.SharedExperts, c.SharedFFN = h.NSharedExperts, h.NSharedExperts*c.ExpertFFN
		}
		c.NormTopK = h.NormTopKProb != nil && *h.NormTopKProb
		c.MoEEvery = pick(h.DecoderSparseStep, h.MoELayerFreq)
		if h.FirstKDenseReplace > 0 {
			notes = append(notes, fmt.Sprintf("the first %d dense layers (first_k_dense_replace) are counted as MoE layers", h.FirstKDenseReplace))
		}
		if c.ExpertFFN <= 0 {
			return model.Config{}, nil, errors.New("config.json: an MoE config needs moe_intermediate_size or intermediate_size")
		}
	}
	if h.KVLoraRank > 0 {
		notes = append(notes, "multi-head latent attention (kv_lora_rank) is counted as plain attention with the same heads and head_dim")
	}
	if err := c.Validate(); err != nil {
		return model.Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	return c, notes, nil
}

// pick64 returns the first non-zero of a, b, else def.
func pick64(a, b, def float64) float64 {
	if a != 0 {
		return a
	}
	if b != 0 {
		return b
	}
	return def
}

// LoadModel resolves a --model argument: a preset name, a config.json file,
// or a directory holding one. It returns the config, a display name and
// notes on approximations.
func LoadModel(spec string) (model.Config, string, []string, error) {
	if spec == "" {
		return model.Config{}, "", nil, fmt.Errorf("no model given (a preset: %s; or a path to config.json)", strings.Join(model.Presets(), ", "))
	}
	if c, err := model.Preset(spec); err == nil {
		return c, spec, nil, nil
	}
	path := spec
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return model.Config{}, "", nil, fmt.Errorf("model %q is neither a preset (%s) nor an existing file", spec, strings.Join(model.Presets(), ", "))
		}
		return model.Config{}, "", nil, fmt.Errorf("model %q: %w", spec, err)
	}
	if st.IsDir() {
		path = filepath.Join(path, "config.json")
		if st, err = os.Stat(path); err != nil {
			return model.Config{}, "", nil, fmt.Errorf("model %q: %w", spec, err)
		}
	}
	if st.Size() > maxConfigBytes {
		return model.Config{}, "", nil, fmt.Errorf("model %q: %d bytes is too large for a config.json", path, st.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return model.Config{}, "", nil, fmt.Errorf("model %q: %w", spec, err)
	}
	c, notes, err := ParseHFConfig(data)
	if err != nil {
		return model.Config{}, "", nil, fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".json")
	if name == "config" {
		name = filepath.Base(filepath.Dir(path))
	}
	if name == "." || name == "/" || name == "" {
		name = c.Family
	}
	return c, name, notes, nil
}
