package model

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/dist"
	"github.com/mai-llm/mai/nn"
)

// Parallel is how a forward pass takes part in a distributed job. The model
// itself never asks how many ranks there are: the trainer builds a Parallel
// from its communicators and passes it to LossParallel.
//
// With a Parallel, a MoE layer
//
//   - counts the routing decisions of the whole batch (all-reduced over
//     Batch), so the load-balancing loss and the load metric are those of the
//     global batch, and the row-weighted mean of the ranks' losses equals the
//     loss of one process running the whole batch;
//   - runs only the experts this rank holds (expert parallelism over
//     Experts): tokens routed to an expert on another rank go there with an
//     all-to-all and come back with a second one, in both passes;
//   - drops routing slots beyond an expert's capacity when CapacityFactor is
//     set, and counts them.
//
// Every rank of Batch and Experts must run the same forward and backward
// passes in the same order, with the same number of MoE layers. A Parallel
// serves one forward pass at a time.
type Parallel struct {
	// Batch all-reduces the MoE routing counts over the ranks whose
	// micro-batches together form one global micro-batch (the data-parallel
	// ranks). nil: this rank's micro-batch is the whole batch.
	Batch dist.Comm
	// Experts shards the routed experts of every MoE layer over its ranks in
	// contiguous blocks: rank i holds experts [i·E/n, (i+1)·E/n). Its size
	// must divide the number of experts. nil or size 1: all experts are
	// local.
	Experts dist.Comm
	// CapacityFactor caps the routing slots one rank sends to one expert in
	// one MoE layer at ceil(CapacityFactor · tokens · TopK / Experts), tokens
	// being this rank's micro-batch. The slots past the cap (the latest
	// tokens) are dropped: those tokens get nothing from that expert and
	// keep the residual and their other experts. 0 means no cap.
	CapacityFactor float64
	// GradReady, when set, is called during the backward pass as soon as
	// the gradients of block l are final; l == Layers means the final norm
	// and an untied output head. Everything else (the embeddings) is final
	// when Backward returns.
	GradReady func(l int)
	// Gather, when set, is called before block l's forward pass and again
	// during the backward pass just before block l's backward (after
	// GradReady(l+1)): a trainer that shards the parameters over ranks
	// (ZeRO-3) brings the block's parameters into memory there. It must
	// leave every parameter of block l at the same memory in both calls of
	// one pass, since the tape keeps references to it. An error in the
	// backward pass goes to Fail.
	Gather func(l int) error
	// Fail receives an error from a collective run inside the backward
	// pass, which cannot return one. It must end the job (dist.Abort).
	Fail func(error)

	// Routed and Dropped count, per MoE layer in model order, the routing
	// slots of this rank's tokens and those dropped by the capacity cap,
	// accumulated over forward passes until ResetCounts.
	Routed, Dropped []int64

	layer int // MoE layer index within the current forward pass
}

// LossParallel is LossPacked (pk may be nil) as one rank of a distributed
// job described by p; a nil p is LossPacked.
func (m *Model) LossParallel(tp *nn.Tape, p *Parallel, ids, targets []int32, b, t int, pk *Packed) (loss, ce *nn.Var, out *Output, err error) {
	if err := p.check(&m.Cfg); err != nil {
		return nil, nil, nil, err
	}
	return m.lossPar(tp, ids, targets, b, t, pk, p)
}

// ForwardParallel is Forward as one rank of a distributed job described by
// p; a nil p is Forward.
func (m *Model) ForwardParallel(tp *nn.Tape, p *Parallel, ids []int32, b, t int, cache *KVCache, lastOnly bool) (*Output, error) {
	if err := p.check(&m.Cfg); err != nil {
		return nil, err
	}
	return m.forwardPar(tp, ids, b, t, cache, lastOnly, nil, p)
}

// LocalExperts returns the range [lo, hi) of the routed experts this rank
// holds in a model with e experts.
func (p *Parallel) LocalExperts(e int) (lo, hi int) {
	g, me := p.expertRanks()
	return me * e / g, (me + 1) * e / g
}

