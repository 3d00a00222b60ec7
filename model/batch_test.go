package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// pagedRun runs seqs through ForwardPaged, each sequence cut into chunks of
// the given sizes (cycled), all sequences advancing together, and returns
// every position's logits per sequence. decodeFrom, when not nil, gives
// each sequence's SeqChunk.DecodeFrom.
func pagedRun(t *testing.T, m *Model, seqs [][]int32, sizes []int, blockSize int, perm []int32, decodeFrom ...int) [][]float32 {
	t.Helper()
	kv, err := m.NewPagedKV(len(perm), blockSize)
	if err != nil {
		t.Fatal(err)
	}
	tables := make([][]int32, len(seqs))
	next := 0
	for i, s := range seqs {
		nb := (len(s) + blockSize - 1) / blockSize
		tables[i] = perm[next : next+nb]
		next += nb
	}
	out := make([][]float32, len(seqs))
	done := make([]int, len(seqs))
	tp := nn.NewTape(m.Pool, false)
	for step := 0; ; step++ {
		var chunks []SeqChunk
		var who []int
		for i, s := range seqs {
			if done[i] == len(s) {
				continue
			}
			k := min(sizes[(step+i)%len(sizes)], len(s)-done[i])
			ch := SeqChunk{IDs: s[done[i] : done[i]+k], Start: done[i], Blocks: tables[i], Logits: RowsAll}
			if decodeFrom != nil {
				ch.DecodeFrom = decodeFrom[i]
			}
			chunks = append(chunks, ch)
			who = append(who, i)
			done[i] += k
		}
		if len(chunks) == 0 {
			return out
		}
		res, err := m.ForwardPaged(tp, kv, chunks)
		if err != nil {
			t.Fatal(err)
		}
		for j, i := range who {
			out[i] = append(out[i], res.Logits[j]...)
		}
	}
}

func TestForwardPagedMatchesForward(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		t.Run(name, func(t *testing.T) {
			m, ref := fixture(t, name)
			ids, shape, err := ref.Int32("input_ids")
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := ref.Float32("logits")
			if err != nil {
				t.Fatal(err)
			}
			b, tl := shape[0], shape[1]
			seqs := make([][]int32, b)
			for i := range seqs {
				seqs[i] = ids[i*tl : (i+1)*tl]
			}
			perm := make([]int32, 16)
			for i := range perm {
				perm[i] = int32((i * 7) % 16) // scattered blocks
			}
			whole := pagedRun(t, m, seqs, []int{tl}, 4, perm)
			for i := range seqs {
				var worst float64
				for j, v := range whole[i] {
					worst = math.Max(worst, math.Abs(float64(v-want[i*tl*m.Cfg.Vocab+j])))
				}
				if worst > 1e-4 {
					t.Errorf("sequence %d: max abs logit error %.3e > 1e-4", i, worst)
				}
			}
			// Chunked, with different block sizes, alone or together: the
			// same bits.
			for _, tc := range []struct {
				sizes []int
				bs    int
				alone bool
			}{{[]int{1}, 4, false}, {[]int{5, 3, 7}, 8, false}, {[]int{tl}, 16, true}, {[]int{2, 9}, 3, true}} {
				perm := make([]int32, 2*tl)
				for i := range perm {
					perm[i] = int32(len(perm) - 1 - i)
				}
				var got [][]float32
				if tc.alone {
					for _, s := range seqs {
						got = append(got, pagedRun(t, m, [][]int32{s}, tc.sizes, tc.bs, perm)[0])
					}
				} else {
					got = pagedRun(t, m, seqs, tc.sizes, tc.bs, perm)
				}
				for i := range seqs {
					if !slices.Equal(got[i], whole[i]) {
						t.Errorf("chunks %v block %d alone %v: sequence %d logits differ from the one-pass batch", tc.sizes, tc.bs, tc.alone, i)
					}
				}
			}
		})
	}
}

