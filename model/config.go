// Package model describes transformer language models with one Config for every
// family (GPT-2, Llama, Mistral, Mixtral, Qwen2, Qwen2-MoE, Phi-3 and MAI's own
// presets), builds them from nn modules, and loads and saves their weights under
// Hugging Face tensor names.
package model

import (
	"fmt"
	"math"
	"sort"
)

// Config describes a decoder-only transformer. Zero values mean "not used".
type Config struct {
	Family      string       `json:"family"`   // HF model_type: llama, mistral, mixtral, qwen2, qwen2_moe, phi3, gpt2, mai
	Vocab       int          `json:"vocab"`    // vocabulary size
	Dim         int          `json:"dim"`      // hidden size
	Layers      int          `json:"layers"`   // number of blocks
	Heads       int          `json:"heads"`    // query heads
	KVHeads     int          `json:"kv_heads"` // key/value heads (GQA); equals Heads for MHA
	HeadDim     int          `json:"head_dim"` // per-head width
	FFN         int          `json:"ffn"`      // dense MLP hidden size
	MaxSeq      int          `json:"max_seq"`  // context length
	Norm        string       `json:"norm"`     // "rmsnorm" or "layernorm"
	NormEps     float64      `json:"norm_eps"`
	Pos         string       `json:"pos"` // "rope" or "learned"
	RopeTheta   float64      `json:"rope_theta"`
	RopeScaling *RopeScaling `json:"rope_scaling,omitempty"`
	// PartialRotary is the fraction of each head rotated (1 when zero).
	PartialRotary float64 `json:"partial_rotary,omitempty"`
	MLP           string  `json:"mlp"`       // "swiglu" or "gelu"
	Act           string  `json:"act"`       // activation: silu, gelu, gelu_new (tanh approximation)
	QKVBias       bool    `json:"qkv_bias"`  // bias on q, k, v projections
	OutBias       bool    `json:"out_bias"`  // bias on the attention output projection
	MLPBias       bool    `json:"mlp_bias"`  // biases in the MLP
	NormBias      bool    `json:"norm_bias"` // LayerNorm has a bias
	Tied          bool    `json:"tied"`      // output head shares the embedding matrix
	SlidingWindow int     `json:"sliding_window,omitempty"`
	QKNorm        bool    `json:"qk_norm,omitempty"` // per-head RMSNorm on q and k (Qwen3)

	// Mixture of experts; Experts == 0 means a dense MLP.
	Experts       int     `json:"experts,omitempty"`
	TopK          int     `json:"top_k,omitempty"`
	ExpertFFN     int     `json:"expert_ffn,omitempty"`     // hidden size of each routed expert (FFN when zero)
	SharedExperts int     `json:"shared_experts,omitempty"` // always-on experts
	SharedFFN     int     `json:"shared_ffn,omitempty"`     // hidden size of the shared expert block
	SharedGate    bool    `json:"shared_gate,omitempty"`    // sigmoid gate on the shared expert (Qwen2-MoE)
	NormTopK      bool    `json:"norm_topk,omitempty"`      // renormalize the top-k gate weights to sum to 1
	AuxLossCoef   float64 `json:"aux_loss_coef,omitempty"`  // load-balancing loss weight
	ZLossCoef     float64 `json:"z_loss_coef,omitempty"`    // router z-loss weight
	MoEEvery      int     `json:"moe_every,omitempty"`      // every Nth layer is MoE (1 when zero)

	BOS int `json:"bos"`
	EOS int `json:"eos"`
	// EOSExtra are further end-of-sequence ids (Llama 3 lists several in
	// eos_token_id); generation stops at EOS or any of them.
	EOSExtra []int `json:"eos_extra,omitempty"`
}

// EOSIDs lists every end-of-sequence id: EOS (when set) then EOSExtra.
func (c *Config) EOSIDs() []int {
	var out []int
	if c.EOS >= 0 {
		out = append(out, c.EOS)
	}
	for _, e := range c.EOSExtra {
		if e >= 0 && e != c.EOS {
			out = append(out, e)
		}
	}
	return out
}

// RopeScaling describes a RoPE frequency scaling variant.
type RopeScaling struct {
	Type           string    `json:"type"` // linear, dynamic, yarn, llama3, longrope
	Factor         float64   `json:"factor"`
	LowFreqFactor  float64   `json:"low_freq_factor,omitempty"`
	HighFreqFactor float64   `json:"high_freq_factor,omitempty"`
	OriginalMaxPos int       `json:"original_max_position_embeddings,omitempty"`
	BetaFast       float64   `json:"beta_fast,omitempty"`
	BetaSlow       float64   `json:"beta_slow,omitempty"`
	AttnFactor     float64   `json:"attention_factor,omitempty"`
	ShortFactor    []float64 `json:"short_factor,omitempty"`
	LongFactor     []float64 `json:"long_factor,omitempty"`
}

