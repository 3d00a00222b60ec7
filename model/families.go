package model

import (
	"fmt"
	"strings"
)

func init() {
	llama := family{config: llamaConfig, files: identityFiles, export: llamaExport}
	families["llama"] = llama
	families["mai"] = llama
	families["mistral"] = family{config: func(c *Config, h hfJSON) error {
		c.SlidingWindow = h.int(0, "sliding_window")
		return llamaConfig(c, h)
	}, files: identityFiles, export: func(c *Config, h map[string]any) {
		llamaExport(c, h)
		if c.SlidingWindow > 0 {
			h["sliding_window"] = c.SlidingWindow
		}
	}}
	families["qwen2"] = family{config: qwen2Config, files: identityFiles, export: qwen2Export}
	families["qwen3"] = family{config: func(c *Config, h hfJSON) error {
		c.QKNorm = true
		return llamaConfig(c, h)
	}, files: identityFiles, export: llamaExport}
	families["mixtral"] = family{config: mixtralConfig, files: mixtralFiles, export: mixtralExport}
	families["qwen2_moe"] = family{config: qwenMoEConfig, files: identityFiles, export: qwenMoEExport}
	families["qwen3_moe"] = family{config: func(c *Config, h hfJSON) error {
		c.QKNorm = true
		return qwenMoEConfig(c, h)
	}, files: identityFiles, export: qwenMoEExport}
	families["phi3"] = family{config: func(c *Config, h hfJSON) error {
		c.SlidingWindow = h.int(0, "sliding_window")
		return llamaConfig(c, h)
	}, files: phi3Files, export: func(c *Config, h map[string]any) {
		llamaExport(c, h)
		if c.SlidingWindow > 0 {
			h["sliding_window"] = c.SlidingWindow
		}
	}}
	families["gpt2"] = family{config: gpt2Config, files: gpt2Files, export: gpt2Export}
}

func llamaConfig(c *Config, h hfJSON) error {
	c.QKVBias = h.bool(false, "attention_bias")
	c.OutBias = c.QKVBias
	c.MLPBias = h.bool(false, "mlp_bias")
	if c.Act != "silu" && c.Act != "swish" {
		return fmt.Errorf("config.json: hidden_act %q is not supported for %s (want silu)", c.Act, c.Family)
	}
	return nil
}

func llamaExport(c *Config, h map[string]any) {
	h["attention_bias"] = c.QKVBias
	h["mlp_bias"] = c.MLPBias
	if c.PartialRotary > 0 {
		h["partial_rotary_factor"] = c.PartialRotary
	}
}

func qwen2Config(c *Config, h hfJSON) error {
	c.QKVBias = true
	if h.bool(false, "use_sliding_window") {
		c.SlidingWindow = h.int(0, "sliding_window")
	}
	return nil
}

func qwen2Export(c *Config, h map[string]any) {
	if c.SlidingWindow > 0 {
		h["use_sliding_window"] = true
		h["sliding_window"] = c.SlidingWindow
	}
}

func mixtralConfig(c *Config, h hfJSON) error {
	c.Experts = h.int(0, "num_local_experts")
	c.TopK = h.int(2, "num_experts_per_tok")
	c.ExpertFFN = c.FFN
	c.NormTopK = true
	c.AuxLossCoef = h.float(0, "router_aux_loss_coef")
	c.SlidingWindow = h.int(0, "sliding_window")
	return nil
}

func mixtralExport(c *Config, h map[string]any) {
	h["num_local_experts"] = c.Experts
	h["num_experts_per_tok"] = c.TopK
	h["intermediate_size"] = c.ExpertHidden()
	h["router_aux_loss_coef"] = c.AuxLossCoef
}

func qwenMoEConfig(c *Config, h hfJSON) error {
	c.QKVBias = c.Family == "qwen2_moe"
	c.Experts = h.int(0, "num_experts")
	c.TopK = h.int(0, "num_experts_per_tok")
	c.ExpertFFN = h.int(c.FFN, "moe_intermediate_size")
	c.NormTopK = h.bool(false, "norm_topk_prob")
	c.AuxLossCoef = h.float(0, "router_aux_loss_coef")
	c.MoEEvery = h.int(1, "decoder_sparse_step")
	if s := h.int(0, "shared_expert_intermediate_size"); s > 0 {
		c.SharedExperts, c.SharedFFN, c.SharedGate = 1, s, true
	}
	if l, ok := h["mlp_only_layers"].([]any); ok && len(l) > 0 {
		return fmt.Errorf("config.json: mlp_only_layers is not supported yet")
	}
	c.ZLossCoef = h.float(0, "mai_z_loss_coef")
	return nil
}

func qwenMoEExport(c *Config, h map[string]any) {
	h["num_experts"] = c.Experts
	h["num_experts_per_tok"] = c.TopK
	h["moe_intermediate_size"] = c.ExpertHidden()
	h["norm_topk_prob"] = c.NormTopK
	h["router_aux_loss_coef"] = c.AuxLossCoef
	h["decoder_sparse_step"] = max(c.MoEEvery, 1)
	h["mlp_only_layers"] = []int{}
	h["output_router_logits"] = false
	if c.SharedExperts > 0 {
		sh := c.SharedFFN
		if sh == 0 {
			sh = c.SharedExperts * c.ExpertHidden()
		}
		h["shared_expert_intermediate_size"] = sh
	}
	if c.FFN == 0 {
		h["intermediate_size"] = c.ExpertHidden()
	}
}

