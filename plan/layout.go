package plan

import (
	"fmt"
	"math"
	"sort"

	"github.com/mai-llm/mai/model"
)

// Layout is one way to spread a training run over a cluster: tensor (TP),
// pipeline (PP, with VPP virtual stages per GPU), expert (EP) and data (DP)
// parallelism, a ZeRO stage, a recomputation policy and a micro-batch size,
// with the memory it needs per GPU and the step time the communication model
// predicts for it.
type Layout struct {
	TP                int       `json:"tp"`
	PP                int       `json:"pp"`
	VPP               int       `json:"vpp"` // interleaved 1F1B chunks per GPU; 1 = plain 1F1B
	EP                int       `json:"ep"`
	DP                int       `json:"dp"`
	ZeRO              int       `json:"zero"`
	Recompute         Recompute `json:"recompute"`
	MicroBatch        int       `json:"micro_batch"` // sequences per micro-batch
	GradAccum         int       `json:"grad_accum"`  // micro-batches per step per data-parallel replica
	GPUsUsed          int       `json:"gpus_used"`
	GlobalBatchTokens float64   `json:"global_batch_tokens"`
	Memory            Memory    `json:"memory"`
	Time              StepTime  `json:"time"`
}

// Memory is the per-GPU memory of the most loaded pipeline stage, in 10^9 bytes.
type Memory struct {
	WeightsGB     float64 `json:"weights_gb"`
	GradientsGB   float64 `json:"gradients_gb"`
	OptimizerGB   float64 `json:"optimizer_gb"`
	ActivationsGB float64 `json:"activations_gb"`
	BuffersGB     float64 `json:"buffers_gb"` // CUDA context, NCCL, communication and ZeRO-3 gather buffers
	TotalGB       float64 `json:"total_gb"`
	BudgetGB      float64 `json:"budget_gb"` // capacity less headroom
	Stage         string  `json:"stage"`     // "only", "first" or "last" pipeline stage
}

// StepTime is the modeled time of one optimizer step, in seconds. Comm
// figures are the exposed parts, not hidden behind computation.
type StepTime struct {
	ComputeS   float64 `json:"compute_s"`   // all micro-batches, recomputation included
	RecomputeS float64 `json:"recompute_s"` // the part of ComputeS spent recomputing
	BubbleS    float64 `json:"bubble_s"`    // pipeline fill and drain
	TPCommS    float64 `json:"tp_comm_s"`
	EPCommS    float64 `json:"ep_comm_s"`
	PPCommS    float64 `json:"pp_comm_s"`
	DPCommS    float64 `json:"dp_comm_s"`
	OptimizerS float64 `json:"optimizer_s"`
	StepS      float64 `json:"step_s"`
	MFU        float64 `json:"mfu"` // model FLOPs / (GPUs used × peak × step)
}

// Model constants of the time model, documented in docs/plan.md.
const (
	// DefaultKernelEfficiency is the fraction of dense BF16 peak the GPU
	// sustains while it computes (GEMMs, attention, and the elementwise and
	// norm kernels between them).
	DefaultKernelEfficiency = 0.65
	// linkEfficiency is the fraction of a link's bandwidth a collective reaches.
	linkEfficiency = 0.8
	// nvLatency and netLatency are the per-step latencies of a ring
	// collective inside a node and across nodes, in seconds.
	nvLatency, netLatency = 5e-6, 15e-6
	// tpBackwardOverlap is the fraction of backward-pass tensor-parallel
	// communication hidden behind weight-gradient GEMMs.
	tpBackwardOverlap = 0.5
	// epOverlap is the largest fraction of expert all-to-all time hidden behind
	// other micro-batches' computation.
	epOverlap = 0.5
	// fixedBufferBytes covers the CUDA context, cuBLAS workspaces and NCCL buffers.
	fixedBufferBytes = 1.5e9
	// maxBatchOvershoot is how far above the requested global batch a layout
	// may go when even one micro-batch per data-parallel rank exceeds it.
	maxBatchOvershoot = 1.5
)

