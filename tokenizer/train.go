package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultSpecials are the special tokens a trained MAI tokenizer gets unless
// TrainOptions says otherwise: end of text, the ChatML chat delimiters of
// MAI's default chat template, and fill-in-the-middle markers for code.
var DefaultSpecials = []string{
	"<|endoftext|>", "<|im_start|>", "<|im_end|>",
	"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|pad|>",
}

// TrainOptions configures [Train].
type TrainOptions struct {
	// Name names the tokenizer (default "mai-bpe-<vocab size>").
	Name string
	// VocabSize is the number of ids in all: 256 bytes, the merges, the
	// special tokens and the reserved ids (default 32768).
	VocabSize int
	// Pattern is the pre-tokenization split pattern (default PatternO200K).
	Pattern string
	// Specials are the special tokens, given ids after the merges (nil:
	// DefaultSpecials).
	Specials []string
	// Reserved is the number of extra ids kept for future special tokens,
	// named <|reserved_N|>, after Specials.
	Reserved int
	// MinFrequency stops training when the most frequent pair is rarer
	// (default 2); the vocabulary is then smaller than VocabSize.
	MinFrequency int
	// Workers is the number of goroutines splitting and counting (default GOMAXPROCS).
	Workers int
	// Progress, if set, is called as training advances.
	Progress func(TrainProgress)
}

// TrainProgress reports how far training has come.
type TrainProgress struct {
	Phase   string // "count" (reading text), "pairs" (indexing words) or "merge"
	Bytes   int64  // text read so far
	Words   int    // distinct pieces found
	Merges  int    // merges done
	Target  int    // merges wanted
	Elapsed time.Duration
}

func (o *TrainOptions) defaults() error {
	if o.VocabSize == 0 {
		o.VocabSize = 32768
	}
	if o.Pattern == "" {
		o.Pattern = PatternO200K
	}
	if o.Specials == nil {
		o.Specials = DefaultSpecials
	}
	if o.MinFrequency == 0 {
		o.MinFrequency = 2
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("mai-bpe-%d", o.VocabSize)
	}
	if o.Reserved < 0 {
		return fmt.Errorf("tokenizer: train: negative reserved count %d", o.Reserved)
	}
	seen := map[string]bool{}
	for _, s := range o.Specials {
		if s == "" || seen[s] {
			return fmt.Errorf("tokenizer: train: special token %q empty or repeated", s)
		}
		seen[s] = true
	}
	if min := 256 + len(o.Specials) + o.Reserved; o.VocabSize < min {
		return fmt.Errorf("tokenizer: train: vocabulary size %d is below the %d ids of the bytes, specials and reserved ids", o.VocabSize, min)
	}
	return nil
}

// Train learns a byte-level BPE vocabulary from texts. Ids 0-255 are the
// bytes, then come the merges in the order they were learned (the id is the
// merge rank, as in tiktoken), then the special tokens and reserved ids. Texts
// are split with opts.Pattern and counted on opts.Workers goroutines; merges
// update pair counts incrementally. Cancelling ctx stops training with its error.
func Train(ctx context.Context, texts iter.Seq[string], opts TrainOptions) (*Tokenizer, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	sp, err := newSplitter(opts.Pattern)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	report := func(p TrainProgress) {
		if opts.Progress != nil {
			p.Elapsed = time.Since(start)
			opts.Progress(p)
		}
	}
	counts, nbytes, err := countPieces(ctx, texts, sp, opts.Workers, report)
	if err != nil {
		return nil, err
	}
	target := opts.VocabSize - 256 - len(opts.Specials) - opts.Reserved
	tr := newTrainer(counts, opts.Workers)
	report(TrainProgress{Phase: "pairs", Bytes: nbytes, Words: len(tr.words), Target: target})
	if err := tr.run(ctx, target, int64(opts.MinFrequency), func(n int) {
		report(TrainProgress{Phase: "merge", Bytes: nbytes, Words: len(tr.words), Merges: n, Target: target})
	}); err != nil {
		return nil, err
	}
	ranks := make(map[string]int, len(tr.tokens))
	for id, tok := range tr.tokens {
		ranks[tok] = id
	}
	specials := make(map[string]int, len(opts.Specials)+opts.Reserved)
	next := len(tr.tokens)
	for _, s := range opts.Specials {
		specials[s] = next
		next++
	}
	for i := range opts.Reserved {
		specials[fmt.Sprintf("<|reserved_%d|>", i)] = next
		next++
	}
	t, err := fromRanks(opts.Name, opts.Pattern, ranks, specials)
	if err != nil {
		return nil, err
	}
	if _, ok := specials["<|im_start|>"]; ok {
		t.cfg.ChatTemplate = DefaultChatTemplate
	}
	if _, ok := specials["<|pad|>"]; ok {
		t.cfg.PadToken = "<|pad|>"
	}
	return t, nil
}

