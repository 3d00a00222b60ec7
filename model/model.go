package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/nn"
)

// Model is a decoder-only transformer whose parameters live in one flat
// buffer (and gradients in another), so optimizers, collectives and
// checkpoints work on contiguous memory.
type Model struct {
	Cfg    Config
	Pool   *cpu.Pool
	Params []float32
	Grads  []float32 // nil for an inference-only model
	// Tensors lists the parameters in layout order under their canonical
	// (Llama-style Hugging Face) names; family adapters map file names.
	Tensors []Param
	byName  map[string]*nn.Var

	Embed, Pos, Norm, NormB, Head *nn.Var
	Blocks                        []Block

	ropeLen  int
	ropeLong bool // tables hold longrope's long factors
	cos, sin []float32

	q *quantState // weights stored quantized (quant.go); nil for a float32 model
}

// Param is one named parameter tensor: a view into the flat buffers.
type Param struct {
	Name  string
	V     *nn.Var
	Off   int
	Decay bool
}

// Block is one transformer layer.
type Block struct {
	AttnNorm, AttnNormB, MLPNorm, MLPNormB *nn.Var
	Q, K, V, O, QB, KB, VB, OB             *nn.Var
	QNorm, KNorm                           *nn.Var
	MLP                                    *MLP // dense layers
	Router                                 *nn.Var
	Experts                                []*MLP
	Shared                                 *MLP
	SharedGate                             *nn.Var
}

// MLP is a SwiGLU (Gate, Up, Down) or GELU (Up, Down) feed-forward block.
type MLP struct {
	Gate, Up, Down, GateB, UpB, DownB *nn.Var
}

// New builds a model with zeroed parameters; call Init or load weights.
// withGrad allocates the gradient buffer for training.
func New(cfg Config, withGrad bool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg, Pool: cpu.Default(), byName: map[string]*nn.Var{}}
	specs := layout(&cfg)
	n := 0
	for _, s := range specs {
		n += s.numel()
	}
	m.Params = make([]float32, n)
	if withGrad {
		m.Grads = make([]float32, n)
	}
	off := 0
	for _, s := range specs {
		k := s.numel()
		var g []float32
		if withGrad {
			g = m.Grads[off : off+k]
		}
		v := nn.NewParam(m.Params[off:off+k], g, s.shape...)
		m.Tensors = append(m.Tensors, Param{Name: s.name, V: v, Off: off, Decay: s.decay})
		m.byName[s.name] = v
		off += k
	}
	m.bind()
	return m, nil
}

// Param returns the parameter with a canonical name.
func (m *Model) Param(name string) (*nn.Var, bool) {
	v, ok := m.byName[name]
	return v, ok
}

// Segments describes the flat buffer for the optimizer (which runs decay).
func (m *Model) Segments() []nn.Segment {
	segs := make([]nn.Segment, len(m.Tensors))
	for i, t := range m.Tensors {
		segs[i] = nn.Segment{Off: t.Off, Len: t.V.Len(), Decay: t.Decay}
	}
	return segs
}

// Init fills the parameters from a seeded normal distribution (std 0.02,
// residual projections scaled by 1/sqrt(2·layers) as in GPT-2), norms to one
// and biases to zero.
func (m *Model) Init(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6d6169))
	resid := 0.02 / math.Sqrt(2*float64(m.Cfg.Layers))
	for _, t := range m.Tensors {
		d := t.V.Data
		switch kindOf(t.Name) {
		case kindNorm:
			for i := range d {
				d[i] = 1
			}
		case kindBias:
			clear(d)
		default:
			std := 0.02
			if isResidualOut(t.Name) {
				std = resid
			}
			for i := range d {
				d[i] = float32(rng.NormFloat64() * std)
			}
		}
	}
}

// ZeroGrad clears the gradient buffer.
func (m *Model) ZeroGrad() { clear(m.Grads) }

