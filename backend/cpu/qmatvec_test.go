package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

// TestQMatVecDecodeMatchesFloat64 checks the multi-row decode kernels (one
// activation row; odd and even block counts, row counts that split unevenly
// over the threads) against a float64 dot product of the dequantized
// weights and the activations the kernel sees.
func TestQMatVecDecodeMatchesFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, typ := range qTypes {
		for _, cols := range []int{32, 96, 352, 768, 2048} {
			if (typ == quant.Q4_K || typ == quant.Q6_K) && cols%256 != 0 {
				continue
			}
			rows := 37
			w := qRandVec(rng, rows*cols, 0.05)
			qw, err := QuantizeWeight(typ, rows, cols, w)
			if err != nil {
				t.Fatal(err)
			}
			deq := make([]float32, len(w))
			if err := qw.Dequantize(deq); err != nil {
				t.Fatal(err)
			}
			x := qRandVec(rng, cols, 1)
			for _, ks := range availableDots() {
				xa := refActivations(typ, x)
				if typ == quant.Q6_K && ks.rowsQ6K != nil {
					xa = refActivations(quant.Q8_0, x) // the integer kernel's activations
				}
				for _, threads := range []int{1, 3} {
					t.Run(fmt.Sprintf("%v/%d/%s/%d", typ, cols, ks.name, threads), func(t *testing.T) {
						y := make([]float32, rows)
						qmatmulWith(ks, NewPool(threads), y, x, 1, qw)
						checkProducts(t, y, deq, xa, 1, rows, cols, 2e-6)
					})
				}
			}
		}
	}
}

// TestQGemmMatchesFloat64 checks the prefill path (dequantized panels and
// the float32 GEMM, on the activations as the integer kernels round them)
// against float64, with row counts that leave a partial last panel.
func TestQGemmMatchesFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, typ := range qTypes {
		for _, cols := range []int{256, 768, 2048 + 256} {
			rows, n := 157, qGemmMinRows+3
			w := qRandVec(rng, rows*cols, 0.05)
			qw, err := QuantizeWeight(typ, rows, cols, w)
			if err != nil {
				t.Fatal(err)
			}
			deq := make([]float32, len(w))
			if err := qw.Dequantize(deq); err != nil {
				t.Fatal(err)
			}
			x := qRandVec(rng, n*cols, 1)
			xa := refActivations(typ, x)
			for _, ks := range availableDots() {
				t.Run(fmt.Sprintf("%v/%d/%s", typ, cols, ks.name), func(t *testing.T) {
					y := make([]float32, n*rows)
					for i := range y {
						y[i] = float32(math.NaN()) // must be overwritten
					}
					qmatmulWith(ks, NewPool(3), y, x, n, qw)
					checkProducts(t, y, deq, xa, n, rows, cols, 1e-5)
				})
			}
		}
	}
}

// TestDequantizeRows checks the row expansion of every type against the
// reference dequantizer.
func TestDequantizeRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, typ := range qTypes {
		rows, cols := 9, 512+16*3
		if typ != quant.F16 && typ != quant.BF16 {
			cols = 768
		}
		w := qRandVec(rng, rows*cols, 0.1)
		qw, err := QuantizeWeight(typ, rows, cols, w)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(w))
		if err := qw.Dequantize(want); err != nil {
			t.Fatal(err)
		}
		for _, ks := range availableDots() {
			got := make([]float32, 4*cols)
			rb := qw.RowBytes()
			ks.dequant(qw.Type, qw.Data[3*rb:7*rb], got)
			for i, v := range got {
				if v != want[3*cols+i] {
					t.Fatalf("%v %s: value %d: %v, want %v", typ, ks.name, i, v, want[3*cols+i])
				}
			}
		}
		got := make([]float32, 2*cols)
		qw.DequantizeRows(got, 7, 9)
		for i, v := range got {
			if v != want[7*cols+i] {
				t.Fatalf("%v DequantizeRows: value %d: %v, want %v", typ, i, v, want[7*cols+i])
			}
		}
	}
}

// BenchmarkQMatMulCPU is BenchmarkQMatMul on one thread, reporting process
// CPU time per product (cpu-µs/op), which a loaded machine hardly moves,
// and the weight bytes read per CPU second (cpu-GB/s).
//
//	go test -run XXX -bench QMatMulCPU -benchtime 50x ./backend/cpu
func BenchmarkQMatMulCPU(b *testing.B) {
	const rows, cols = 2048, 2048
	rng := rand.New(rand.NewPCG(5, 6))
	w := qRandVec(rng, rows*cols, 0.02)
	p := NewPool(1)
	for _, n := range []int{1, 128} {
		x := qRandVec(rng, n*cols, 1)
		y := make([]float32, n*rows)
		for _, typ := range qTypes {
			qw, _ := QuantizeWeight(typ, rows, cols, w)
			b.Run(fmt.Sprintf("%v/n=%d", typ, n), func(b *testing.B) {
				QMatMul(p, y, x, n, qw)
				c0, _ := processCPUTime()
				for b.Loop() {
					QMatMul(p, y, x, n, qw)
				}
				c1, _ := processCPUTime()
				cpu := (c1 - c0).Seconds() / float64(b.N)
				b.ReportMetric(cpu*1e6, "cpu-µs/op")
				b.ReportMetric(float64(qw.Bytes())/cpu/1e9, "cpu-GB/s")
				b.ReportMetric(2*float64(n*rows*cols)/cpu/1e9, "cpu-GFLOP/s")
			})
		}
	}
}