// countPieces splits texts on workers goroutines and counts each distinct piece.
func countPieces(ctx context.Context, texts iter.Seq[string], sp *splitter, workers int, report func(TrainProgress)) (map[string]int64, int64, error) {
	type batch []string
	ch := make(chan batch, workers*2)
	results := make([]map[string]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			m := make(map[string]int64, 1<<16)
			var bounds []int32
			for b := range ch {
				for _, text := range b {
					bounds = sp.appendPieces(bounds[:0], text)
					p := 0
					for _, e := range bounds {
						piece := text[p:e]
						p = int(e)
						if c, ok := m[piece]; ok {
							m[piece] = c + 1
						} else {
							m[strings.Clone(piece)] = 1
						}
					}
				}
			}
			results[w] = m
		})
	}
	var nbytes int64
	var cur batch
	curBytes := 0
	lastReport := time.Now()
	var ctxErr error
	for text := range texts {
		if err := ctx.Err(); err != nil {
			ctxErr = err
			break
		}
		cur = append(cur, text)
		curBytes += len(text)
		nbytes += int64(len(text))
		if curBytes >= 1<<20 {
			ch <- cur
			cur, curBytes = nil, 0
		}
		if time.Since(lastReport) > time.Second {
			report(TrainProgress{Phase: "count", Bytes: nbytes})
			lastReport = time.Now()
		}
	}
	if len(cur) > 0 {
		ch <- cur
	}
	close(ch)
	wg.Wait()
	if ctxErr != nil {
		return nil, 0, ctxErr
	}
	total := results[0]
	for _, m := range results[1:] {
		for k, v := range m {
			total[k] += v
		}
	}
	report(TrainProgress{Phase: "count", Bytes: nbytes, Words: len(total)})
	if len(total) == 0 {
		return nil, 0, errors.New("tokenizer: train: no text to learn from")
	}
	return total, nbytes, nil
}

// pairKey packs a pair of ids.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// trainer holds the state of incremental BPE training.
type trainer struct {
	words   [][]int32 // each distinct piece as symbol ids
	counts  []int64   // occurrences of each word
	tokens  []string  // bytes of each id
	ids     map[string]int32
	pairs   map[uint64]int64   // occurrences of each adjacent pair
	where   map[uint64][]int32 // words that may contain each pair
	seen    []int32            // per word, the last merge that visited it
	workers int
}

func newTrainer(counts map[string]int64, workers int) *trainer {
	keys := make([]string, 0, len(counts))
	total := 0
	for k := range counts {
		keys = append(keys, k)
		total += len(k)
	}
	slices.Sort(keys) // deterministic word order
	tr := &trainer{
		words:   make([][]int32, len(keys)),
		counts:  make([]int64, len(keys)),
		ids:     make(map[string]int32),
		seen:    make([]int32, len(keys)),
		workers: workers,
	}
	backing := make([]int32, total)
	off := 0
	for i, k := range keys {
		w := backing[off : off+len(k) : off+len(k)]
		for j := 0; j < len(k); j++ {
			w[j] = int32(k[j])
		}
		off += len(k)
		tr.words[i] = w
		tr.counts[i] = counts[k]
		tr.seen[i] = -1
	}
	for b := range 256 {
		tr.tokens = append(tr.tokens, string([]byte{byte(b)}))
		tr.ids[tr.tokens[b]] = int32(b)
	}
	tr.countPairs()
	return tr
}

// countPairs counts the pairs of all words in parallel and indexes where they occur.
func (tr *trainer) countPairs() {
	n := len(tr.words)
	type shard struct {
		pairs map[uint64]int64
		where map[uint64][]int32
	}
	shards := make([]shard, tr.workers)
	var wg sync.WaitGroup
	for w := range tr.workers {
		wg.Go(func() {
			s := shard{make(map[uint64]int64), make(map[uint64][]int32)}
			for i := w * n / tr.workers; i < (w+1)*n/tr.workers; i++ {
				word := tr.words[i]
				for j := 0; j+1 < len(word); j++ {
					k := pairKey(word[j], word[j+1])
					s.pairs[k] += tr.counts[i]
					if l := s.where[k]; len(l) == 0 || l[len(l)-1] != int32(i) {
						s.where[k] = append(l, int32(i))
					}
				}
			}
			shards[w] = s
		})
	}
	wg.Wait()
	tr.pairs, tr.where = shards[0].pairs, shards[0].where
	for _, s := range shards[1:] {
		for k, v := range s.pairs {
			tr.pairs[k] += v
		}
		for k, v := range s.where {
			tr.where[k] = append(tr.where[k], v...)
		}
	}
}

