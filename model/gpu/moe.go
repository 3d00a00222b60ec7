package gpu

import (
	"errors"
	"math"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/nn"
)

// A mixture-of-experts layer runs as nn's ops do (model.Model.moe): router
// logits and their softmax on the device; the top-k routing, the
// load-balancing loss and the router z-loss on the host (the [N, E]
// probabilities are small; routing decides shapes, which the host needs
// anyway); each expert's rows gathered, run through its MLP, scaled by their
// gates and added into the output in expert order; the shared expert block
// and its sigmoid gate. The backward pass mirrors it; the gates' and the
// router's gradients go through the host.

// moeStep is one MoE layer's routing and per-step device memory.
type moeStep struct {
	n, e, k      int
	probs        []float32 // [N, E], host
	lse          []float64 // router log-sum-exp per row (z-loss)
	experts      []int32   // [N*K]
	gates, sums  []float32 // [N*K], [N]
	rows, slots  [][]int   // per expert: its tokens and their n*K+j slots
	load         []float32 // fraction of slots per expert
	aux, z       float32
	sig          []float32 // shared expert gate, host
	idx          []*cuda.EmbedIndex
	gdev, xe, ye []*cuda.Buffer // per expert: gates [ne], inputs and outputs [ne, D]
	acts         []mlpActs
	bufs         []*cuda.Buffer // everything allocated for this step
}

// release frees the step's device memory.
func (ms *moeStep) release(dev *cuda.Device) error {
	var errs []error
	for _, x := range ms.idx {
		if x != nil {
			errs = append(errs, x.Free())
		}
	}
	errs = append(errs, dev.Free(ms.bufs...))
	ms.idx, ms.bufs = nil, nil
	return errors.Join(errs...)
}

func (ms *moeStep) alloc(dev *cuda.Device, n int) (*cuda.Buffer, error) {
	b, err := dev.Alloc(cuda.F32, n)
	if err == nil {
		ms.bufs = append(ms.bufs, b)
	}
	return b, err
}

// moeForward writes the layer's MLP output into a.y from L.h2.
func (g *Model) moeForward(a *acts, W *layer, L *layerActs) error {
	c := &g.Cfg
	dev := g.Dev
	n, d, E, K := a.n, c.Dim, c.Experts, c.TopK
	var e errs
	g.linear(&e, a, L.rlogits, L.h2, W.router, tensor{}, n, d, E)
	e.do(dev.SoftmaxForward(L.probs, L.rlogits, n, E))
	if e.err != nil {
		return e.err
	}
	ms := &moeStep{n: n, e: E, k: K, probs: make([]float32, n*E), lse: make([]float64, n),
		gates: make([]float32, n*K), sums: make([]float32, n), load: make([]float32, E),
		idx: make([]*cuda.EmbedIndex, E), gdev: make([]*cuda.Buffer, E), xe: make([]*cuda.Buffer, E), ye: make([]*cuda.Buffer, E),
		acts: make([]mlpActs, E)}
	L.moe = ms
	logits := make([]float32, n*E)
	if err := dev.Download(logits, L.rlogits); err != nil {
		return err
	}
	if err := dev.Download(ms.probs, L.probs); err != nil {
		return err
	}
	// Top-k as nn.TopK routes (ties go to the lower expert index).
	r := nn.RouteTopK(ms.probs, n, E, K, c.NormTopK, ms.gates, ms.sums)
	ms.experts, ms.rows, ms.slots = r.Experts, r.Rows, r.Slots
	// Load-balancing loss (nn.LoadBalanceLoss) and router z-loss (nn.ZLoss).
	var acc, zacc float64
	for ex := range ms.load {
		ms.load[ex] = float32(len(ms.rows[ex])) / float32(n*K)
	}
	for i := 0; i < n; i++ {
		m := math.Inf(-1)
		for ex := 0; ex < E; ex++ {
			acc += float64(ms.load[ex]) * float64(ms.probs[i*E+ex])
			m = math.Max(m, float64(logits[i*E+ex]))
		}
		var z float64
		for _, v := range logits[i*E : i*E+E] {
			z += math.Exp(float64(v) - m)
		}
		ms.lse[i] = m + math.Log(z)
		zacc += ms.lse[i] * ms.lse[i]
	}
	ms.aux = float32(float64(E) * acc / float64(n))
	ms.z = float32(zacc / float64(n))
	// Routed experts, added into y in expert order (nn.Combine).
	e.do(dev.Zero(a.y))
	for ex, rows := range ms.rows {
		ne := len(rows)
		if ne == 0 || e.err != nil {
			continue
		}
		ids := make([]int32, ne)
		gv := make([]float32, ne)
		for i, r := range rows {
			ids[i] = int32(r)
			gv[i] = ms.gates[ms.slots[ex][i]]
		}
		var err error
		if ms.idx[ex], err = dev.NewEmbedIndex(ids, n); err != nil {
			return err
		}
		w := &W.experts[ex]
		bufs := make([]*cuda.Buffer, 6)
		for i, k := range []int{ne * d, ne * d, ne, ne * w.hidden, ne * w.hidden, ne * w.hidden} {
			if i == 3 && c.MLP != "swiglu" {
				continue
			}
			if bufs[i], err = ms.alloc(dev, k); err != nil {
				return err
			}
		}
		ms.xe[ex], ms.ye[ex], ms.gdev[ex] = bufs[0], bufs[1], bufs[2]
		ms.acts[ex] = mlpActs{g: bufs[3], u: bufs[4], a: bufs[5]}
		e.do(dev.Upload(ms.gdev[ex], gv))
		e.do(dev.EmbeddingForward(ms.xe[ex], L.h2, ms.idx[ex], d))
		g.mlpForward(&e, a, w, ms.xe[ex], ne, ms.acts[ex], ms.ye[ex])
		scaled, err := a.tmp.View(0, ne*d)
		e.do(err)
		e.do(dev.ScaleRows(scaled, ms.ye[ex], ms.gdev[ex], ne, d))
		e.do(dev.EmbeddingBackward(a.y, scaled, ms.idx[ex], d))
	}
	if W.shared != nil && e.err == nil {
		g.mlpForward(&e, a, W.shared, L.h2, n, L.shared, L.sOut)
		if W.sharedGate.w == nil {
			e.do(dev.Add(a.y, a.y, L.sOut))
		} else {
			gl, err := a.row.View(0, n)
			e.do(err)
			g.linear(&e, a, gl, L.h2, W.sharedGate, tensor{}, n, d, 1)
			ms.sig = make([]float32, n)
			if e.err == nil {
				e.do(dev.Download(ms.sig, gl))
			}
			for i, v := range ms.sig { // nn.Sigmoid
				ms.sig[i] = float32(1 / (1 + math.Exp(-float64(v))))
			}
			e.do(dev.Upload(L.sig, ms.sig))
			e.do(dev.ScaleRows(a.tmp, L.sOut, L.sig, n, d))
			e.do(dev.Add(a.y, a.y, a.tmp))
		}
	}
	return e.err
}

