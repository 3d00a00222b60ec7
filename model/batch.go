package model

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/nn"
)

// PagedKV is a key/value cache cut into fixed-size blocks of BlockSize
// positions that any sequence can own: per layer, K and V hold
// [NumBlocks*BlockSize, KVHeads*HeadDim]. Which blocks a sequence uses is its
// block table, kept by the caller (the serving engine's allocator).
type PagedKV struct {
	BlockSize, NumBlocks int
	kvStore
}

// NewPagedKV allocates a float32 paged cache of numBlocks blocks of
// blockSize positions.
func (m *Model) NewPagedKV(numBlocks, blockSize int) (*PagedKV, error) {
	return m.NewPagedKVOf(numBlocks, blockSize, KVF32)
}

// NewPagedKVOf allocates a paged cache of type t.
func (m *Model) NewPagedKVOf(numBlocks, blockSize int, t KVType) (*PagedKV, error) {
	if numBlocks <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("paged kv: need positive block count and size, have %d×%d", numBlocks, blockSize)
	}
	// Not touched: a serving cache is sized for the most it may hold.
	n := numBlocks * blockSize * m.Cfg.KVHeads * m.Cfg.HeadDim
	return &PagedKV{BlockSize: blockSize, NumBlocks: numBlocks, kvStore: newKVStore(m.Cfg.Layers, n, t, false)}, nil
}

// KVBytesPerBlock is the memory one cache block of type t takes over all
// layers.
func (m *Model) KVBytesPerBlock(blockSize int, t KVType) int {
	size := 4
	if t == KVF16 {
		size = 2
	}
	return 2 * size * m.Cfg.Layers * blockSize * m.Cfg.KVHeads * m.Cfg.HeadDim
}

// Which rows of a chunk a batched forward returns.
const (
	RowsNone = iota // nothing (a prefill chunk that is not the last)
	RowsLast        // the chunk's last position
	RowsAll         // every position of the chunk
)

// SeqChunk is one sequence's share of a ragged batch: tokens IDs at
// positions Start, Start+1, ..., whose keys and values go to the blocks of
// the sequence's table (positions before Start must already be cached there).
type SeqChunk struct {
	IDs    []int32
	Start  int
	Blocks []int32
	// Logits selects the rows whose next-token logits are returned.
	Logits int
	// Hidden returns the final-normalized hidden state of every position.
	Hidden bool
	// DecodeFrom, when positive, marks the positions at or past it as
	// decoded tokens (tokens the model generated, not prompt tokens): where
	// the model keeps a weight in a form the quantized kernels run, those
	// rows are multiplied by it through the kernels one row at a time (see
	// decodeRows), the other rows through the float32 GEMM. A row's numbers
	// thus depend on its kind and never on the rest of the batch, as long
	// as a caller marks a sequence's positions the same way in every pass
	// (the serving engine passes the prompt length, so a recomputed
	// generated token is still a decoded one).
	DecodeFrom int
}

// BatchOutput holds, per chunk, logits [rows, Vocab] for the rows the chunk
// asked for, and hidden states [len(IDs), Dim] when it asked for them.
type BatchOutput struct {
	Logits [][]float32
	Hidden [][]float32
}

