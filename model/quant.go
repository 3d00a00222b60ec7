package model

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

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
// a kernel (Q6_K, Q5_0, ...) see exactly what the file holds — except for
// the tensors in lazy: a model loaded with LoadOptions.NoFloat32Copy never
// writes their float32 values (the pages of the flat buffer stay untouched,
// so they cost no resident memory); the forward pass looks their embedding
// rows up in the stored form, and Materialize writes the values when
// something needs them (a forward pass that records gradients does).
type quantState struct {
	stored map[string]*storedTensor
	lin    map[*nn.Var]*cpu.QWeight
	mu     sync.Mutex // guards lazy
	lazy   map[*nn.Var]*cpu.QWeight
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
var QuantTypes = []string{"q8_0", "q4_0", "q4_K", "q6_K", "f16", "bf16"}

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
		if err := m.setStored(p.Name, t, raw, true); err != nil {
			return err
		}
	}
	return nil
}

// setStored records that parameter name is stored as ggml type t with bytes
// raw (copied, so they may be a mapped file's), sets the float32 values to
// the decoded ones and, where a kernel runs t, makes the forward pass use
// it. Without f32, a tensor that a kernel runs keeps no float32 values
// (see quantState.lazy).
func (m *Model) setStored(name string, t quant.Type, raw []byte, f32 bool) error {
	v, ok := m.byName[name]
	if !ok {
		return fmt.Errorf("no parameter %q", name)
	}
	if m.q != nil {
		delete(m.q.lazy, v)
	}
	if t == quant.F32 {
		if err := quant.Dequantize(t, v.Data, raw); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if m.q != nil {
			delete(m.q.stored, name)
			delete(m.q.lin, v)
		}
		return nil
	}
	if m.q == nil {
		m.q = &quantState{stored: map[string]*storedTensor{}, lin: map[*nn.Var]*cpu.QWeight{}, lazy: map[*nn.Var]*cpu.QWeight{}}
	}
	st := &storedTensor{Type: t}
	if _, has := cpu.QTypeOf(t); has && len(v.Shape) == 2 && v.Shape[1]%t.BlockSize() == 0 {
		qw, err := cpu.NewQWeight(t, v.Shape[0], v.Shape[1], raw)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		st.QW = qw
		m.q.lin[v] = qw
		if !f32 {
			m.q.stored[name] = st
			m.q.lazy[v] = qw
			return nil
		}
	} else {
		st.Raw = slices.Clone(raw)
		delete(m.q.lin, v)
	}
	if err := quant.Dequantize(t, v.Data, raw); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m.q.stored[name] = st
	return nil
}

// Materialize writes the float32 values of every quantized tensor that a
// model loaded with LoadOptions.NoFloat32Copy left out, so that code that
// reads parameters as float32 (training, the batched paged forward, saving
// as float32, the GPU upload) sees them. It is safe to call more than once
// and from several goroutines; it does nothing for other models.
func (m *Model) Materialize() error {
	return m.materialize(func(*nn.Var, *cpu.QWeight) bool { return true })
}

// MaterializeGEMM writes the float32 values of the quantized weights that
// ForwardPaged (the batched serving forward) multiplies in float32: those
// a model loaded with LoadOptions.NoFloat32Copy left out whose kernels are
// not row-stable (cpu.QWeight.RowStable). Row-stable weights and the
// embedding table stay in their stored form only, so a server holds a
// Q4_0, Q8_0 or Q4_K model in about its file's size.
func (m *Model) MaterializeGEMM() error {
	return m.materialize(func(v *nn.Var, qw *cpu.QWeight) bool {
		return !qw.RowStable() && (v != m.Embed || m.Head == m.Embed)
	})
}

// materialize writes the float32 values of the lazy tensors that want
// them.
func (m *Model) materialize(want func(*nn.Var, *cpu.QWeight) bool) error {
	if m.q == nil {
		return nil
	}
	m.q.mu.Lock()
	defer m.q.mu.Unlock()
	for v, qw := range m.q.lazy {
		if !want(v, qw) {
			continue
		}
		if err := qw.Dequantize(v.Data); err != nil {
			return fmt.Errorf("materialize: %w", err)
		}
		delete(m.q.lazy, v)
	}
	return nil
}

// lazyWeight returns the stored form of v when its float32 values are
// not written (see quantState.lazy).
func (m *Model) lazyWeight(v *nn.Var) *cpu.QWeight {
	if m.q == nil {
		return nil
	}
	m.q.mu.Lock()
	defer m.q.mu.Unlock()
	return m.q.lazy[v]
}

// embedding looks up the token embedding rows of ids; a table without
// float32 values is dequantized row by row (inference only: a tape that
// records gradients materializes the model first).
func (m *Model) embedding(tp *nn.Tape, ids []int32) *nn.Var {
	qw := m.lazyWeight(m.Embed)
	if qw == nil {
		return tp.Embedding(m.Embed, ids)
	}
	d := qw.Cols
	y := nn.Const(tp.Floats(len(ids)*d), len(ids), d)
	for i, id := range ids {
		qw.DequantizeRows(y.Data[i*d:(i+1)*d], int(id), int(id)+1)
	}
	return y
}

// ResidentWeightBytes is the memory the weights take as this model holds
// them: the stored bytes of quantized tensors, plus their float32 values
// unless they were left out (LoadOptions.NoFloat32Copy), plus the float32
// tensors.
func (m *Model) ResidentWeightBytes() int64 {
	var n int64
	for _, p := range m.Tensors {
		n += 4 * int64(p.V.Len())
		if m.q == nil {
			continue
		}
		st, ok := m.q.stored[p.Name]
		if !ok {
			continue
		}
		if st.QW != nil {
			n += int64(st.QW.Bytes())
		} else {
			n += int64(len(st.Raw))
		}
		if _, lazy := m.q.lazy[p.V]; lazy {
			n -= 4 * int64(p.V.Len())
		}
	}
	return n
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
	var out []float32
	if w == m.Head {
		out = make([]float32, n*qw.Rows) // the logits outlive the forward pass
	} else {
		out = linearOuts(tp).take(n * qw.Rows)
	}
	y := nn.Const(out, shape...)
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

// outRing recycles the outputs of the quantized projections from one
// forward pass to the next on the same tape (they are consumed within the
// pass: the KV cache copies keys and values), so that decoding a token
// allocates, and page-faults, less. run rewinds it at the start of a pass.
type outRing struct {
	bufs [][]float32
	next int
}

type outRingKey struct{}

func linearOuts(tp *nn.Tape) *outRing {
	return tp.Scratch(outRingKey{}, func() any { return new(outRing) }).(*outRing)
}

func (r *outRing) take(n int) []float32 {
	if r.next == len(r.bufs) {
		r.bufs = append(r.bufs, nil)
	}
	b := r.bufs[r.next]
	if cap(b) < n {
		b = make([]float32, n)
	}
	r.bufs[r.next] = b[:n]
	r.next++
	return b[:n]
}

func (r *outRing) rewind() { r.next = 0 }
