package nn

import (
	"math"
	"strings"
	"testing"
)

// refDistill is the float64 reference of LinearDistill.
func refDistill(x, w []float64, d, v int, t *DistillTargets) float64 {
	if len(t.Rows) == 0 {
		return 0
	}
	var total float64
	for i, r := range t.Rows {
		z := make([]float64, v)
		for o := range z {
			for j := 0; j < d; j++ {
				z[o] += x[int(r)*d+j] * w[o*d+j]
			}
		}
		lse := refLSE(z)
		var li, sum float64
		for j := 0; j < t.K; j++ {
			e := i*t.K + j
			id := t.IDs[e]
			if id < 0 {
				continue
			}
			lp := z[id] - lse
			sum += math.Exp(lp)
			if q := float64(t.Prob[e]); q > 0 {
				li += q * (math.Log(q) - lp)
			}
		}
		if r := float64(t.Rest[i]); r > 0 {
			li += r * (math.Log(r) - math.Log(max(1-sum, distillRestFloor)))
		}
		total += li
	}
	return total / float64(len(t.Rows))
}

// distillCase builds random targets over rows of an n×v problem: per row
// k distinct ids (some slots empty), probabilities that with rest sum to 1.
func distillCase(seed uint64, rows []int32, k, v int, rest bool) *DistillTargets {
	r := gcRand(seed)
	t := &DistillTargets{Rows: rows, K: k, IDs: make([]int32, len(rows)*k), Prob: make([]float32, len(rows)*k), Rest: make([]float32, len(rows))}
	for i := range rows {
		perm := r.Perm(v)
		var sum float64
		w := make([]float64, k)
		for j := range k {
			if j == k-1 && i%2 == 1 {
				t.IDs[i*k+j] = -1 // an empty slot
				continue
			}
			t.IDs[i*k+j] = int32(perm[j])
			w[j] = 0.1 + r.Float64()
			sum += w[j]
		}
		mass := 1.0
		if rest {
			t.Rest[i] = float32(0.05 + 0.3*r.Float64())
			mass -= float64(t.Rest[i])
		}
		for j := range k {
			if t.IDs[i*k+j] >= 0 {
				t.Prob[i*k+j] = float32(w[j] / sum * mass)
			}
		}
	}
	return t
}

func distillCases() []gradCase {
	var cases []gradCase
	r := gcRand(7)
	for _, tc := range []struct {
		name   string
		xg, wg bool
		rows   []int32
		rest   bool
	}{
		{"rest", true, true, []int32{0, 2, 3, 6}, true},
		{"no-rest", true, true, []int32{1, 2, 5}, false},
		{"repeated-row", true, true, []int32{4, 4, 0}, true},
		{"const-x", false, true, []int32{0, 3, 6}, true},
		{"const-w", true, false, []int32{0, 1, 2, 3, 4, 5, 6}, true},
		{"no-rows", true, true, nil, true},
	} {
		tg := distillCase(uint64(len(cases)), tc.rows, 3, 11, tc.rest)
		cases = append(cases, gradCase{
			name: "LinearDistill/" + tc.name,
			in:   []gcIn{in("x", gcVec(r, 7*5, 1), tc.xg, 7, 5), in("w", gcVec(r, 11*5, 1), tc.wg, 11, 5)},
			build: func(tp *Tape, v []*Var) *Var {
				y, err := tp.LinearDistill(v[0], v[1], tg)
				if err != nil {
					panic(err)
				}
				return y
			},
			ref: func(x [][]float64) []float64 { return []float64{refDistill(x[0], x[1], 5, 11, tg)} },
		})
	}
	return cases
}

// TestLinearDistillGradCheck runs the gradient checker (float64 reference,
// central differences, accumulation into pre-filled gradients, lazy inputs,
// 1 and 3 threads, bit-identical reruns) on LinearDistill, in chunks of 4
// vocabulary columns so that 11 columns make two full chunks and a partial
// one.
func TestLinearDistillGradCheck(t *testing.T) { checkGradCases(t, distillCases()) }

// TestLinearDistillCatchesWrongBackward: the checker fails a backward
// scaled by 1.01.
func TestLinearDistillCatchesWrongBackward(t *testing.T) {
	c := distillCases()[0]
	wrong := c
	wrong.build = func(tp *Tape, v []*Var) *Var {
		y := c.build(tp, v)
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
}

// TestLinearDistillReference compares the forward pass with the float64
// reference at a realistic size (default chunking: several chunks), and
// checks the KL's two anchor points: zero when the teacher is the student's
// own distribution, positive otherwise.
func TestLinearDistillReference(t *testing.T) {
	const n, d, v, k = 40, 16, 1500, 8
	r := gcRand(3)
	x, w := gcVec(r, n*d, 1), gcVec(r, v*d, 1)
	rows := []int32{0, 3, 7, 8, 20, 39}
	for _, rest := range []bool{false, true} {
		tg := distillCase(11, rows, k, v, rest)
		tp := NewTape(nil, true)
		xv, wv := NewParam(x, make([]float32, n*d), n, d), NewParam(w, make([]float32, v*d), v, d)
		y, err := tp.LinearDistill(xv, wv, tg)
		if err != nil {
			t.Fatal(err)
		}
		want := refDistill(gc64(x), gc64(w), d, v, tg)
		if got := float64(y.Data[0]); math.Abs(got-want) > 1e-5*(1+math.Abs(want)) || want <= 0 {
			t.Errorf("rest=%v: loss %.8g, float64 reference %.8g (want > 0)", rest, got, want)
		}
	}

	// The teacher is the student: top-k of the student's own softmax, the
	// rest as one bucket. The KL is 0 and its gradient vanishes.
	tg := &DistillTargets{Rows: rows, K: k, IDs: make([]int32, len(rows)*k), Prob: make([]float32, len(rows)*k), Rest: make([]float32, len(rows))}
	x64, w64 := gc64(x), gc64(w)
	for i, row := range rows {
		z := make([]float64, v)
		for o := range z {
			for j := range d {
				z[o] += x64[int(row)*d+j] * w64[o*d+j]
			}
		}
		lse := refLSE(z)
		sum := 0.0
		for j := range k { // the first k ids (any k distinct ids will do)
			tg.IDs[i*k+j] = int32(j * 7)
			pj := math.Exp(z[j*7] - lse)
			tg.Prob[i*k+j] = float32(pj)
			sum += pj
		}
		tg.Rest[i] = float32(1 - sum)
	}
	tp := NewTape(nil, true)
	gx, gw := make([]float32, n*d), make([]float32, v*d)
	y, err := tp.LinearDistill(NewParam(x, gx, n, d), NewParam(w, gw, v, d), tg)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(y.Data[0])) > 1e-5 {
		t.Errorf("KL of the student to itself is %g, want 0", y.Data[0])
	}
	if err := tp.Backward(y); err != nil {
		t.Fatal(err)
	}
	for _, g := range [][]float32{gx, gw} {
		for i, v := range g {
			if math.Abs(float64(v)) > 1e-5 {
				t.Fatalf("gradient at the minimum: [%d] = %g, want ~0", i, v)
			}
		}
	}
}

