package nn

import (
	"math"
	"sort"
)

// Route is a top-k routing decision: for token n and slot j, expert
// Experts[n*K+j] with gate weight Gates.Data[n*K+j].
type Route struct {
	N, K, E int
	Experts []int32
	Gates   *Var // [N, K]
	// Rows[e] lists the tokens routed to expert e; Slots[e] the matching
	// flat index n*K+j into Gates.
	Rows, Slots [][]int
}

// TopK picks the K most probable experts per row of probs [N, E] and returns
// their gate weights, renormalized to sum to 1 when renorm is set. Ties go to
// the lower expert index, as torch.topk does on CPU.
func (tp *Tape) TopK(probs *Var, k int, renorm bool) *Route {
	n, e := probs.Rows(), probs.Cols()
	g := tp.out([]int{n, k}, false, probs)
	sums := tp.floats(n, false)
	r := RouteTopK(probs.Data, n, e, k, renorm, g.Data, sums)
	r.Gates = g
	tp.record(op{kind: opTopK, y: g, a: probs, route: r, flag: renorm, buf: sums})
	return r
}

// RouteTopK is TopK's routing on plain memory, for backends that keep the
// router's probabilities [n, e] elsewhere: it fills gates [n, k] (divided
// by their row sum when renorm is set) and sums [n] (the row sums of the
// chosen probabilities) and returns the route without Gates.
func RouteTopK(probs []float32, n, e, k int, renorm bool, gates, sums []float32) *Route {
	r := &Route{N: n, K: k, E: e, Experts: make([]int32, n*k), Rows: make([][]int, e), Slots: make([][]int, e)}
	idx := make([]int, e)
	for i := 0; i < n; i++ {
		row := probs[i*e : i*e+e]
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		var s float32
		for j := 0; j < k; j++ {
			ex := idx[j]
			r.Experts[i*k+j] = int32(ex)
			gates[i*k+j] = row[ex]
			s += row[ex]
			r.Rows[ex] = append(r.Rows[ex], i)
			r.Slots[ex] = append(r.Slots[ex], i*k+j)
		}
		sums[i] = s
		if renorm {
			for j := 0; j < k; j++ {
				gates[i*k+j] /= s
			}
		}
	}
	return r
}

// RouteTopKBackward is TopK's backward on plain memory (see RouteTopK): it
// adds to dp [n, e] the gradient of the probabilities from gg, the
// gradient of the gates [n, k] (experts: the route's choices, sums: the
// row sums of the chosen probabilities).
func RouteTopKBackward(dp, gg, gates []float32, experts []int32, sums []float32, n, e, k int, renorm bool) {
	for i := 0; i < n; i++ {
		gi := gg[i*k : i*k+k]
		pg := dp[i*e : i*e+e]
		if !renorm {
			for j := 0; j < k; j++ {
				pg[experts[i*k+j]] += gi[j]
			}
			continue
		}
		// g_j = p_j / s: dp_j = (gg_j - Σ gg_l g_l) / s
		var dotv float32
		for j := 0; j < k; j++ {
			dotv += gi[j] * gates[i*k+j]
		}
		for j := 0; j < k; j++ {
			pg[experts[i*k+j]] += (gi[j] - dotv) / sums[i]
		}
	}
}

func topKBackward(o *op) {
	g, probs, r := o.y, o.a, o.route
	RouteTopKBackward(accGrad(probs), g.Grad, g.Data, r.Experts, o.buf, r.N, r.E, r.K, o.flag)
}

// GatherRows returns x[rows] for x [N, D].
func (tp *Tape) GatherRows(x *Var, rows []int) *Var {
	d := x.Cols()
	y := tp.out([]int{len(rows), d}, false, x)
	for i, r := range rows {
		copy(y.Data[i*d:i*d+d], x.Data[r*d:r*d+d])
	}
	tp.record(op{kind: opGatherRows, y: y, a: x, rows: rows})
	return y
}

// ScaleRows returns h with row i multiplied by s.Data[idx[i]] (idx nil means
// row i by s.Data[i]).
func (tp *Tape) ScaleRows(h, s *Var, idx []int) *Var {
	d := h.Cols()
	at := func(i int) int {
		if idx == nil {
			return i
		}
		return idx[i]
	}
	y := tp.out(h.Shape, false, h, s)
	for i := 0; i < h.Rows(); i++ {
		c := s.Data[at(i)]
		for j := 0; j < d; j++ {
			y.Data[i*d+j] = h.Data[i*d+j] * c
		}
	}
	tp.record(op{kind: opScaleRows, y: y, a: h, b: s, idx: idx})
	return y
}

