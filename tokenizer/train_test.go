package tokenizer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func sliceSeq(texts []string) func(func(string) bool) {
	return slices.Values(texts)
}

// naiveTrain is the textbook BPE training loop: count every pair anew, merge
// the most frequent (ties: smaller pair), repeat. The incremental trainer
// must learn exactly the same tokens.
func naiveTrain(texts []string, pattern string, merges int, minFreq int64) []string {
	sp, _ := newSplitter(pattern)
	counts := map[string]int64{}
	for _, text := range texts {
		p := 0
		for _, e := range sp.appendPieces(nil, text) {
			counts[text[p:e]]++
			p = int(e)
		}
	}
	type word struct {
		syms []int32
		n    int64
	}
	var words []word
	for k, n := range counts {
		w := word{n: n}
		for i := 0; i < len(k); i++ {
			w.syms = append(w.syms, int32(k[i]))
		}
		words = append(words, w)
	}
	var tokens []string
	ids := map[string]int32{}
	for b := range 256 {
		tokens = append(tokens, string([]byte{byte(b)}))
		ids[tokens[b]] = int32(b)
	}
	for done := 0; done < merges; {
		pairs := map[uint64]int64{}
		for _, w := range words {
			for j := 0; j+1 < len(w.syms); j++ {
				pairs[pairKey(w.syms[j], w.syms[j+1])] += w.n
			}
		}
		best := pairItem{}
		for k, v := range pairs {
			if it := (pairItem{v, k}); best.count == 0 || better(it, best) {
				best = it
			}
		}
		if best.count < minFreq || best.count == 0 {
			break
		}
		a, b := int32(best.pair>>32), int32(uint32(best.pair))
		tok := tokens[a] + tokens[b]
		z, ok := ids[tok]
		if !ok {
			z = int32(len(tokens))
			tokens = append(tokens, tok)
			ids[tok] = z
			done++
		}
		for i := range words {
			s := words[i].syms
			var out []int32
			for j := 0; j < len(s); j++ {
				if j+1 < len(s) && s[j] == a && s[j+1] == b {
					out = append(out, z)
					j++
				} else {
					out = append(out, s[j])
				}
			}
			words[i].syms = out
		}
	}
	return tokens
}

func randomCorpus(seed uint64, n int) []string {
	rng := rand.New(rand.NewPCG(seed, 7))
	words := []string{"the", "then", "there", "hello", "help", "aaaa", "abab", "func", "return", "err", "nil", "if", "Hello", "x", "ñandú", "日本", "😀"}
	var texts []string
	for range n {
		var b strings.Builder
		for range 5 + rng.IntN(30) {
			b.WriteString(words[rng.IntN(len(words))])
			switch rng.IntN(5) {
			case 0:
				b.WriteString("\n")
			case 1:
				b.WriteString(", ")
			default:
				b.WriteString(" ")
			}
		}
		texts = append(texts, b.String())
	}
	return texts
}

func TestTrainMatchesNaive(t *testing.T) {
	for _, pattern := range []string{PatternO200K, PatternCL100K, PatternGPT2} {
		texts := randomCorpus(3, 300)
		want := naiveTrain(texts, pattern, 120, 2)
		tok, err := Train(context.Background(), sliceSeq(texts), TrainOptions{VocabSize: 256 + 120 + 2, Pattern: pattern, Specials: []string{"<|endoftext|>", "<|im_end|>"}, Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for id := 0; id < len(want); id++ {
			s, _ := tok.Token(id)
			got = append(got, s)
		}
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("pattern %.10q: token %d = %q, naive trainer %q", pattern, i, got[i], want[i])
				}
			}
			t.Fatalf("pattern %.10q: %d tokens, naive trainer %d", pattern, len(got), len(want))
		}
		if id, ok := tok.SpecialID("<|im_end|>"); !ok || id != len(want)+1 {
			t.Errorf("special id %d %v", id, ok)
		}
	}
}

func TestTrain(t *testing.T) {
	texts := randomCorpus(1, 2000)
	var progress []TrainProgress
	tok, err := Train(context.Background(), sliceSeq(texts), TrainOptions{
		VocabSize: 400, Reserved: 3,
		Progress: func(p TrainProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() > 400 {
		t.Fatalf("vocab %d > 400", tok.VocabSize())
	}
	if id, ok := tok.SpecialID("<|reserved_2|>"); !ok || id != tok.VocabSize()-1 {
		t.Errorf("reserved id %d %v, vocab %d", id, ok, tok.VocabSize())
	}
	if tok.EOT() < 0 || tok.Config().ChatTemplate == "" {
		t.Error("no EOT or chat template")
	}
	total := 0
	for _, s := range texts {
		ids := tok.Encode(s)
		total += len(ids)
		if tok.Decode(ids) != s {
			t.Fatalf("round trip failed for %q", s)
		}
	}
	if n := len(strings.Join(texts, "")); float64(n)/float64(total) < 3 {
		t.Errorf("only %.2f bytes per token on the training text", float64(n)/float64(total))
	}
	if len(progress) == 0 || progress[len(progress)-1].Phase != "merge" {
		t.Errorf("progress reports: %+v", progress)
	}
	// Training is deterministic whatever the worker count.
	tok2, _ := Train(context.Background(), sliceSeq(texts), TrainOptions{VocabSize: 400, Reserved: 3, Workers: 1})
	for id := range tok.VocabSize() {
		a, _ := tok.Token(id)
		b, _ := tok2.Token(id)
		if a != b {
			t.Fatalf("token %d: %q with GOMAXPROCS workers, %q with 1", id, a, b)
		}
	}
}

func TestTrainErrors(t *testing.T) {
	ctx := context.Background()
	for i, opts := range []TrainOptions{
		{VocabSize: 100},
		{Specials: []string{"<a>", "<a>"}},
		{Reserved: -1},
		{Pattern: "(unclosed"},
	} {
		if _, err := Train(ctx, sliceSeq([]string{"some text"}), opts); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	if _, err := Train(ctx, sliceSeq(nil), TrainOptions{}); err == nil {
		t.Error("empty corpus: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Train(cctx, sliceSeq(randomCorpus(1, 10)), TrainOptions{}); err == nil {
		t.Error("cancelled: no error")
	}
}

func BenchmarkTrain(b *testing.B) {
	texts := randomCorpus(9, 5000)
	for b.Loop() {
		if _, err := Train(context.Background(), sliceSeq(texts), TrainOptions{VocabSize: 2000, MinFrequency: 1}); err != nil {
			b.Fatal(err)
		}
	}
	_ = fmt.Sprint()
}