// Constraint pins parts of the layout; zero fields (and a nil ZeRO) leave
// that dimension to the search.
type Constraint struct {
	TP, PP, VPP, EP, DP int
	ZeRO                *int
	Recompute           Recompute
	MicroBatch          int
}

// allows reports whether v is permitted for a dimension pinned to want.
func allows(want, v int) bool { return want == 0 || want == v }

// searchSpace holds what the layout search needs about the run.
type searchSpace struct {
	cfg        *model.Config
	split      paramSplit
	dense, moe LayerShape
	gpu        GPU
	gpus       int
	seq        int
	batch      float64 // requested global batch, tokens
	budget     float64 // usable bytes per GPU
	eff        float64 // kernel efficiency
	flopsTok   float64 // model FLOPs per token
	fix        Constraint
}

// candidate is a layout before evaluation.
type candidate struct {
	tp, pp, vpp, ep, dp, zero, mb int
	rc                            Recompute
}

// evaluate fills in memory and time for a candidate; ok is false when the
// candidate breaks a structural rule (not when it does not fit memory).
func (sp *searchSpace) evaluate(c candidate) (Layout, bool) {
	L := sp.cfg.Layers
	s := sp.seq
	tokMB := float64(s * c.mb) // tokens per micro-batch
	m := int(math.Round(sp.batch / (float64(c.dp) * tokMB)))
	m = max(m, 1)
	if float64(c.dp)*tokMB > maxBatchOvershoot*sp.batch {
		return Layout{}, false
	}
	if c.vpp > 1 && m < c.pp {
		return Layout{}, false // the interleaved schedule needs at least pp micro-batches
	}
	lay := Layout{TP: c.tp, PP: c.pp, VPP: c.vpp, EP: c.ep, DP: c.dp, ZeRO: c.zero, Recompute: c.rc,
		MicroBatch: c.mb, GradAccum: m, GPUsUsed: c.tp * c.pp * c.dp,
		GlobalBatchTokens: float64(m*c.dp) * tokMB}

	// Stages: the first L%pp stages carry one extra layer; the head sits on
	// the last stage, the embedding on the first.
	firstLayers := (L + c.pp - 1) / c.pp
	lastLayers := L / c.pp
	expertShard, edp := c.tp, c.dp // experts split like the dense MLP when EP=1
	if c.ep > 1 {
		expertShard, edp = c.ep, c.tp*c.dp/c.ep // expert TP = 1, expert-data-parallel over TP×DP/EP
	}
	tp := float64(c.tp)
	denseAvg := sp.split.dense / float64(L)
	expertAvg := sp.split.expert / float64(L)
	moeFrac := float64(sp.split.moeLayers) / float64(L)

	type stage struct {
		name          string
		layers        int
		dense, expert float64 // parameters per GPU
		inflight      float64 // micro-batches of activations held
		logits        bool
	}
	var stages []stage
	headP := sp.split.head / tp
	if sp.split.tiedHead && c.pp == 1 {
		headP = 0
	}
	if c.pp == 1 {
		stages = []stage{{name: "only", layers: L,
			dense:    float64(L)*denseAvg/tp + sp.split.embed/tp + headP + sp.split.finalNorm,
			expert:   float64(L) * expertAvg / float64(expertShard),
			inflight: 1, logits: true}}
	} else {
		inflight := float64(min(c.pp, m))
		if c.vpp > 1 {
			inflight *= 1 + float64(c.pp-1)/float64(c.pp*c.vpp)
		}
		stages = []stage{
			{name: "first", layers: firstLayers,
				dense:    float64(firstLayers)*denseAvg/tp + sp.split.embed/tp,
				expert:   float64(firstLayers) * expertAvg / float64(expertShard),
				inflight: inflight},
			{name: "last", layers: lastLayers,
				dense:    float64(lastLayers)*denseAvg/tp + headP + sp.split.finalNorm,
				expert:   float64(lastLayers) * expertAvg / float64(expertShard),
				inflight: 1, logits: true},
		}
	}

	actLayer := (1-moeFrac)*sp.dense.LayerActivationBytes(s, c.mb, c.tp, c.rc) +
		moeFrac*sp.moe.LayerActivationBytes(s, c.mb, c.tp, c.rc)
	shard := func(p float64, groups int, on bool) float64 {
		if on {
			return p / float64(groups)
		}
		return p
	}
	var worst Memory
	for _, st := range stages {
		w := WeightBytes * (shard(st.dense, c.dp, c.zero >= 3) + shard(st.expert, edp, c.zero >= 3))
		g := GradBytes * (shard(st.dense, c.dp, c.zero >= 2) + shard(st.expert, edp, c.zero >= 2))
		o := OptimizerBytes * (shard(st.dense, c.dp, c.zero >= 1) + shard(st.expert, edp, c.zero >= 1))
		a := st.inflight * float64(st.layers) * actLayer
		if st.logits {
			// FP32 logits for the loss, and the final norm's input (Korthikanti §4.3).
			a += (4*float64(sp.cfg.Vocab) + 2*float64(sp.cfg.Dim)) * tokMB / tp
		}
		buf := fixedBufferBytes + 2*2*float64(sp.cfg.Dim)*tokMB // sequence-parallel all-gather buffers
		if c.zero >= 3 {
			// the gathered current and prefetched layer
			buf += 2 * WeightBytes * (denseAvg/tp + expertAvg/float64(expertShard))
		}
		mem := Memory{WeightsGB: w / 1e9, GradientsGB: g / 1e9, OptimizerGB: o / 1e9, ActivationsGB: a / 1e9,
			BuffersGB: buf / 1e9, TotalGB: (w + g + o + a + buf) / 1e9, BudgetGB: sp.budget / 1e9, Stage: st.name}
		if mem.TotalGB > worst.TotalGB {
			worst = mem
		}
	}
	lay.Memory = worst

	// Time of one micro-batch on the slowest stage.
	peak := sp.gpu.PeakTFLOPS * 1e12 * sp.eff
	layerF := sp.split.layerFLOPs() / float64(L)
	var extra float64
	switch c.rc {
	case RecomputeFull:
		extra = layerF / 3 // one more forward pass
	case RecomputeSelective:
		extra = sp.split.attnFLOPs / float64(L) / 3 // the attention core's forward
	}
	var tComp, tRecomp float64
	var slowLayers int
	for _, st := range stages {
		f := float64(st.layers) * (layerF + extra)
		if st.logits {
			f += sp.split.headFLOPs()
		}
		t := f * tokMB / tp / peak
		if t > tComp {
			tComp, slowLayers = t, st.layers
			tRecomp = float64(st.layers) * extra * tokMB / tp / peak
		}
	}
	nv := sp.gpu.NVLinkGBs * 1e9 * linkEfficiency
	net := sp.gpu.NetGBs * 1e9 * linkEfficiency
	d := float64(sp.cfg.Dim)

	// Ranks are numbered TP fastest, then DP, then PP, and a node holds gpn
	// consecutive ranks: a group whose span fits in a node talks over NVLink,
	// any other is limited by the per-GPU network link.
	gpn := max(sp.gpu.GPUsPerNode, 1)
	link := func(span int) float64 {
		if span <= gpn {
			return nv
		}
		return net
	}

	// Tensor parallelism with sequence parallelism: per layer an all-gather
	// and a reduce-scatter of the s·b·h activations around attention and
	// around a dense (or TP-split expert) MLP, in each of forward and
	// backward, and again when the forward pass is recomputed.
	var tTP float64
	if c.tp > 1 {
		coll := float64(c.tp-1) / tp * 2 * d * tokMB / nv
		perLayer := 2.0 // attention
		if c.ep == 1 {
			perLayer += 2
		} else {
			perLayer += 2 * (1 - moeFrac)
		}
		passes := 1 + (1 - tpBackwardOverlap)
		if c.rc == RecomputeFull {
			passes++
		}
		tTP = float64(slowLayers) * perLayer * coll * passes
	}

	// Expert parallelism: dispatch and combine all-to-alls of top-k copies of
	// each token, forward and backward (and again when recomputing).
	var tEP float64
	if c.ep > 1 && sp.split.moeLayers > 0 {
		bytes := tokMB / tp * float64(sp.cfg.TopK) * d * 2 * float64(c.ep-1) / float64(c.ep)
		inNode := float64(min(c.ep, gpn)-1) / float64(c.ep-1)
		one := bytes * (inNode/nv + (1-inNode)/net)
		count := 4.0
		if c.rc == RecomputeFull {
			count += 2
		}
		total := float64(slowLayers) * moeFrac * count * one
		tEP = total - math.Min(epOverlap*total, tComp)
	}

	// Pipeline point-to-point: activations forward and gradients backward,
	// scattered over the TP ranks, once per chunk.
	var tPP float64
	if c.pp > 1 {
		tPP = 2 * float64(c.vpp) * 2 * d * tokMB / tp / link(c.tp*c.dp*c.pp)
	}
	tMB := tComp + tTP + tEP + tPP

	// Data parallelism: reduce-scatter of BF16 gradients and all-gather of
	// BF16 weights over the DP group (experts over their own group).
	// Gradient reduction overlaps the last micro-batch's backward pass, the
	// weight all-gather the first one's forward pass.
	heavy := stages[0]
	for _, st := range stages[1:] {
		if st.dense+st.expert > heavy.dense+heavy.expert {
			heavy = st
		}
	}
	var tDP float64
	{
		st := heavy
		ring := func(params float64, n, span int) float64 {
			if n <= 1 {
				return 0
			}
			return float64(n-1) / float64(n) * 2 * params / link(span)
		}
		// ZeRO-3 gathers and reduces layer by layer: one collective per
		// layer instead of a few large buckets, and each pays ring latency.
		lat := 0.0
		if c.zero == 3 {
			alpha := nvLatency
			if c.tp*c.dp > gpn {
				alpha = netLatency
			}
			lat = float64(heavy.layers) * float64(c.dp-1) * alpha
		}
		rs := ring(st.dense, c.dp, c.tp*c.dp) + ring(st.expert, edp, c.tp*c.dp)
		ag := rs
		bwd, fwd := tComp*2/3, tComp/3
		pos := func(x float64) float64 { return math.Max(x, 0) }
		switch c.zero {
		case 0:
			tDP = pos(rs + ag - bwd) // all-reduce
		case 1:
			tDP = pos(rs-bwd) + pos(ag-fwd)
		case 2:
			tDP = float64(m)*pos(rs-bwd) + pos(ag-fwd) // gradients reduced every micro-batch
		case 3:
			tDP = float64(m) * (pos(ag+lat-fwd) + pos(ag+rs+2*lat-bwd)) // weights gathered for forward and backward
		}
	}

	// Optimizer step: AdamW streams about 28 bytes per locally owned parameter
	// through HBM.
	var tOpt float64
	{
		st := heavy
		own := shard(st.dense, c.dp, c.zero >= 1) + shard(st.expert, edp, c.zero >= 1)
		tOpt = own * 28 / (sp.gpu.HBMGBs * 1e9 * 0.8)
	}

	bubble := float64(c.pp-1) / float64(c.vpp) * tMB
	step := float64(m)*tMB + bubble + tDP + tOpt
	lay.Time = StepTime{
		ComputeS: float64(m) * tComp, RecomputeS: float64(m) * tRecomp, BubbleS: bubble,
		TPCommS: float64(m) * tTP, EPCommS: float64(m) * tEP, PPCommS: float64(m) * tPP,
		DPCommS: tDP, OptimizerS: tOpt, StepS: step,
		MFU: sp.flopsTok * lay.GlobalBatchTokens / (float64(lay.GPUsUsed) * sp.gpu.PeakTFLOPS * 1e12 * step),
	}
	return lay, true
}

