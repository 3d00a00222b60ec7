package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// quantState holds the weights a model stores in a type other than float32:
// per canonical parameter name, the ggml type and bytes (what a GGUF file
// holds) and, for the types the CPU kernels multiply by directly (Q8_0,
// Q4_0, Q4_K, F16, BF16), the kernels' form, used by the forward pass
// whenever it does not record gradients. The float32 parameters keep the
// dequantized values, so training, the embedding lookup and tensors without
// a kernel (Q6_K, Q5_0, ...) see exactly what the file holds.
type quantState struct {
	stored map[string]*storedTensor
	lin    map[*nn.Var]*cpu.QWeight
}

// storedTensor is one parameter in its storage type.
type storedTensor struct {
	Type quant.Type
	Raw  []byte       // ggml bytes; nil when QW holds them
	QW   *cpu.QWeight // kernel form; nil when no kernel runs this type
}

func (s *storedTensor) bytes() []byte {
	if s.QW != nil {
		return s.QW.GGML()
	}
	return s.Raw
}

// QuantTypes are the types `mai quantize` produces.
var QuantTypes = []string{"q8_0", "q4_0", "q4_K", "f16", "bf16"}

// QuantizeOptions selects the storage types of Model.Quantize.
type QuantizeOptions struct {
	// Type is the type of the weight matrices.
	Type quant.Type
	// OutputType is the type of the output head (the embedding when tied);
	// zero chooses as llama-quantize does: Q8_0 stays Q8_0, other types
	// give Q6_K (Q8_0 when rows do not split into 256).
	OutputType quant.Type
	// KeepEmbedding leaves an untied token embedding in float32 (it is
	// only looked up, never multiplied).
	KeepEmbedding bool
}

// ParseQuantType maps a name such as "q4_K", "Q8_0" or "f16" to its type.
func ParseQuantType(s string) (quant.Type, error) {
	t, err := quant.ParseType(s)
	if err != nil {
		return 0, fmt.Errorf("quantization type %q: %w", s, err)
	}
	if !t.CanQuantize() {
		return 0, fmt.Errorf("quantization type %q cannot be written", s)
	}
	return t, nil
}

// quantizable reports whether a canonical parameter is a weight matrix
// that llama.cpp stores quantized: not norms, biases or MoE routers.
func quantizable(name string, shape []int) bool {
	if len(shape) != 2 || kindOf(name) != kindMatrix {
		return false
	}
	return !strings.HasSuffix(name, "mlp.gate.weight") && !strings.HasSuffix(name, "shared_expert_gate.weight") &&
		name != "model.embed_positions.weight"
}

// typeFor picks the storage type of one parameter, falling back when its
// rows do not split into the type's blocks: K-quants to Q8_0, then to F16,
// then F32 (so that every fallback still has a kernel or is exact).
func typeFor(name string, shape []int, isHead bool, opts QuantizeOptions) quant.Type {
	if !quantizable(name, shape) {
		return quant.F32
	}
	t := opts.Type
	if isHead {
		switch {
		case opts.OutputType != quant.F32:
			t = opts.OutputType
		case t == quant.Q8_0 || t == quant.F16 || t == quant.BF16:
		default:
			t = quant.Q6_K
		}
	}
	cols := shape[1]
	for cols%t.BlockSize() != 0 {
		switch t.BlockSize() {
		case quant.QKK:
			t = quant.Q8_0
		case quant.QK:
			t = quant.F16
		default:
			return quant.F32
		}
	}
	return t
}

// headName is the canonical name of the output head's matrix.
func (m *Model) headName() string {
	if m.Cfg.Tied {
		return "model.embed_tokens.weight"
	}
	return "lm_head.weight"
}

// Quantize stores the model's weight matrices in opts.Type for inference,
// as llama-quantize would (norms, biases and routers stay float32; see
// QuantizeOptions). The float32 parameters are replaced by the dequantized
// values, so that every code path sees the quantized model.
func (m *Model) Quantize(opts QuantizeOptions) error {
	if !opts.Type.CanQuantize() {
		return fmt.Errorf("quantize: cannot store weights as %v", opts.Type)
	}
	head := m.headName()
	for _, p := range m.Tensors {
		isHead := p.Name == head
		if p.Name == "model.embed_tokens.weight" && !m.Cfg.Tied && opts.KeepEmbedding {
			continue
		}
		t := typeFor(p.Name, p.V.Shape, isHead, opts)
		if t == quant.F32 {
			continue
		}
		n, err := t.RowBytes(int64(p.V.Len()))
		if err != nil {
			return fmt.Errorf("quantize %s: %w", p.Name, err)
		}
		raw := make([]byte, n)
		if err := quant.Quantize(t, raw, p.V.Data); err != nil {
			return fmt.Errorf("quantize %s: %w", p.Name, err)
		}
		if err := m.setStored(p.Name, t, raw); err != nil {
			return err
		}
	}
	return nil
}