func TestForwardPagedLearnedPositions(t *testing.T) {
	cfg := Config{Family: "gpt2", Vocab: 64, Dim: 32, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 8, FFN: 64, MaxSeq: 32,
		Norm: "layernorm", NormEps: 1e-5, NormBias: true, Pos: "learned", MLP: "gelu", Act: "gelu_new",
		QKVBias: true, OutBias: true, MLPBias: true, Tied: true, BOS: -1, EOS: -1}
	m, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	ids := []int32{3, 9, 27, 1, 5, 60, 2, 2, 8, 13}
	out, err := m.Forward(nn.NewTape(nil, false), ids, 1, len(ids), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got := pagedRun(t, m, [][]int32{ids}, []int{3}, 4, []int32{2, 0, 1})[0]
	for i, v := range got {
		if d := math.Abs(float64(v - out.Logits.Data[i])); d > 1e-5 {
			t.Fatalf("logit %d: paged %v, forward %v", i, v, out.Logits.Data[i])
		}
	}
}

func TestForwardPagedErrors(t *testing.T) {
	m, _ := fixture(t, "llama")
	kv, err := m.NewPagedKV(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	tp := nn.NewTape(nil, false)
	for _, tc := range []struct {
		name   string
		chunks []SeqChunk
	}{
		{"empty", nil},
		{"no tokens", []SeqChunk{{Blocks: []int32{0}}}},
		{"bad id", []SeqChunk{{IDs: []int32{9999}, Blocks: []int32{0}}}},
		{"short table", []SeqChunk{{IDs: []int32{1, 2, 3, 4, 5}, Blocks: []int32{0}}}},
		{"block out of range", []SeqChunk{{IDs: []int32{1}, Blocks: []int32{7}}}},
	} {
		if _, err := m.ForwardPaged(tp, kv, tc.chunks); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// TestDecodeRowsBatchInvariant checks what the decode path of ForwardPaged
// relies on: through decodeRows, a row's result is the same bits whatever
// other rows come with it, in what order, and on any number of threads.
func TestDecodeRowsBatchInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols, n = 77, 256, 70
	x := make([]float32, n*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.F16, quant.BF16} {
		w := make([]float32, rows*cols)
		for i := range w {
			w[i] = float32(rng.NormFloat64()) * 0.1
		}
		qw, err := cpu.QuantizeWeight(typ, rows, cols, w)
		if err != nil {
			t.Fatal(err)
		}
		one := cpu.NewPool(1)
		want := make([]float32, n*rows)
		for r := range n {
			decodeRows(one, qw, x, []int{r}, want)
		}
		// Every count of rows from 1 to n, a shuffled subset each time.
		for _, threads := range []int{1, 2, 3} {
			p := cpu.NewPool(threads)
			for k := 1; k <= n; k++ {
				sel := rng.Perm(n)[:k]
				got := make([]float32, n*rows)
				decodeRows(p, qw, x, sel, got)
				for _, r := range sel {
					g, w := got[r*rows:(r+1)*rows], want[r*rows:(r+1)*rows]
					for j := range g {
						if math.Float32bits(g[j]) != math.Float32bits(w[j]) {
							t.Fatalf("%v, %d threads, %d rows: row %d column %d is %v, alone %v", typ, threads, k, r, j, g[j], w[j])
						}
					}
				}
			}
		}
		// The results are the product with the stored weights, up to the
		// rounding of the activations to 8 bits.
		if err := qw.Dequantize(w); err != nil {
			t.Fatal(err)
		}
		var worst float64
		for r := range n {
			for j := range rows {
				var ref float64
				for c := range cols {
					ref += float64(x[r*cols+c]) * float64(w[j*cols+c])
				}
				worst = math.Max(worst, math.Abs(ref-float64(want[r*rows+j])))
			}
		}
		if worst > 0.05 {
			t.Errorf("%v: max error %.3g against the float64 product", typ, worst)
		}
	}
}

// TestForwardPagedDecodeRows runs quantized models with decoded-token rows
// (SeqChunk.DecodeFrom): each sequence's logits are the same bits alone or
// batched, in any chunking, and close to the all-GEMM path.
func TestForwardPagedDecodeRows(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  quant.Type
		moe  bool
	}{{"q8_0", quant.Q8_0, false}, {"q4_0", quant.Q4_0, false}, {"q4_K-moe", quant.Q4_K, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Family: "llama", Norm: "rmsnorm", NormEps: 1e-5, Pos: "rope", RopeTheta: 10000,
				MLP: "swiglu", Act: "silu", BOS: -1, EOS: -1, Vocab: 96, Dim: 256, Layers: 2,
				Heads: 4, KVHeads: 2, HeadDim: 64, FFN: 256, MaxSeq: 64}
			if tc.moe {
				cfg.Experts, cfg.TopK = 4, 2
			}
			m, err := New(cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			if err := m.Quantize(QuantizeOptions{Type: tc.typ, OutputType: tc.typ}); err != nil {
				t.Fatal(err)
			}
			// Weights in the x16 layout (Q4_0 on CPUs with AVX2, Q8_0 and
			// Q4_K too with AVX-512 VNNI) multiply prompt and decoded rows
			// alike, so the two paths agree bit for bit.
			stable := rowStableX16(t, tc.typ)
			if m.DecodeKernels() == stable {
				t.Fatalf("DecodeKernels %v for a %v model, row-stable kernels %v", m.DecodeKernels(), tc.typ, stable)
			}
			rng := rand.New(rand.NewPCG(4, 5))
			var seqs [][]int32
			var from []int
			for i, l := range []int{13, 7, 20, 9} {
				s := make([]int32, l)
				for j := range s {
					s[j] = int32(rng.IntN(cfg.Vocab))
				}
				seqs = append(seqs, s)
				from = append(from, []int{5, 1, 12, 9}[i]) // the last has no decoded token
			}
			perm := make([]int32, 24)
			for i := range perm {
				perm[i] = int32((i * 5) % 24)
			}
			whole := pagedRun(t, m, seqs, []int{64}, 4, perm, from...)
			plain := pagedRun(t, m, seqs, []int{64}, 4, perm)
			for i := range seqs {
				var worst float64
				for j, v := range whole[i] {
					worst = math.Max(worst, math.Abs(float64(v-plain[i][j])))
				}
				if worst > 0.05 {
					t.Errorf("sequence %d: decode rows differ from the GEMM by %.3g", i, worst)
				}
				if stable != slices.Equal(whole[i], plain[i]) && from[i] < len(seqs[i]) {
					t.Errorf("sequence %d: decode rows and prompt rows agree %v, want %v", i, !stable, stable)
				}
			}
			for _, c := range []struct {
				sizes []int
				alone bool
			}{{[]int{1}, false}, {[]int{5, 3, 1, 7}, false}, {[]int{64}, true}, {[]int{1}, true}, {[]int{2, 9}, true}} {
				var got [][]float32
				if c.alone {
					for i, s := range seqs {
						got = append(got, pagedRun(t, m, [][]int32{s}, c.sizes, 4, perm, from[i])[0])
					}
				} else {
					got = pagedRun(t, m, seqs, c.sizes, 4, perm, from...)
				}
				for i := range seqs {
					if !slices.Equal(got[i], whole[i]) {
						t.Errorf("%s: chunks %v alone %v: sequence %d logits differ", fmt.Sprint(tc.typ), c.sizes, c.alone, i)
					}
				}
			}
		})
	}
}

// rowStableX16 reports whether this CPU's Q4_0, Q8_0 and Q4_K weights
// take the row-stable x16 kernels.
func rowStableX16(t *testing.T, typ quant.Type) bool {
	t.Helper()
	w, err := cpu.QuantizeWeight(typ, 16, 256, make([]float32, 16*256))
	if err != nil {
		t.Fatal(err)
	}
	return w.RowStable()
}