// moeBackward sets a.dh to the gradient of the layer's input L.h2 from
// a.dres (its output's gradient) and adds its parameters' gradients; cAux
// and cZ are the loss's weights on this layer's load-balancing loss and
// z-loss (times the backward's scale).
func (g *Model) moeBackward(a *acts, W *layer, L *layerActs, cAux, cZ float32) error {
	c := &g.Cfg
	dev := g.Dev
	ms := L.moe
	n, d, E, K := a.n, c.Dim, ms.e, ms.k
	var e errs
	e.do(dev.Zero(a.dh))
	if W.shared != nil {
		dS := a.dres
		if W.sharedGate.w != nil {
			dS = a.tmp
			e.do(dev.ScaleRows(a.tmp, a.dres, L.sig, n, d))
			ds, err := a.row.View(0, n)
			e.do(err)
			e.do(dev.RowDot(ds, a.dres, L.sOut, n, d))
			host := make([]float32, n)
			if e.err == nil {
				e.do(dev.Download(host, ds))
			}
			for i, s := range ms.sig {
				host[i] = host[i] * s * (1 - s)
			}
			e.do(dev.Upload(ds, host))
			g.linearBack(&e, a, a.dh, ds, L.h2, W.sharedGate, tensor{}, n, d, 1, true)
		}
		g.mlpBackward(&e, a, W.shared, L.h2, n, L.shared, dS, a.dh, true)
	}
	gg := make([]float32, n*K)
	for ex, rows := range ms.rows {
		ne := len(rows)
		if ne == 0 || e.err != nil {
			continue
		}
		var bufs [3]*cuda.Buffer
		for i := range bufs {
			var err error
			if bufs[i], err = ms.alloc(dev, ne*d); err != nil {
				return err
			}
		}
		dpart, dye, dxe := bufs[0], bufs[1], bufs[2]
		e.do(dev.EmbeddingForward(dpart, a.dres, ms.idx[ex], d))
		e.do(dev.ScaleRows(dye, dpart, ms.gdev[ex], ne, d))
		dg, err := a.row.View(0, ne)
		e.do(err)
		e.do(dev.RowDot(dg, dpart, ms.ye[ex], ne, d))
		host := make([]float32, ne)
		if e.err == nil {
			e.do(dev.Download(host, dg))
		}
		for i, v := range host {
			gg[ms.slots[ex][i]] += v
		}
		g.mlpBackward(&e, a, &W.experts[ex], ms.xe[ex], ne, ms.acts[ex], dye, dxe, false)
		e.do(dev.EmbeddingBackward(a.dh, dxe, ms.idx[ex], d))
	}
	if e.err != nil {
		return e.err
	}
	// The router: top-k and load-balancing backward into the probabilities,
	// softmax backward and z-loss backward into the logits.
	dp := make([]float32, n*E)
	nn.RouteTopKBackward(dp, gg, ms.gates, ms.experts, ms.sums, n, E, K, c.NormTopK)
	if cAux != 0 {
		cc := cAux * float32(E) / float32(n)
		for i := 0; i < n; i++ {
			for ex := 0; ex < E; ex++ {
				dp[i*E+ex] += cc * ms.load[ex]
			}
		}
	}
	dl := make([]float32, n*E)
	for i := 0; i < n; i++ {
		p, gp := ms.probs[i*E:i*E+E], dp[i*E:i*E+E]
		var s float32
		for j := range p {
			s += gp[j] * p[j]
		}
		for j := range p {
			dl[i*E+j] = p[j] * (gp[j] - s)
		}
		if cZ != 0 {
			// exp(logit - lse) is the softmax; nn.ZLoss recomputes it in
			// float64 from the logits, the same within rounding.
			k := float64(cZ) * 2 * ms.lse[i] / float64(n)
			for j := range p {
				dl[i*E+j] += float32(k * float64(p[j]))
			}
		}
	}
	dlb, err := a.row.View(0, n*E)
	if err != nil {
		return err
	}
	e.do(dev.Upload(dlb, dl))
	g.linearBack(&e, a, a.dh, dlb, L.h2, W.router, tensor{}, n, d, E, true)
	return e.err
}