func TestDistillTargetsValidate(t *testing.T) {
	good := func() *DistillTargets {
		return &DistillTargets{Rows: []int32{1}, K: 2, IDs: []int32{3, -1}, Prob: []float32{0.75, 0}, Rest: []float32{0.25}}
	}
	for _, tc := range []struct {
		name string
		mod  func(t *DistillTargets)
		want string
	}{
		{"ok", func(*DistillTargets) {}, ""},
		{"row", func(t *DistillTargets) { t.Rows[0] = 4 }, "outside [0,4)"},
		{"negative row", func(t *DistillTargets) { t.Rows[0] = -1 }, "outside [0,4)"},
		{"id", func(t *DistillTargets) { t.IDs[0] = 10 }, "outside the vocabulary"},
		{"twice", func(t *DistillTargets) { t.IDs[1] = 3; t.Prob = []float32{0.5, 0.25} }, "listed twice"},
		{"sum", func(t *DistillTargets) { t.Rest[0] = 0.5 }, "sum to"},
		{"rest range", func(t *DistillTargets) { t.Rest[0] = -0.1 }, "rest mass"},
		{"nan", func(t *DistillTargets) { t.Prob[0] = float32(math.NaN()) }, "probability"},
		{"lengths", func(t *DistillTargets) { t.IDs = t.IDs[:1] }, "need 2 ids"},
		{"k", func(t *DistillTargets) { t.K = 0 }, "K is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := good()
			tc.mod(tg)
			err := tg.Validate(4, 5)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			// The op refuses the same targets without touching the tape.
			tp := NewTape(nil, true)
			x := NewParam(make([]float32, 4*3), make([]float32, 4*3), 4, 3)
			w := NewParam(make([]float32, 5*3), make([]float32, 5*3), 5, 3)
			if _, err := tp.LinearDistill(x, w, tg); err == nil {
				t.Fatal("LinearDistill accepted bad targets")
			}
		})
	}
}

// TestClassifierInput: the fused classifier op is found from its loss.
func TestClassifierInput(t *testing.T) {
	r := gcRand(5)
	tp := NewTape(nil, true)
	x := NewParam(gcVec(r, 4*3, 1), make([]float32, 12), 4, 3)
	w := NewParam(gcVec(r, 6*3, 1), make([]float32, 18), 6, 3)
	h := tp.Add(x, x)
	ce := tp.LinearCrossEntropy(h, w, []int32{1, 2, -1, 0})
	if gx, gw, ok := tp.ClassifierInput(ce); !ok || gx != h || gw != w {
		t.Fatalf("ClassifierInput = %p %p %v, want %p %p true", gx, gw, ok, h, w)
	}
	if _, _, ok := tp.ClassifierInput(h); ok {
		t.Fatal("ClassifierInput found a classifier for a non-loss Var")
	}
}

// BenchmarkLinearDistill times forward+backward of the KL on every row
// against the fused cross-entropy on the same rows (the hard-label term the
// KL is added to): N=512 rows, D=256, V=8192, top-20 targets.
func BenchmarkLinearDistill(b *testing.B) {
	const n, d, v, k = 512, 256, 8192, 20
	r := gcRand(9)
	x, w := gcVec(r, n*d, 1), gcVec(r, v*d, 0.1)
	rows := make([]int32, n)
	targets := make([]int32, n)
	for i := range rows {
		rows[i], targets[i] = int32(i), int32(r.IntN(v))
	}
	tg := distillCase(1, rows, k, v, true)
	gx, gw := make([]float32, n*d), make([]float32, v*d)
	for _, kind := range []string{"cross-entropy", "distill"} {
		b.Run(kind, func(b *testing.B) {
			tp := NewTape(nil, true)
			xv, wv := NewParam(x, gx, n, d), NewParam(w, gw, v, d)
			for b.Loop() {
				tp.Reset()
				var y *Var
				if kind == "distill" {
					var err error
					if y, err = tp.LinearDistill(xv, wv, tg); err != nil {
						b.Fatal(err)
					}
				} else {
					y = tp.LinearCrossEntropy(xv, wv, targets)
				}
				if err := tp.Backward(y); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