// fits reports whether a layout's memory is within budget.
func (l *Layout) fits() bool { return l.Memory.TotalGB <= l.Memory.BudgetGB }

// secondsPerToken is the ranking score: the cluster's time per token.
func (l *Layout) secondsPerToken() float64 { return l.Time.StepS / l.GlobalBatchTokens }

// nearTie is the relative time difference under which layouts count as
// equally fast.
const nearTie = 0.005

// complexity ranks a layout's moving parts for breaking near-ties: the
// distributed optimizer (ZeRO-1) before plain data parallelism before ZeRO-2
// before ZeRO-3, then less recomputation, then fewer model-parallel ranks.
func complexity(l *Layout) [3]int {
	zero := [4]int{1, 0, 2, 3}[l.ZeRO]
	rc := map[Recompute]int{RecomputeNone: 0, RecomputeSelective: 1, RecomputeFull: 2}[l.Recompute]
	return [3]int{zero, rc, l.TP * l.PP * l.VPP}
}

// better reports whether a should replace b: clearly faster, or about as fast
// and simpler, or as simple and leaner.
func better(a, b *Layout) bool {
	ta, tb := a.secondsPerToken(), b.secondsPerToken()
	if math.Abs(ta-tb) > nearTie*math.Min(ta, tb) {
		return ta < tb
	}
	ca, cb := complexity(a), complexity(b)
	for i := range ca {
		if ca[i] != cb[i] {
			return ca[i] < cb[i]
		}
	}
	return a.Memory.TotalGB < b.Memory.TotalGB
}