func gpt2Config(c *Config, h hfJSON) error {
	c.Norm, c.Pos, c.MLP, c.NormBias = "layernorm", "learned", "gelu", true
	c.Act = h.str("gelu_new", "activation_function")
	if c.FFN == 0 {
		c.FFN = 4 * c.Dim
	}
	c.QKVBias, c.OutBias, c.MLPBias = true, true, true
	c.Tied = h.bool(true, "tie_word_embeddings")
	if c.Heads <= 0 {
		return fmt.Errorf("config.json: n_head must be positive, got %d", c.Heads)
	}
	c.KVHeads = c.Heads
	c.HeadDim = c.Dim / c.Heads
	return nil
}

func gpt2Export(c *Config, h map[string]any) {
	for _, k := range []string{"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
		"head_dim", "intermediate_size", "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_theta"} {
		delete(h, k)
	}
	h["n_embd"], h["n_layer"], h["n_head"], h["n_positions"], h["n_ctx"] = c.Dim, c.Layers, c.Heads, c.MaxSeq, c.MaxSeq
	h["n_inner"], h["layer_norm_epsilon"], h["activation_function"] = c.FFN, c.NormEps, c.Act
}

// identityFiles stores every canonical tensor under its own name.
func identityFiles(c *Config) []fileTensor {
	var out []fileTensor
	for _, s := range layout(c) {
		out = append(out, fileTensor{Name: s.name, Parts: []string{s.name}})
	}
	return out
}

var mixtralNames = strings.NewReplacer(
	"mlp.gate.weight", "block_sparse_moe.gate.weight",
	"gate_proj", "w1", "down_proj", "w2", "up_proj", "w3",
	"mlp.experts.", "block_sparse_moe.experts.")

func mixtralFiles(c *Config) []fileTensor {
	out := identityFiles(c)
	for i := range out {
		if strings.Contains(out[i].Name, ".mlp.") && c.IsMoE(layerOf(out[i].Name)) {
			out[i].Name = mixtralNames.Replace(out[i].Name)
		}
	}
	return out
}

// phi3Files fuses q/k/v into qkv_proj and gate/up into gate_up_proj.
func phi3Files(c *Config) []fileTensor {
	var out []fileTensor
	for _, s := range layout(c) {
		n := s.name
		switch {
		case strings.HasSuffix(n, "q_proj.weight"):
			p := strings.TrimSuffix(n, "q_proj.weight")
			out = append(out, fileTensor{Name: p + "qkv_proj.weight", Parts: []string{n, p + "k_proj.weight", p + "v_proj.weight"}})
		case strings.HasSuffix(n, "k_proj.weight"), strings.HasSuffix(n, "v_proj.weight"), strings.HasSuffix(n, "up_proj.weight"):
		case strings.HasSuffix(n, "gate_proj.weight"):
			p := strings.TrimSuffix(n, "gate_proj.weight")
			out = append(out, fileTensor{Name: p + "gate_up_proj.weight", Parts: []string{n, p + "up_proj.weight"}})
		default:
			out = append(out, fileTensor{Name: n, Parts: []string{n}})
		}
	}
	return out
}

// gpt2Files maps onto GPT-2's Conv1D (transposed, fused q/k/v) tensors.
func gpt2Files(c *Config) []fileTensor {
	out := []fileTensor{
		{Name: "transformer.wte.weight", Parts: []string{"model.embed_tokens.weight"}},
		{Name: "transformer.wpe.weight", Parts: []string{"model.embed_positions.weight"}},
	}
	for l := 0; l < c.Layers; l++ {
		s, h := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("transformer.h.%d.", l)
		a := s + "self_attn."
		out = append(out,
			fileTensor{Name: h + "ln_1.weight", Parts: []string{s + "input_layernorm.weight"}},
			fileTensor{Name: h + "ln_1.bias", Parts: []string{s + "input_layernorm.bias"}},
			fileTensor{Name: h + "attn.c_attn.weight", Parts: []string{a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"}, Transpose: true},
			fileTensor{Name: h + "attn.c_attn.bias", Parts: []string{a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"}},
			fileTensor{Name: h + "attn.c_proj.weight", Parts: []string{a + "o_proj.weight"}, Transpose: true},
			fileTensor{Name: h + "attn.c_proj.bias", Parts: []string{a + "o_proj.bias"}},
			fileTensor{Name: h + "ln_2.weight", Parts: []string{s + "post_attention_layernorm.weight"}},
			fileTensor{Name: h + "ln_2.bias", Parts: []string{s + "post_attention_layernorm.bias"}},
			fileTensor{Name: h + "mlp.c_fc.weight", Parts: []string{s + "mlp.up_proj.weight"}, Transpose: true},
			fileTensor{Name: h + "mlp.c_fc.bias", Parts: []string{s + "mlp.up_proj.bias"}},
			fileTensor{Name: h + "mlp.c_proj.weight", Parts: []string{s + "mlp.down_proj.weight"}, Transpose: true},
			fileTensor{Name: h + "mlp.c_proj.bias", Parts: []string{s + "mlp.down_proj.bias"}},
		)
	}
	out = append(out,
		fileTensor{Name: "transformer.ln_f.weight", Parts: []string{"model.norm.weight"}},
		fileTensor{Name: "transformer.ln_f.bias", Parts: []string{"model.norm.bias"}})
	return out
}

func layerOf(name string) int {
	var l int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err != nil {
		return -1
	}
	return l
}
