package gguf

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Tensor names: Hugging Face llama-family names and llama.cpp's GGUF names.
//
//	model.embed_tokens.weight                        token_embd.weight
//	model.norm.weight                                output_norm.weight
//	lm_head.weight                                   output.weight
//	model.layers.N.self_attn.{q,k,v,o}_proj          blk.N.attn_{q,k,v,output}
//	model.layers.N.self_attn.{q,k}_norm              blk.N.attn_{q,k}_norm
//	model.layers.N.self_attn.qkv_proj                blk.N.attn_qkv
//	model.layers.N.input_layernorm                   blk.N.attn_norm
//	model.layers.N.post_attention_layernorm          blk.N.ffn_norm
//	model.layers.N.mlp.{gate,up,down}_proj           blk.N.ffn_{gate,up,down}
//	model.layers.N.mlp.gate_up_proj                  blk.N.ffn_up (fused, Phi-3)
//	Mixtral: model.layers.N.block_sparse_moe.gate    blk.N.ffn_gate_inp
//	         ...block_sparse_moe.experts.E.{w1,w3,w2} blk.N.ffn_{gate,up,down}_exps [E]
//	Qwen-MoE: model.layers.N.mlp.gate                blk.N.ffn_gate_inp
//	         ...mlp.experts.E.{gate,up,down}_proj    blk.N.ffn_{gate,up,down}_exps [E]
//	         ...mlp.shared_expert.{gate,up,down}_proj blk.N.ffn_{gate,up,down}_shexp
//	         ...mlp.shared_expert_gate               blk.N.ffn_gate_inp_shexp
//
// Each takes the suffix .weight or .bias. The expert tensors of a layer are
// stacked into one GGUF tensor whose outermost dimension is the expert.

var layerNames = map[string]string{
	"self_attn.q_proj":            "attn_q",
	"self_attn.k_proj":            "attn_k",
	"self_attn.v_proj":            "attn_v",
	"self_attn.o_proj":            "attn_output",
	"self_attn.qkv_proj":          "attn_qkv",
	"self_attn.q_norm":            "attn_q_norm",
	"self_attn.k_norm":            "attn_k_norm",
	"input_layernorm":             "attn_norm",
	"post_attention_layernorm":    "ffn_norm",
	"mlp.gate_proj":               "ffn_gate",
	"mlp.up_proj":                 "ffn_up",
	"mlp.down_proj":               "ffn_down",
	"mlp.gate_up_proj":            "ffn_up",
	"block_sparse_moe.gate":       "ffn_gate_inp",
	"mlp.gate":                    "ffn_gate_inp",
	"mlp.shared_expert.gate_proj": "ffn_gate_shexp",
	"mlp.shared_expert.up_proj":   "ffn_up_shexp",
	"mlp.shared_expert.down_proj": "ffn_down_shexp",
	"mlp.shared_expert_gate":      "ffn_gate_inp_shexp",
}

var globalNames = map[string]string{
	"model.embed_tokens": "token_embd",
	"model.norm":         "output_norm",
	"lm_head":            "output",
}

// expertNames maps the per-expert projection to the stacked GGUF tensor.
var expertNames = map[string]string{
	"w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps", // Mixtral
	"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps", // Qwen-MoE
}

// GGUFName maps a Hugging Face tensor name of a llama-family model to its
// GGUF name. For a per-expert tensor it returns the stacked tensor's name
// and the expert index; otherwise expert is -1.
func GGUFName(hf string) (name string, expert int, ok bool) {
	base, suffix, found := cutLast(hf, ".")
	if !found || (suffix != "weight" && suffix != "bias") {
		return "", -1, false
	}
	if g, ok := globalNames[base]; ok {
		return g + "." + suffix, -1, true
	}
	rest, ok := strings.CutPrefix(base, "model.layers.")
	if !ok {
		return "", -1, false
	}
	layerStr, sub, ok := strings.Cut(rest, ".")
	layer, err := strconv.Atoi(layerStr)
	if !ok || err != nil || layer < 0 || strconv.Itoa(layer) != layerStr {
		return "", -1, false
	}
	prefix := "blk." + layerStr + "."
	if g, ok := layerNames[sub]; ok {
		return prefix + g + "." + suffix, -1, true
	}
	for _, moe := range []string{"block_sparse_moe.experts.", "mlp.experts."} {
		r, ok := strings.CutPrefix(sub, moe)
		if !ok {
			continue
		}
		eStr, proj, ok := strings.Cut(r, ".")
		e, err := strconv.Atoi(eStr)
		if !ok || err != nil || e < 0 || strconv.Itoa(e) != eStr {
			return "", -1, false
		}
		g, ok := expertNames[proj]
		if !ok {
			return "", -1, false
		}
		// Mixtral's w1..w3 only under block_sparse_moe, *_proj only under mlp.
		if (moe == "mlp.experts.") != strings.HasSuffix(proj, "_proj") {
			return "", -1, false
		}
		return prefix + g + "." + suffix, e, true
	}
	return "", -1, false
}