// pairItem is a heap entry; entries go stale as counts change and are
// checked against tr.pairs when popped.
type pairItem struct {
	count int64
	pair  uint64
}

// better orders by count, then by the smaller pair, so training is deterministic.
func better(a, b pairItem) bool {
	if a.count != b.count {
		return a.count > b.count
	}
	return a.pair < b.pair
}

type pairHeap []pairItem

func (h *pairHeap) push(it pairItem) {
	*h = append(*h, it)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !better(it, s[p]) {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = it
}

func (h *pairHeap) pop() pairItem {
	s := *h
	top := s[0]
	last := s[len(s)-1]
	s = s[:len(s)-1]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		if r := l + 1; r < len(s) && better(s[r], s[l]) {
			l = r
		}
		if !better(s[l], last) {
			break
		}
		s[i] = s[l]
		i = l
	}
	if len(s) > 0 {
		s[i] = last
	}
	*h = s
	return top
}

// run performs up to target merges.
func (tr *trainer) run(ctx context.Context, target int, minFreq int64, progress func(int)) error {
	h := make(pairHeap, 0, len(tr.pairs))
	for k, v := range tr.pairs {
		h = append(h, pairItem{v, k})
	}
	slices.SortFunc(h, func(a, b pairItem) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	}) // a sorted slice is a valid heap
	delta := make(map[uint64]int64)
	lastReport := time.Now()
	merges, step := 0, int32(0)
	for merges < target && len(h) > 0 {
		if merges%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := h.pop()
		cur := tr.pairs[top.pair]
		if cur != top.count {
			if cur > 0 {
				h.push(pairItem{cur, top.pair})
			}
			continue
		}
		if cur < minFreq {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		tok := tr.tokens[a] + tr.tokens[b]
		z, exists := tr.ids[tok]
		if !exists {
			z = int32(len(tr.tokens))
			tr.tokens = append(tr.tokens, tok)
			tr.ids[tok] = z
			merges++
		}
		tr.merge(a, b, z, step, delta)
		step++
		for k, d := range delta {
			if d == 0 {
				continue
			}
			v := tr.pairs[k] + d
			if v <= 0 {
				delete(tr.pairs, k)
				delete(tr.where, k)
				continue
			}
			tr.pairs[k] = v
			if d > 0 {
				h.push(pairItem{v, k})
			}
		}
		clear(delta)
		delete(tr.pairs, top.pair)
		delete(tr.where, top.pair)
		if time.Since(lastReport) > time.Second || merges == target {
			progress(merges)
			lastReport = time.Now()
		}
	}
	progress(merges)
	return nil
}

// merge replaces every (a, b) in the words that hold it with z and records
// how pair counts change in delta.
func (tr *trainer) merge(a, b, z, step int32, delta map[uint64]int64) {
	for _, wi := range tr.where[pairKey(a, b)] {
		if tr.seen[wi] == step {
			continue
		}
		tr.seen[wi] = step
		word := tr.words[wi]
		c := tr.counts[wi]
		out := 0
		changed := false
		for i := 0; i < len(word); i++ {
			if i+1 < len(word) && word[i] == a && word[i+1] == b {
				changed = true
				if out > 0 {
					prev := word[out-1]
					delta[pairKey(prev, a)] -= c
					delta[pairKey(prev, z)] += c
					tr.where[pairKey(prev, z)] = appendWord(tr.where[pairKey(prev, z)], wi)
				}
				if i+2 < len(word) {
					next := word[i+2]
					delta[pairKey(b, next)] -= c
					delta[pairKey(z, next)] += c
					tr.where[pairKey(z, next)] = appendWord(tr.where[pairKey(z, next)], wi)
				}
				word[out] = z
				out++
				i++
				continue
			}
			word[out] = word[i]
			out++
		}
		if changed {
			tr.words[wi] = word[:out]
		}
	}
}

func appendWord(l []int32, w int32) []int32 {
	if len(l) > 0 && l[len(l)-1] == w {
		return l
	}
	return append(l, w)
}