// setStored records that parameter name is stored as ggml type t with bytes
// raw, sets the float32 values to the decoded ones and, where a kernel runs
// t, makes the forward pass use it.
func (m *Model) setStored(name string, t quant.Type, raw []byte) error {
	v, ok := m.byName[name]
	if !ok {
		return fmt.Errorf("no parameter %q", name)
	}
	if err := quant.Dequantize(t, v.Data, raw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if t == quant.F32 {
		if m.q != nil {
			delete(m.q.stored, name)
			delete(m.q.lin, v)
		}
		return nil
	}
	if m.q == nil {
		m.q = &quantState{stored: map[string]*storedTensor{}, lin: map[*nn.Var]*cpu.QWeight{}}
	}
	st := &storedTensor{Type: t}
	if _, has := cpu.QTypeOf(t); has && len(v.Shape) == 2 && v.Shape[1]%t.BlockSize() == 0 {
		qw, err := cpu.NewQWeight(t, v.Shape[0], v.Shape[1], raw)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		st.QW = qw
		m.q.lin[v] = qw
	} else {
		st.Raw = raw
		delete(m.q.lin, v)
	}
	m.q.stored[name] = st
	return nil
}

// StorageType returns the type parameter name is stored in (F32 unless the
// model was quantized or loaded from a quantized file).
func (m *Model) StorageType(name string) quant.Type {
	if m.q != nil {
		if st, ok := m.q.stored[name]; ok {
			return st.Type
		}
	}
	return quant.F32
}

// Quantized reports whether any weight is stored in a type other than F32.
func (m *Model) Quantized() bool { return m.q != nil && len(m.q.stored) > 0 }

// DTypeMix counts parameters per storage type name ("F32", "Q4_K", ...).
func (m *Model) DTypeMix() map[string]int64 {
	mix := map[string]int64{}
	for _, p := range m.Tensors {
		mix[m.StorageType(p.Name).String()] += int64(p.V.Len())
	}
	return mix
}

// WeightBytes is the size of the weights in their storage types.
func (m *Model) WeightBytes() int64 {
	var n int64
	for _, p := range m.Tensors {
		t := m.StorageType(p.Name)
		b, err := t.RowBytes(int64(p.V.Len()))
		if err != nil {
			b = int64(p.V.Len()) * 4
		}
		n += b
	}
	return n
}

// FormatMix renders a dtype mix as "Q4_K 92.1%, F32 7.9%".
func FormatMix(mix map[string]int64) string {
	var total int64
	names := make([]string, 0, len(mix))
	for k, v := range mix {
		total += v
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return mix[names[i]] > mix[names[j]] })
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.1f%%", k, 100*float64(mix[k])/float64(max(total, 1)))
	}
	return b.String()
}

// linear is x·wᵀ + b through the quantized kernels when the model stores w
// in a type they run and the tape records no gradients; otherwise the
// float32 Linear (on the dequantized values).
func (m *Model) linear(tp *nn.Tape, x, w, b *nn.Var) *nn.Var {
	if m.q == nil || tp.Grad {
		return tp.Linear(x, w, b)
	}
	qw := m.q.lin[w]
	if qw == nil {
		return tp.Linear(x, w, b)
	}
	n := x.Rows()
	shape := append([]int(nil), x.Shape...)
	shape[len(shape)-1] = qw.Rows
	y := nn.Const(make([]float32, n*qw.Rows), shape...)
	cpu.QMatMul(tp.P, y.Data, x.Data, n, qw)
	if b != nil {
		for i := range n {
			row := y.Data[i*qw.Rows : (i+1)*qw.Rows]
			for j, v := range b.Data {
				row[j] += v
			}
		}
	}
	return y
}
