package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
)

// The gradient checker: every op on the Tape is run on random float32
// inputs, its output compared with a separate float64 reference of the op,
// and then for a fixed random upstream gradient g the scalar
// L = Σ g ⊙ op(inputs) is differentiated twice: by the tape's Backward (in
// float32) and by central finite differences of the float64 reference
// (h = 1e-6, whose error is orders of magnitude below the tolerances). Every
// input's gradient is pre-filled with random values so that backward is
// checked to accumulate, not overwrite. Each comparison also proves that a
// gradient scaled by 1.01 would have failed it.

const (
	gcFwdTol = 1e-5 // relative to |want| + rms(want), see gcClose
	gcBwdTol = 2e-5 // float32 kernels on O(1) values: observed ≤ ~1e-6
	gcStep   = 1e-6
)

var gcPools = sync.OnceValue(func() []*cpu.Pool { return []*cpu.Pool{cpu.NewPool(1), cpu.NewPool(3)} })

func gcRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6e6e)) }

func gcVec(r *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((r.Float64()*2 - 1) * s)
	}
	return x
}

func gc64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// gcNumGrad estimates ∂loss/∂x by central differences, perturbing x in place.
func gcNumGrad(x []float64, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i, xi := range x {
		x[i] = xi + gcStep
		lp := loss()
		x[i] = xi - gcStep
		lm := loss()
		x[i] = xi
		g[i] = (lp - lm) / (2 * gcStep)
	}
	return g
}

// gcErr is the largest |got-want| / (|want| + rms(want)) and its index; an
// exact match is required where want is all zero.
func gcErr(got, want []float64) (float64, int) {
	var ss float64
	for _, w := range want {
		ss += w * w
	}
	rms := math.Sqrt(ss / float64(max(1, len(want))))
	worst, at := 0.0, 0
	for i := range want {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) || math.IsInf(d, 0) {
			return math.Inf(1), i
		}
		if d == 0 {
			continue
		}
		if e := d / (math.Abs(want[i]) + rms); e > worst {
			worst, at = e, i
		}
	}
	return worst, at
}

// gcClose reports a mismatch beyond tol, and also a tolerance that would
// let a 1% error (got scaled by 1.01) through.
func gcClose(t gcT, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", name, len(got), len(want))
	}
	if e, i := gcErr(got, want); e > tol {
		t.Errorf("%s: error %.3g > tol %g at [%d]: got %.9g want %.9g", name, e, tol, i, got[i], want[i])
		return
	} else if testing.Verbose() {
		t.Logf("%s: max rel error %.3g (tol %g)", name, e, tol)
	}
	scaled := slices.Clone(got)
	zero := true
	for j := range scaled {
		scaled[j] *= 1.01
		zero = zero && want[j] == 0
	}
	if e, _ := gcErr(scaled, want); !zero && e <= tol {
		t.Errorf("%s: tolerance %g would not catch a 1%% error (%.3g)", name, tol, e)
	}
}

// gcT is the part of testing.T the checker uses, so that a test can run
// the checker on a deliberately broken op and see it fail.
type gcT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Logf(format string, args ...any)
}

// gcRecorder is a gcT that records failures; Fatal stops the check by
// panicking with errGCStop, which runRecorded recovers.
type gcRecorder struct{ failed bool }

type gcStop struct{}

func (r *gcRecorder) Helper()               {}
func (r *gcRecorder) Logf(string, ...any)   {}
func (r *gcRecorder) Errorf(string, ...any) { r.failed = true }
func (r *gcRecorder) Fatalf(string, ...any) { r.failed = true; panic(gcStop{}) }
func (r *gcRecorder) Fatal(...any)          { r.failed = true; panic(gcStop{}) }

// runRecorded runs f with a recorder and reports whether it failed.
func runRecorded(f func(t gcT)) (failed bool) {
	r := &gcRecorder{}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(gcStop); !ok {
				panic(v)
			}
		}
		failed = r.failed
	}()
	f(r)
	return r.failed
}

// gcIn is one input of an op under test.
type gcIn struct {
	name  string
	shape []int
	data  []float32
	grad  bool // a parameter (has a gradient) or a constant
}

// gradCase is one op under test: build runs it on the tape, ref is the
// float64 reference of its output given the inputs' values in order.
type gradCase struct {
	name  string
	in    []gcIn
	build func(tp *Tape, v []*Var) *Var
	ref   func(x [][]float64) []float64
	after func(t gcT) // optional extra checks once the case has run
}

func in(name string, data []float32, grad bool, shape ...int) gcIn {
	return gcIn{name: name, shape: shape, data: data, grad: grad}
}

// seededBackward runs the tape's backward with y's gradient seeded to g.
// A scalar y goes through the public path: L = g·y, Backward(L).
func seededBackward(t gcT, tp *Tape, y *Var, g []float32) {
	t.Helper()
	if y.Len() == 1 {
		l := tp.WeightedSum([]*Var{y}, g)
		if err := tp.Backward(l); err != nil {
			t.Fatal(err)
		}
		return
	}
	copy(accGrad(y), g)
	tp.runBackward()
	tp.Reset()
}

