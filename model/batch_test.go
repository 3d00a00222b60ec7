package model

import (
	"math"
	"slices"
	"testing"

	"github.com/mai-llm/mai/nn"
)

// pagedRun runs seqs through ForwardPaged, each sequence cut into chunks of
// the given sizes (cycled), all sequences advancing together, and returns
// every position's logits per sequence.
func pagedRun(t *testing.T, m *Model, seqs [][]int32, sizes []int, blockSize int, perm []int32) [][]float32 {
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
			chunks = append(chunks, SeqChunk{IDs: s[done[i] : done[i]+k], Start: done[i], Blocks: tables[i], Logits: RowsAll})
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