// ResetCounts clears Routed and Dropped.
func (p *Parallel) ResetCounts() {
	clear(p.Routed)
	clear(p.Dropped)
}

func (p *Parallel) expertRanks() (size, rank int) {
	if p == nil || p.Experts == nil {
		return 1, 0
	}
	return p.Experts.Size(), p.Experts.Rank()
}

func (p *Parallel) check(c *Config) error {
	if p == nil {
		return nil
	}
	if g, _ := p.expertRanks(); c.Experts > 0 && c.Experts%g != 0 {
		return fmt.Errorf("expert parallel: %d experts cannot be split evenly over %d ranks", c.Experts, g)
	}
	if p.CapacityFactor < 0 || math.IsNaN(p.CapacityFactor) {
		return fmt.Errorf("expert parallel: capacity factor %v must be 0 (no cap) or positive", p.CapacityFactor)
	}
	return nil
}

// begin starts a forward pass.
func (p *Parallel) begin() {
	if p != nil {
		p.layer = 0
	}
}

// mark records, at the start of block l (l == Layers: after the last one),
// the point of the backward pass where block l's gradients are final.
func (p *Parallel) mark(tp *nn.Tape, l int) {
	if p == nil || p.GradReady == nil {
		return
	}
	tp.OnBackward(func() { p.GradReady(l) })
}

// gather brings block l's parameters into memory before its forward pass
// and records the same for its backward pass; it goes at the start of the
// block, after the previous block's last op.
func (p *Parallel) gather(l int) error {
	if p == nil || p.Gather == nil {
		return nil
	}
	return p.Gather(l)
}

// regather records, after block l's last op, the point of the backward pass
// just before block l's backward, where its parameters must be back.
func (p *Parallel) regather(tp *nn.Tape, l int) {
	if p == nil || p.Gather == nil {
		return
	}
	tp.OnBackward(func() {
		if err := p.Gather(l); err != nil {
			p.fail(fmt.Errorf("parameter gather of block %d: %w", l, err))
		}
	})
}

func (p *Parallel) fail(err error) {
	if p.Fail != nil {
		p.Fail(err)
		return
	}
	panic(err) // no handler: a collective failed where nothing can return it
}

// moe is Model.moe across ranks (see Parallel).
func (p *Parallel) moe(m *Model, tp *nn.Tape, blk *Block, h *nn.Var) (y, aux, z *nn.Var, load []float32, err error) {
	c := &m.Cfg
	n, d := h.Rows(), h.Cols()
	nE, k := c.Experts, c.TopK
	layer := p.layer
	p.layer++
	for len(p.Routed) <= layer {
		p.Routed, p.Dropped = append(p.Routed, 0), append(p.Dropped, 0)
	}

	logits := tp.Linear(h, blk.Router, nil)
	probs := tp.Softmax(logits)
	r := tp.TopK(probs, k, c.NormTopK)

	// The routing counts of the whole batch, before any slot is dropped: they
	// define the load-balancing loss and the load metric.
	counts := make([]float64, nE+1)
	for e := range nE {
		counts[e] = float64(len(r.Rows[e]))
	}
	counts[nE] = float64(n)
	if p.Batch != nil && p.Batch.Size() > 1 {
		if err := p.Batch.AllReduceFloat64(counts, dist.Sum); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("moe routing counts: %w", err)
		}
	}
	total := int(counts[nE])
	load = make([]float32, nE)
	for e := range load {
		load[e] = float32(int(counts[e])) / float32(total*k)
	}

	p.Routed[layer] += int64(n * k)
	if p.CapacityFactor > 0 {
		capacity := int(math.Ceil(p.CapacityFactor * float64(n*k) / float64(nE)))
		for e := range nE {
			if len(r.Rows[e]) > capacity {
				p.Dropped[layer] += int64(len(r.Rows[e]) - capacity)
				r.Rows[e], r.Slots[e] = r.Rows[e][:capacity], r.Slots[e][:capacity]
			}
		}
	}

	g, me := p.expertRanks()
	if g == 1 {
		// Every expert is local: exactly Model.moe's computation.
		parts := make([]*nn.Var, nE)
		for e, rows := range r.Rows {
			if len(rows) == 0 {
				continue
			}
			xe := tp.GatherRows(h, rows)
			parts[e] = tp.ScaleRows(m.mlp(tp, blk.Experts[e], xe), r.Gates, r.Slots[e])
		}
		y = tp.Combine(n, d, parts, r.Rows)
	} else if y, err = p.exchange(m, tp, blk, h, r, g, me); err != nil {
		return nil, nil, nil, nil, err
	}
	if blk.Shared != nil {
		s := m.mlp(tp, blk.Shared, h)
		if blk.SharedGate != nil {
			s = tp.ScaleRows(s, tp.Sigmoid(tp.Linear(h, blk.SharedGate, nil)), nil)
		}
		y = tp.Add(y, s)
	}
	aux = tp.LoadBalanceLossWith(probs, load)
	z = tp.ZLoss(logits)
	return y, aux, z, load, nil
}