// runGradCase runs c once on p, with every input gradient pre-filled, and
// returns the output and the input gradients (nil for constants).
func runGradCase(t gcT, p *cpu.Pool, c gradCase, g []float32, prefill [][]float32) (y []float32, grads [][]float32) {
	t.Helper()
	vars := make([]*Var, len(c.in))
	for i, x := range c.in {
		vars[i] = Const(slices.Clone(x.data), x.shape...)
		if x.grad {
			vars[i].Grad = slices.Clone(prefill[i])
		}
	}
	tp := NewTape(p, true)
	built := vars
	if gcLazyInputs {
		// Feed the op tape outputs (x + 0), whose gradients start lazy, so
		// that the first-write paths of its backward run.
		built = make([]*Var, len(vars))
		for i, v := range vars {
			built[i] = v
			if v.Grad != nil {
				built[i] = tp.Add(v, Const(make([]float32, v.Len()), v.Shape...))
			}
		}
	}
	out := c.build(tp, built)
	if len(g) != out.Len() {
		t.Fatalf("upstream gradient has %d values, output %d", len(g), out.Len())
	}
	if out.Grad == nil {
		t.Fatal("output has no gradient although an input has one")
	}
	y = slices.Clone(out.Data)
	seededBackward(t, tp, out, g)
	for i, v := range vars {
		if c.in[i].grad {
			grads = append(grads, v.Grad)
		} else {
			if v.Grad != nil {
				t.Errorf("constant %s got a gradient buffer", c.in[i].name)
			}
			grads = append(grads, nil)
		}
	}
	return y, grads
}

// checkGradCase is the gradient checker.
func checkGradCase(t gcT, p *cpu.Pool, c gradCase) {
	r := gcRand(99)
	x64 := make([][]float64, len(c.in))
	prefill := make([][]float32, len(c.in))
	for i, x := range c.in {
		x64[i] = gc64(x.data)
		prefill[i] = gcVec(r, len(x.data), 0.1)
	}
	want := c.ref(x64)
	g := gcVec(r, len(want), 1)
	g64 := gc64(g)
	y, grads := runGradCase(t, p, c, g, prefill)
	gcClose(t, "forward", gc64(y), want, gcFwdTol)
	loss := func() float64 {
		var s float64
		for i, v := range c.ref(x64) {
			s += g64[i] * v
		}
		return s
	}
	for i, x := range c.in {
		if !x.grad {
			continue
		}
		got := make([]float64, len(grads[i]))
		for j := range got {
			got[j] = float64(grads[i][j]) - float64(prefill[i][j])
		}
		gcClose(t, "d"+x.name, got, gcNumGrad(x64[i], loss), gcBwdTol)
	}
	y2, grads2 := runGradCase(t, p, c, g, prefill)
	if !bitsEqual(y, y2) {
		t.Errorf("forward not bit-identical across runs")
	}
	for i := range grads {
		if !bitsEqual(grads[i], grads2[i]) {
			t.Errorf("d%s not bit-identical across runs", c.in[i].name)
		}
	}
	if c.after != nil {
		c.after(t)
	}
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// ---- float64 references ----

func refRows(x []float64, d int, f func(row, out []float64)) []float64 {
	y := make([]float64, len(x))
	for i := 0; i < len(x)/d; i++ {
		f(x[i*d:i*d+d], y[i*d:i*d+d])
	}
	return y
}

func refRMS(x, w []float64, eps float64) []float64 {
	d := len(w)
	return refRows(x, d, func(row, out []float64) {
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(d)+eps)
		for j, v := range row {
			out[j] = v * r * w[j]
		}
	})
}

func refLN(x, w, b []float64, eps float64) []float64 {
	d := len(w)
	return refRows(x, d, func(row, out []float64) {
		var m, v float64
		for _, x := range row {
			m += x / float64(d)
		}
		for _, x := range row {
			v += (x - m) * (x - m) / float64(d)
		}
		for j, x := range row {
			out[j] = (x-m)/math.Sqrt(v+eps)*w[j] + b[j]
		}
	})
}

func refSoftmaxRows(x []float64, d int) []float64 {
	return refRows(x, d, func(row, out []float64) {
		var s float64
		for _, v := range row {
			s += math.Exp(v)
		}
		for j, v := range row {
			out[j] = math.Exp(v) / s
		}
	})
}

func refLSE(row []float64) float64 {
	m := slices.Max(row)
	var s float64
	for _, v := range row {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

func refMap(x []float64, f func(float64) float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = f(v)
	}
	return y
}

// refAttn is naive masked softmax attention over a full score matrix; q is
// [B,Tq,H,D], k and v [B,Tk,KV,D]; head h reads KV head h/(H/KV).
func refAttn(a cpu.Attn, q, k, v []float64) []float64 {
	out := make([]float64, len(q))
	for b := 0; b < a.B; b++ {
		for h := 0; h < a.H; h++ {
			kh := h / (a.H / a.KV)
			for t := 0; t < a.Tq; t++ {
				pos := a.Offset + t
				qo := ((b*a.Tq+t)*a.H + h) * a.D
				w := make([]float64, a.Tk)
				var z float64
				for s := 0; s < a.Tk; s++ {
					if s > pos || (a.Window > 0 && pos-s >= a.Window) {
						continue
					}
					var x float64
					for d := 0; d < a.D; d++ {
						x += q[qo+d] * k[b*a.KStride+(s*a.KV+kh)*a.D+d]
					}
					w[s] = math.Exp(x * float64(a.Scale))
					z += w[s]
				}
				for s := range w {
					for d := 0; d < a.D; d++ {
						out[qo+d] += w[s] / z * v[b*a.KStride+(s*a.KV+kh)*a.D+d]
					}
				}
			}
		}
	}
	return out
}

func gcRoPETables(maxPos, rot int) (cos, sin []float32) {
	half := rot / 2
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			ang := float64(p) / math.Pow(10000, float64(2*i)/float64(rot))
			cos, sin = append(cos, float32(math.Cos(ang))), append(sin, float32(math.Sin(ang)))
		}
	}
	return cos, sin
}