// HFName maps a GGUF tensor name back to the Hugging Face name for the
// given llama.cpp architecture. Mixtral converts to arch "llama", so for
// "llama" expert tensors use Mixtral's block_sparse_moe names and for other
// architectures Qwen-MoE's mlp.experts names. For a stacked expert tensor,
// expert selects the expert; it is ignored otherwise. attn_qkv maps to
// self_attn.qkv_proj; ffn_up maps to mlp.up_proj (not Phi-3's fused
// gate_up_proj).
func HFName(arch, gguf string, expert int) (string, bool) {
	base, suffix, found := cutLast(gguf, ".")
	if !found || (suffix != "weight" && suffix != "bias") {
		return "", false
	}
	for hf, g := range globalNames {
		if g == base {
			return hf + "." + suffix, true
		}
	}
	rest, ok := strings.CutPrefix(base, "blk.")
	if !ok {
		return "", false
	}
	layerStr, sub, ok := strings.Cut(rest, ".")
	if n, err := strconv.Atoi(layerStr); !ok || err != nil || n < 0 || strconv.Itoa(n) != layerStr {
		return "", false
	}
	prefix := "model.layers." + layerStr + "."
	mixtral := arch == "llama"
	switch sub {
	case "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps":
		if expert < 0 {
			return "", false
		}
		kind := strings.TrimSuffix(strings.TrimPrefix(sub, "ffn_"), "_exps")
		if mixtral {
			w := map[string]string{"gate": "w1", "up": "w3", "down": "w2"}[kind]
			return fmt.Sprintf("%sblock_sparse_moe.experts.%d.%s.%s", prefix, expert, w, suffix), true
		}
		return fmt.Sprintf("%smlp.experts.%d.%s_proj.%s", prefix, expert, kind, suffix), true
	case "ffn_gate_inp":
		if mixtral {
			return prefix + "block_sparse_moe.gate." + suffix, true
		}
		return prefix + "mlp.gate." + suffix, true
	case "ffn_up":
		return prefix + "mlp.up_proj." + suffix, true
	}
	for _, hf := range slices.Sorted(maps.Keys(layerNames)) {
		if layerNames[hf] == sub {
			return prefix + hf + "." + suffix, true
		}
	}
	return "", false
}

// IsExpertTensor reports whether a GGUF name is a stacked expert tensor.
func IsExpertTensor(gguf string) bool {
	return strings.Contains(gguf, "_exps.")
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// NeedsQKPermute reports whether llama.cpp's converter permutes the Q and K
// projection rows for arch (it does for "llama", whose RoPE in llama.cpp
// rotates adjacent pairs; Qwen and others use the NeoX layout unchanged).
func NeedsQKPermute(arch string) bool {
	return arch == "llama"
}

// PermuteQK reorders the rows of a q_proj or k_proj weight (or bias, with
// cols 1) from Hugging Face's rotate-half layout to the interleaved layout of
// llama.cpp's llama RoPE, as convert_hf_to_gguf.py's permute does. w holds
// rows*cols values, rows = heads*headDim; heads is the query head count for
// q_proj and the KV head count for k_proj. Within each head, row
// h*headDim + 2i + j of the result is row h*headDim + j*headDim/2 + i of w.
func PermuteQK(w []float32, heads, cols int) ([]float32, error) {
	return permuteQK(w, heads, cols, false)
}

// UnpermuteQK inverts PermuteQK.
func UnpermuteQK(w []float32, heads, cols int) ([]float32, error) {
	return permuteQK(w, heads, cols, true)
}

func permuteQK(w []float32, heads, cols int, inverse bool) ([]float32, error) {
	if heads <= 0 || cols <= 0 || len(w)%(heads*cols) != 0 {
		return nil, fmt.Errorf("gguf: permute: %d values do not split into %d heads of rows of %d", len(w), heads, cols)
	}
	rows := len(w) / cols
	hd := rows / heads
	if hd%2 != 0 {
		return nil, fmt.Errorf("gguf: permute: head dimension %d is odd", hd)
	}
	out := make([]float32, len(w))
	for h := range heads {
		for i := range hd / 2 {
			for j := range 2 {
				dst := h*hd + 2*i + j    // interleaved (llama.cpp)
				src := h*hd + j*hd/2 + i // rotate-half (HF)
				if inverse {
					dst, src = src, dst
				}
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out, nil
}
