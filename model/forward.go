package model

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/nn"
)

// KVCache holds keys and values of past positions for incremental decoding:
// per layer, [B, Max, KVHeads*HeadDim]. All rows of the batch share Len.
type KVCache struct {
	B, Max, Len int
	kvStore
}

// NewCache allocates a float32 cache for b sequences of up to maxLen
// positions.
func (m *Model) NewCache(b, maxLen int) *KVCache { return m.NewCacheOf(b, maxLen, KVF32) }

// NewCacheOf allocates a cache of type t for b sequences of up to maxLen
// positions. Its pages are touched now: a decode step that wrote a fresh
// page of keys or values paid a page fault for it (about two per layer and
// token, a tenth of a small model's decode time).
func (m *Model) NewCacheOf(b, maxLen int, t KVType) *KVCache {
	n := b * maxLen * m.Cfg.KVHeads * m.Cfg.HeadDim
	return &KVCache{B: b, Max: maxLen, kvStore: newKVStore(m.Cfg.Layers, n, t, true)}
}

// attendF16 is one decode step's attention (one query row per sequence,
// q [b, Heads·HeadDim]) over layer l of a half-precision cache that holds
// the row's own key and value already.
func (m *Model) attendF16(tp *nn.Tape, q []float32, c *KVCache, l, b int) []float32 {
	cfg := &m.Cfg
	hd, w, tk := cfg.HeadDim, cfg.KVHeads*cfg.HeadDim, c.Len+1
	qw := cfg.Heads * hd
	out, scores := tp.Floats(b*qw), tp.Floats(cfg.Heads*tk)
	scale := float32(1 / math.Sqrt(float64(hd)))
	for i := range b {
		kv := i * c.Max * w
		cpu.AttendOneF16(tp.P, out[i*qw:(i+1)*qw], q[i*qw:(i+1)*qw], c.K16[l][kv:kv+tk*w], c.V16[l][kv:kv+tk*w],
			tk, cfg.Heads, cfg.KVHeads, hd, w, scale, scores)
	}
	return out
}

// store writes t rows of keys and values of sequence i for layer l at
// position Len.
func (c *KVCache) store(l, i, t, w int, k, v []float32) {
	c.put(l, (i*c.Max+c.Len)*w, k[:t*w], v[:t*w])
}

// layer returns layer l's keys and values as float32 [B·stride, w] rows,
// each sequence stride positions apart: the cache itself, or (half
// precision) its first n positions expanded into memory from tp.
func (c *KVCache) layer(tp *nn.Tape, l, n, w int) (k, v []float32, stride int) {
	if c.K16 == nil {
		return c.K[l], c.V[l], c.Max
	}
	k, v = tp.Floats(c.B*n*w), tp.Floats(c.B*n*w)
	for i := range c.B {
		src := i * c.Max * w
		cpu.F16sToF32s(k[i*n*w:(i+1)*n*w], c.K16[l][src:src+n*w])
		cpu.F16sToF32s(v[i*n*w:(i+1)*n*w], c.V16[l][src:src+n*w])
	}
	return k, v, n
}

// Output is what a forward pass produces besides the logits.
type Output struct {
	Logits *nn.Var
	// Aux is the weighted sum of MoE auxiliary losses (nil for dense models).
	Aux *nn.Var
	// Load is, per MoE layer, the fraction of routing slots each expert got.
	Load [][]float32

	hidden *nn.Var // the final norm's output, when the logits are not computed
}

// Packed describes rows that hold several packed documents: each token's
// position within its document and the first key position (in the row) it
// may attend to.
type Packed struct {
	Pos, Start []int32
}

// Forward runs ids [B*T] through the model. With a cache, the tokens follow
// the cache's Len positions and their keys and values are appended. lastOnly
// computes logits for each sequence's last position only ([B, V]).
func (m *Model) Forward(tp *nn.Tape, ids []int32, b, t int, cache *KVCache, lastOnly bool) (*Output, error) {
	return m.forward(tp, ids, b, t, cache, lastOnly, nil)
}

func (m *Model) forward(tp *nn.Tape, ids []int32, b, t int, cache *KVCache, lastOnly bool, pk *Packed) (*Output, error) {
	return m.forwardPar(tp, ids, b, t, cache, lastOnly, pk, nil)
}

// forwardPar is forward taking part in a distributed job when par is not
// nil (see Parallel).
func (m *Model) forwardPar(tp *nn.Tape, ids []int32, b, t int, cache *KVCache, lastOnly bool, pk *Packed, par *Parallel) (*Output, error) {
	return m.run(tp, ids, b, t, cache, lastOnly, pk, par, true)
}

// run is the forward pass; without logits it stops at the final norm and
// leaves its output in Output.hidden (Loss applies the classifier fused with
// the cross-entropy).
func (m *Model) run(tp *nn.Tape, ids []int32, b, t int, cache *KVCache, lastOnly bool, pk *Packed, par *Parallel, logits bool) (*Output, error) {
	c := &m.Cfg
	if len(ids) != b*t || t == 0 {
		return nil, fmt.Errorf("forward: %d ids for batch %d×%d", len(ids), b, t)
	}
	start := 0
	if cache != nil {
		if cache.B != b {
			return nil, fmt.Errorf("forward: cache holds %d sequences, batch has %d", cache.B, b)
		}
		start = cache.Len
		if start+t > cache.Max {
			return nil, fmt.Errorf("forward: %d positions exceed the cache size %d", start+t, cache.Max)
		}
	}
	if start+t > c.MaxSeq && c.Pos == "learned" {
		return nil, fmt.Errorf("forward: %d positions exceed the context length %d", start+t, c.MaxSeq)
	}
	for _, id := range ids {
		if id < 0 || int(id) >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d outside the vocabulary [0,%d)", id, c.Vocab)
		}
	}
	if m.canDecodeOne(tp, b, t, cache, pk, par, logits) {
		return m.decodeOne(tp, ids[0], cache), nil
	}
	pos := tp.Int32s(b * t)
	for i := range pos {
		pos[i] = int32(start + i%t)
	}
	var attnStart []int32
	if pk != nil {
		if cache != nil || len(pk.Pos) != b*t || len(pk.Start) != b*t {
			return nil, fmt.Errorf("forward: packed positions need %d entries and no cache", b*t)
		}
		pos, attnStart = pk.Pos, pk.Start
	}
	if tp.Grad {
		// Training reads the float32 weights (LoadOptions.NoFloat32Copy).
		if err := m.Materialize(); err != nil {
			return nil, err
		}
	}
	if m.q != nil && !tp.Grad {
		linearOuts(tp).rewind()
	}
	x := m.embedding(tp, ids)
	if c.Pos == "learned" {
		x = tp.Add(x, tp.Embedding(m.Pos, pos))
	}
	var rope *cpu.RoPE
	if c.Pos == "rope" {
		r := m.ropeValue(start + t)
		rope = &r
	}
	out := newOutput(tp)
	var auxes []*nn.Var
	var coefs []float32
	par.begin()
	// Every residual sum feeds a norm (the next sublayer's, or the final
	// one): each pair runs as one fused op (addNorm). EP's gradient marks
	// go before the op that holds a block's first norm.
	var h, y *nn.Var
	for l := range m.Blocks {
		if err := par.gather(l); err != nil {
			return nil, fmt.Errorf("forward: parameter gather of block %d: %w", l, err)
		}
		par.mark(tp, l)
		blk := &m.Blocks[l]
		if l == 0 {
			h = m.norm(tp, x, blk.AttnNorm, blk.AttnNormB)
		} else {
			x, h = m.addNorm(tp, x, y, blk.AttnNorm, blk.AttnNormB)
		}
		a, err := m.attention(tp, blk, h, b, t, pos, attnStart, rope, cache, l)
		if err != nil {
			return nil, err
		}
		x, h = m.addNorm(tp, x, a, blk.MLPNorm, blk.MLPNormB)
		if blk.MLP != nil {
			y = m.mlp(tp, blk.MLP, h)
		} else {
			var aux, z *nn.Var
			var load []float32
			if par != nil {
				if y, aux, z, load, err = par.moe(m, tp, blk, h); err != nil {
					return nil, err
				}
			} else {
				y, aux, z, load = m.moe(tp, blk, h)
			}
			out.Load = append(out.Load, load)
			if c.AuxLossCoef > 0 {
				auxes, coefs = append(auxes, aux), append(coefs, float32(c.AuxLossCoef))
			}
			if c.ZLossCoef > 0 {
				auxes, coefs = append(auxes, z), append(coefs, float32(c.ZLossCoef))
			}
		}
		par.regather(tp, l)
	}
	par.mark(tp, len(m.Blocks))
	if cache != nil {
		cache.Len += t
	}
	switch {
	case y == nil: // no blocks
		x = m.norm(tp, x, m.Norm, m.NormB)
	case lastOnly:
		x = tp.Add(x, y)
		rows := make([]int, b)
		for i := range rows {
			rows[i] = i*t + t - 1
		}
		x = m.norm(tp, tp.GatherRows(x, rows), m.Norm, m.NormB)
	default:
		_, x = m.addNorm(tp, x, y, m.Norm, m.NormB)
	}
	if logits {
		out.Logits = m.linear(tp, x, m.Head, nil)
	} else {
		out.hidden = x
	}
	if len(auxes) > 0 {
		nMoE := float32(len(out.Load))
		for i := range coefs {
			coefs[i] /= nMoE
		}
		out.Aux = tp.WeightedSum(auxes, coefs)
	}
	return out, nil
}

// Loss runs the forward pass and returns the mean next-token cross-entropy
// of targets [B*T] (negative targets are ignored), plus auxiliary losses.
func (m *Model) Loss(tp *nn.Tape, ids, targets []int32, b, t int) (loss, ce *nn.Var, out *Output, err error) {
	return m.LossPacked(tp, ids, targets, b, t, nil)
}

// LossPacked is Loss over rows of packed documents (pk may be nil).
func (m *Model) LossPacked(tp *nn.Tape, ids, targets []int32, b, t int, pk *Packed) (loss, ce *nn.Var, out *Output, err error) {
	return m.lossPar(tp, ids, targets, b, t, pk, nil)
}

func (m *Model) lossPar(tp *nn.Tape, ids, targets []int32, b, t int, pk *Packed, par *Parallel) (loss, ce *nn.Var, out *Output, err error) {
	out, err = m.run(tp, ids, b, t, nil, false, pk, par, false)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, y := range targets {
		if int(y) >= m.Cfg.Vocab {
			return nil, nil, nil, fmt.Errorf("loss: target id %d outside the vocabulary [0,%d)", y, m.Cfg.Vocab)
		}
	}
	if m.q == nil {
		// The classifier and the loss in one op, chunked over the vocabulary:
		// the [B*T, V] logits are never materialized.
		ce = tp.LinearCrossEntropy(out.hidden, m.Head, targets)
	} else {
		out.Logits = m.linear(tp, out.hidden, m.Head, nil)
		ce = tp.CrossEntropy(out.Logits, targets)
	}
	loss = ce
	if out.Aux != nil {
		loss = tp.WeightedSum([]*nn.Var{ce, out.Aux}, []float32{1, 1})
	}
	return loss, ce, out, nil
}

func (m *Model) norm(tp *nn.Tape, x, w, b *nn.Var) *nn.Var {
	eps := float32(m.Cfg.NormEps)
	if m.Cfg.Norm == "layernorm" {
		return tp.LayerNorm(x, w, b, eps)
	}
	return tp.RMSNorm(x, w, eps)
}

// addNorm returns the residual sum x + a and its norm, fused.
func (m *Model) addNorm(tp *nn.Tape, x, a, w, b *nn.Var) (sum, h *nn.Var) {
	eps := float32(m.Cfg.NormEps)
	if m.Cfg.Norm == "layernorm" {
		return tp.AddLayerNorm(x, a, w, b, eps)
	}
	return tp.AddRMSNorm(x, a, w, eps)
}

func (m *Model) attention(tp *nn.Tape, blk *Block, h *nn.Var, b, t int, pos, attnStart []int32, rope *cpu.RoPE, cache *KVCache, l int) (*nn.Var, error) {
	c := &m.Cfg
	q := m.linear(tp, h, blk.Q, blk.QB)
	k := m.linear(tp, h, blk.K, blk.KB)
	v := m.linear(tp, h, blk.V, blk.VB)
	if c.QKNorm {
		n := b * t
		eps := float32(c.NormEps)
		q = tp.Reshape(tp.RMSNorm(tp.Reshape(q, n*c.Heads, c.HeadDim), blk.QNorm, eps), n, c.Heads*c.HeadDim)
		k = tp.Reshape(tp.RMSNorm(tp.Reshape(k, n*c.KVHeads, c.HeadDim), blk.KNorm, eps), n, c.KVHeads*c.HeadDim)
	}
	if rope != nil {
		rq, rk := *rope, *rope
		rq.Heads, rk.Heads = c.Heads, c.KVHeads
		q = tp.RoPE(q, &rq, pos)
		k = tp.RoPE(k, &rk, pos)
	}
	a := cpu.Attn{B: b, Tq: t, Tk: t, H: c.Heads, KV: c.KVHeads, D: c.HeadDim, KStride: t * c.KVHeads * c.HeadDim,
		Window: c.SlidingWindow, Scale: float32(1 / math.Sqrt(float64(c.HeadDim))), Start: attnStart}
	if cache != nil {
		w := c.KVHeads * c.HeadDim
		for i := 0; i < b; i++ {
			cache.store(l, i, t, w, k.Data[i*t*w:(i+1)*t*w], v.Data[i*t*w:(i+1)*t*w])
		}
		if cache.K16 != nil && t == 1 && !tp.Grad && a.Window == 0 && a.Start == nil {
			// Decode from a half-precision cache: read it in place rather
			// than expanding every cached position each step.
			o := m.attendF16(tp, q.Data, cache, l, b)
			return m.linear(tp, nn.Const(o, b, c.Heads*c.HeadDim), blk.O, blk.OB), nil
		}
		kc, vc, stride := cache.layer(tp, l, cache.Len+t, w)
		a.Tk, a.Offset, a.KStride = cache.Len+t, cache.Len, stride*w
		k = nn.Const(kc, len(kc)/w, w)
		v = nn.Const(vc, len(vc)/w, w)
	}
	o := tp.Attention(q, k, v, a)
	return m.linear(tp, o, blk.O, blk.OB), nil
}

func (m *Model) mlp(tp *nn.Tape, f *MLP, h *nn.Var) *nn.Var {
	if m.Cfg.MLP == "swiglu" {
		if f.GateB == nil && f.UpB == nil && (m.q == nil || tp.Grad) {
			// Gate and up projections as one GEMM when their weights are
			// adjacent (nn.LinearSwiGLU falls back to three ops otherwise).
			return m.linear(tp, tp.LinearSwiGLU(h, f.Gate, f.Up), f.Down, f.DownB)
		}
		g := m.linear(tp, h, f.Gate, f.GateB)
		u := m.linear(tp, h, f.Up, f.UpB)
		return m.linear(tp, tp.SwiGLU(g, u), f.Down, f.DownB)
	}
	u := m.linear(tp, h, f.Up, f.UpB)
	return m.linear(tp, tp.GELU(u, m.Cfg.Act != "gelu"), f.Down, f.DownB)
}

func (m *Model) moe(tp *nn.Tape, blk *Block, h *nn.Var) (y, aux, z *nn.Var, load []float32) {
	c := &m.Cfg
	n, d := h.Rows(), h.Cols()
	logits := tp.Linear(h, blk.Router, nil)
	probs := tp.Softmax(logits)
	r := tp.TopK(probs, c.TopK, c.NormTopK)
	parts := make([]*nn.Var, c.Experts)
	for e, rows := range r.Rows {
		if len(rows) == 0 {
			continue
		}
		xe := tp.GatherRows(h, rows)
		parts[e] = tp.ScaleRows(m.mlp(tp, blk.Experts[e], xe), r.Gates, r.Slots[e])
	}
	y = tp.Combine(n, d, parts, r.Rows)
	if blk.Shared != nil {
		s := m.mlp(tp, blk.Shared, h)
		if blk.SharedGate != nil {
			s = tp.ScaleRows(s, tp.Sigmoid(tp.Linear(h, blk.SharedGate, nil)), nil)
		}
		y = tp.Add(y, s)
	}
	aux, load = tp.LoadBalanceLoss(probs, r)
	z = tp.ZLoss(logits)
	return y, aux, z, load
}

// newOutput returns the Output of a forward pass. A recording tape keeps one
// for its steps (its Vars live no longer than the step anyway), so a
// training step allocates none.
func newOutput(tp *nn.Tape) *Output {
	if !tp.Grad {
		return &Output{}
	}
	o := tp.Scratch(outputKey{}, func() any { return new(Output) }).(*Output)
	*o = Output{Load: o.Load[:0]}
	return o
}

type outputKey struct{}

// rope returns RoPE tables covering n positions, cached per model.
func (m *Model) rope(n int) *cpu.RoPE {
	r := m.ropeValue(n)
	return &r
}

// ropeValue is rope without the allocation.
func (m *Model) ropeValue(n int) cpu.RoPE {
	need := max(n, m.Cfg.MaxSeq)
	rs := m.Cfg.RopeScaling
	dyn := rs != nil && rs.Type == "dynamic"
	// longrope switches to its long factors once the sequence passes the
	// original context, as transformers does.
	long := rs != nil && rs.Type == "longrope" && rs.OriginalMaxPos > 0 && n > rs.OriginalMaxPos
	if m.cos == nil || need > m.ropeLen || (dyn && n != m.ropeLen) || long != m.ropeLong {
		l := need
		if dyn {
			l = n
		}
		m.cos, m.sin = ropeTables(&m.Cfg, l, n)
		m.ropeLen, m.ropeLong = l, long
	}
	return cpu.RoPE{D: m.Cfg.HeadDim, Rot: m.Cfg.RotaryDim(), Cos: m.cos, Sin: m.sin}
}

// decodeState holds the buffers of the single-token decode path (decodeOne),
// kept on the tape so that a decode step allocates nothing but its logits.
type decodeState struct {
	serial             *cpu.Pool // the small per-token passes run unsplit
	x, h, q, k, o, att []float32
	kf, vf             []float32 // a half-precision cache's new key and value
	gate, up, act, y   []float32
	scores             []float32
	ws                 []*cpu.QWeight
	ys                 [][]float32
	pos                [1]int32
}

type decodeKey struct{}

// canDecodeOne reports whether one token of one sequence can take the
// tape-free decode path: an inference tape, a KV cache, a dense RMSNorm /
// RoPE / SwiGLU model with every projection in the quantized kernels' form.
func (m *Model) canDecodeOne(tp *nn.Tape, b, t int, cache *KVCache, pk *Packed, par *Parallel, logits bool) bool {
	c := &m.Cfg
	if tp.Grad || b != 1 || t != 1 || cache == nil || pk != nil || par != nil || !logits || m.q == nil ||
		c.Norm != "rmsnorm" || c.Pos != "rope" || c.MLP != "swiglu" || c.QKNorm || c.SlidingWindow > 0 ||
		len(m.Blocks) == 0 || m.q.lin[m.Head] == nil {
		return false
	}
	for l := range m.Blocks {
		blk := &m.Blocks[l]
		if blk.MLP == nil || m.q.lin[blk.Q] == nil || m.q.lin[blk.K] == nil || m.q.lin[blk.V] == nil || m.q.lin[blk.O] == nil ||
			m.q.lin[blk.MLP.Gate] == nil || m.q.lin[blk.MLP.Up] == nil || m.q.lin[blk.MLP.Down] == nil {
			return false
		}
	}
	return true
}

// decodeOne is the forward pass of one token at batch 1 through the KV cache
// (see canDecodeOne) without the tape: every op writes into buffers kept
// from the last step, the residual stream is updated in place, keys and
// values are written straight into the cache, and the small per-token passes
// (norms, RoPE, SwiGLU) run on the calling goroutine. It computes what run
// computes, op for op.
func (m *Model) decodeOne(tp *nn.Tape, id int32, cache *KVCache) *Output {
	c := &m.Cfg
	d, hd := c.Dim, c.HeadDim
	qw, kvw := c.Heads*hd, c.KVHeads*hd
	st := tp.Scratch(decodeKey{}, func() any { return &decodeState{serial: cpu.NewPool(1)} }).(*decodeState)
	ffn := m.q.lin[m.Blocks[0].MLP.Gate].Rows
	st.x = growF(st.x, d)
	st.h = growF(st.h, d)
	st.q = growF(st.q, qw)
	st.k = growF(st.k, kvw)
	st.kf = growF(st.kf, kvw)
	st.vf = growF(st.vf, kvw)
	st.att = growF(st.att, qw)
	st.o = growF(st.o, d)
	st.y = growF(st.y, d)
	st.gate = growF(st.gate, ffn)
	st.up = growF(st.up, ffn)
	st.act = growF(st.act, ffn)
	pos := cache.Len
	st.scores = growF(st.scores, c.Heads*(pos+1))
	st.pos[0] = int32(pos)
	eps := float32(c.NormEps)

	if qe := m.lazyWeight(m.Embed); qe != nil {
		qe.DequantizeRows(st.x, int(id), int(id)+1)
	} else {
		copy(st.x, m.Embed.Data[int(id)*d:(int(id)+1)*d])
	}
	rope := m.ropeValue(pos + 1)
	rq, rk := rope, rope
	rq.Heads, rk.Heads = c.Heads, c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	lin := func(y, x []float32, w, b *nn.Var) {
		cpu.QMatMul(tp.P, y, x, 1, m.q.lin[w])
		addBias(y, b)
	}
	for l := range m.Blocks {
		blk := &m.Blocks[l]
		if l == 0 {
			cpu.RMSNormForward(st.serial, st.h, nil, st.x, blk.AttnNorm.Data, 1, d, eps)
		} else {
			cpu.AddRMSNormForward(st.serial, st.x, st.h, nil, st.x, st.y, blk.AttnNorm.Data, 1, d, eps)
		}
		kc, vc := st.kf, st.vf // this position's key and value
		if cache.K16 == nil {
			kc, vc = cache.K[l][pos*kvw:(pos+1)*kvw], cache.V[l][pos*kvw:(pos+1)*kvw]
		}
		st.ws = append(st.ws[:0], m.q.lin[blk.Q], m.q.lin[blk.K], m.q.lin[blk.V])
		st.ys = append(st.ys[:0], st.att, st.k, vc)
		cpu.QMatVecs(tp.P, st.ys, st.h, st.ws)
		addBias(st.att, blk.QB)
		addBias(st.k, blk.KB)
		addBias(vc, blk.VB)
		rq.Forward(st.serial, st.q, st.att, st.pos[:])
		rk.Forward(st.serial, kc, st.k, st.pos[:])
		if cache.K16 != nil {
			cache.put(l, pos*kvw, kc, vc)
			cpu.AttendOneF16(tp.P, st.att, st.q, cache.K16[l], cache.V16[l], pos+1, c.Heads, c.KVHeads, hd, kvw, scale, st.scores)
		} else {
			cpu.AttendOne(tp.P, st.att, st.q, cache.K[l], cache.V[l], pos+1, c.Heads, c.KVHeads, hd, kvw, scale, st.scores)
		}
		lin(st.o, st.att, blk.O, blk.OB)
		cpu.AddRMSNormForward(st.serial, st.x, st.h, nil, st.x, st.o, blk.MLPNorm.Data, 1, d, eps)
		f := blk.MLP
		if f.GateB == nil && f.UpB == nil {
			cpu.QMatVecSwiGLU(tp.P, st.act, st.gate, st.up, st.h, m.q.lin[f.Gate], m.q.lin[f.Up])
		} else {
			lin(st.gate, st.h, f.Gate, f.GateB)
			lin(st.up, st.h, f.Up, f.UpB)
			cpu.SwiGLUForward(st.serial, st.act, st.gate, st.up)
		}
		lin(st.y, st.act, f.Down, f.DownB)
	}
	cache.Len++
	cpu.AddRMSNormForward(st.serial, st.x, st.h, nil, st.x, st.y, m.Norm.Data, 1, d, eps)
	hw := m.q.lin[m.Head]
	logits := make([]float32, hw.Rows) // the logits outlive the step
	lin(logits, st.h, m.Head, nil)
	return &Output{Logits: nn.Const(logits, 1, hw.Rows)}
}

// growF returns s resized to n, reallocated only when too small, with
// room to grow (the attention scores of a decode step grow by a row of
// heads every token).
func growF(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n, n+n/2)
	}
	return s[:n]
}

// addBias adds b (if any) to y.
func addBias(y []float32, b *nn.Var) {
	if b == nil {
		return
	}
	for j, v := range b.Data {
		y[j] += v
	}
}
