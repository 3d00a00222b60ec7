package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/dist"
	"github.com/mai-llm/mai/nn"
)

// memGroup is an in-process communicator group for tests: n goroutines, one
// per rank, exchange copies of their buffers at every collective.
type memGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	gen     int
	slots   []any
	result  []any
}

func newMemGroup(n int) []dist.Comm {
	g := &memGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	cs := make([]dist.Comm, n)
	for r := range cs {
		cs[r] = &memComm{g: g, rank: r}
	}
	return cs
}

// exchange deposits v and returns every rank's deposit once all arrived.
func (g *memGroup) exchange(rank int, v any) []any {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.slots[rank] = v
	g.arrived++
	gen := g.gen
	if g.arrived == g.n {
		g.result = append([]any(nil), g.slots...)
		g.arrived = 0
		g.gen++
		g.cond.Broadcast()
	} else {
		for gen == g.gen {
			g.cond.Wait()
		}
	}
	return g.result
}

type memComm struct {
	g    *memGroup
	rank int
}

var errUnsupported = fmt.Errorf("memComm: unsupported")

func (c *memComm) Rank() int { return c.rank }
func (c *memComm) Size() int { return c.g.n }
func (c *memComm) AllReduce(buf []float32, op dist.Op) error {
	all := c.g.exchange(c.rank, append([]float32(nil), buf...))
	clear(buf)
	for _, a := range all {
		for i, v := range a.([]float32) {
			buf[i] += v
		}
	}
	return nil
}
func (c *memComm) AllReduceFloat64(buf []float64, op dist.Op) error {
	all := c.g.exchange(c.rank, append([]float64(nil), buf...))
	clear(buf)
	for _, a := range all {
		for i, v := range a.([]float64) {
			buf[i] += v
		}
	}
	return nil
}
func (c *memComm) ReduceScatter(send, recv []float32, op dist.Op) error { return errUnsupported }
func (c *memComm) AllGather(send, recv []float32) error                 { return errUnsupported }
func (c *memComm) Broadcast(buf []byte, root int) error                 { return errUnsupported }
func (c *memComm) BroadcastFloat32(buf []float32, root int) error       { return errUnsupported }
func (c *memComm) Barrier() error                                       { c.g.exchange(c.rank, nil); return nil }
func (c *memComm) Split(color, key int) (dist.Comm, error)              { return nil, errUnsupported }
func (c *memComm) Close() error                                         { return nil }

type a2a struct {
	send   []float32
	counts []int
}

func (c *memComm) AllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int) error {
	all := c.g.exchange(c.rank, a2a{append([]float32(nil), send...), append([]int(nil), sendCounts...)})
	off := 0
	for j, a := range all {
		m := a.(a2a)
		src := 0
		for i := 0; i < c.rank; i++ {
			src += m.counts[i]
		}
		if m.counts[c.rank] != recvCounts[j] {
			return fmt.Errorf("memComm: rank %d sends %d, rank %d expects %d", j, m.counts[c.rank], c.rank, recvCounts[j])
		}
		copy(recv[off:off+recvCounts[j]], m.send[src:src+m.counts[c.rank]])
		off += recvCounts[j]
	}
	return nil
}

func epTestModel(t *testing.T, experts int) *Model {
	t.Helper()
	c, err := Preset("tiny-moe")
	if err != nil {
		t.Fatal(err)
	}
	c.Layers, c.Experts = 2, experts
	m, err := New(c, true)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	m.Pool = cpu.NewPool(1)
	return m
}

func epBatch(n int, vocab int) (x, y []int32) {
	r := rand.New(rand.NewPCG(3, 4))
	x, y = make([]int32, n), make([]int32, n)
	for i := range x {
		x[i], y[i] = int32(r.IntN(vocab)), int32(r.IntN(vocab))
	}
	return x, y
}

// worstRel returns the largest difference between got and want relative
// to the largest magnitude in want, and where it is.
func worstRel(got, want []float32) (float64, int) {
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	scale = math.Max(scale, 1e-30)
	worst, at := 0.0, 0
	for i := range want {
		if d := math.Abs(float64(got[i]-want[i])) / scale; d > worst {
			worst, at = d, i
		}
	}
	return worst, at
}

