package cpu

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

var qTypes = []quant.Type{quant.F16, quant.BF16, quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.Q6_K}

func qRandVec(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	// A few outliers, as real activations have.
	for i := 0; i < n; i += 97 {
		v[i] *= 8
	}
	return v
}

// refActivations is what the kernel dots the weights with: the activations
// quantized to 8 bits (integer kernels) or as they are (16-bit kernels).
func refActivations(t quant.Type, x []float32) []float64 {
	out := make([]float64, len(x))
	switch t {
	case quant.Q8_0, quant.Q4_0, quant.Q4_K:
		blk := quant.QK
		if t == quant.Q4_K {
			blk = quant.QKK
		}
		var a qAct
		quantizeAct(&a, x, blk, t == quant.Q4_K)
		for i, q := range a.q {
			out[i] = float64(q) * float64(a.d[i/blk])
		}
	default:
		for i, v := range x {
			out[i] = float64(v)
		}
	}
	return out
}

// checkProducts fails t unless y [n, rows] is within tol of the float64
// products of the dequantized rows deq [rows, cols] with the activations xa
// [n, cols] (as the kernels round them), relative to Σ|products|.
func checkProducts(t testing.TB, y, deq []float32, xa []float64, n, rows, cols int, tol float64) {
	t.Helper()
	for i := range n {
		for r := range rows {
			var ref, mag float64
			for c := range cols {
				p := float64(deq[r*cols+c]) * xa[i*cols+c]
				ref += p
				mag += math.Abs(p)
			}
			if d := math.Abs(float64(y[i*rows+r]) - ref); !(d <= tol*mag+1e-30) {
				t.Fatalf("row %d·x%d: kernel %.9g, float64 reference %.9g (|diff| %.3g, scale %.3g)", r, i, y[i*rows+r], ref, d, mag)
			}
		}
	}
}

// TestQuantDotsMatchFloat64 checks every row-dot kernel against a float64
// dot product of the dequantized weights and the (quantized) activations,
// and against the exact float64 dot product of the original values.
func TestQuantDotsMatchFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, typ := range qTypes {
		for _, cols := range []int{256, 512, 768, 4096} {
			if typ == quant.F16 || typ == quant.BF16 {
				cols += 8 // a tail the vector loop does not cover
			}
			rows := 5
			w := qRandVec(rng, rows*cols, 0.05)
			qw, err := QuantizeWeight(typ, rows, cols, w)
			if err != nil {
				t.Fatal(err)
			}
			deq := make([]float32, len(w))
			if err := qw.Dequantize(deq); err != nil {
				t.Fatal(err)
			}
			x := qRandVec(rng, 2*cols, 1)
			xa := refActivations(typ, x)
			for _, ks := range availableDots() {
				t.Run(fmt.Sprintf("%v/%d/%s", typ, cols, ks.name), func(t *testing.T) {
					y := make([]float32, 2*rows)
					qmatmulWith(ks, NewPool(2), y, x, 2, qw)
					for i := range 2 {
						for r := range rows {
							var ref, mag, exact float64
							for c := range cols {
								p := float64(deq[r*cols+c]) * xa[i*cols+c]
								ref += p
								mag += math.Abs(p)
								exact += float64(w[r*cols+c]) * float64(x[i*cols+c])
							}
							got := float64(y[i*rows+r])
							if d := math.Abs(got - ref); d > 2e-6*mag+1e-30 {
								t.Fatalf("row %d·x%d: kernel %.9g, float64 reference %.9g (|diff| %.3g, scale %.3g)", r, i, got, ref, d, mag)
							}
							// Quantization error: a loose bound that still
							// catches a wrong layout (which gives O(mag)).
							tol := map[quant.Type]float64{quant.F16: 1e-3, quant.BF16: 1e-2, quant.Q8_0: 2e-2, quant.Q4_0: 0.15, quant.Q4_K: 0.1, quant.Q6_K: 0.05}[typ]
							if d := math.Abs(got - exact); d > tol*mag {
								t.Fatalf("row %d·x%d: kernel %.6g, exact %.6g: error %.3g of scale %.3g", r, i, got, exact, d, mag)
							}
						}
					}
				})
			}
		}
	}
}

func TestQWeightGGMLRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range qTypes {
		w := qRandVec(rng, 3*512, 0.1)
		n, _ := typ.RowBytes(int64(len(w)))
		raw := make([]byte, n)
		if err := quant.Quantize(typ, raw, w); err != nil {
			t.Fatal(err)
		}
		qw, err := NewQWeight(typ, 3, 512, raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(qw.GGML(), raw) {
			t.Errorf("%v: GGML() differs from the bytes it was made from", typ)
		}
		want := make([]float32, len(w))
		quant.Dequantize(typ, want, raw)
		got := make([]float32, len(w))
		if err := qw.Dequantize(got); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%v: dequantized value %d: %v, want %v", typ, i, got[i], want[i])
			}
		}
	}
}

