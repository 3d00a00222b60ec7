package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

// x16Types are the types with an x16 layout.
var x16Types = []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K}

// x16Weight quantizes a random rows×cols matrix to typ and returns it in
// the row layout and in the x16 layout.
func x16Weight(t testing.TB, rng *rand.Rand, typ quant.Type, rows, cols int) (ggml, x16 *QWeight) {
	t.Helper()
	w := qRandVec(rng, rows*cols, 0.05)
	n, err := typ.RowBytes(int64(rows * cols))
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, n)
	if err := quant.Quantize(typ, raw, w); err != nil {
		t.Fatal(err)
	}
	if ggml, err = newQWeight(typ, rows, cols, raw, false); err != nil {
		t.Fatal(err)
	}
	if x16, err = newQWeight(typ, rows, cols, raw, true); err != nil {
		t.Fatal(err)
	}
	if !x16.X16 {
		t.Fatalf("%d×%d %v weight not interleaved", rows, cols, typ)
	}
	return ggml, x16
}

// TestX16Layout checks that the x16 layout keeps every byte: the ggml bytes
// come back, and rows dequantize as the reference dequantizer does.
func TestX16Layout(t *testing.T) {
	for _, typ := range x16Types {
		t.Run(typ.String(), func(t *testing.T) { testX16Layout(t, typ) })
	}
}

func testX16Layout(t *testing.T, typ quant.Type) {
	rng := rand.New(rand.NewPCG(31, 32))
	const rows, cols = 48, 512
	rowW, x16 := x16Weight(t, rng, typ, rows, cols)
	raw := rowW.GGML()
	if !slices.Equal(x16.GGML(), raw) {
		t.Fatal("GGML() of an x16 weight differs from the ggml bytes it was made from")
	}
	full := make([]float32, rows*cols)
	if err := quant.Dequantize(typ, full, raw); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, rows*cols)
	if err := x16.Dequantize(got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, full) {
		t.Fatal("Dequantize of an x16 weight differs from the reference")
	}
	row := make([]float32, 3*cols)
	x16.DequantizeRows(row, 17, 20)
	if !slices.Equal(row, full[17*cols:20*cols]) {
		t.Fatal("DequantizeRows of an x16 weight differs from the reference")
	}
	qt, _ := QTypeOf(typ)
	if w, err := NewQWeight(typ, rows, cols, raw); err != nil || w.X16 != dotKernels().x16.has(qt) {
		t.Fatalf("NewQWeight: X16 %v, want %v (err %v)", w.X16, dotKernels().x16.has(qt), err)
	}
	if w, err := NewQWeight(typ, rows-1, cols, raw[:len(raw)/rows*(rows-1)]); err != nil || w.X16 {
		t.Fatalf("NewQWeight of %d rows: X16 %v (err %v), want the row layout", rows-1, w.X16, err)
	}
}

// TestX16MatchesFloat64 checks every kernel set's x16 products — decode and
// batched rows, full and partial tiles — against float64 dot products of
// the dequantized weights and the activations as Q8_0 rounds them, and
// that a row's result is the same bits whatever the rows that come with it
// and the thread count.
func TestX16MatchesFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, typ := range x16Types {
		for _, shape := range [][2]int{{16, 256}, {48, 512}, {160, 768}} {
			testX16Product(t, rng, typ, shape[0], shape[1])
		}
	}
}

func testX16Product(t *testing.T, rng *rand.Rand, typ quant.Type, rows, cols int) {
	rowW, x16 := x16Weight(t, rng, typ, rows, cols)
	deq := make([]float32, rows*cols)
	if err := rowW.Dequantize(deq); err != nil {
		t.Fatal(err)
	}
	const n = 21
	x := qRandVec(rng, n*cols, 1)
	xa := refActivations(quant.Q8_0, x) // every x16 type meets Q8_0 blocks of 32
	bits := map[string][]float32{}
	for _, ks := range availableDots() {
		t.Run(fmt.Sprintf("%v/%dx%d/%s", typ, rows, cols, ks.name), func(t *testing.T) {
			one := make([]float32, n*rows)
			for i := range n {
				qmatmulWith(ks, NewPool(1), one[i*rows:(i+1)*rows], x[i*cols:(i+1)*cols], 1, x16)
			}
			checkProducts(t, one, deq, xa, n, rows, cols, 2e-6)
			for _, m := range []int{2, 8, 9, n} {
				for _, threads := range []int{1, 3} {
					y := make([]float32, m*rows)
					for i := range y {
						y[i] = float32(math.NaN())
					}
					qmatmulWith(ks, NewPool(threads), y, x[:m*cols], m, x16)
					if !slices.Equal(y, one[:m*rows]) {
						t.Fatalf("%d rows on %d threads: not the bits of one row at a time", m, threads)
					}
				}
			}
			bits[ks.name] = one
		})
	}
	// The AVX2 and VNNI kernels compute the same exact integer dots and
	// the same float32 steps.
	if a, v := bits["avx2"], bits["vnni"]; a != nil && v != nil && !slices.Equal(a, v) {
		t.Errorf("%v %d×%d: the avx2 and vnni kernels differ", typ, rows, cols)
	}
}