// IsMoE reports whether layer l uses a mixture of experts.
func (c *Config) IsMoE(l int) bool {
	if c.Experts == 0 {
		return false
	}
	every := max(c.MoEEvery, 1)
	return (l+1)%every == 0
}

// ExpertHidden is the hidden size of one routed expert.
func (c *Config) ExpertHidden() int {
	if c.ExpertFFN > 0 {
		return c.ExpertFFN
	}
	return c.FFN
}

// Validate checks that the configuration describes a buildable model.
func (c *Config) Validate() error {
	switch {
	case c.Vocab <= 0:
		return fmt.Errorf("model config: vocab must be positive, got %d", c.Vocab)
	case c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0:
		return fmt.Errorf("model config: dim, layers and heads must be positive (dim=%d layers=%d heads=%d)", c.Dim, c.Layers, c.Heads)
	case c.KVHeads <= 0 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("model config: heads (%d) must be a multiple of kv_heads (%d)", c.Heads, c.KVHeads)
	case c.HeadDim <= 0:
		return fmt.Errorf("model config: head_dim must be positive, got %d", c.HeadDim)
	case c.Pos == "rope" && c.rotaryDim()%2 != 0:
		return fmt.Errorf("model config: rotary dimension %d must be even", c.rotaryDim())
	case c.Norm != "rmsnorm" && c.Norm != "layernorm":
		return fmt.Errorf("model config: unknown norm %q (want rmsnorm or layernorm)", c.Norm)
	case c.Pos != "rope" && c.Pos != "learned":
		return fmt.Errorf("model config: unknown positional scheme %q (want rope or learned)", c.Pos)
	case c.MLP != "swiglu" && c.MLP != "gelu":
		return fmt.Errorf("model config: unknown mlp %q (want swiglu or gelu)", c.MLP)
	case c.MaxSeq <= 0:
		return fmt.Errorf("model config: max_seq must be positive, got %d", c.MaxSeq)
	case c.Experts > 0 && (c.TopK <= 0 || c.TopK > c.Experts):
		return fmt.Errorf("model config: top_k (%d) must be in [1, experts=%d]", c.TopK, c.Experts)
	case c.Experts == 0 && c.FFN <= 0:
		return fmt.Errorf("model config: ffn must be positive, got %d", c.FFN)
	}
	return nil
}

func (c *Config) rotaryDim() int {
	if c.PartialRotary > 0 && c.PartialRotary < 1 {
		return int(float64(c.HeadDim) * c.PartialRotary)
	}
	return c.HeadDim
}

// RotaryDim is the number of dimensions of each head that RoPE rotates.
func (c *Config) RotaryDim() int { return c.rotaryDim() }

// ParamCounts is a model's parameter count split the way parallel layouts
// shard it. The counts are float64 so that any configuration, however large,
// can be counted without wrapping (they are exact below 2^53).
type ParamCounts struct {
	// Embed is the input embedding, with learned positions.
	Embed float64
	// Head is the output projection, counted even when it is tied to the
	// embedding (Tied: the embedding's values serve as the head).
	Head float64
	Tied bool
	// FinalNorm is the norm before the head.
	FinalNorm float64
	// Dense is every non-expert parameter of the layers: attention, norms,
	// dense MLPs, routers and shared experts.
	Dense float64
	// Expert is the routed experts of all layers; ExpertActive the part of
	// them each token passes through (TopK of Experts).
	Expert, ExpertActive float64
	// MoELayers is the number of layers with routed experts.
	MoELayers int
}

// Total is every parameter, counted once.
func (p ParamCounts) Total() float64 {
	t := p.Embed + p.FinalNorm + p.Dense + p.Expert
	if !p.Tied {
		t += p.Head
	}
	return t
}

// Active is the parameters one token passes through.
func (p ParamCounts) Active() float64 { return p.Total() - p.Expert + p.ExpertActive }

// ParamCounts counts the parameters part by part.
func (c *Config) ParamCounts() ParamCounts {
	d := float64(c.Dim)
	hd := float64(c.HeadDim)
	q := float64(c.Heads) * hd
	kv := float64(c.KVHeads) * hd
	v := float64(c.Vocab)
	p := ParamCounts{Embed: v * d, Head: v * d, Tied: c.Tied}
	if c.Pos == "learned" {
		p.Embed += float64(c.MaxSeq) * d
	}
	normP := d
	if c.Norm == "layernorm" && c.NormBias {
		normP = 2 * d
	}
	p.FinalNorm = normP
	mlp := func(h float64) float64 {
		if c.MLP == "swiglu" {
			m := 3 * d * h
			if c.MLPBias {
				m += 2*h + d
			}
			return m
		}
		m := 2 * d * h
		if c.MLPBias {
			m += h + d
		}
		return m
	}
	for l := 0; l < c.Layers; l++ {
		attn := d*q + 2*d*kv + q*d + 2*normP
		if c.QKVBias {
			attn += q + 2*kv
		}
		if c.OutBias {
			attn += d
		}
		if c.QKNorm {
			attn += 2 * hd
		}
		p.Dense += attn
		if !c.IsMoE(l) {
			p.Dense += mlp(float64(c.FFN))
			continue
		}
		p.MoELayers++
		e := mlp(float64(c.ExpertHidden()))
		p.Dense += d * float64(c.Experts) // router
		p.Expert += float64(c.Experts) * e
		p.ExpertActive += float64(c.TopK) * e
		if c.SharedExperts > 0 {
			sh := c.SharedFFN
			if sh == 0 {
				sh = c.SharedExperts * c.ExpertHidden()
			}
			s := mlp(float64(sh))
			if c.SharedGate {
				s += d
			}
			p.Dense += s
		}
	}
	return p
}