func TestQWeightErrors(t *testing.T) {
	if _, err := NewQWeight(quant.Q8_0, 2, 30, make([]byte, 100)); err == nil {
		t.Error("30 columns of Q8_0: want an error")
	}
	if _, err := NewQWeight(quant.Q8_0, 2, 32, make([]byte, 67)); err == nil {
		t.Error("short data: want an error")
	}
	if _, err := NewQWeight(quant.Q5_K, 1, 256, make([]byte, 176)); err == nil {
		t.Error("Q5_K has no kernel: want an error")
	}
	if _, err := QuantizeWeight(quant.Q4_K, 1, 32, make([]float32, 32)); err == nil {
		t.Error("Q4_K of 32 columns: want an error")
	}
}

// qmatmulWith is QMatMul with a chosen kernel set.
func qmatmulWith(ks *dotSet, p *Pool, y, x []float32, n int, w *QWeight) {
	qmatmul(ks, p, y, x, n, w)
}

// BenchmarkQMatMul measures decode (one row) and a small prefill through a
// 2048×2048 weight in each type, beside the float32 GEMM.
func BenchmarkQMatMul(b *testing.B) {
	const rows, cols = 2048, 2048
	rng := rand.New(rand.NewPCG(5, 6))
	w := qRandVec(rng, rows*cols, 0.02)
	p := Default()
	for _, n := range []int{1, 16, 128} {
		x := qRandVec(rng, n*cols, 1)
		y := make([]float32, n*rows)
		b.Run(fmt.Sprintf("f32/n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(rows * cols * 4))
			for b.Loop() {
				Gemm(p, false, true, n, rows, cols, 1, x, cols, w, cols, 0, y, rows)
			}
		})
		for _, typ := range qTypes {
			qw, _ := QuantizeWeight(typ, rows, cols, w)
			b.Run(fmt.Sprintf("%v/n=%d", typ, n), func(b *testing.B) {
				b.SetBytes(int64(qw.Bytes()))
				for b.Loop() {
					QMatMul(p, y, x, n, qw)
				}
			})
		}
	}
}

// TestQuantizeActVector checks the vector Q8_0 activation rounding against
// the portable loop bit for bit: random rows, an all-zero block, ties at .5,
// values at the block maximum.
func TestQuantizeActVector(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{32, 96, 768, 4096} {
		x := qRandVec(rng, n, 3)
		clear(x[:32]) // d = 0
		if n > 64 {
			for i := range 32 {
				x[32+i] = float32(i) - 15.5 // ties after scaling by 127/16.5? at least exact halves
			}
			x[64] = -x[65] * 1000 // a dominant negative maximum
		}
		var got, want qAct
		quantizeAct(&got, x, 32, false)
		want.q, want.d = make([]int8, n), make([]float32, n/32)
		quantizeActGo(&want, x, 32, false)
		if !slices.Equal(got.q, want.q) || !slices.Equal(got.d, want.d) {
			t.Fatalf("n=%d: vector rounding differs from the portable loop", n)
		}
	}
	// Exact ties: a block whose maximum is 127 rounds x·1 with halves.
	x := make([]float32, 32)
	for i := range x {
		x[i] = float32(i)*0.5 - 7.25
	}
	x[0] = 127
	var got, want qAct
	quantizeAct(&got, x, 32, false)
	want.q, want.d = make([]int8, 32), make([]float32, 1)
	quantizeActGo(&want, x, 32, false)
	if !slices.Equal(got.q, want.q) || !slices.Equal(got.d, want.d) {
		t.Fatalf("ties: vector rounding %v differs from the portable loop %v", got.q, want.q)
	}
}

// TestQ8ToF32Vector checks the vector expansion of rounded activations
// against q·d, bit for bit.
func TestQ8ToF32Vector(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	x := qRandVec(rng, 4*768, 2)
	var a qAct
	quantizeAct(&a, x, 32, false)
	got := make([]float32, len(x))
	if !q8ToF32Blocks(a.q, a.d, got) {
		t.Skip("no vector kernel on this CPU")
	}
	for i, q := range a.q {
		if want := float32(q) * a.d[i/32]; got[i] != want {
			t.Fatalf("value %d: %v, want %v", i, got[i], want)
		}
	}
}

// TestRoundI8 checks the float32 rounding of activations against
// math.RoundToEven over the whole range, ties included.
func TestRoundI8(t *testing.T) {
	for i := -1275; i <= 1275; i++ {
		for _, p := range []float32{float32(i) / 10, float32(i)/10 + 0.05, math.Nextafter32(float32(i)/10, 0)} {
			if p < -127.5 || p > 127.5 {
				continue
			}
			if got, want := roundI8(p), int8(math.RoundToEven(float64(p))); got != want {
				t.Fatalf("roundI8(%v) = %d, want %d", p, got, want)
			}
		}
	}
}
