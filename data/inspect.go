package data

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Decoder turns token ids back into text (tokenizers that can decode implement it).
type Decoder interface {
	Decode(ids []int) string
}

// Inspection summarizes one split of a shard directory.
type Inspection struct {
	Dir        string         `json:"dir"`
	Split      string         `json:"split"`
	Tokenizer  string         `json:"tokenizer"`
	VocabSize  int            `json:"vocab_size"`
	EOT        int            `json:"eot"`
	Shards     []ShardSummary `json:"shards"`
	Tokens     int64          `json:"tokens"`
	Docs       int64          `json:"docs"`
	DocLen     LengthStats    `json:"doc_length_tokens"`
	TopTokens  []TokenCount   `json:"top_tokens"`
	UsedVocab  int            `json:"used_vocab"`
	Samples    []string       `json:"samples,omitempty"`
	Verified   bool           `json:"verified"`
	LenBuckets []Bucket       `json:"doc_length_histogram"`
}

// LengthStats are document length statistics in tokens.
type LengthStats struct {
	Min, Max, Mean, P50, P90, P99 float64
}

// TokenCount is one token's frequency.
type TokenCount struct {
	ID    int     `json:"id"`
	Text  string  `json:"text,omitempty"`
	Count int64   `json:"count"`
	Frac  float64 `json:"fraction"`
}

// Bucket is one bar of the document length histogram: lengths in [Lo, Hi).
type Bucket struct {
	Lo, Hi int64
	Count  int64
}

// Inspect reads a split and computes its statistics: token frequencies over the whole
// split, document lengths, and the first samples documents decoded with dec (nil:
// shown as ids). verify also checks every shard's checksum.
func Inspect(dir, split string, samples int, dec Decoder, verify bool) (*Inspection, error) {
	d, err := OpenShards(dir, split)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	in := &Inspection{Dir: dir, Split: split, Tokenizer: d.Tokenizer(), VocabSize: d.VocabSize(), EOT: d.EOT(), Shards: d.Shards(), Tokens: d.Tokens(), Docs: d.Docs()}
	if verify {
		for _, s := range d.shards {
			if _, err := VerifyShard(s.path); err != nil {
				return nil, err
			}
		}
		in.Verified = true
	}
	counts := make([]int64, d.VocabSize())
	buf := make([]int32, 1<<20)
	var byteBuf []byte
	for off := int64(0); off < d.tokens; off += int64(len(buf)) {
		n := min(int64(len(buf)), d.tokens-off)
		if byteBuf, err = d.readTokens(off, buf[:n], byteBuf); err != nil {
			return nil, err
		}
		for _, t := range buf[:n] {
			counts[t]++
		}
	}
	var lens []int64
	for _, s := range d.shards {
		offs, err := s.offsets()
		if err != nil {
			return nil, err
		}
		for i := 1; i < len(offs); i++ {
			lens = append(lens, int64(offs[i]-offs[i-1]))
		}
	}
	slices.Sort(lens)
	if len(lens) > 0 {
		var sum int64
		for _, l := range lens {
			sum += l
		}
		q := func(p float64) float64 { return float64(lens[min(len(lens)-1, int(p*float64(len(lens))))]) }
		in.DocLen = LengthStats{Min: float64(lens[0]), Max: float64(lens[len(lens)-1]), Mean: float64(sum) / float64(len(lens)), P50: q(0.5), P90: q(0.9), P99: q(0.99)}
		for lo := int64(1); lo <= lens[len(lens)-1]; lo *= 4 {
			b := Bucket{Lo: lo, Hi: lo * 4}
			for _, l := range lens {
				if l >= b.Lo && l < b.Hi {
					b.Count++
				}
			}
			in.LenBuckets = append(in.LenBuckets, b)
		}
	}
	ids := make([]int, 0, len(counts))
	for id, c := range counts {
		if c > 0 {
			ids = append(ids, id)
			in.UsedVocab++
		}
	}
	sort.SliceStable(ids, func(i, j int) bool { return counts[ids[i]] > counts[ids[j]] })
	for _, id := range ids[:min(20, len(ids))] {
		tc := TokenCount{ID: id, Count: counts[id], Frac: float64(counts[id]) / float64(max(1, d.tokens))}
		if dec != nil {
			tc.Text = dec.Decode([]int{id})
		}
		in.TopTokens = append(in.TopTokens, tc)
	}
	for i := int64(0); i < min(int64(samples), d.docs); i++ {
		toks, err := d.Document(i)
		if err != nil {
			return nil, err
		}
		ints := make([]int, len(toks))
		for j, t := range toks {
			ints[j] = int(t)
		}
		if dec != nil {
			in.Samples = append(in.Samples, dec.Decode(ints))
		} else {
			in.Samples = append(in.Samples, fmt.Sprint(ints))
		}
	}
	return in, nil
}