// refRotate is Hugging Face's x*cos + rotate_half(x)*sin on the first rot
// dimensions of every head (rotate_half(x) = cat(-x2, x1)).
func refRotate(x []float64, r *cpu.RoPE, pos []int32) []float64 {
	y := slices.Clone(x)
	half := r.Rot / 2
	for n, p := range pos {
		for h := 0; h < r.Heads; h++ {
			o := (n*r.Heads + h) * r.D
			for i := 0; i < r.Rot; i++ {
				c, s := float64(r.Cos[int(p)*half+i%half]), float64(r.Sin[int(p)*half+i%half])
				var rh float64
				if i < half {
					rh = -x[o+i+half]
				} else {
					rh = x[o+i-half]
				}
				y[o+i] = x[o+i]*c + rh*s
			}
		}
	}
	return y
}

// refTopK returns the indices of the k largest values of row, ties to the
// lower index.
func refTopK(row []float64, k int) []int {
	idx := make([]int, len(row))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	return idx[:k]
}

// topKAll returns the top-k selection of every row of x [n, e], flattened.
func topKAll(x []float64, e, k int) []int32 {
	var sel []int32
	for i := 0; i < len(x)/e; i++ {
		for _, j := range refTopK(x[i*e:i*e+e], k) {
			sel = append(sel, int32(j))
		}
	}
	return sel
}

// routerProbs returns softmax probabilities [n, e] whose k-th and (k+1)-th
// largest entries of every row differ by at least 1e-3, so that finite
// differences (1e-6) cannot change a top-k selection.
func routerProbs(r *rand.Rand, n, e, k int) []float32 {
	for {
		p := make([]float32, 0, n*e)
		ok := true
		for i := 0; i < n; i++ {
			row := gc64(gcVec(r, e, 2))
			row = refSoftmaxRows(row, e)
			s := slices.Clone(row)
			sort.Sort(sort.Reverse(sort.Float64Slice(s)))
			for j := 0; j+1 < e; j++ {
				ok = ok && s[j]-s[j+1] > 1e-3
			}
			for _, v := range row {
				p = append(p, float32(v))
			}
		}
		if ok {
			return p
		}
	}
}

// ---- the table ----