func (m *Model) bind() {
	c := &m.Cfg
	p := func(name string) *nn.Var { return m.byName[name] }
	m.Embed = p("model.embed_tokens.weight")
	m.Pos = p("model.embed_positions.weight")
	m.Norm, m.NormB = p("model.norm.weight"), p("model.norm.bias")
	m.Head = p("lm_head.weight")
	if c.Tied {
		m.Head = m.Embed
	}
	mlp := func(pre string) *MLP {
		return &MLP{Gate: p(pre + "gate_proj.weight"), Up: p(pre + "up_proj.weight"), Down: p(pre + "down_proj.weight"),
			GateB: p(pre + "gate_proj.bias"), UpB: p(pre + "up_proj.bias"), DownB: p(pre + "down_proj.bias")}
	}
	m.Blocks = make([]Block, c.Layers)
	for l := range m.Blocks {
		pre := fmt.Sprintf("model.layers.%d.", l)
		b := &m.Blocks[l]
		b.AttnNorm, b.AttnNormB = p(pre+"input_layernorm.weight"), p(pre+"input_layernorm.bias")
		b.MLPNorm, b.MLPNormB = p(pre+"post_attention_layernorm.weight"), p(pre+"post_attention_layernorm.bias")
		a := pre + "self_attn."
		b.Q, b.K, b.V, b.O = p(a+"q_proj.weight"), p(a+"k_proj.weight"), p(a+"v_proj.weight"), p(a+"o_proj.weight")
		b.QB, b.KB, b.VB, b.OB = p(a+"q_proj.bias"), p(a+"k_proj.bias"), p(a+"v_proj.bias"), p(a+"o_proj.bias")
		b.QNorm, b.KNorm = p(a+"q_norm.weight"), p(a+"k_norm.weight")
		if !c.IsMoE(l) {
			b.MLP = mlp(pre + "mlp.")
			continue
		}
		b.Router = p(pre + "mlp.gate.weight")
		for e := 0; e < c.Experts; e++ {
			b.Experts = append(b.Experts, mlp(fmt.Sprintf("%smlp.experts.%d.", pre, e)))
		}
		if c.SharedExperts > 0 {
			b.Shared = mlp(pre + "mlp.shared_expert.")
			b.SharedGate = p(pre + "mlp.shared_expert_gate.weight")
		}
	}
}

type spec struct {
	name  string
	shape []int
	decay bool
}

func (s spec) numel() int {
	n := 1
	for _, d := range s.shape {
		n *= d
	}
	return n
}

// layout lists every parameter of a config under canonical names.
func layout(c *Config) []spec {
	var out []spec
	add := func(name string, decay bool, shape ...int) { out = append(out, spec{name, shape, decay}) }
	norm := func(name string) {
		add(name+".weight", false, c.Dim)
		if c.Norm == "layernorm" && c.NormBias {
			add(name+".bias", false, c.Dim)
		}
	}
	lin := func(name string, bias bool, out, in int) {
		add(name+".weight", true, out, in)
		if bias {
			add(name+".bias", false, out)
		}
	}
	mlp := func(pre string, hidden int) {
		if c.MLP == "swiglu" {
			lin(pre+"gate_proj", c.MLPBias, hidden, c.Dim)
		}
		lin(pre+"up_proj", c.MLPBias, hidden, c.Dim)
		lin(pre+"down_proj", c.MLPBias, c.Dim, hidden)
	}
	add("model.embed_tokens.weight", true, c.Vocab, c.Dim)
	if c.Pos == "learned" {
		add("model.embed_positions.weight", true, c.MaxSeq, c.Dim)
	}
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	for l := 0; l < c.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		norm(pre + "input_layernorm")
		lin(pre+"self_attn.q_proj", c.QKVBias, q, c.Dim)
		lin(pre+"self_attn.k_proj", c.QKVBias, kv, c.Dim)
		lin(pre+"self_attn.v_proj", c.QKVBias, kv, c.Dim)
		lin(pre+"self_attn.o_proj", c.OutBias, c.Dim, q)
		if c.QKNorm {
			add(pre+"self_attn.q_norm.weight", false, c.HeadDim)
			add(pre+"self_attn.k_norm.weight", false, c.HeadDim)
		}
		norm(pre + "post_attention_layernorm")
		if !c.IsMoE(l) {
			mlp(pre+"mlp.", c.FFN)
			continue
		}
		add(pre+"mlp.gate.weight", true, c.Experts, c.Dim)
		for e := 0; e < c.Experts; e++ {
			mlp(fmt.Sprintf("%smlp.experts.%d.", pre, e), c.ExpertHidden())
		}
		if c.SharedExperts > 0 {
			sh := c.SharedFFN
			if sh == 0 {
				sh = c.SharedExperts * c.ExpertHidden()
			}
			mlp(pre+"mlp.shared_expert.", sh)
			if c.SharedGate {
				add(pre+"mlp.shared_expert_gate.weight", true, 1, c.Dim)
			}
		}
	}
	norm("model.norm")
	if !c.Tied {
		add("lm_head.weight", true, c.Vocab, c.Dim)
	}
	return out
}

const (
	kindMatrix = iota
	kindNorm
	kindBias
)

func kindOf(name string) int {
	switch {
	case hasSuffix(name, ".bias"):
		return kindBias
	case hasSuffix(name, "norm.weight") || hasSuffix(name, "layernorm.weight"):
		return kindNorm
	}
	return kindMatrix
}

func isResidualOut(name string) bool {
	return hasSuffix(name, "o_proj.weight") || hasSuffix(name, "down_proj.weight")
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }
