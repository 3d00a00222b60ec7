package gpu

import (
	"errors"
	"fmt"
	"math"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/model"
)

// ceChunkBytes bounds each of the classifier's two [rows, V] chunk buffers
// (logits and their gradient); tests make it small so that several chunks
// run.
var ceChunkBytes = 256 << 20

// acts is every device buffer one batch shape needs: what the forward pass
// keeps for the backward pass, and the backward pass's scratch.
type acts struct {
	b, t, n   int
	chunkRows int
	all       []*cuda.Buffer

	res    []*cuda.Buffer // residual stream entering each layer, and the final sum: [L+1][N, D]
	layers []layerActs
	hf     *cuda.Buffer // final norm's output [N, D]
	meanF  *cuda.Buffer // LayerNorm only
	rstdF  *cuda.Buffer

	pos, start, targets *cuda.Buffer    // i32 [N]
	losses, lse, loss   *cuda.Buffer    // [N], [N], [1]
	logits, dlogits     *cuda.Buffer    // [chunkRows, V]
	cast                [2]*cuda.Buffer // bf16 GEMM operands (BF16 mode)

	// Scratch.
	y, posEmb, dres, dh *cuda.Buffer // [N, D]
	tmp                 *cuda.Buffer // [N, D] (MoE)
	row                 *cuda.Buffer // [N] (MoE gates and their gradients)
	do, dq, dqN, dqLin  *cuda.Buffer // [N, H*hd]
	dk, dkN, dkLin, dv  *cuda.Buffer // [N, KV*hd]
	da, dg, du          *cuda.Buffer // [N, largest hidden size]
}

// layerActs is what one layer keeps from the forward pass.
type layerActs struct {
	h1, mean1, rstd1 *cuda.Buffer // attention norm's output and statistics
	qLin, kLin, v    *cuda.Buffer // projections
	qN, kN           *cuda.Buffer // after QK-norm (the projections without it)
	qRstd, kRstd     *cuda.Buffer // QK-norm statistics [N*heads]
	q, k             *cuda.Buffer // after RoPE (qN, kN without it)
	o, lse           *cuda.Buffer // attention output [N, H*hd], log-sum-exp [B, H, T]
	mid              *cuda.Buffer // residual after attention [N, D]
	h2, mean2, rstd2 *cuda.Buffer // MLP norm's output and statistics
	mlp              mlpActs      // dense layers

	// Mixture-of-experts layers.
	rlogits, probs *cuda.Buffer // router logits and probabilities [N, E]
	shared         mlpActs      // the shared expert block
	sOut           *cuda.Buffer // its output before the gate [N, D]
	sig            *cuda.Buffer // its sigmoid gate [N]
	moe            *moeStep     // this step's routing
}

// mlpActs is what an MLP keeps: gate and up projections and the
// activation, [rows, hidden] each (no gate for GELU).
type mlpActs struct {
	g, u, a *cuda.Buffer
}

// releaseMoE frees the routing state MoE layers kept for one pass.
func (a *acts) releaseMoE(dev *cuda.Device) {
	for l := range a.layers {
		if ms := a.layers[l].moe; ms != nil {
			ms.release(dev)
			a.layers[l].moe = nil
		}
	}
}

// free releases every activation buffer.
func (a *acts) free(dev *cuda.Device) error {
	err := dev.Free(a.all...)
	a.all = nil
	return err
}

// ensureActs sizes the activations for a b×t batch.
func (g *Model) ensureActs(b, t int) (*acts, error) {
	if a := g.acts; a != nil && a.b == b && a.t == t {
		return a, nil
	}
	if g.acts != nil {
		if err := g.acts.free(g.Dev); err != nil {
			return nil, err
		}
		g.acts = nil
	}
	c := &g.Cfg
	n, d := b*t, c.Dim
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	a := &acts{b: b, t: t, n: n}
	a.chunkRows = max(1, min(n, ceChunkBytes/(4*c.Vocab)))
	var err error
	alloc := func(dt cuda.DType, k int) *cuda.Buffer {
		if err != nil {
			return nil
		}
		var buf *cuda.Buffer
		if buf, err = g.Dev.Alloc(dt, k); err == nil {
			a.all = append(a.all, buf)
		}
		return buf
	}
	f32 := func(k int) *cuda.Buffer { return alloc(cuda.F32, k) }
	ln := c.Norm == "layernorm"
	stat := func(k int) *cuda.Buffer { // a LayerNorm mean
		if !ln {
			return nil
		}
		return f32(k)
	}
	for range c.Layers + 1 {
		a.res = append(a.res, f32(n*d))
	}
	a.layers = make([]layerActs, c.Layers)
	for l := range a.layers {
		L := &a.layers[l]
		L.h1, L.mean1, L.rstd1 = f32(n*d), stat(n), f32(n)
		L.qLin, L.kLin, L.v = f32(n*qd), f32(n*kvd), f32(n*kvd)
		L.qN, L.kN = L.qLin, L.kLin
		if c.QKNorm {
			L.qN, L.kN = f32(n*qd), f32(n*kvd)
			L.qRstd, L.kRstd = f32(n*c.Heads), f32(n*c.KVHeads)
		}
		L.q, L.k = L.qN, L.kN
		if c.Pos == "rope" {
			L.q, L.k = f32(n*qd), f32(n*kvd)
		}
		L.o, L.lse = f32(n*qd), f32(b*c.Heads*t)
		L.mid = f32(n * d)
		L.h2, L.mean2, L.rstd2 = f32(n*d), stat(n), f32(n)
		mlp := func(h int) mlpActs {
			m := mlpActs{u: f32(n * h), a: f32(n * h)}
			if c.MLP == "swiglu" {
				m.g = f32(n * h)
			}
			return m
		}
		if !c.IsMoE(l) {
			L.mlp = mlp(c.FFN)
			continue
		}
		L.rlogits, L.probs = f32(n*c.Experts), f32(n*c.Experts)
		if c.SharedExperts > 0 {
			L.shared, L.sOut = mlp(sharedHidden(c)), f32(n*d)
			if c.SharedGate {
				L.sig = f32(n)
			}
		}
	}
	a.hf, a.meanF, a.rstdF = f32(n*d), stat(n), f32(n)
	a.pos, a.start, a.targets = alloc(cuda.I32, n), alloc(cuda.I32, n), alloc(cuda.I32, n)
	a.losses, a.lse, a.loss = f32(n), f32(n), f32(1)
	a.logits, a.dlogits = f32(a.chunkRows*c.Vocab), f32(a.chunkRows*c.Vocab)
	a.y, a.dres, a.dh = f32(n*d), f32(n*d), f32(n*d)
	if c.Pos == "learned" {
		a.posEmb = f32(n * d)
	}
	a.do, a.dq, a.dqN, a.dqLin = f32(n*qd), f32(n*qd), f32(n*qd), f32(n*qd)
	a.dk, a.dkN, a.dkLin, a.dv = f32(n*kvd), f32(n*kvd), f32(n*kvd), f32(n*kvd)
	mh := maxHidden(c)
	a.da, a.dg, a.du = f32(n*mh), f32(n*mh), f32(n*mh)
	if c.Experts > 0 {
		a.tmp, a.row = f32(n*d), f32(n*max(1, c.Experts))
	}
	if g.bf16 {
		k := max(n*max(d, qd, mh, c.Experts), a.chunkRows*c.Vocab)
		a.cast[0], a.cast[1] = alloc(cuda.BF16, k), alloc(cuda.BF16, k)
	}
	if err != nil {
		a.free(g.Dev)
		return nil, fmt.Errorf("gpu: activations for batch %d×%d: %w", b, t, err)
	}
	g.acts = a
	return a, nil
}

// batch is one micro-batch's device indices.
type batch struct {
	idx, posIdx *cuda.EmbedIndex
	packed      bool
	count       int    // targets counted by the loss
	cache       *Cache // decoding: keys and values of earlier positions
}

func (bt *batch) free() error {
	var errs []error
	for _, x := range []*cuda.EmbedIndex{bt.idx, bt.posIdx} {
		if x != nil {
			errs = append(errs, x.Free())
		}
	}
	return errors.Join(errs...)
}

// errs keeps the first error of a sequence of queued ops.
type errs struct{ err error }

func (e *errs) do(err error) {
	if e.err == nil && err != nil {
		e.err = err
	}
}

// Losses is what a micro-batch's forward pass measured.
type Losses struct {
	// Loss is what the gradient is of: the mean cross-entropy plus the
	// MoE layers' weighted auxiliary losses (model.Model.Loss's loss).
	Loss float64
	CE   float64 // the mean cross-entropy of the counted targets
	// Load is, per MoE layer, the fraction of routing slots each expert got.
	Load [][]float32
}

// ForwardBackward runs one micro-batch: the forward pass over ids [b*t],
// the mean cross-entropy of targets [b*t] (negative targets are ignored),
// and the backward pass, adding scale × the loss's gradient into Grads
// (scale is 1/accumulation steps in a training loop). pk, when not nil,
// gives packed documents' positions and first visible keys. The gradients
// stay on the device.
func (g *Model) ForwardBackward(ids, targets []int32, b, t int, pk *model.Packed, scale float32) (Losses, error) {
	return g.run(ids, targets, b, t, pk, scale, true)
}

// Loss runs the forward pass without a backward pass (validation).
func (g *Model) Loss(ids, targets []int32, b, t int, pk *model.Packed) (Losses, error) {
	return g.run(ids, targets, b, t, pk, 0, false)
}

func (g *Model) run(ids, targets []int32, b, t int, pk *model.Packed, scale float32, backward bool) (Losses, error) {
	c := &g.Cfg
	if b <= 0 || t <= 0 || len(ids) != b*t || len(targets) != b*t {
		return Losses{}, fmt.Errorf("gpu: %d ids and %d targets for batch %d×%d", len(ids), len(targets), b, t)
	}
	if t > c.MaxSeq {
		return Losses{}, fmt.Errorf("gpu: %d positions exceed the context length %d", t, c.MaxSeq)
	}
	for _, y := range targets {
		if int(y) >= c.Vocab {
			return Losses{}, fmt.Errorf("gpu: target id %d outside the vocabulary [0,%d)", y, c.Vocab)
		}
	}
	a, err := g.ensureActs(b, t)
	if err != nil {
		return Losses{}, err
	}
	bt, err := g.upload(a, ids, targets, pk, nil)
	if err != nil {
		return Losses{}, err
	}
	defer bt.free()
	defer a.releaseMoE(g.Dev)
	if err := g.forward(a, bt); err != nil {
		return Losses{}, err
	}
	if err := g.classifier(a, bt, scale, backward); err != nil {
		return Losses{}, err
	}
	if backward {
		if err := g.backward(a, bt, scale); err != nil {
			return Losses{}, err
		}
	}
	var ce [1]float32
	if err := g.Dev.Download(ce[:], a.loss); err != nil {
		return Losses{}, err
	}
	// The auxiliary losses as model's forward weighs them (WeightedSum in
	// float32, layer order, each coefficient divided by the MoE layers).
	var aux float32
	aw, zw := g.auxWeights()
	for l := range a.layers {
		if ms := a.layers[l].moe; ms != nil {
			if c.AuxLossCoef > 0 {
				aux += aw * ms.aux
			}
			if c.ZLossCoef > 0 {
				aux += zw * ms.z
			}
		}
	}
	r := Losses{Loss: float64(ce[0] + aux), CE: float64(ce[0])}
	for l := range a.layers {
		if ms := a.layers[l].moe; ms != nil {
			r.Load = append(r.Load, ms.load)
		}
	}
	return r, nil
}

// auxWeights returns the total loss's weights on each MoE layer's
// load-balancing loss and z-loss (0 where unused).
func (g *Model) auxWeights() (aux, z float32) {
	c := &g.Cfg
	nMoE := 0
	for l := range g.layers {
		if g.layers[l].moe {
			nMoE++
		}
	}
	if nMoE == 0 {
		return 0, 0
	}
	if c.AuxLossCoef > 0 {
		aux = float32(c.AuxLossCoef) / float32(nMoE)
	}
	if c.ZLossCoef > 0 {
		z = float32(c.ZLossCoef) / float32(nMoE)
	}
	return aux, z
}

// upload copies a micro-batch's ids, positions and targets to the device.
func (g *Model) upload(a *acts, ids, targets []int32, pk *model.Packed, kc *Cache) (*batch, error) {
	c := &g.Cfg
	n := a.n
	pos := make([]int32, n)
	bt := &batch{count: cuda.CountTargets(targets), cache: kc}
	if pk != nil {
		if len(pk.Pos) != n || len(pk.Start) != n {
			return nil, fmt.Errorf("gpu: packed positions need %d entries", n)
		}
		for i, p := range pk.Pos {
			if p < 0 || int(p) >= c.MaxSeq {
				return nil, fmt.Errorf("gpu: packed position %d at %d is outside [0,%d)", p, i, c.MaxSeq)
			}
		}
		copy(pos, pk.Pos)
		bt.packed = true
	} else {
		for i := range pos {
			pos[i] = int32(i % a.t)
		}
	}
	if bt.cache != nil {
		for i := range pos {
			pos[i] += int32(bt.cache.Len)
		}
	}
	var e errs
	e.do(g.Dev.Upload(a.pos, pos))
	if targets != nil {
		e.do(g.Dev.Upload(a.targets, targets))
	}
	if pk != nil {
		e.do(g.Dev.Upload(a.start, pk.Start))
	}
	if e.err != nil {
		return nil, e.err
	}
	var err error
	if bt.idx, err = g.Dev.NewEmbedIndex(ids, c.Vocab); err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	if c.Pos == "learned" {
		if bt.posIdx, err = g.Dev.NewEmbedIndex(pos, c.MaxSeq); err != nil {
			bt.free()
			return nil, fmt.Errorf("gpu: %w", err)
		}
	}
	return bt, nil
}

func (g *Model) eps() float32 { return float32(g.Cfg.NormEps) }

// operand returns x as a GEMM operand: x itself, or in BF16 mode a bf16
// copy in cast slot i.
func (g *Model) operand(e *errs, a *acts, x *cuda.Buffer, i int) *cuda.Buffer {
	if !g.bf16 {
		return x
	}
	v, err := a.cast[i].View(0, x.Len())
	if err != nil {
		e.do(err)
		return x
	}
	e.do(g.Dev.Cast(v, x))
	return v
}

// weight is w as a GEMM operand: f32, or its bf16 copy in BF16 mode.
func (g *Model) weight(w tensor) *cuda.Buffer {
	if g.bf16 {
		return w.wb
	}
	return w.w
}

// linear computes y = x·Wᵀ + b for x [n, in], W [out, in].
func (g *Model) linear(e *errs, a *acts, y, x *cuda.Buffer, w, b tensor, n, in, out int) {
	e.do(g.Dev.Gemm(false, true, n, out, in, 1, g.operand(e, a, x, 0), in, g.weight(w), in, 0, y, out))
	if b.w != nil {
		e.do(g.Dev.BiasAdd(y, b.w, n, out))
	}
}

// linearBack sets dx = dy·W (adds it when accum; no dx when nil) and adds
// dyᵀ·x into W's gradient and dy's column sums into b's.
func (g *Model) linearBack(e *errs, a *acts, dx, dy, x *cuda.Buffer, w, b tensor, n, in, out int, accum bool) {
	dyo := g.operand(e, a, dy, 0)
	if dx != nil {
		beta := float32(0)
		if accum {
			beta = 1
		}
		e.do(g.Dev.Gemm(false, false, n, in, out, 1, dyo, out, g.weight(w), in, beta, dx, in))
	}
	e.do(g.Dev.Gemm(true, false, out, in, n, 1, dyo, out, g.operand(e, a, x, 1), in, 1, w.g, in))
	if b.g != nil {
		e.do(g.Dev.BiasGrad(b.g, dy, n, out))
	}
}

// norm computes out = norm(x) (sum == nil) or sum = x + x2, out = norm(sum).
func (g *Model) norm(e *errs, sum, out, mean, rstd, x, x2 *cuda.Buffer, w, b tensor, n int) {
	d := g.Cfg.Dim
	switch {
	case g.Cfg.Norm == "layernorm" && sum == nil:
		e.do(g.Dev.LayerNormForward(out, mean, rstd, x, w.w, b.w, n, d, g.eps()))
	case g.Cfg.Norm == "layernorm":
		e.do(g.Dev.AddLayerNormForward(sum, out, mean, rstd, x, x2, w.w, b.w, n, d, g.eps()))
	case sum == nil:
		e.do(g.Dev.RMSNormForward(out, rstd, x, w.w, n, d, g.eps()))
	default:
		e.do(g.Dev.AddRMSNormForward(sum, out, rstd, x, x2, w.w, n, d, g.eps()))
	}
}

// normBack adds the norm's input gradient into dx and its parameters'.
func (g *Model) normBack(e *errs, dx, dout, x, mean, rstd *cuda.Buffer, w, b tensor, n int) {
	d := g.Cfg.Dim
	if g.Cfg.Norm == "layernorm" {
		e.do(g.Dev.LayerNormBackward(dx, w.g, b.g, dout, x, w.w, mean, rstd, n, d))
		return
	}
	e.do(g.Dev.RMSNormBackward(dx, w.g, dout, x, w.w, rstd, n, d))
}

func (g *Model) rope(heads int) *cuda.RoPE {
	return &cuda.RoPE{Heads: heads, D: g.Cfg.HeadDim, Rot: g.Cfg.RotaryDim(), Cos: g.cos, Sin: g.sin}
}

func (g *Model) attn(a *acts, bt *batch) *cuda.Attn {
	c := &g.Cfg
	at := &cuda.Attn{B: a.b, Tq: a.t, Tk: a.t, H: c.Heads, KV: c.KVHeads, D: c.HeadDim, KStride: a.t * c.KVHeads * c.HeadDim,
		Window: c.SlidingWindow, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	if bt.packed {
		at.Start = a.start
	}
	return at
}

// forward runs the blocks and the final norm, keeping what backward needs.
func (g *Model) forward(a *acts, bt *batch) error {
	c := &g.Cfg
	dev := g.Dev
	n, d := a.n, c.Dim
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	var e errs
	e.do(dev.EmbeddingForward(a.res[0], g.embed.w, bt.idx, d))
	if c.Pos == "learned" {
		e.do(dev.EmbeddingForward(a.posEmb, g.pos.w, bt.posIdx, d))
		e.do(dev.Add(a.res[0], a.res[0], a.posEmb))
	}
	at := g.attn(a, bt)
	kc := bt.cache
	if kc != nil {
		w := c.KVHeads * c.HeadDim
		at.Tk, at.Offset, at.KStride = kc.Len+a.t, kc.Len, kc.Max*w
	}
	for l := range g.layers {
		W, L := &g.layers[l], &a.layers[l]
		if l == 0 {
			g.norm(&e, nil, L.h1, L.mean1, L.rstd1, a.res[0], nil, W.attnNorm, W.attnNormB, n)
		} else {
			g.norm(&e, a.res[l], L.h1, L.mean1, L.rstd1, a.layers[l-1].mid, a.y, W.attnNorm, W.attnNormB, n)
		}
		g.linear(&e, a, L.qLin, L.h1, W.q, W.qb, n, d, qd)
		g.linear(&e, a, L.kLin, L.h1, W.k, W.kb, n, d, kvd)
		g.linear(&e, a, L.v, L.h1, W.v, W.vb, n, d, kvd)
		if c.QKNorm {
			e.do(dev.RMSNormForward(L.qN, L.qRstd, L.qLin, W.qNorm.w, n*c.Heads, c.HeadDim, g.eps()))
			e.do(dev.RMSNormForward(L.kN, L.kRstd, L.kLin, W.kNorm.w, n*c.KVHeads, c.HeadDim, g.eps()))
		}
		if c.Pos == "rope" {
			e.do(dev.RoPEForward(g.rope(c.Heads), L.q, L.qN, a.pos))
			e.do(dev.RoPEForward(g.rope(c.KVHeads), L.k, L.kN, a.pos))
		}
		if kc == nil {
			e.do(dev.AttentionForward(at, L.o, L.lse, L.q, L.k, L.v))
		} else {
			e.do(kc.append(dev, l, L.k, L.v, a.b, a.t))
			e.do(dev.AttentionForward(at, L.o, L.lse, L.q, kc.k[l], kc.v[l]))
		}
		g.linear(&e, a, a.y, L.o, W.o, W.ob, n, qd, d)
		g.norm(&e, L.mid, L.h2, L.mean2, L.rstd2, a.res[l], a.y, W.mlpNorm, W.mlpNormB, n)
		if W.moe {
			if e.err == nil {
				e.do(g.moeForward(a, W, L))
			}
		} else {
			g.mlpForward(&e, a, &W.mlp, L.h2, n, L.mlp, a.y)
		}
		if e.err != nil {
			return fmt.Errorf("gpu: forward, layer %d: %w", l, e.err)
		}
	}
	nl := len(g.layers)
	g.norm(&e, a.res[nl], a.hf, a.meanF, a.rstdF, a.layers[nl-1].mid, a.y, g.fnorm, g.fnormB, n)
	if e.err != nil {
		return fmt.Errorf("gpu: forward, final norm: %w", e.err)
	}
	return nil
}

// mlpForward computes y [rows, D] = MLP(x) with w, keeping its activations
// in m (each [rows, hidden]).
func (g *Model) mlpForward(e *errs, a *acts, w *mlpW, x *cuda.Buffer, rows int, m mlpActs, y *cuda.Buffer) {
	c := &g.Cfg
	d, h := c.Dim, w.hidden
	if c.MLP == "swiglu" {
		g.linear(e, a, m.g, x, w.gate, w.gateB, rows, d, h)
		g.linear(e, a, m.u, x, w.up, w.upB, rows, d, h)
		e.do(g.Dev.SwiGLUForward(m.a, m.g, m.u))
	} else {
		g.linear(e, a, m.u, x, w.up, w.upB, rows, d, h)
		e.do(g.Dev.GELUForward(m.a, m.u, c.Act != "gelu"))
	}
	g.linear(e, a, y, m.a, w.down, w.downB, rows, h, d)
}

// mlpBackward sets dx = dMLP/dx · dy (adds it when accum) and adds the
// MLP's parameter gradients; the scratch is a.da, a.dg, a.du.
func (g *Model) mlpBackward(e *errs, a *acts, w *mlpW, x *cuda.Buffer, rows int, m mlpActs, dy, dx *cuda.Buffer, accum bool) {
	c := &g.Cfg
	d, h := c.Dim, w.hidden
	view := func(b *cuda.Buffer) *cuda.Buffer {
		v, err := b.View(0, rows*h)
		e.do(err)
		return v
	}
	da, dg, du := view(a.da), view(a.dg), view(a.du)
	if e.err != nil {
		return
	}
	g.linearBack(e, a, da, dy, m.a, w.down, w.downB, rows, h, d, false)
	e.do(g.Dev.Zero(du))
	if c.MLP == "swiglu" {
		e.do(g.Dev.Zero(dg))
		e.do(g.Dev.SwiGLUBackward(dg, du, da, m.g, m.u))
		g.linearBack(e, a, dx, dg, x, w.gate, w.gateB, rows, d, h, accum)
		g.linearBack(e, a, dx, du, x, w.up, w.upB, rows, d, h, true)
	} else {
		e.do(g.Dev.GELUBackward(du, da, m.u, c.Act != "gelu"))
		g.linearBack(e, a, dx, du, x, w.up, w.upB, rows, d, h, accum)
	}
}

// classifier computes the logits a chunk of rows at a time, their
// cross-entropy, and (when backward) at once their gradient, scale/count
// per counted row, folded into dh (the final norm output's gradient) and
// the head's weight gradient. The mean loss lands in a.loss.
func (g *Model) classifier(a *acts, bt *batch, scale float32, backward bool) error {
	c := &g.Cfg
	dev := g.Dev
	n, d, v := a.n, c.Dim, c.Vocab
	var e errs
	rowScale := float32(0)
	if bt.count > 0 {
		rowScale = scale / float32(bt.count)
	}
	view := func(b *cuda.Buffer, off, k int) *cuda.Buffer {
		w, err := b.View(off, k)
		e.do(err)
		return w
	}
	for r0 := 0; r0 < n && e.err == nil; r0 += a.chunkRows {
		rows := min(a.chunkRows, n-r0)
		logits, h := view(a.logits, 0, rows*v), view(a.hf, r0*d, rows*d)
		lse, tg := view(a.lse, r0, rows), view(a.targets, r0, rows)
		if e.err != nil {
			break
		}
		ho := g.operand(&e, a, h, 1)
		e.do(dev.Gemm(false, true, rows, v, d, 1, ho, d, g.weight(g.head), d, 0, logits, v))
		e.do(dev.CrossEntropyForward(view(a.losses, r0, rows), lse, logits, tg, rows, v))
		if !backward {
			continue
		}
		dl := view(a.dlogits, 0, rows*v)
		e.do(dev.Zero(dl))
		e.do(dev.CrossEntropyBackward(dl, logits, lse, tg, rows, v, rowScale))
		dlo := g.operand(&e, a, dl, 0)
		e.do(dev.Gemm(false, false, rows, d, v, 1, dlo, v, g.weight(g.head), d, 0, view(a.dh, r0*d, rows*d), d))
		e.do(dev.Gemm(true, false, v, d, rows, 1, dlo, v, ho, d, 1, g.head.g, d))
	}
	e.do(dev.LossMean(a.loss, a.losses, n, bt.count))
	if e.err != nil {
		return fmt.Errorf("gpu: classifier and loss: %w", e.err)
	}
	return nil
}

// backward runs the blocks in reverse from dh, the final norm output's
// gradient, adding every parameter's gradient into Grads.
func (g *Model) backward(a *acts, bt *batch, scale float32) error {
	c := &g.Cfg
	dev := g.Dev
	n, d := a.n, c.Dim
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	nl := len(g.layers)
	var e errs
	// dres is the gradient of the residual stream, flowing down.
	e.do(dev.Zero(a.dres))
	g.normBack(&e, a.dres, a.dh, a.res[nl], a.meanF, a.rstdF, g.fnorm, g.fnormB, n)
	at := g.attn(a, bt)
	for l := nl - 1; l >= 0; l-- {
		W, L := &g.layers[l], &a.layers[l]
		// MLP: its output's gradient is the residual's.
		if W.moe {
			if e.err == nil {
				aw, zw := g.auxWeights()
				e.do(g.moeBackward(a, W, L, aw*scale, zw*scale))
			}
		} else {
			g.mlpBackward(&e, a, &W.mlp, L.h2, n, L.mlp, a.dres, a.dh, false)
		}
		g.normBack(&e, a.dres, a.dh, L.mid, L.mean2, L.rstd2, W.mlpNorm, W.mlpNormB, n)
		// Attention: its output's gradient is the residual's.
		g.linearBack(&e, a, a.do, a.dres, L.o, W.o, W.ob, n, qd, d, false)
		e.do(dev.Zero(a.dq))
		e.do(dev.Zero(a.dk))
		e.do(dev.Zero(a.dv))
		e.do(dev.AttentionBackward(at, a.dq, a.dk, a.dv, a.do, L.o, L.lse, L.q, L.k, L.v))
		dqN, dkN := a.dq, a.dk
		if c.Pos == "rope" {
			dqN, dkN = a.dqN, a.dkN
			e.do(dev.Zero(dqN))
			e.do(dev.Zero(dkN))
			e.do(dev.RoPEBackward(g.rope(c.Heads), dqN, a.dq, a.pos))
			e.do(dev.RoPEBackward(g.rope(c.KVHeads), dkN, a.dk, a.pos))
		}
		dqLin, dkLin := dqN, dkN
		if c.QKNorm {
			dqLin, dkLin = a.dqLin, a.dkLin
			e.do(dev.Zero(dqLin))
			e.do(dev.Zero(dkLin))
			e.do(dev.RMSNormBackward(dqLin, W.qNorm.g, dqN, L.qLin, W.qNorm.w, L.qRstd, n*c.Heads, c.HeadDim))
			e.do(dev.RMSNormBackward(dkLin, W.kNorm.g, dkN, L.kLin, W.kNorm.w, L.kRstd, n*c.KVHeads, c.HeadDim))
		}
		g.linearBack(&e, a, a.dh, dqLin, L.h1, W.q, W.qb, n, d, qd, false)
		g.linearBack(&e, a, a.dh, dkLin, L.h1, W.k, W.kb, n, d, kvd, true)
		g.linearBack(&e, a, a.dh, a.dv, L.h1, W.v, W.vb, n, d, kvd, true)
		g.normBack(&e, a.dres, a.dh, a.res[l], L.mean1, L.rstd1, W.attnNorm, W.attnNormB, n)
		if e.err != nil {
			return fmt.Errorf("gpu: backward, layer %d: %w", l, e.err)
		}
	}
	e.do(dev.EmbeddingBackward(g.embed.g, a.dres, bt.idx, d))
	if c.Pos == "learned" {
		e.do(dev.EmbeddingBackward(g.pos.g, a.dres, bt.posIdx, d))
	}
	if e.err != nil {
		return fmt.Errorf("gpu: backward, embeddings: %w", e.err)
	}
	return nil
}