func gradCases() []gradCase {
	r := gcRand(1)
	var cases []gradCase

	// Embedding, with repeated and unused ids.
	ids := []int32{3, 0, 3, 7, 10, 3, 1, 9, 0}
	cases = append(cases, gradCase{
		name: "Embedding", in: []gcIn{in("w", gcVec(r, 11*7, 1), true, 11, 7)},
		build: func(tp *Tape, v []*Var) *Var { return tp.Embedding(v[0], ids) },
		ref: func(x [][]float64) []float64 {
			var y []float64
			for _, id := range ids {
				y = append(y, x[0][int(id)*7:int(id)*7+7]...)
			}
			return y
		},
	})

	for _, bGrad := range []bool{true, false} {
		cases = append(cases, gradCase{
			name:  fmt.Sprintf("Add/bgrad=%v", bGrad),
			in:    []gcIn{in("a", gcVec(r, 5*9, 1), true, 5, 9), in("b", gcVec(r, 5*9, 1), bGrad, 5, 9)},
			build: func(tp *Tape, v []*Var) *Var { return tp.Add(v[0], v[1]) },
			ref: func(x [][]float64) []float64 {
				y := slices.Clone(x[0])
				for i := range y {
					y[i] += x[1][i]
				}
				return y
			},
		})
	}

	const nIn, nOut = 13, 9
	linRef := func(x [][]float64) []float64 {
		n := len(x[0]) / nIn
		y := make([]float64, n*nOut)
		for i := 0; i < n; i++ {
			for o := 0; o < nOut; o++ {
				var s float64
				for j := 0; j < nIn; j++ {
					s += x[0][i*nIn+j] * x[1][o*nIn+j]
				}
				if len(x) > 2 {
					s += x[2][o]
				}
				y[i*nOut+o] = s
			}
		}
		return y
	}
	for _, tc := range []struct {
		name         string
		bias, xg, wg bool
	}{{"bias", true, true, true}, {"nobias", false, true, true}, {"const-x", true, false, true}, {"const-w", false, true, false}, {"matvec", true, true, true}} {
		ins := []gcIn{in("x", gcVec(r, 2*3*nIn, 1), tc.xg, 2, 3, nIn), in("w", gcVec(r, nOut*nIn, 0.5), tc.wg, nOut, nIn)}
		if tc.name == "matvec" { // few rows: the matrix-vector path
			ins[0] = in("x", gcVec(r, 3*nIn, 1), tc.xg, 3, nIn)
		}
		if tc.bias {
			ins = append(ins, in("b", gcVec(r, nOut, 1), true, nOut))
		}
		cases = append(cases, gradCase{
			name: "Linear/" + tc.name, in: ins, ref: linRef,
			build: func(tp *Tape, v []*Var) *Var {
				var b *Var
				if len(v) > 2 {
					b = v[2]
				}
				return tp.Linear(v[0], v[1], b)
			},
		})
	}

	for _, tc := range []struct {
		name   string
		xg, wg bool
	}{{"all", true, true}, {"const-x", false, true}, {"const-w", true, false}} {
		cases = append(cases, gradCase{
			name:  "RMSNorm/" + tc.name,
			in:    []gcIn{in("x", gcVec(r, 37*11, 2), tc.xg, 37, 11), in("w", gcVec(r, 11, 1.5), tc.wg, 11)},
			build: func(tp *Tape, v []*Var) *Var { return tp.RMSNorm(v[0], v[1], 1e-5) },
			ref:   func(x [][]float64) []float64 { return refRMS(x[0], x[1], 1e-5) },
		})
	}

	for _, tc := range []struct {
		name     string
		bias, bg bool
		xg, wg   bool
	}{{"bias", true, true, true, true}, {"nobias", false, false, true, true}, {"const-bias", true, false, true, true}, {"const-x", true, true, false, true}} {
		ins := []gcIn{in("x", gcVec(r, 37*9, 2), tc.xg, 37, 9), in("w", gcVec(r, 9, 1.5), tc.wg, 9)}
		if tc.bias {
			ins = append(ins, in("b", gcVec(r, 9, 1), tc.bg, 9))
		}
		cases = append(cases, gradCase{
			name: "LayerNorm/" + tc.name, in: ins,
			build: func(tp *Tape, v []*Var) *Var {
				var b *Var
				if len(v) > 2 {
					b = v[2]
				}
				return tp.LayerNorm(v[0], v[1], b, 1e-5)
			},
			ref: func(x [][]float64) []float64 {
				b := make([]float64, 9)
				if len(x) > 2 {
					b = x[2]
				}
				return refLN(x[0], x[1], b, 1e-5)
			},
		})
	}

	for _, rot := range []int{8, 4} {
		cos, sin := gcRoPETables(40, rot)
		rp := &cpu.RoPE{Heads: 3, D: 8, Rot: rot, Cos: cos, Sin: sin}
		pos := make([]int32, 19)
		for i := range pos {
			pos[i] = int32(r.IntN(40))
		}
		cases = append(cases, gradCase{
			name:  fmt.Sprintf("RoPE/rot=%d", rot),
			in:    []gcIn{in("x", gcVec(r, 19*24, 2), true, 19, 24)},
			build: func(tp *Tape, v []*Var) *Var { return tp.RoPE(v[0], rp, pos) },
			ref:   func(x [][]float64) []float64 { return refRotate(x[0], rp, pos) },
		})
	}

	for _, tc := range []struct {
		name string
		a    cpu.Attn
		kg   bool
	}{
		{"gqa-kv2", cpu.Attn{B: 2, Tq: 7, Tk: 7, H: 4, KV: 2, D: 5}, true},
		{"mqa-kv1", cpu.Attn{B: 2, Tq: 6, Tk: 6, H: 4, KV: 1, D: 3}, true},
		{"mha-window", cpu.Attn{B: 1, Tq: 9, Tk: 9, H: 3, KV: 3, D: 4, Window: 3}, true},
		{"const-k", cpu.Attn{B: 2, Tq: 5, Tk: 5, H: 2, KV: 1, D: 5}, false},
	} {
		a := tc.a
		a.KStride = a.Tk * a.KV * a.D
		a.Scale = float32(1 / math.Sqrt(float64(a.D)))
		nq, nk := a.B*a.Tq*a.H*a.D, a.B*a.Tk*a.KV*a.D
		cases = append(cases, gradCase{
			name: "Attention/" + tc.name,
			in: []gcIn{
				in("q", gcVec(r, nq, 2), true, a.B*a.Tq, a.H*a.D),
				in("k", gcVec(r, nk, 2), tc.kg, a.B*a.Tk, a.KV*a.D),
				in("v", gcVec(r, nk, 1), true, a.B*a.Tk, a.KV*a.D),
			},
			build: func(tp *Tape, v []*Var) *Var { return tp.Attention(v[0], v[1], v[2], a) },
			ref:   func(x [][]float64) []float64 { return refAttn(a, x[0], x[1], x[2]) },
		})
	}

	silu := func(x float64) float64 { return x / (1 + math.Exp(-x)) }
	cases = append(cases, gradCase{
		name:  "SwiGLU",
		in:    []gcIn{in("g", gcVec(r, 7*9, 6), true, 7, 9), in("u", gcVec(r, 7*9, 2), true, 7, 9)},
		build: func(tp *Tape, v []*Var) *Var { return tp.SwiGLU(v[0], v[1]) },
		ref: func(x [][]float64) []float64 {
			y := refMap(x[0], silu)
			for i := range y {
				y[i] *= x[1][i]
			}
			return y
		},
	})
	for _, approx := range []bool{false, true} {
		f := func(x float64) float64 { return 0.5 * x * math.Erfc(-x/math.Sqrt2) }
		if approx {
			f = func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) }
		}
		cases = append(cases, gradCase{
			name:  fmt.Sprintf("GELU/approx=%v", approx),
			in:    []gcIn{in("x", gcVec(r, 7*9, 5), true, 7, 9)},
			build: func(tp *Tape, v []*Var) *Var { return tp.GELU(v[0], approx) },
			ref:   func(x [][]float64) []float64 { return refMap(x[0], f) },
		})
	}
	cases = append(cases, gradCase{
		name:  "Softmax",
		in:    []gcIn{in("x", gcVec(r, 7*9, 4), true, 7, 9)},
		build: func(tp *Tape, v []*Var) *Var { return tp.Softmax(v[0]) },
		ref:   func(x [][]float64) []float64 { return refSoftmaxRows(x[0], 9) },
	}, gradCase{
		name:  "Sigmoid",
		in:    []gcIn{in("x", gcVec(r, 7*9, 6), true, 7, 9)},
		build: func(tp *Tape, v []*Var) *Var { return tp.Sigmoid(v[0]) },
		ref: func(x [][]float64) []float64 {
			return refMap(x[0], func(v float64) float64 { return 1 / (1 + math.Exp(-v)) })
		},
	}, gradCase{
		// Reshape is a view: the softmax over rows of 12 must route its
		// gradient back into x [4, 6].
		name:  "Reshape",
		in:    []gcIn{in("x", gcVec(r, 24, 3), true, 4, 6)},
		build: func(tp *Tape, v []*Var) *Var { return tp.Softmax(tp.Reshape(v[0], 2, 12)) },
		ref:   func(x [][]float64) []float64 { return refSoftmaxRows(x[0], 12) },
	})

	for _, tc := range []struct {
		name    string
		targets []int32
	}{
		{"some-ignored", []int32{3, -1, 0, 10, -100, 7, 2}},
		{"all-ignored", []int32{-1, -1, -1, -1, -1, -1, -1}},
	} {
		targets := tc.targets
		cases = append(cases, gradCase{
			name:  "CrossEntropy/" + tc.name,
			in:    []gcIn{in("logits", gcVec(r, 7*11, 4), true, 7, 11)},
			build: func(tp *Tape, v []*Var) *Var { return tp.CrossEntropy(v[0], targets) },
			ref: func(x [][]float64) []float64 {
				var s float64
				n := 0
				for i, t := range targets {
					if t >= 0 {
						row := x[0][i*11 : i*11+11]
						s += refLSE(row) - row[t]
						n++
					}
				}
				if n == 0 {
					return []float64{0}
				}
				return []float64{s / float64(n)}
			},
		})
	}

	// LinearCrossEntropy in chunks of 4 vocabulary columns (see
	// TestGradCheck): 11 columns make two full chunks and a partial one.
	for _, tc := range []struct {
		name    string
		xg, wg  bool
		targets []int32
	}{
		{"all", true, true, []int32{3, -1, 10, 0, 4, 7, 8}},
		{"const-x", false, true, []int32{3, 9, 10, 0, -5, 7, 2}},
		{"const-w", true, false, []int32{1, 5, 6, 0, 4, 7, 8}},
		{"all-ignored", true, true, []int32{-1, -1, -1, -1, -1, -1, -1}},
	} {
		targets := tc.targets
		cases = append(cases, gradCase{
			name:  "LinearCrossEntropy/" + tc.name,
			in:    []gcIn{in("x", gcVec(r, 7*5, 1), tc.xg, 7, 5), in("w", gcVec(r, 11*5, 1), tc.wg, 11, 5)},
			build: func(tp *Tape, v []*Var) *Var { return tp.LinearCrossEntropy(v[0], v[1], targets) },
			ref: func(x [][]float64) []float64 {
				var s float64
				n := 0
				for i, t := range targets {
					if t < 0 {
						continue
					}
					row := make([]float64, 11)
					for o := range row {
						for j := 0; j < 5; j++ {
							row[o] += x[0][i*5+j] * x[1][o*5+j]
						}
					}
					s += refLSE(row) - row[t]
					n++
				}
				if n == 0 {
					return []float64{0}
				}
				return []float64{s / float64(n)}
			},
		})
	}

	// AddRMSNorm and AddLayerNorm: both outputs are used (s + h), so the
	// sum's own gradient and the norm's meet.
	for _, tc := range []struct {
		name       string
		ln, bias   bool
		ag, wg, xg bool
	}{
		{"rms", false, false, true, true, true},
		{"rms/const-w", false, false, true, false, true},
		{"rms/only-w", false, false, false, true, false},
		{"ln", true, true, true, true, true},
		{"ln/nobias", true, false, true, true, true},
		{"ln/const-a", true, true, false, true, true},
	} {
		const n, d = 37, 11
		ins := []gcIn{in("x", gcVec(r, n*d, 2), tc.xg, n, d), in("a", gcVec(r, n*d, 1), tc.ag, n, d), in("w", gcVec(r, d, 1.5), tc.wg, d)}
		if tc.bias {
			ins = append(ins, in("b", gcVec(r, d, 1), true, d))
		}
		ln, bias := tc.ln, tc.bias
		cases = append(cases, gradCase{
			name: "AddNorm/" + tc.name, in: ins,
			build: func(tp *Tape, v []*Var) *Var {
				var s, h *Var
				if ln {
					var b *Var
					if bias {
						b = v[3]
					}
					s, h = tp.AddLayerNorm(v[0], v[1], v[2], b, 1e-5)
				} else {
					s, h = tp.AddRMSNorm(v[0], v[1], v[2], 1e-5)
				}
				return tp.Add(s, h)
			},
			ref: func(x [][]float64) []float64 {
				sum := slices.Clone(x[0])
				for i := range sum {
					sum[i] += x[1][i]
				}
				var h []float64
				if ln {
					b := make([]float64, d)
					if bias {
						b = x[3]
					}
					h = refLN(sum, x[2], b, 1e-5)
				} else {
					h = refRMS(sum, x[2], 1e-5)
				}
				for i := range h {
					h[i] += sum[i]
				}
				return h
			},
		})
	}

	ws := []float32{0.7, -1.3, 2.1}
	cases = append(cases, gradCase{
		name:  "WeightedSum",
		in:    []gcIn{in("a", gcVec(r, 1, 1), true, 1), in("b", gcVec(r, 1, 1), false, 1), in("c", gcVec(r, 1, 1), true, 1)},
		build: func(tp *Tape, v []*Var) *Var { return tp.WeightedSum(v, ws) },
		ref: func(x [][]float64) []float64 {
			return []float64{float64(ws[0])*x[0][0] + float64(ws[1])*x[1][0] + float64(ws[2])*x[2][0]}
		},
	})

	for _, k := range []int{2, 3} {
		for _, renorm := range []bool{false, true} {
			const n, e = 7, 6
			probs := routerProbs(r, n, e, k)
			base := topKAll(gc64(probs), e, k)
			var changed, wrongRoute bool
			cases = append(cases, gradCase{
				name: fmt.Sprintf("TopK/k=%d,renorm=%v", k, renorm),
				in:   []gcIn{in("probs", probs, true, n, e)},
				build: func(tp *Tape, v []*Var) *Var {
					rt := tp.TopK(v[0], k, renorm)
					wrongRoute = wrongRoute || !slices.Equal(rt.Experts, base)
					return rt.Gates
				},
				ref: func(x [][]float64) []float64 {
					sel := topKAll(x[0], e, k)
					changed = changed || !slices.Equal(sel, base)
					var y []float64
					for i := 0; i < n; i++ {
						row := x[0][i*e : i*e+e]
						var s float64
						for _, j := range sel[i*k : i*k+k] {
							s += row[j]
						}
						for _, j := range sel[i*k : i*k+k] {
							if renorm {
								y = append(y, row[j]/s)
							} else {
								y = append(y, row[j])
							}
						}
					}
					return y
				},
				after: func(t gcT) {
					if changed {
						t.Errorf("a finite-difference step changed the top-k selection")
					}
					if wrongRoute {
						t.Errorf("TopK chose experts other than the reference's %v", base)
					}
				},
			})
		}
	}

	rows := []int{3, 0, 3, 4, 1, 3}
	cases = append(cases, gradCase{
		name:  "GatherRows",
		in:    []gcIn{in("x", gcVec(r, 5*7, 1), true, 5, 7)},
		build: func(tp *Tape, v []*Var) *Var { return tp.GatherRows(v[0], rows) },
		ref: func(x [][]float64) []float64 {
			var y []float64
			for _, i := range rows {
				y = append(y, x[0][i*7:i*7+7]...)
			}
			return y
		},
	})

	for _, tc := range []struct {
		name string
		idx  []int
		ns   int
		sg   bool
	}{{"idx-nil", nil, 6, true}, {"idx", []int{2, 0, 2, 4, 1, 2}, 5, true}, {"const-s", []int{1, 1, 0, 3, 2, 1}, 4, false}} {
		idx := tc.idx
		cases = append(cases, gradCase{
			name:  "ScaleRows/" + tc.name,
			in:    []gcIn{in("h", gcVec(r, 6*7, 1), true, 6, 7), in("s", gcVec(r, tc.ns, 1), tc.sg, tc.ns)},
			build: func(tp *Tape, v []*Var) *Var { return tp.ScaleRows(v[0], v[1], idx) },
			ref: func(x [][]float64) []float64 {
				y := slices.Clone(x[0])
				for i := range y {
					j := i / 7
					if idx != nil {
						j = idx[i/7]
					}
					y[i] *= x[1][j]
				}
				return y
			},
		})
	}

	// Combine: 4 experts, expert 2 got no tokens (nil part), expert 3's
	// output is a constant; token 1 goes to two experts.
	crow := [][]int{{0, 1, 4}, {1, 3}, nil, {2}}
	cases = append(cases, gradCase{
		name: "Combine",
		in: []gcIn{
			in("p0", gcVec(r, 3*5, 1), true, 3, 5),
			in("p1", gcVec(r, 2*5, 1), true, 2, 5),
			in("p3", gcVec(r, 1*5, 1), false, 1, 5),
		},
		build: func(tp *Tape, v []*Var) *Var { return tp.Combine(5, 5, []*Var{v[0], v[1], nil, v[2]}, crow) },
		ref: func(x [][]float64) []float64 {
			y := make([]float64, 25)
			for e, p := range [][]float64{x[0], x[1], nil, x[2]} {
				for i, row := range crow[e] {
					for j := 0; j < 5; j++ {
						y[row*5+j] += p[i*5+j]
					}
				}
			}
			return y
		},
	})

	{
		const n, e, k = 9, 5, 2
		probs := routerProbs(r, n, e, k)
		base := topKAll(gc64(probs), e, k)
		changed := false
		cases = append(cases, gradCase{
			name: "LoadBalanceLoss",
			after: func(t gcT) {
				if changed {
					t.Errorf("a finite-difference step changed the top-k selection")
				}
			},
			in: []gcIn{in("probs", probs, true, n, e)},
			build: func(tp *Tape, v []*Var) *Var {
				route := NewTape(tp.P, false).TopK(v[0], k, true)
				y, _ := tp.LoadBalanceLoss(v[0], route)
				return y
			},
			ref: func(x [][]float64) []float64 {
				changed = changed || !slices.Equal(topKAll(x[0], e, k), base)
				f := make([]float64, e) // fractions of slots: piecewise constant
				for i := 0; i < n; i++ {
					for _, j := range refTopK(x[0][i*e:i*e+e], k) {
						f[j] += 1.0 / (n * k)
					}
				}
				var s float64
				for i := 0; i < n; i++ {
					for j := 0; j < e; j++ {
						s += f[j] * x[0][i*e+j] / n
					}
				}
				return []float64{e * s}
			},
		})
	}

	cases = append(cases, gradCase{
		name:  "ZLoss",
		in:    []gcIn{in("logits", gcVec(r, 7*6, 3), true, 7, 6)},
		build: func(tp *Tape, v []*Var) *Var { return tp.ZLoss(v[0]) },
		ref: func(x [][]float64) []float64 {
			var s float64
			for i := 0; i < 7; i++ {
				l := refLSE(x[0][i*6 : i*6+6])
				s += l * l / 7
			}
			return []float64{s}
		},
	})
	return cases
}

