package gguf

import (
	"encoding/json"
	"fmt"
)

// hfArch maps Hugging Face model_type to llama.cpp's architecture name.
var hfArch = map[string]string{
	"llama":     "llama",
	"mistral":   "llama",
	"mixtral":   "llama",
	"qwen2":     "qwen2",
	"qwen2_moe": "qwen2moe",
	"qwen3":     "qwen3",
	"qwen3_moe": "qwen3moe",
	"phi3":      "phi3",
}

// hfConfig is the subset of a Hugging Face config.json that GGUF needs.
type hfConfig struct {
	ModelType             string   `json:"model_type"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               *int     `json:"head_dim"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             *float64 `json:"rope_theta"`
	RopeParameters        *struct {
		RopeTheta *float64 `json:"rope_theta"`
	} `json:"rope_parameters"`
	VocabSize         int `json:"vocab_size"`
	NumLocalExperts   int `json:"num_local_experts"`   // Mixtral
	NumExperts        int `json:"num_experts"`         // Qwen-MoE
	NumExpertsPerTok  int `json:"num_experts_per_tok"` // both
	MoEIntermediate   int `json:"moe_intermediate_size"`
	SharedIntermediat int `json:"shared_expert_intermediate_size"`
}

// ParamsFromHFConfig derives ModelParams from a Hugging Face config.json of
// a llama-family model (model_type llama, mistral, mixtral, qwen2,
// qwen2_moe, qwen3, qwen3_moe, phi3). RoPE theta is read from rope_theta
// or, as transformers 5 writes it, rope_parameters.rope_theta.
func ParamsFromHFConfig(configJSON []byte) (ModelParams, error) {
	var c hfConfig
	if err := json.Unmarshal(configJSON, &c); err != nil {
		return ModelParams{}, fmt.Errorf("gguf: config.json: %w", err)
	}
	arch, ok := hfArch[c.ModelType]
	if !ok {
		return ModelParams{}, fmt.Errorf("gguf: config.json: model_type %q has no llama.cpp architecture here", c.ModelType)
	}
	if c.NumAttentionHeads <= 0 || c.HiddenSize <= 0 {
		return ModelParams{}, fmt.Errorf("gguf: config.json: hidden_size %d, num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	p := ModelParams{
		Arch:              arch,
		ContextLength:     c.MaxPositionEmbeddings,
		EmbeddingLength:   c.HiddenSize,
		BlockCount:        c.NumHiddenLayers,
		FeedForwardLength: c.IntermediateSize,
		HeadCount:         c.NumAttentionHeads,
		HeadCountKV:       c.NumKeyValueHeads,
		RMSNormEpsilon:    float32(c.RMSNormEps),
		VocabSize:         c.VocabSize,
		RopeFreqBase:      10000,
	}
	if p.HeadCountKV == 0 {
		p.HeadCountKV = p.HeadCount
	}
	if c.RopeTheta != nil {
		p.RopeFreqBase = float32(*c.RopeTheta)
	} else if c.RopeParameters != nil && c.RopeParameters.RopeTheta != nil {
		p.RopeFreqBase = float32(*c.RopeParameters.RopeTheta)
	}
	headDim := c.HiddenSize / c.NumAttentionHeads
	if c.HeadDim != nil && *c.HeadDim > 0 {
		headDim = *c.HeadDim
	}
	p.RopeDimensionCount = headDim
	if headDim*c.NumAttentionHeads != c.HiddenSize {
		p.KeyLength, p.ValueLength = headDim, headDim
	}
	p.ExpertCount = max(c.NumLocalExperts, c.NumExperts)
	if p.ExpertCount > 0 {
		p.ExpertUsedCount = c.NumExpertsPerTok
		if c.MoEIntermediate > 0 {
			p.ExpertFeedForwardLength = c.MoEIntermediate
		}
	}
	return p, nil
}