// Params counts parameters: total, and active per token (MoE routes each token
// through TopK of Experts). Counts beyond int64 saturate at math.MaxInt64.
func (c *Config) Params() (total, active int64) {
	p := c.ParamCounts()
	toInt := func(x float64) int64 {
		if x >= math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(x)
	}
	return toInt(p.Total()), toInt(p.Active())
}

// FLOPsPerToken is the training compute per token (forward + backward, 6N for the
// matmuls touched by a token plus attention over a context of seq tokens).
func (c *Config) FLOPsPerToken(seq int) float64 {
	_, active := c.Params()
	nonEmb := active - int64(c.Vocab)*int64(c.Dim) // the input embedding is a lookup
	if c.Pos == "learned" {
		nonEmb -= int64(c.MaxSeq) * int64(c.Dim)
	}
	if c.Tied {
		nonEmb += int64(c.Vocab) * int64(c.Dim) // the head still multiplies
	}
	attn := 6.0 * float64(c.Layers) * float64(seq) * float64(c.Heads*c.HeadDim) // QK^T and AV, causal half counted twice as in PaLM's estimate /2*2
	return 6*float64(nonEmb) + attn
}

// Presets returns the names of the built-in presets, sorted.
func Presets() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns a copy of a named preset.
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown preset %q (known: %v)", name, Presets())
	}
	return c, nil
}

func maiBase() Config {
	return Config{Family: "mai", Norm: "rmsnorm", NormEps: 1e-5, Pos: "rope", RopeTheta: 10000,
		MLP: "swiglu", Act: "silu", BOS: -1, EOS: 256}
}

// presets is the preset registry.
var presets = map[string]Config{
	"tiny": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.MaxSeq = 257, 128, 4, 4, 2, 32, 352, 256
		c.Tied = true
		return c
	}(),
	"tiny-moe": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.MaxSeq = 257, 128, 4, 4, 2, 32, 256
		c.Experts, c.TopK, c.ExpertFFN, c.SharedExperts, c.SharedFFN, c.SharedGate = 8, 2, 128, 1, 128, true
		c.NormTopK, c.AuxLossCoef, c.ZLossCoef = true, 0.01, 0.001
		c.QKVBias = true // as Qwen2-MoE, the architecture MAI MoE models export to
		c.Tied = true
		return c
	}(),
	"small": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.MaxSeq = 32768, 384, 6, 6, 2, 64, 1024, 512
		c.Tied = true
		return c
	}(),
	"gpt2-124m": {Family: "gpt2", Vocab: 50257, Dim: 768, Layers: 12, Heads: 12, KVHeads: 12, HeadDim: 64,
		FFN: 3072, MaxSeq: 1024, Norm: "layernorm", NormEps: 1e-5, NormBias: true, Pos: "learned", MLP: "gelu",
		Act: "gelu_new", QKVBias: true, OutBias: true, MLPBias: true, Tied: true, BOS: 50256, EOS: 50256},
	"1b": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.MaxSeq = 128256, 2048, 16, 32, 8, 64, 8192, 8192
		c.RopeTheta, c.Tied = 500000, true
		return c
	}(),
	"8b": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.MaxSeq = 128256, 4096, 32, 32, 8, 128, 14336, 8192
		c.RopeTheta = 500000
		return c
	}(),
	// mai-1-500b is the frontier target: a fine-grained MoE of about 500B
	// parameters (about 30B active), described for planning, not trained here.
	"mai-1-500b": func() Config {
		c := maiBase()
		c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.MaxSeq = 131072, 7168, 60, 56, 8, 128, 8192
		c.Experts, c.TopK, c.ExpertFFN, c.SharedExperts, c.SharedFFN, c.SharedGate = 192, 8, 2048, 1, 2048, true
		c.NormTopK, c.AuxLossCoef, c.ZLossCoef, c.RopeTheta, c.QKVBias = true, 0.001, 0.0001, 500000, true
		return c
	}(),
}
