package plan

import (
	"fmt"

	"github.com/mai-llm/mai/model"
)

// Bytes per parameter of mixed-precision AdamW training, before any sharding
// (Rajbhandari et al. 2020, ZeRO, section 3.1): BF16 weights and gradients, and
// an FP32 master copy with the two FP32 Adam moments as optimizer state.
const (
	WeightBytes         = 2  // BF16 working weights
	GradBytes           = 2  // BF16 gradients
	OptimizerBytes      = 12 // FP32 master weights + FP32 m + FP32 v
	MixedPrecisionBytes = WeightBytes + GradBytes + OptimizerBytes
)

// Recompute is an activation recomputation (checkpointing) policy.
type Recompute string

// Activation recomputation policies (Korthikanti et al. 2022).
const (
	// RecomputeNone stores every activation the backward pass needs,
	// including the s×s attention scores.
	RecomputeNone Recompute = "none"
	// RecomputeSelective drops the attention-core activations (QKᵀ, softmax,
	// dropout, attention over V) and recomputes them in the backward pass;
	// FlashAttention gives the same memory behaviour.
	RecomputeSelective Recompute = "selective"
	// RecomputeFull keeps only each layer's input and reruns the layer's
	// forward pass during the backward pass.
	RecomputeFull Recompute = "full"
)

// StateBytes returns the bytes one GPU holds for weights, gradients and AdamW
// state when params parameters are replicated over dp data-parallel ranks
// under a ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also the
// weights. Stage 0 is plain data parallelism.
func StateBytes(params float64, dp, zero int) (weights, grads, optimizer float64, err error) {
	if dp < 1 {
		return 0, 0, 0, fmt.Errorf("data-parallel size %d: must be at least 1", dp)
	}
	if zero < 0 || zero > 3 {
		return 0, 0, 0, fmt.Errorf("ZeRO stage %d: must be 0, 1, 2 or 3", zero)
	}
	d := float64(dp)
	weights, grads, optimizer = WeightBytes*params, GradBytes*params, OptimizerBytes*params
	if zero >= 1 {
		optimizer /= d
	}
	if zero >= 2 {
		grads /= d
	}
	if zero >= 3 {
		weights /= d
	}
	return weights, grads, optimizer, nil
}

// KorthikantiActivationBytes is Table 2 of Korthikanti et al. 2022 ("Reducing
// Activation Recomputation in Large Transformer Models"): the bytes of
// activations one transformer layer keeps for the backward pass on one GPU,
// for sequence length s, micro-batch b, hidden size h, a attention heads and
// t-way tensor parallelism, with or without sequence parallelism. It assumes
// the GPT-3 layer of the paper: multi-head attention, a 4h GELU MLP, dropout,
// 16-bit activations and 1-byte dropout masks.
func KorthikantiActivationBytes(s, b, h, a, t int, sp bool, rc Recompute) float64 {
	sbh := float64(s) * float64(b) * float64(h)
	tf := float64(max(t, 1))
	core := 5 * float64(a) * float64(s) / float64(h)
	switch rc {
	case RecomputeFull:
		return 2 * sbh
	case RecomputeSelective:
		if sp {
			return sbh * 34 / tf
		}
		return sbh * (10 + 24/tf)
	default:
		if sp {
			return sbh / tf * (34 + core)
		}
		return sbh * (10 + 24/tf + core/tf)
	}
}

// LayerShape is what activation accounting needs to know about one layer.
type LayerShape struct {
	Hidden   int  // model width h
	Heads    int  // query heads a
	QDim     int  // heads × head_dim (h for classic MHA)
	KVDim    int  // kv_heads × head_dim
	FFN      int  // dense MLP hidden size (ignored for MoE layers)
	Gated    bool // SwiGLU-style MLP (three projections) rather than GELU
	Dropout  bool // dropout after attention and MLP, and on the attention probabilities
	Experts  int  // routed experts; 0 for a dense layer
	TopK     int  // experts per token
	ExpertFF int  // hidden size of one routed expert
	SharedFF int  // hidden size of the always-on shared expert block (0 if none)
}

// mlpActs is the bytes per token an MLP of hidden size f keeps between its
// first and last projection (activation input and output, and the up branch
// when gated).
func (ls LayerShape) mlpActs(f int) float64 {
	if ls.Gated {
		return 6 * float64(f) // gate out, up out, gate·up (input of down)
	}
	return 4 * float64(f) // GELU input, GELU output (input of fc2)
}