// gcLazyInputs makes runGradCase feed ops tape outputs instead of
// parameters (see TestGradCheck).
var gcLazyInputs bool

func TestGradCheck(t *testing.T) { checkGradCases(t, gradCases()) }

// checkGradCases runs the checker on each case with parameters and with
// lazy tape outputs as inputs, on every pool of gcPools, with the arena
// poisoned and the classifier chunked 4 vocabulary columns at a time.
func checkGradCases(t *testing.T, cases []gradCase) {
	defer func(f func(n, v int) int) { ceChunkCols = f }(ceChunkCols)
	ceChunkCols = func(n, v int) int { return min(4, v) }
	defer func() { gcLazyInputs, arenaPoison = false, false }()
	arenaPoison = true
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, lazy := range []bool{false, true} {
				gcLazyInputs = lazy
				for _, p := range gcPools() {
					t.Run(fmt.Sprintf("lazy=%v/threads=%d", lazy, p.Threads()), func(t *testing.T) { checkGradCase(t, p, c) })
				}
			}
		})
	}
}

// TestGradCheckCatchesWrongBackward runs the checker on ops whose backward
// is deliberately wrong by 1% and expects it to fail.
func TestGradCheckCatchesWrongBackward(t *testing.T) {
	for _, c := range gradCases() {
		if c.name != "Linear/bias" && c.name != "Attention/gqa-kv2" && c.name != "ZLoss" && c.name != "LinearCrossEntropy/all" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			wrong := c
			wrong.build = func(tp *Tape, v []*Var) *Var {
				y := c.build(tp, v)
				// Runs first in reverse order: scales the upstream gradient.
				tp.recordFunc(y, func() {
					for i := range y.Grad {
						y.Grad[i] *= 1.01
					}
				})
				return y
			}
			if !runRecorded(func(t gcT) { checkGradCase(t, gcPools()[0], wrong) }) {
				t.Error("a backward scaled by 1.01 passed the gradient check")
			}
		})
	}
}