// WriteText prints the inspection as tables.
func (in *Inspection) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s split %q: %d shards, %d documents, %d tokens (tokenizer %s, vocabulary %d, end-of-text %d)\n",
		in.Dir, in.Split, len(in.Shards), in.Docs, in.Tokens, in.Tokenizer, in.VocabSize, in.EOT)
	if in.Verified {
		fmt.Fprintln(w, "checksums: ok")
	}
	fmt.Fprintf(w, "document length (tokens): min %.0f  mean %.1f  p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n",
		in.DocLen.Min, in.DocLen.Mean, in.DocLen.P50, in.DocLen.P90, in.DocLen.P99, in.DocLen.Max)
	var most int64
	for _, b := range in.LenBuckets {
		most = max(most, b.Count)
	}
	for _, b := range in.LenBuckets {
		bar := strings.Repeat("#", int(40*b.Count/max(1, most)))
		fmt.Fprintf(w, "  [%8d, %8d) %8d %s\n", b.Lo, b.Hi, b.Count, bar)
	}
	fmt.Fprintf(w, "vocabulary used: %d of %d; most frequent tokens:\n", in.UsedVocab, in.VocabSize)
	for _, t := range in.TopTokens {
		fmt.Fprintf(w, "  %6d %-16q %10d %6.2f%% %s\n", t.ID, t.Text, t.Count, 100*t.Frac, strings.Repeat("#", int(200*t.Frac)))
	}
	for i, s := range in.Samples {
		if len(s) > 600 {
			s = s[:600] + "…"
		}
		fmt.Fprintf(w, "--- sample %d ---\n%s\n", i, s)
	}
}

// WriteTable prints the report's per-stage table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%-18s %10s %10s %12s %12s %12s %9s  %s\n", "stage", "docs in", "docs out", "MB in", "MB out", "tokens", "MB/s/core", "dropped / counts")
	for _, s := range r.Stages {
		var drops []string
		for _, k := range sortedKeys(s.Dropped) {
			drops = append(drops, fmt.Sprintf("%s=%d", k, s.Dropped[k]))
		}
		for _, k := range sortedKeys(s.Counts) {
			drops = append(drops, fmt.Sprintf("%s:%d", k, s.Counts[k]))
		}
		rate := ""
		if s.MBps > 0 {
			rate = fmt.Sprintf("%.1f", s.MBps)
		}
		tok := ""
		if s.Tokens > 0 {
			tok = fmt.Sprint(s.Tokens)
		}
		fmt.Fprintf(w, "%-18s %10d %10d %12.2f %12.2f %12s %9s  %s\n", s.Name, s.DocsIn, s.DocsOut,
			float64(s.BytesIn)/1e6, float64(s.BytesOut)/1e6, tok, rate, strings.Join(drops, " "))
	}
	if r.Dedup != nil {
		fmt.Fprintf(w, "dedup: %d exact and %d near duplicates removed in %d clusters (%d bands x %d rows, threshold %.2f)\n",
			r.Dedup.ExactRemoved, r.Dedup.NearRemoved, r.Dedup.Clusters, r.Dedup.Bands, r.Dedup.Rows, r.Dedup.Threshold)
	}
	for _, m := range r.Mix {
		fmt.Fprintf(w, "mix: %-16s %12d clean tokens x %.3f epochs -> %d tokens (%d docs)\n", m.Source, m.Tokens, m.Epochs, m.EmittedTokens, m.EmittedDocs)
	}
	for _, k := range sortedKeys(r.Splits) {
		s := r.Splits[k]
		fmt.Fprintf(w, "split %-5s %d docs, %d tokens, %d shards\n", k, s.Docs, s.Tokens, s.Shards)
	}
	if len(r.SkippedFiles) > 0 {
		var parts []string
		for _, k := range sortedKeys(r.SkippedFiles) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.SkippedFiles[k]))
		}
		fmt.Fprintf(w, "files skipped: %s\n", strings.Join(parts, " "))
	}
	fmt.Fprintf(w, "bad input: %d\n", r.BadInput.Count)
	for _, e := range r.BadInput.Entries[:min(10, len(r.BadInput.Entries))] {
		fmt.Fprintf(w, "  %s: %s\n", e.Location, e.Error)
	}
	if r.BadInput.Count > 10 {
		fmt.Fprintf(w, "  ... (all in report.json, up to %d)\n", maxErrorEntries)
	}
	fmt.Fprintf(w, "%d tasks (%d task results reused), %d workers, %.1f MB in, %.1f s wall, %.1f s CPU\n", r.Tasks, r.TasksResumed, r.Workers, float64(r.InputBytes)/1e6, r.Seconds, r.CPUSeconds)
}