// less is a strict total order: time per token, then memory, then the
// smaller parallel degrees.
func less(a, b *Layout) bool {
	if ta, tb := a.secondsPerToken(), b.secondsPerToken(); ta != tb {
		return ta < tb
	}
	if a.Memory.TotalGB != b.Memory.TotalGB {
		return a.Memory.TotalGB < b.Memory.TotalGB
	}
	if a.TP != b.TP {
		return a.TP < b.TP
	}
	if a.PP != b.PP {
		return a.PP < b.PP
	}
	return a.EP < b.EP
}

// search enumerates layouts and returns the feasible ones, best first, one per
// (TP, PP, EP) shape; when nothing fits it returns the layout that needs the
// least memory and an error.
func (sp *searchSpace) search() ([]Layout, error) {
	L := sp.cfg.Layers
	best := map[[3]int]Layout{}
	var smallest Layout
	var any bool
	gpn := max(sp.gpu.GPUsPerNode, 1)
	epChoices := []int{1}
	if sp.cfg.Experts > 0 {
		epChoices = divisors(sp.cfg.Experts)
	}
	recomputes := []Recompute{RecomputeNone, RecomputeSelective, RecomputeFull}
	if sp.fix.Recompute != "" {
		recomputes = []Recompute{sp.fix.Recompute}
	}
	vpps := []int{1, 2, 3, 4, 8}
	if sp.fix.VPP > 0 {
		vpps = []int{sp.fix.VPP}
	}
	mbs := []int{1, 2, 4, 8}
	if sp.fix.MicroBatch > 0 {
		mbs = []int{sp.fix.MicroBatch}
	}
	zeros := []int{0, 1, 2, 3}
	if sp.fix.ZeRO != nil {
		zeros = []int{*sp.fix.ZeRO}
	}
	tps := []int{1, 2, 4, 8}
	if sp.fix.TP > 0 {
		tps = []int{sp.fix.TP}
	}
	for _, tp := range tps {
		if tp > gpn || tp > sp.gpus || sp.cfg.Heads%tp != 0 {
			continue
		}
		for pp := 1; pp <= min(L, sp.gpus/tp, maxPP); pp++ {
			if !allows(sp.fix.PP, pp) {
				continue
			}
			dp := sp.gpus / (tp * pp)
			if sp.fix.DP > 0 {
				if sp.fix.DP > dp {
					continue
				}
				dp = sp.fix.DP
			}
			for _, ep := range epChoices {
				if !allows(sp.fix.EP, ep) || (ep > 1 && (tp*dp)%ep != 0) {
					continue
				}
				for _, vpp := range vpps {
					if vpp > 1 && (pp == 1 || L/pp < vpp) {
						continue
					}
					for _, mb := range mbs {
						for _, zero := range zeros {
							edp := dp
							if ep > 1 {
								edp = tp * dp / ep
							}
							if zero > 0 && dp == 1 && edp == 1 && sp.fix.ZeRO == nil {
								continue
							}
							for _, rc := range recomputes {
								lay, ok := sp.evaluate(candidate{tp: tp, pp: pp, vpp: vpp, ep: ep, dp: dp, zero: zero, mb: mb, rc: rc})
								if !ok {
									continue
								}
								if !any || lay.Memory.TotalGB < smallest.Memory.TotalGB {
									smallest, any = lay, true
								}
								if !lay.fits() {
									continue
								}
								key := [3]int{tp, pp, ep}
								if cur, seen := best[key]; !seen || better(&lay, &cur) {
									best[key] = lay
								}
							}
						}
					}
				}
			}
		}
	}
	if len(best) == 0 {
		if !any {
			if sp.fix != (Constraint{}) {
				ep := "EP is 1 for a dense model"
				if sp.cfg.Experts > 0 {
					ep = fmt.Sprintf("EP divides the %d experts and TP×DP", sp.cfg.Experts)
				}
				return nil, fmt.Errorf("no parallel layout satisfies the pinned dimensions on %d GPUs (check that TP×PP×DP fits the cluster, TP divides the %d heads and is at most %d, %s, VPP is at most the layers per stage, and the global batch holds a micro-batch per data-parallel rank)",
					sp.gpus, sp.cfg.Heads, gpn, ep)
			}
			return nil, fmt.Errorf("no parallel layout is possible for %d GPUs with a %s-token global batch (each data-parallel rank needs at least one %d-token sequence)",
				sp.gpus, FormatCount(sp.batch), sp.seq)
		}
		return []Layout{smallest}, fmt.Errorf("nothing fits: the leanest layout (TP=%d PP=%d EP=%d DP=%d ZeRO-%d, %s recompute) needs %.1f GB per GPU against a budget of %.1f GB; use more or larger GPUs, a shorter sequence or a smaller model",
			smallest.TP, smallest.PP, smallest.EP, smallest.DP, smallest.ZeRO, smallest.Recompute, smallest.Memory.TotalGB, smallest.Memory.BudgetGB)
	}
	out := make([]Layout, 0, len(best))
	for _, l := range best {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return less(&out[i], &out[j]) })
	// Among layouts within nearTie of the fastest, lead with the simplest.
	pick := 0
	for i := range out {
		if out[i].secondsPerToken() > (1+nearTie)*out[0].secondsPerToken() {
			break
		}
		if better(&out[i], &out[pick]) {
			pick = i
		}
	}
	out[0], out[pick] = out[pick], out[0]
	return out, nil
}

// divisors returns the positive divisors of n in increasing order.
func divisors(n int) []int {
	var lo, hi []int
	for i := 1; i*i <= n; i++ {
		if n%i == 0 {
			lo = append(lo, i)
			if i != n/i {
				hi = append(hi, n/i)
			}
		}
	}
	for i := len(hi) - 1; i >= 0; i-- {
		lo = append(lo, hi[i])
	}
	return lo
}