// BenchmarkQMatVecStream is decode through 24 weights of 2048×1536 (about
// a 134M model's worth in Q4_0: more than the last-level cache), one after
// the other, on one thread: the weights stream from memory as in a decode
// step. cpu-GB/s is weight bytes per CPU second.
//
//	go test -run XXX -bench QMatVecStream -benchtime 20x ./backend/cpu
func BenchmarkQMatVecStream(b *testing.B) {
	const rows, cols, mats = 2048, 1536, 24
	rng := rand.New(rand.NewPCG(5, 6))
	w := qRandVec(rng, rows*cols, 0.02)
	x := qRandVec(rng, cols, 1)
	y := make([]float32, rows)
	for _, threads := range []int{1, 2} {
		p := NewPool(threads)
		for _, typ := range qTypes {
			if typ == quant.BF16 || typ == quant.Q4_K {
				continue
			}
			qws := make([]*QWeight, mats)
			bytes := 0
			for i := range qws {
				qws[i], _ = QuantizeWeight(typ, rows, cols, w)
				bytes += qws[i].Bytes()
			}
			b.Run(fmt.Sprintf("%v/t=%d", typ, threads), func(b *testing.B) {
				c0, _ := processCPUTime()
				for b.Loop() {
					for _, qw := range qws {
						QMatMul(p, y, x, 1, qw)
					}
				}
				c1, _ := processCPUTime()
				cpu := (c1 - c0).Seconds() / float64(b.N)
				b.ReportMetric(cpu*1e6, "cpu-µs/op")
				b.ReportMetric(float64(bytes)/cpu/1e9, "cpu-GB/s")
			})
		}
	}
}

// TestQMatVecsFused checks the fused decode products (QMatVecs,
// QMatVecSwiGLU) against separate QMatMul calls and SwiGLUForward: the
// same values, bit for bit, for every type (the fused kernels' and the
// fallback's), on 1 and 3 threads.
func TestQMatVecsFused(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const cols = 512
	for _, typ := range qTypes {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%v/%d", typ, threads), func(t *testing.T) {
				p := NewPool(threads)
				x := qRandVec(rng, cols, 1)
				var ws []*QWeight
				for _, rows := range []int{96, 32, 64} {
					w, err := QuantizeWeight(typ, rows, cols, qRandVec(rng, rows*cols, 0.05))
					if err != nil {
						t.Fatal(err)
					}
					ws = append(ws, w)
				}
				ys := make([][]float32, len(ws))
				for i, w := range ws {
					ys[i] = make([]float32, w.Rows)
				}
				QMatVecs(p, ys, x, ws)
				for i, w := range ws {
					want := make([]float32, w.Rows)
					QMatMul(p, want, x, 1, w)
					if !slices.Equal(ys[i], want) {
						t.Fatalf("QMatVecs output %d differs from QMatMul", i)
					}
				}
				up, err := QuantizeWeight(typ, 96, cols, qRandVec(rng, 96*cols, 0.05))
				if err != nil {
					t.Fatal(err)
				}
				out, g, u := make([]float32, 96), make([]float32, 96), make([]float32, 96)
				QMatVecSwiGLU(p, out, g, u, x, ws[0], up)
				wg, wu, want := make([]float32, 96), make([]float32, 96), make([]float32, 96)
				QMatMul(p, wg, x, 1, ws[0])
				QMatMul(p, wu, x, 1, up)
				SwiGLUForward(p, want, wg, wu)
				if !slices.Equal(out, want) || !slices.Equal(g, wg) || !slices.Equal(u, wu) {
					t.Fatal("QMatVecSwiGLU differs from QMatMul and SwiGLUForward")
				}
			})
		}
	}
}

// TestQ6KDecodeSetsAgree checks that the Q6_K decode kernels of every set
// with one (AVX2 and AVX-512 VNNI) give the same bits: the same 4-value
// integer sums and the same float32 steps.
func TestQ6KDecodeSetsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const rows, cols = 21, 1024
	qw, err := QuantizeWeight(quant.Q6_K, rows, cols, qRandVec(rng, rows*cols, 0.05))
	if err != nil {
		t.Fatal(err)
	}
	x := qRandVec(rng, cols, 1)
	var first []float32
	var name string
	for _, ks := range availableDots() {
		if ks.rowsQ6K == nil {
			continue
		}
		y := make([]float32, rows)
		qmatmulWith(ks, NewPool(2), y, x, 1, qw)
		if first == nil {
			first, name = y, ks.name
			continue
		}
		if !slices.Equal(y, first) {
			t.Errorf("Q6_K decode: %s and %s differ", ks.name, name)
		}
	}
}