// TestTopKSelection checks the route bookkeeping: ties go to the lower
// expert index, and Rows/Slots list every (token, slot) in token order.
func TestTopKSelection(t *testing.T) {
	probs := Const([]float32{
		0.1, 0.3, 0.3, 0.2, 0.1, // tie between experts 1 and 2
		0.5, 0.1, 0.1, 0.1, 0.2,
		0.2, 0.2, 0.2, 0.2, 0.2, // all tied
	}, 3, 5)
	rt := NewTape(nil, false).TopK(probs, 2, false)
	if want := []int32{1, 2, 0, 4, 0, 1}; !slices.Equal(rt.Experts, want) {
		t.Errorf("experts %v, want %v", rt.Experts, want)
	}
	for e := 0; e < 5; e++ {
		var rows, slots []int
		for i, ex := range rt.Experts {
			if int(ex) == e {
				rows, slots = append(rows, i/2), append(slots, i)
			}
		}
		if !slices.Equal(rt.Rows[e], rows) || !slices.Equal(rt.Slots[e], slots) {
			t.Errorf("expert %d: rows %v slots %v, want %v %v", e, rt.Rows[e], rt.Slots[e], rows, slots)
		}
	}
	if rt.Gates.Grad != nil {
		t.Error("gates got a gradient on a tape without gradients")
	}
}