// ActivationBytesPerToken generalises Korthikanti et al.'s per-layer count to
// GQA, SwiGLU and MoE layers without model parallelism: the bytes one token
// leaves behind in one layer. It equals 34h + 5as for the paper's GPT layer.
func (ls LayerShape) ActivationBytesPerToken(s int, rc Recompute) float64 {
	h := float64(ls.Hidden)
	if rc == RecomputeFull {
		return 2 * h // the layer input only
	}
	drop := 0.0
	if ls.Dropout {
		drop = h // 1-byte mask
	}
	// LN input, QKV input, Q, K, V, output-projection input, dropout mask.
	attn := 2*h + 2*h + 2*float64(ls.QDim) + 4*float64(ls.KVDim) + 2*float64(ls.QDim) + drop
	var mlp float64
	if ls.Experts == 0 {
		// LN input, first projection input, activations, dropout mask.
		mlp = 2*h + 2*h + ls.mlpActs(ls.FFN) + drop
	} else {
		k := float64(ls.TopK)
		// LN input, router/shared input, FP32 router logits; per routed copy
		// the permuted input, the expert's activations and its output; the
		// shared expert's activations; dropout mask.
		mlp = 2*h + 2*h + 4*float64(ls.Experts) + k*(2*h+ls.mlpActs(ls.ExpertFF)+2*h) + drop
		if ls.SharedFF > 0 {
			mlp += ls.mlpActs(ls.SharedFF)
		}
	}
	total := attn + mlp
	if rc == RecomputeNone {
		// softmax output, and with dropout its mask and output: 2as (+3as).
		perHead := 2.0
		if ls.Dropout {
			perHead = 5
		}
		total += perHead * float64(ls.Heads) * float64(s)
	}
	return total
}

// LayerActivationBytes is the bytes one layer keeps for one micro-batch of b
// sequences of length s on one GPU of a t-way tensor-parallel group with
// sequence parallelism (everything, including the checkpointed layer input
// under full recomputation, is split t ways).
func (ls LayerShape) LayerActivationBytes(s, b, t int, rc Recompute) float64 {
	return float64(s) * float64(b) * ls.ActivationBytesPerToken(s, rc) / float64(max(t, 1))
}

// layerShapes returns the dense and MoE layer shapes of a config.
func layerShapes(c *model.Config) (dense, moe LayerShape) {
	dense = LayerShape{
		Hidden: c.Dim, Heads: c.Heads, QDim: c.Heads * c.HeadDim, KVDim: c.KVHeads * c.HeadDim,
		FFN: c.FFN, Gated: c.MLP == "swiglu", Dropout: hasDropout(c),
	}
	moe = dense
	if c.Experts > 0 {
		moe.Experts, moe.TopK, moe.ExpertFF = c.Experts, c.TopK, c.ExpertHidden()
		if c.SharedExperts > 0 {
			moe.SharedFF = c.SharedFFN
			if moe.SharedFF == 0 {
				moe.SharedFF = c.SharedExperts * c.ExpertHidden()
			}
		}
	}
	return dense, moe
}

// hasDropout reports whether pretraining of this family conventionally uses
// dropout: the GPT-2/GPT-3 lineage with learned positions did; Llama-style
// models pretrain without it.
func hasDropout(c *model.Config) bool { return c.Pos == "learned" }

// paramSplit partitions a model's parameters the way parallelism shards them.
type paramSplit struct {
	embed        float64 // input embedding (+ learned positions)
	head         float64 // output projection (a copy of the embedding when tied)
	tiedHead     bool    // the head shares the embedding on a single stage
	finalNorm    float64
	dense        float64 // non-expert parameters of all layers (attention, norms, dense MLPs, routers, shared experts)
	expert       float64 // routed-expert parameters of all layers
	expertActive float64 // routed-expert parameters each token touches, all layers
	moeLayers    int
	layers       int
	attnFLOPs    float64 // attention-score FLOPs per token, all layers (training)
}

// splitParams is model.Config.ParamCounts with the attention FLOPs of a
// context of seq tokens.
func splitParams(c *model.Config, seq int) paramSplit {
	pc := c.ParamCounts()
	return paramSplit{
		embed: pc.Embed, head: pc.Head, tiedHead: pc.Tied, finalNorm: pc.FinalNorm,
		dense: pc.Dense, expert: pc.Expert, expertActive: pc.ExpertActive,
		moeLayers: pc.MoELayers, layers: c.Layers,
		attnFLOPs: 6 * float64(c.Layers) * float64(seq) * float64(c.Heads) * float64(c.HeadDim),
	}
}

// total is every parameter, counted once.
func (p paramSplit) total() float64 {
	t := p.embed + p.finalNorm + p.dense + p.expert
	if !p.tiedHead {
		t += p.head
	}
	return t
}

// layerFLOPs is the training FLOPs per token of all transformer layers.
func (p paramSplit) layerFLOPs() float64 {
	return 6*(p.dense+p.expertActive) + p.attnFLOPs
}

// headFLOPs is the training FLOPs per token of the final norm and output head.
func (p paramSplit) headFLOPs() float64 { return 6 * (p.head + p.finalNorm) }