// TestParallelLocalIsExact checks that a Parallel with no communicators
// computes bit for bit what the plain forward and backward do.
func TestParallelLocalIsExact(t *testing.T) {
	ref, par := epTestModel(t, 8), epTestModel(t, 8)
	B, T := 2, 16
	x, y := epBatch(B*T, ref.Cfg.Vocab)
	run := func(m *Model, p *Parallel) float32 {
		tp := nn.NewTape(m.Pool, true)
		m.ZeroGrad()
		loss, _, _, err := m.LossParallel(tp, p, x, y, B, T, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
		return loss.Data[0]
	}
	a, b := run(ref, nil), run(par, &Parallel{})
	if a != b {
		t.Fatalf("loss %v with an empty Parallel, %v without", b, a)
	}
	for i := range ref.Grads {
		if ref.Grads[i] != par.Grads[i] {
			t.Fatalf("gradient %d differs: %v vs %v", i, par.Grads[i], ref.Grads[i])
		}
	}
}

// TestExpertParallelMatchesOneProcess runs a MoE model on two in-process
// ranks, each holding half the experts and half the batch, and compares the
// loss and the summed gradients with one process running the whole batch.
func TestExpertParallelMatchesOneProcess(t *testing.T) {
	for _, world := range []int{2, 4} {
		t.Run(fmt.Sprintf("ranks=%d", world), func(t *testing.T) {
			ref := epTestModel(t, 8)
			B, T := world, 16
			x, y := epBatch(B*T, ref.Cfg.Vocab)
			tp := nn.NewTape(ref.Pool, true)
			want, _, _, err := ref.Loss(tp, x, y, B, T)
			if err != nil {
				t.Fatal(err)
			}
			if err := tp.Backward(want); err != nil {
				t.Fatal(err)
			}

			batch, experts := newMemGroup(world), newMemGroup(world)
			models := make([]*Model, world)
			losses := make([]float32, world)
			errs := make([]error, world)
			pars := make([]*Parallel, world)
			var wg sync.WaitGroup
			for r := range world {
				models[r] = epTestModel(t, 8)
				pars[r] = &Parallel{Batch: batch[r], Experts: experts[r], Fail: func(err error) { errs[r] = err }}
				wg.Go(func() {
					m := models[r]
					b := B / world
					tp := nn.NewTape(m.Pool, true)
					_, ce, out, err := m.LossParallel(tp, pars[r], x[r*b*T:(r+1)*b*T], y[r*b*T:(r+1)*b*T], b, T, nil)
					if err != nil {
						errs[r] = err
						return
					}
					w := 1 / float32(world)
					loss := tp.WeightedSum([]*nn.Var{ce, out.Aux}, []float32{w, w})
					losses[r] = loss.Data[0]
					errs[r] = tp.Backward(loss)
				})
			}
			wg.Wait()
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			var got float64
			for _, l := range losses {
				got += float64(l)
			}
			if d := math.Abs(got-float64(want.Data[0])) / float64(want.Data[0]); d > 1e-6 {
				t.Fatalf("loss over %d ranks %v, one process %v (relative difference %g)", world, got, want.Data[0], d)
			}
			sum := make([]float32, len(ref.Grads))
			for _, m := range models {
				for i, g := range m.Grads {
					sum[i] += g
				}
			}
			for _, p := range ref.Tensors {
				lo, hi := p.Off, p.Off+p.V.Len()
				if d, i := worstRel(sum[lo:hi], ref.Grads[lo:hi]); d > 1e-5 {
					t.Errorf("%s: gradient %d differs by %g of its scale: %v vs %v", p.Name, i, d, sum[lo+i], ref.Grads[lo+i])
				} else if testing.Verbose() {
					t.Logf("%s: %.2g", p.Name, d)
				}
			}
			// Each rank ran only its own experts.
			for r, m := range models {
				lo, hi := pars[r].LocalExperts(8)
				for _, p := range m.Tensors {
					i := strings.Index(p.Name, ".experts.")
					if i < 0 {
						continue
					}
					var e int
					fmt.Sscanf(p.Name[i+len(".experts."):], "%d", &e)
					nonzero := false
					for _, g := range p.V.Grad {
						nonzero = nonzero || g != 0
					}
					if local := e >= lo && e < hi; !local && nonzero {
						t.Errorf("rank %d has a gradient for remote expert tensor %s", r, p.Name)
					}
				}
			}
		})
	}
}

// TestCapacityDropsSlots checks that a small capacity factor drops routing
// slots, counts them, and still gives a finite loss and gradients.
func TestCapacityDropsSlots(t *testing.T) {
	m := epTestModel(t, 8)
	B, T := 2, 32
	x, y := epBatch(B*T, m.Cfg.Vocab)
	for _, tc := range []struct {
		cf       float64
		wantDrop bool
	}{{0, false}, {0.5, true}, {100, false}} {
		p := &Parallel{CapacityFactor: tc.cf}
		tp := nn.NewTape(m.Pool, true)
		m.ZeroGrad()
		loss, _, _, err := m.LossParallel(tp, p, x, y, B, T, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(float64(loss.Data[0])) {
			t.Fatalf("cf %v: loss is NaN", tc.cf)
		}
		var routed, dropped int64
		for l := range p.Routed {
			routed += p.Routed[l]
			dropped += p.Dropped[l]
		}
		if want := int64(m.Cfg.Layers * B * T * m.Cfg.TopK); routed != want {
			t.Errorf("cf %v: routed %d slots, want %d", tc.cf, routed, want)
		}
		if (dropped > 0) != tc.wantDrop {
			t.Errorf("cf %v: dropped %d of %d slots", tc.cf, dropped, routed)
		}
		// At most capacity slots per expert survive: 0.5·64·2/8 = 8 per expert.
		if tc.cf == 0.5 && routed-dropped > int64(m.Cfg.Layers*8*8) {
			t.Errorf("cf 0.5: %d slots kept, more than the capacity allows", routed-dropped)
		}
	}
	if _, _, _, err := m.LossParallel(nn.NewTape(m.Pool, false), &Parallel{CapacityFactor: -1}, x, y, B, T, nil); err == nil {
		t.Error("negative capacity factor accepted")
	}
	three := newMemGroup(3)
	if _, _, _, err := m.LossParallel(nn.NewTape(m.Pool, false), &Parallel{Experts: three[0]}, x, y, B, T, nil); err == nil || !strings.Contains(err.Error(), "8 experts") {
		t.Errorf("8 experts over 3 ranks: %v", err)
	}
}

// TestGradReady checks that GradReady reports blocks last to first during
// the backward pass, and that a block's gradients are final when it does:
// nothing written to them afterwards.
func TestGradReady(t *testing.T) {
	m := epTestModel(t, 8)
	B, T := 2, 16
	x, y := epBatch(B*T, m.Cfg.Vocab)
	ranges := map[int][][2]int{}
	for _, p := range m.Tensors {
		var l int
		if _, err := fmt.Sscanf(p.Name, "model.layers.%d.", &l); err == nil {
			ranges[l] = append(ranges[l], [2]int{p.Off, p.Off + p.V.Len()})
		} else if strings.HasPrefix(p.Name, "model.norm.") {
			ranges[m.Cfg.Layers] = append(ranges[m.Cfg.Layers], [2]int{p.Off, p.Off + p.V.Len()})
		}
	}
	var order []int
	snap := map[int][]float32{}
	p := &Parallel{GradReady: func(l int) {
		order = append(order, l)
		for _, r := range ranges[l] {
			snap[l] = append(snap[l], m.Grads[r[0]:r[1]]...)
		}
	}}
	tp := nn.NewTape(m.Pool, true)
	m.ZeroGrad()
	loss, _, _, err := m.LossParallel(tp, p, x, y, B, T, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 0 {
		t.Fatalf("GradReady called during the forward pass: %v", order)
	}
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	want := []int{2, 1, 0}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("GradReady order %v, want %v", order, want)
	}
	for l, s := range snap {
		var now []float32
		nonzero := false
		for _, r := range ranges[l] {
			now = append(now, m.Grads[r[0]:r[1]]...)
		}
		for i := range s {
			if s[i] != now[i] {
				t.Fatalf("block %d: gradient %d changed after GradReady (%v then %v)", l, i, s[i], now[i])
			}
			nonzero = nonzero || s[i] != 0
		}
		if !nonzero {
			t.Errorf("block %d: gradients all zero when reported ready", l)
		}
	}
}