// ForwardPaged runs a ragged batch of sequences through the model in one
// pass: the linear layers see all chunks' tokens as one matrix (one GEMM per
// weight), while attention runs per sequence over its own blocks of kv.
// Each row's numbers do not depend on the other rows, so a sequence gets the
// same logits alone, batched, or split into chunks.
func (m *Model) ForwardPaged(tp *nn.Tape, kv *PagedKV, chunks []SeqChunk) (*BatchOutput, error) {
	c := &m.Cfg
	if len(chunks) == 0 {
		return nil, fmt.Errorf("forward paged: empty batch")
	}
	if kv.layers() != c.Layers {
		return nil, fmt.Errorf("forward paged: cache has %d layers, model %d", kv.layers(), c.Layers)
	}
	n := 0
	maxEnd := 0
	att := cpu.PagedAttn{H: c.Heads, KV: c.KVHeads, D: c.HeadDim, BlockSize: kv.BlockSize, Window: c.SlidingWindow,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	att.QStart = append(att.QStart, 0)
	for i, ch := range chunks {
		if len(ch.IDs) == 0 {
			return nil, fmt.Errorf("forward paged: chunk %d has no tokens", i)
		}
		end := ch.Start + len(ch.IDs)
		if c.Pos == "learned" && end > c.MaxSeq {
			return nil, fmt.Errorf("forward paged: %d positions exceed the context length %d", end, c.MaxSeq)
		}
		for _, id := range ch.IDs {
			if id < 0 || int(id) >= c.Vocab {
				return nil, fmt.Errorf("forward paged: token id %d outside the vocabulary [0,%d)", id, c.Vocab)
			}
		}
		n += len(ch.IDs)
		maxEnd = max(maxEnd, end)
		att.QStart = append(att.QStart, n)
		att.Pos0 = append(att.Pos0, ch.Start)
		att.Blocks = append(att.Blocks, ch.Blocks)
	}
	if err := att.Validate(kv.NumBlocks * kv.BlockSize); err != nil {
		return nil, fmt.Errorf("forward paged: %w", err)
	}
	ids := make([]int32, 0, n)
	pos := make([]int32, 0, n)
	slots := make([]int, 0, n) // cache row of every token
	var dec []bool             // rows of decoded tokens; nil when none
	decKernels := m.DecodeKernels()
	for _, ch := range chunks {
		ids = append(ids, ch.IDs...)
		for t := range ch.IDs {
			p := ch.Start + t
			if ch.DecodeFrom > 0 && p >= ch.DecodeFrom && decKernels {
				if dec == nil {
					dec = make([]bool, n)
				}
				dec[len(pos)] = true
			}
			pos = append(pos, int32(p))
			slots = append(slots, int(ch.Blocks[p/kv.BlockSize])*kv.BlockSize+p%kv.BlockSize)
		}
	}
	x := m.embedding(tp, ids)
	if c.Pos == "learned" {
		x = tp.Add(x, tp.Embedding(m.Pos, pos))
	}
	// Dynamic NTK scaling makes the tables depend on each sequence's length,
	// so such models rotate chunk by chunk.
	dyn := c.RopeScaling != nil && c.RopeScaling.Type == "dynamic"
	var rope *cpu.RoPE
	if c.Pos == "rope" && !dyn {
		rope = m.rope(maxEnd)
	}
	for l := range m.Blocks {
		blk := &m.Blocks[l]
		h := m.norm(tp, x, blk.AttnNorm, blk.AttnNormB)
		q := m.linearRows(tp, h, blk.Q, blk.QB, dec)
		k := m.linearRows(tp, h, blk.K, blk.KB, dec)
		v := m.linearRows(tp, h, blk.V, blk.VB, dec)
		if c.QKNorm {
			eps := float32(c.NormEps)
			q = tp.Reshape(tp.RMSNorm(tp.Reshape(q, n*c.Heads, c.HeadDim), blk.QNorm, eps), n, c.Heads*c.HeadDim)
			k = tp.Reshape(tp.RMSNorm(tp.Reshape(k, n*c.KVHeads, c.HeadDim), blk.KNorm, eps), n, c.KVHeads*c.HeadDim)
		}
		if c.Pos == "rope" {
			q, k = m.ropeRows(tp, q, k, pos, rope, chunks)
		}
		w := c.KVHeads * c.HeadDim
		for r, s := range slots {
			kv.put(l, s*w, k.Data[r*w:(r+1)*w], v.Data[r*w:(r+1)*w])
		}
		o := nn.Const(tp.Floats(n*c.Heads*c.HeadDim), n, c.Heads*c.HeadDim)
		if kv.K16 != nil {
			cpu.PagedAttentionForwardF16(tp.P, &att, o.Data, q.Data, kv.K16[l], kv.V16[l])
		} else {
			cpu.PagedAttentionForward(tp.P, &att, o.Data, q.Data, kv.K[l], kv.V[l])
		}
		x = tp.Add(x, m.linearRows(tp, o, blk.O, blk.OB, dec))
		h = m.norm(tp, x, blk.MLPNorm, blk.MLPNormB)
		var y *nn.Var
		if blk.MLP != nil {
			y = m.mlpRows(tp, blk.MLP, h, dec)
		} else {
			y = m.moeRows(tp, blk, h, dec)
		}
		x = tp.Add(x, y)
	}
	out := &BatchOutput{Logits: make([][]float32, len(chunks)), Hidden: make([][]float32, len(chunks))}
	var rows, hidRows []int
	for i, ch := range chunks {
		lo, hi := att.QStart[i], att.QStart[i+1]
		switch ch.Logits {
		case RowsLast:
			rows = append(rows, hi-1)
		case RowsAll:
			for r := lo; r < hi; r++ {
				rows = append(rows, r)
			}
		}
		if ch.Hidden {
			for r := lo; r < hi; r++ {
				hidRows = append(hidRows, r)
			}
		}
	}
	if len(hidRows) > 0 {
		hs := m.norm(tp, tp.GatherRows(x, hidRows), m.Norm, m.NormB)
		d := c.Dim
		off := 0
		for i, ch := range chunks {
			if ch.Hidden {
				out.Hidden[i] = hs.Data[off*d : (off+len(ch.IDs))*d]
				off += len(ch.IDs)
			}
		}
	}
	if len(rows) > 0 {
		xs := m.norm(tp, tp.GatherRows(x, rows), m.Norm, m.NormB)
		var decOut []bool
		if dec != nil {
			decOut = make([]bool, len(rows))
			for i, r := range rows {
				decOut[i] = dec[r]
			}
		}
		logits := m.linearRows(tp, xs, m.Head, nil, decOut)
		off := 0
		for i, ch := range chunks {
			k := 0
			switch ch.Logits {
			case RowsLast:
				k = 1
			case RowsAll:
				k = len(ch.IDs)
			}
			if k > 0 {
				out.Logits[i] = logits.Data[off*c.Vocab : (off+k)*c.Vocab]
				off += k
			}
		}
	}
	return out, nil
}

// ropeRows rotates q and k by each row's position; with dynamic scaling the
// tables are built per chunk for that sequence's length, as Forward does.
func (m *Model) ropeRows(tp *nn.Tape, q, k *nn.Var, pos []int32, rope *cpu.RoPE, chunks []SeqChunk) (*nn.Var, *nn.Var) {
	c := &m.Cfg
	if rope != nil {
		rq, rk := *rope, *rope
		rq.Heads, rk.Heads = c.Heads, c.KVHeads
		return tp.RoPE(q, &rq, pos), tp.RoPE(k, &rk, pos)
	}
	qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	qo := nn.Const(tp.Floats(len(q.Data)), q.Shape...)
	ko := nn.Const(tp.Floats(len(k.Data)), k.Shape...)
	off := 0
	for _, ch := range chunks {
		t := len(ch.IDs)
		r := *m.rope(ch.Start + t)
		r.Heads = c.Heads
		r.Forward(tp.P, qo.Data[off*qw:(off+t)*qw], q.Data[off*qw:(off+t)*qw], pos[off:off+t])
		r.Heads = c.KVHeads
		r.Forward(tp.P, ko.Data[off*kw:(off+t)*kw], k.Data[off*kw:(off+t)*kw], pos[off:off+t])
		off += t
	}
	return qo, ko
}

// linearRows is x·wᵀ + b for inference: every row through the quantized
// kernel when w's is row-stable (cpu.QWeight.RowStable); else the rows
// marked in dec (decoded tokens; dec nil marks none) through the quantized
// kernels when the model keeps w in their form (decodeRows), every other
// row through the row-stable float32 GEMM. Either way a row's result does
// not depend on the other rows.
func (m *Model) linearRows(tp *nn.Tape, x, w, b *nn.Var, dec []bool) *nn.Var {
	in, out := x.Cols(), w.Shape[0]
	rows := x.Rows()
	y := nn.Const(tp.Floats(rows*out), rows, out)
	var qw *cpu.QWeight
	if m.q != nil {
		qw = m.q.lin[w]
	}
	if qw != nil && qw.RowStable() {
		// Every row, prompt or decoded, through the one kernel whose row
		// results do not depend on the batch.
		cpu.QMatMul(tp.P, y.Data, x.Data, rows, qw)
		addBiasRows(y.Data, b, rows, out)
		return y
	}
	if dec == nil {
		qw = nil
	}
	var di []int // decoded rows
	if qw != nil {
		for r, d := range dec {
			if d {
				di = append(di, r)
			}
		}
	}
	if len(di) == 0 {
		cpu.GemmRowStable(tp.P, false, true, rows, out, in, 1, x.Data, in, w.Data, in, 0, y.Data, out)
	} else {
		// The other rows in runs of consecutive rows (usually one: the
		// engine puts the decoded tokens first), in place.
		for r0 := 0; r0 < rows; {
			if dec[r0] {
				r0++
				continue
			}
			r1 := r0 + 1
			for r1 < rows && !dec[r1] {
				r1++
			}
			cpu.GemmRowStable(tp.P, false, true, r1-r0, out, in, 1, x.Data[r0*in:], in, w.Data, in, 0, y.Data[r0*out:], out)
			r0 = r1
		}
	}
	if len(di) > 0 {
		decodeRows(tp.P, qw, x.Data, di, y.Data)
	}
	addBiasRows(y.Data, b, rows, out)
	return y
}

// addBiasRows adds b (nil: none) to each of the rows of y.
func addBiasRows(y []float32, b *nn.Var, rows, out int) {
	for i := range rows {
		addBias(y[i*out:(i+1)*out], b)
	}
}

// DecodeKernels reports whether ForwardPaged multiplies the rows of
// decoded tokens (SeqChunk.DecodeFrom) by a different kernel than prompt
// rows: true when some weight is kept in a quantized kernel form whose
// rows depend on the batch (not cpu.QWeight.RowStable; those multiply
// every row). The keys and values of decoded tokens then differ in the
// last bits from what a prompt holding the same tokens gives, so a prefix
// cache must not hand the one out for the other.
func (m *Model) DecodeKernels() bool {
	if m.q == nil {
		return false
	}
	for _, qw := range m.q.lin {
		if !qw.RowStable() {
			return true
		}
	}
	return false
}

// decodePanelBytes bounds the stored bytes of the panel of weight rows that
// decodeRows multiplies by every decoded row before moving on (it stays in
// the L2 cache).
const decodePanelBytes = 256 << 10

// decodeRows computes y[r] = w·x[r] for the rows r in rows (of x [·, w.Cols]
// and y [·, w.Rows]) of a weight whose kernels are not row-stable (linearRows
// multiplies row-stable ones itself) through cpu.QMatMul with one activation
// row per call: a
// single row takes the multi-row matrix-vector kernels, whose result for a
// weight row does not depend on which other weight rows come with it, so
// every row's result is the same bits whatever the other rows and the thread
// count. (QMatMul rounds 2 to 31 activation rows differently — one row-dot
// call per weight and activation row, slower — and takes a dequantize-and-
// GEMM path from 32, so passing several rows would tie a row's bits to the
// batch size.) With several rows the threads split the weight into panels
// that stay in cache while every row is multiplied by them, so that the
// weights are read from memory once per call, not once per row.
// TestDecodeRowsBatchInvariant checks the bits.
func decodeRows(p *cpu.Pool, w *cpu.QWeight, x []float32, rows []int, y []float32) {
	in, out := w.Cols, w.Rows
	if len(rows) == 1 || p == nil {
		if p == nil {
			p = cpu.NewPool(1)
		}
		for _, r := range rows {
			cpu.QMatMul(p, y[r*out:(r+1)*out], x[r*in:(r+1)*in], 1, w)
		}
		return
	}
	rb := w.RowBytes()
	th := p.Threads()
	panels := max(th, (out*rb+decodePanelBytes-1)/decodePanelBytes)
	panels = (panels + th - 1) / th * th
	size := (out + panels - 1) / panels
	panels = (out + size - 1) / size
	p.For(panels, 1, func(lo, hi int) {
		serial := cpu.NewPool(1)
		for c := lo; c < hi; c++ {
			r0, r1 := c*size, min((c+1)*size, out)
			pw := &cpu.QWeight{Type: w.Type, Rows: r1 - r0, Cols: in, Data: w.Data[r0*rb : r1*rb]}
			for _, r := range rows {
				cpu.QMatMul(serial, y[r*out+r0:r*out+r1], x[r*in:(r+1)*in], 1, pw)
			}
		}
	})
}

func (m *Model) mlpRows(tp *nn.Tape, f *MLP, h *nn.Var, dec []bool) *nn.Var {
	if m.Cfg.MLP == "swiglu" {
		g := m.linearRows(tp, h, f.Gate, f.GateB, dec)
		u := m.linearRows(tp, h, f.Up, f.UpB, dec)
		return m.linearRows(tp, tp.SwiGLU(g, u), f.Down, f.DownB, dec)
	}
	u := m.linearRows(tp, h, f.Up, f.UpB, dec)
	return m.linearRows(tp, tp.GELU(u, m.Cfg.Act != "gelu"), f.Down, f.DownB, dec)
}

func (m *Model) moeRows(tp *nn.Tape, blk *Block, h *nn.Var, dec []bool) *nn.Var {
	c := &m.Cfg
	n, d := h.Rows(), h.Cols()
	probs := tp.Softmax(m.linearRows(tp, h, blk.Router, nil, dec))
	r := tp.TopK(probs, c.TopK, c.NormTopK)
	parts := make([]*nn.Var, c.Experts)
	for e, rows := range r.Rows {
		if len(rows) == 0 {
			continue
		}
		xe := tp.GatherRows(h, rows)
		var de []bool
		if dec != nil {
			de = make([]bool, len(rows))
			for i, r := range rows {
				de[i] = dec[r]
			}
		}
		parts[e] = tp.ScaleRows(m.mlpRows(tp, blk.Experts[e], xe, de), r.Gates, r.Slots[e])
	}
	y := tp.Combine(n, d, parts, r.Rows)
	if blk.Shared != nil {
		s := m.mlpRows(tp, blk.Shared, h, dec)
		if blk.SharedGate != nil {
			s = tp.ScaleRows(s, tp.Sigmoid(m.linearRows(tp, h, blk.SharedGate, nil, dec)), nil)
		}
		y = tp.Add(y, s)
	}
	return y
}