func scaleRowsBackward(o *op) {
	y, h, s, idx := o.y, o.a, o.b, o.idx
	d := h.Cols()
	dh, ds := accGrad(h), accGrad(s)
	for i := 0; i < h.Rows(); i++ {
		at := i
		if idx != nil {
			at = idx[i]
		}
		c := s.Data[at]
		gy := y.Grad[i*d : i*d+d]
		if dh != nil {
			axpy(dh[i*d:i*d+d], gy, c)
		}
		if ds != nil {
			var dv float32
			for j, g := range gy {
				dv += g * h.Data[i*d+j]
			}
			ds[at] += dv
		}
	}
}

// Combine scatters parts[e] (rows rows[e]) into an [n, d] sum, in expert
// order, so results do not depend on thread count.
func (tp *Tape) Combine(n, d int, parts []*Var, rows [][]int) *Var {
	live := make([]*Var, 0, len(parts))
	for _, p := range parts {
		if p != nil {
			live = append(live, p)
		}
	}
	y := tp.out([]int{n, d}, true, live...)
	for e, p := range parts {
		if p == nil {
			continue
		}
		for i, r := range rows[e] {
			axpy(y.Data[r*d:r*d+d], p.Data[i*d:i*d+d], 1)
		}
	}
	tp.record(op{kind: opCombine, y: y, vars: parts, rowSets: rows})
	return y
}

func combineBackward(o *op) {
	y := o.y
	d := y.Cols()
	for e, p := range o.vars {
		if p == nil || p.Grad == nil {
			continue
		}
		dp := accGrad(p)
		for i, r := range o.rowSets[e] {
			axpy(dp[i*d:i*d+d], y.Grad[r*d:r*d+d], 1)
		}
	}
}

// LoadBalanceLoss is the Switch Transformer auxiliary loss
// E · Σ_e f_e · P_e, where f_e is the fraction of routing slots sent to
// expert e and P_e its mean router probability. It also returns f.
func (tp *Tape) LoadBalanceLoss(probs *Var, r *Route) (*Var, []float32) {
	n, e := r.N, r.E
	f := make([]float32, e)
	for ex := range f {
		f[ex] = float32(len(r.Rows[ex])) / float32(n*r.K)
	}
	y := tp.out([]int{1}, false, probs)
	var s float64
	for i := 0; i < n; i++ {
		for ex := 0; ex < e; ex++ {
			s += float64(f[ex]) * float64(probs.Data[i*e+ex])
		}
	}
	y.Data[0] = float32(float64(e) * s / float64(n))
	tp.record(op{kind: opLoadBalance, y: y, a: probs, route: r, buf: f})
	return y, f
}

func loadBalanceBackward(o *op) {
	y, probs, r, f := o.y, o.a, o.route, o.buf
	n, e := r.N, r.E
	c := y.Grad[0] * float32(e) / float32(n)
	dp := accGrad(probs)
	for i := 0; i < n; i++ {
		for ex := 0; ex < e; ex++ {
			dp[i*e+ex] += c * f[ex]
		}
	}
}

// ZLoss is the router z-loss: the mean over rows of logsumexp(logits)².
func (tp *Tape) ZLoss(logits *Var) *Var {
	n, e := logits.Rows(), logits.Cols()
	y := tp.out([]int{1}, false, logits)
	lse := make([]float64, n)
	var s float64
	for i := 0; i < n; i++ {
		row := logits.Data[i*e : i*e+e]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		lse[i] = m + math.Log(z)
		s += lse[i] * lse[i]
	}
	y.Data[0] = float32(s / float64(n))
	tp.record(op{kind: opZLoss, y: y, a: logits, f64: lse})
	return y
}

func zLossBackward(o *op) {
	y, logits, lse := o.y, o.a, o.f64
	n, e := logits.Rows(), logits.Cols()
	dl := accGrad(logits)
	for i := 0; i < n; i++ {
		c := float64(y.Grad[0]) * 2 * lse[i] / float64(n)
		row := logits.Data[i*e : i*e+e]
		for j, v := range row {
			dl[i*e+j] += float32(c * math.Exp(float64(v)-lse[i]))
		}
	}
}

// moeBackward runs the backward of the routing ops.
func (tp *Tape) moeBackward(o *op) {
	switch o.kind {
	case opTopK:
		topKBackward(o)
	case opGatherRows:
		x, y, d := o.a, o.y, o.a.Cols()
		dx := accGrad(x)
		for i, r := range o.rows {
			axpy(dx[r*d:r*d+d], y.Grad[i*d:i*d+d], 1)
		}
	case opScaleRows:
		scaleRowsBackward(o)
	case opCombine:
		combineBackward(o)
	case opLoadBalance:
		loadBalanceBackward(o)
	case opZLoss:
		zLossBackward(o)
	default:
		panic("nn: unknown op kind")
	}
}