// exchange runs the routed experts of one MoE layer over g > 1 ranks: this
// rank's rows go to the ranks holding their experts, every rank runs its
// own experts, and the results come back to be weighted and summed.
func (p *Parallel) exchange(m *Model, tp *nn.Tape, blk *Block, h *nn.Var, r *nn.Route, g, me int) (*nn.Var, error) {
	nE := m.Cfg.Experts
	n, d := h.Rows(), h.Cols()
	// Dispatch: this rank's rows for every expert, in expert order, so the
	// rows for rank j's experts form block j.
	per := nE / g
	var sendIdx, slots []int
	sendRows, recvRows := make([]int, g), make([]int, g)
	sendCounts := make([]float32, nE)
	for e := range nE {
		sendIdx = append(sendIdx, r.Rows[e]...)
		slots = append(slots, r.Slots[e]...)
		sendRows[e/per] += len(r.Rows[e])
		sendCounts[e] = float32(len(r.Rows[e]))
	}
	xs := tp.GatherRows(h, sendIdx)
	// recvCounts[j*per+i]: rows rank j sends to local expert i.
	recvCounts := make([]float32, nE)
	blocks := make([]int, g)
	for j := range blocks {
		blocks[j] = per
	}
	if err := p.Experts.AllToAllV(sendCounts, blocks, recvCounts, blocks); err != nil {
		return nil, fmt.Errorf("moe dispatch counts: %w", err)
	}
	for j := range g {
		for i := range per {
			recvRows[j] += int(recvCounts[j*per+i])
		}
	}
	xr, err := tp.AllToAll(xs, p.Experts, sendRows, recvRows, p.fail)
	if err != nil {
		return nil, fmt.Errorf("moe dispatch: %w", err)
	}

	// Each local expert runs once on the rows every rank sent it, in rank
	// order: with ranks holding consecutive parts of the global batch, that
	// is the order one process would use.
	parts, idx := make([]*nn.Var, per), make([][]int, per)
	base := 0
	for j := range g {
		off := base
		for i := range per {
			cnt := int(recvCounts[j*per+i])
			for q := range cnt {
				idx[i] = append(idx[i], off+q)
			}
			off += cnt
		}
		base += recvRows[j]
	}
	for i := range per {
		if len(idx[i]) == 0 {
			continue
		}
		parts[i] = m.mlp(tp, blk.Experts[me*per+i], tp.GatherRows(xr, idx[i]))
	}
	yr := tp.Combine(xr.Rows(), d, parts, idx)

	// Combine: results go back to the ranks that own the tokens, are scaled
	// by their gates and summed per token in expert order.
	ys, err := tp.AllToAll(yr, p.Experts, recvRows, sendRows, p.fail)
	if err != nil {
		return nil, fmt.Errorf("moe combine: %w", err)
	}
	ys = tp.ScaleRows(ys, r.Gates, slots)
	return tp.Combine(n, d, []*nn.Var{ys}, [][]int{sendIdx}), nil
}
