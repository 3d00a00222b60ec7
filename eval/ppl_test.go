package eval

import (
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"

	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/model"
)

const llamaDir = "../model/testdata/hf/llama"

func loadLlama(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(llamaDir, false)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refNLL returns the mean next-token NLL of each row of the fixture's
// input_ids computed in float64 from the reference logits (transformers').
func refNLL(t *testing.T) (ids [][]int32, perRow []float64, all float64) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(llamaDir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flat, shape, err := f.Int32("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	logits, lshape, err := f.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	b, n, v := shape[0], shape[1], lshape[2]
	var total float64
	for r := range b {
		row := flat[r*n : (r+1)*n]
		ids = append(ids, row)
		var sum float64
		for p := 0; p+1 < n; p++ {
			l := logits[(r*n+p)*v : (r*n+p+1)*v]
			mx := math.Inf(-1)
			for _, x := range l {
				mx = math.Max(mx, float64(x))
			}
			var z float64
			for _, x := range l {
				z += math.Exp(float64(x) - mx)
			}
			sum += -(float64(l[row[p+1]]) - mx - math.Log(z))
		}
		perRow = append(perRow, sum/float64(n-1))
		total += sum
	}
	return ids, perRow, total / float64(b*(n-1))
}

func TestPerplexityMatchesReferenceLogits(t *testing.T) {
	ids, perRow, all := refNLL(t)
	b := NewLocal(loadLlama(t), nil, LocalOptions{})
	var sum float64
	var n int
	for r, row := range ids {
		p, err := PerplexityIDs(context.Background(), b, row, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("row %d: %d tokens, nll %.6f (reference %.6f), ppl %.4f (reference %.4f)", r, p.Tokens, p.NLL, perRow[r], p.PPL, math.Exp(perRow[r]))
		if p.Tokens != len(row)-1 {
			t.Errorf("row %d: scored %d tokens, want %d", r, p.Tokens, len(row)-1)
		}
		if rel := math.Abs(p.PPL-math.Exp(perRow[r])) / math.Exp(perRow[r]); rel > 1e-4 {
			t.Errorf("row %d: ppl %.6f, reference exp(mean NLL) %.6f (rel err %.2e)", r, p.PPL, math.Exp(perRow[r]), rel)
		}
		sum += p.NLL * float64(p.Tokens)
		n += p.Tokens
	}
	if got, want := math.Exp(sum/float64(n)), math.Exp(all); math.Abs(got-want)/want > 1e-4 {
		t.Errorf("both rows: ppl %.6f, reference %.6f", got, want)
	}
}

func TestWindows(t *testing.T) {
	for _, tc := range []struct{ n, maxLen, stride int }{
		{2, 8, 0}, {8, 8, 0}, {9, 8, 0}, {100, 8, 3}, {100, 8, 7}, {100, 8, 100}, {33, 16, 1}, {1000, 128, 64},
	} {
		ws, err := windows(tc.n, tc.maxLen, tc.stride)
		if err != nil {
			t.Fatal(err)
		}
		next := 1
		for i, w := range ws {
			if w.from != next || w.hi <= w.from || w.lo < 0 || w.lo >= w.from || w.hi-w.lo > tc.maxLen {
				t.Fatalf("%+v: window %d = %+v after position %d", tc, i, w, next)
			}
			if i > 0 && w.hi-w.lo != tc.maxLen {
				t.Errorf("%+v: later window %d = %+v does not use the full context", tc, i, w)
			}
			next = w.hi
		}
		if next != tc.n {
			t.Errorf("%+v: windows end at %d, want %d", tc, next, tc.n)
		}
	}
	if _, err := windows(10, 1, 1); err == nil {
		t.Error("context of 1 accepted")
	}
}

// TestSlidingWindow checks that windowed scoring of a sequence longer than
// the context equals scoring each target with exactly its window's context.
func TestSlidingWindow(t *testing.T) {
	m := loadLlama(t)
	m.Cfg.MaxSeq = 10
	b := NewLocal(m, nil, LocalOptions{}).(*tokenBackend)
	ids, _, _ := refNLL(t)
	seq := append(append([]int32(nil), ids[0]...), ids[1]...) // 48 tokens
	for _, stride := range []int{1, 4, 9} {
		got, err := b.ScoreIDs(context.Background(), seq, stride)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(seq)-1 {
			t.Fatalf("stride %d: %d scores for %d tokens", stride, len(got), len(seq))
		}
		ws, _ := windows(len(seq), 10, stride)
		k := 0
		for _, w := range ws {
			for p := w.from; p < w.hi; p++ {
				// Score position p alone with the window's context.
				one, err := b.m.score(context.Background(), []scoreSeq{{ids: seq[w.lo : p+1], from: p - w.lo}})
				if err != nil {
					t.Fatal(err)
				}
				if d := math.Abs(one[0][0].lp - got[k]); d > 1e-5 {
					t.Fatalf("stride %d, position %d: windowed %.6f, alone %.6f", stride, p, got[k], one[0][0].lp)
				}
				k++
			}
		}
	}
}

// TestSharedContext checks that scoring continuations after a shared context
// through the KV cache equals scoring each whole sequence.
func TestSharedContext(t *testing.T) {
	lm := NewLocal(loadLlama(t), nil, LocalOptions{}).(*tokenBackend).m.(*localModel)
	ids, _, _ := refNLL(t)
	ctxIDs := append(append([]int32(nil), ids[0]...), ids[1][:16]...) // 40 tokens
	var seqs []scoreSeq
	for _, cont := range [][]int32{ids[1][16:17], ids[1][16:20], {5, 6, 7}, ids[0][:9]} {
		seqs = append(seqs, scoreSeq{ids: append(append([]int32(nil), ctxIDs...), cont...), from: len(ctxIDs)})
	}
	shared, err := lm.score(context.Background(), seqs)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := lm.scoreBatched(context.Background(), seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range seqs {
		if len(shared[i]) != len(seqs[i].ids)-seqs[i].from || len(shared[i]) != len(whole[i]) {
			t.Fatalf("sequence %d: %d and %d scores", i, len(shared[i]), len(whole[i]))
		}
		for j := range shared[i] {
			if d := math.Abs(shared[i][j].lp - whole[i][j].lp); d > 1e-5 {
				t.Errorf("sequence %d token %d: cached %.7f, whole %.7f", i, j, shared[i][j].lp, whole[i][j].lp)
			}
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