// BenchmarkX16 measures the x16 products (decode and 128-row prefill)
// beside the ggml-layout kernels, on a 2048×2048 weight.
func BenchmarkX16(b *testing.B) {
	const rows, cols = 2048, 2048
	rng := rand.New(rand.NewPCG(35, 36))
	p := Default()
	for _, typ := range x16Types {
		ggml, x16 := x16Weight(b, rng, typ, rows, cols)
		benchX16(b, p, rng, typ, ggml, x16)
	}
}

func benchX16(b *testing.B, p *Pool, rng *rand.Rand, typ quant.Type, ggml, x16 *QWeight) {
	rows, cols := ggml.Rows, ggml.Cols
	for _, n := range []int{1, 128} {
		x := qRandVec(rng, n*cols, 1)
		y := make([]float32, n*rows)
		for _, w := range []*QWeight{ggml, x16} {
			name := "ggml"
			if w.X16 {
				name = "x16"
			}
			b.Run(fmt.Sprintf("%v/n=%d/%s", typ, n, name), func(b *testing.B) {
				c0, _ := processCPUTime()
				for b.Loop() {
					QMatMul(p, y, x, n, w)
				}
				c1, _ := processCPUTime()
				cpu := (c1 - c0).Seconds() / float64(b.N)
				b.ReportMetric(cpu*1e6, "cpu-µs/op")
				b.ReportMetric(2*float64(n*rows*cols)/cpu/1e9, "cpu-GOP/s")
			})
		}
	}
}

// TestX16Extremes runs the x16 kernels on the largest products the formats
// hold — Q8_0 weights of −128 and 127, Q4_0 nibbles of 0 and 15, against
// activations of ±127 — where a kernel summing in 16 bits would saturate:
// every set must give the float64 result.
func TestX16Extremes(t *testing.T) {
	const rows, cols, n = 32, 256, 9
	// Rows of all −1 or all +1 (every fourth block the other way): Q8_0
	// rounds them to ±127.
	x := make([]float32, n*cols)
	for i := range x {
		row, blk := i/cols, i%cols/quant.QK
		x[i] = 1
		if (row%2 == 0) != (blk%4 == 3) {
			x[i] = -1
		}
	}
	xa := refActivations(quant.Q8_0, x)
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0} {
		bb := quant.Q8_0Bytes
		if typ == quant.Q4_0 {
			bb = quant.Q4_0Bytes
		}
		nb := cols / quant.QK
		raw := make([]byte, rows*nb*bb)
		for r := range rows {
			for b := range nb {
				blk := raw[(r*nb+b)*bb:][:bb]
				blk[0], blk[1] = 0x00, 0x3c // scale 1.0
				// Whole rows of −128, 127 or 15 give products of one sign
				// against a row of activations.
				for i := range blk[2:] {
					switch {
					case typ == quant.Q4_0 && r%2 == 0:
						blk[2+i] = 0xff
					case typ == quant.Q4_0:
						blk[2+i] = 0x0f
					case r%2 == 0:
						blk[2+i] = 0x80 // −128
					default:
						blk[2+i] = 0x7f
					}
				}
			}
		}
		w, err := newQWeight(typ, rows, cols, raw, true)
		if err != nil {
			t.Fatal(err)
		}
		deq := make([]float32, rows*cols)
		if err := w.Dequantize(deq); err != nil {
			t.Fatal(err)
		}
		for _, ks := range availableDots() {
			for _, m := range []int{1, n} {
				y := make([]float32, m*rows)
				qmatmulWith(ks, NewPool(2), y, x[:m*cols], m, w)
				t.Run(fmt.Sprintf("%v/%s/%d", typ, ks.name, m), func(t *testing.T) {
					checkProducts(t, y, deq, xa, m, rows, cols, 2e-6)
				})
			}
		}
	}
}