// TestComposedBackward checks a tiny language model with tied embeddings
// through Tape.Backward: ids → Embedding(w) → RMSNorm(g) → Linear(w) →
// CrossEntropy, so w's gradient accumulates from two ops.
func TestComposedBackward(t *testing.T) {
	const v, d = 11, 6
	r := gcRand(5)
	w0, g0 := gcVec(r, v*d, 1), gcVec(r, d, 1.5)
	ids := []int32{1, 4, 4, 9, 0, 2, 7}
	targets := []int32{4, 4, 9, -1, 2, 7, 3}
	ref := func(w, g []float64) float64 {
		var x []float64
		for _, id := range ids {
			x = append(x, w[int(id)*d:int(id)*d+d]...)
		}
		h := refRMS(x, g, 1e-6)
		var s float64
		n := 0
		for i, tg := range targets {
			logits := make([]float64, v)
			for o := range logits {
				for j := 0; j < d; j++ {
					logits[o] += h[i*d+j] * w[o*d+j]
				}
			}
			if tg >= 0 {
				s += refLSE(logits) - logits[tg]
				n++
			}
		}
		return s / float64(n)
	}
	for _, p := range gcPools() {
		t.Run(fmt.Sprintf("threads=%d", p.Threads()), func(t *testing.T) {
			w := NewParam(slices.Clone(w0), make([]float32, v*d), v, d)
			g := NewParam(slices.Clone(g0), make([]float32, d), d)
			tp := NewTape(p, true)
			loss := tp.CrossEntropy(tp.Linear(tp.RMSNorm(tp.Embedding(w, ids), g, 1e-6), w, nil), targets)
			w64, g64 := gc64(w0), gc64(g0)
			gcClose(t, "loss", []float64{float64(loss.Data[0])}, []float64{ref(w64, g64)}, gcFwdTol)
			if err := tp.Backward(loss); err != nil {
				t.Fatal(err)
			}
			f := func() float64 { return ref(w64, g64) }
			gcClose(t, "dw", gc64(w.Grad), gcNumGrad(w64, f), gcBwdTol)
			gcClose(t, "dg", gc64(g.Grad), gcNumGrad(g64, f), gcBwdTol)
		})
	}
}

func TestTapeBackwardErrors(t *testing.T) {
	tp := NewTape(nil, true)
	x := NewParam([]float32{1, 2}, make([]float32, 2), 2)
	if err := tp.Backward(tp.Sigmoid(x)); err == nil {
		t.Error("Backward of a non-scalar: no error")
	}
	if err := tp.Backward(tp.ZLoss(Const([]float32{1, 2}, 1, 2))); err == nil {
		t.Error("Backward of a loss without parameters: no error")
	}
}

// TestTapeNoGrad checks that a tape without gradients records nothing and
// allocates no gradient buffers (inference).
func TestTapeNoGrad(t *testing.T) {
	tp := NewTape(nil, false)
	x := NewParam([]float32{1, 2, 3, 4}, make([]float32, 4), 2, 2)
	w := NewParam([]float32{1, 1}, make([]float32, 2), 2)
	y := tp.Softmax(tp.RMSNorm(tp.Linear(x, x, nil), w, 1e-6))
	if y.Grad != nil || len(tp.ops) != 0 {
		t.Errorf("grad %v, %d recorded ops; want none", y.Grad, len(tp.ops))
	}
}

// TestLinearSwiGLU checks the fused gate/up projection (weights adjacent in
// one buffer, as in a model) against the three gradient-checked ops it
// replaces, for many rows (GEMM) and few (matrix-vector), and that weights
// that are not adjacent take the unfused path.
func TestLinearSwiGLU(t *testing.T) {
	defer func() { arenaPoison = false }()
	arenaPoison = true
	const f, d = 7, 5
	for _, n := range []int{9, 3} {
		for _, p := range gcPools() {
			r := gcRand(21)
			x0, w0 := gcVec(r, n*d, 1), gcVec(r, 2*f*d, 1)
			g := gcVec(r, f*f, 1)
			run := func(fused bool) (y []float32, dx, dw []float32) {
				buf, grad := slices.Clone(w0), make([]float32, 2*f*d)
				wg := NewParam(buf[:f*d], grad[:f*d], f, d)
				wu := NewParam(buf[f*d:], grad[f*d:], f, d)
				if !fused { // copies: not adjacent
					wg = NewParam(slices.Clone(buf[:f*d]), grad[:f*d], f, d)
				}
				x := NewParam(slices.Clone(x0), make([]float32, n*d), n, d)
				tp := NewTape(p, true)
				tp.Reset()
				out := tp.LinearSwiGLU(tp.Add(x, Const(make([]float32, n*d), n, d)), wg, wu) // lazy input
				if fused != (len(tp.ops) == 2) {
					t.Fatalf("n=%d fused=%v: %d ops recorded", n, fused, len(tp.ops))
				}
				targets := make([]int32, n)
				for i := range targets {
					targets[i] = int32(i % f)
				}
				l := tp.WeightedSum([]*Var{tp.LinearCrossEntropy(out, Const(g[:f*f], f, f), targets)}, []float32{1})
				if err := tp.Backward(l); err != nil {
					t.Fatal(err)
				}
				return slices.Clone(out.Data), x.Grad, grad
			}
			y1, dx1, dw1 := run(true)
			y2, dx2, dw2 := run(false)
			gcClose(t, "y", gc64(y1), gc64(y2), 1e-6)
			gcClose(t, "dx", gc64(dx1), gc64(dx2), 1e-5)
			gcClose(t, "dw", gc64(dw1), gc64(dw2), 1e-5)
		}
	}
}
