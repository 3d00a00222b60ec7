package tokenizer

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func pieces(sp *splitter, s string) []string {
	var out []string
	p := 0
	for _, e := range sp.appendPieces(nil, s) {
		out = append(out, s[p:e])
		p = int(e)
	}
	return out
}

func TestSplit(t *testing.T) {
	tests := []struct {
		pattern, text string
		want          []string
	}{
		{PatternCL100K, "Hello world", []string{"Hello", " world"}},
		{PatternCL100K, "I'm 12345 ok", []string{"I", "'m", " ", "123", "45", " ok"}},
		{PatternCL100K, "x   y", []string{"x", "  ", " y"}},
		{PatternCL100K, "a\n\n  b", []string{"a", "\n\n", " ", " b"}},
		{PatternCL100K, "a \n \nb", []string{"a", " \n \n", "b"}},
		{PatternCL100K, "x\n  ", []string{"x", "\n  "}},
		{PatternCL100KLegacy, "x\n  ", []string{"x", "\n", "  "}},
		{PatternCL100K, "'S 'LL 're", []string{"'S", " '", "LL", " '", "re"}},
		{PatternCL100K, "(hello) !!\n\n", []string{"(hello", ")", " !!\n\n"}},
		{PatternCL100K, "\tfoo", []string{"\tfoo"}},
		{PatternQwen2, "2024", []string{"2", "0", "2", "4"}},
		{PatternO200K, "HTTPServer getURL", []string{"HTTPServer", " get", "URL"}},
		{PatternO200K, "Don't stop", []string{"Don't", " stop"}},
		{PatternO200K, "a/b//c\n", []string{"a", "/b", "//", "c", "\n"}},
		{PatternO200K, "\u0301", []string{"\u0301"}},
		{PatternO200K, "ǅungla", []string{"ǅungla"}},
		{PatternGPT2, "Hello  world's 42!", []string{"Hello", " ", " world", "'s", " 42", "!"}},
		{PatternGPT2, "I'M", []string{"I", "'", "M"}},
		{"", "anything at all", []string{"anything at all"}},
		{`\d+|[a-z]+`, "ab12 cd", []string{"ab", "12", " ", "cd"}},
		{PatternCL100K, "bad\xffbyte\xc3", []string{"bad", "\xffbyte", "\xc3"}},
	}
	for _, tt := range tests {
		sp, err := newSplitter(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := pieces(sp, tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("split(%.20q, %q) = %q, want %q", tt.pattern, tt.text, got, tt.want)
		}
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := mustLoad(t, "byte")
	if tok.VocabSize() != 257 || tok.EOT() != 256 {
		t.Fatalf("byte: vocab %d eot %d, want 257 and 256", tok.VocabSize(), tok.EOT())
	}
	s := "héllo<|endoftext|>\x00\xff"
	ids := tok.Encode(s)
	if len(ids) != len(s) || ids[1] != 0xc3 {
		t.Fatalf("Encode(%q) = %v", s, ids)
	}
	if got := tok.EncodeWithSpecial("a<|endoftext|>"); !slices.Equal(got, []int{'a', 256}) {
		t.Fatalf("EncodeWithSpecial = %v", got)
	}
	if got := tok.Decode(ids); got != s {
		t.Fatalf("Decode = %q", got)
	}
}

func TestSpecialTokens(t *testing.T) {
	tok := mustLoad(t, "cl100k_base")
	text := "a<|endoftext|>b<|fim_prefix|>"
	if got := tok.EncodeWithSpecial(text); !slices.Equal(got, []int{64, 100257, 65, 100258}) {
		t.Errorf("EncodeWithSpecial = %v", got)
	}
	plain := tok.Encode(text)
	if slices.Contains(plain, 100257) || tok.Decode(plain) != text {
		t.Errorf("Encode treated special text as special: %v", plain)
	}
	if _, err := tok.EncodeWith(text, EncodeOptions{DisallowAllSpecial: true}); !errors.Is(err, ErrDisallowedSpecial) {
		t.Errorf("disallowed special: err = %v", err)
	}
	got, err := tok.EncodeWith(text, EncodeOptions{AllowedSpecial: []string{"<|endoftext|>"}, DisallowedSpecial: []string{"<|endofprompt|>"}})
	if err != nil || !slices.Equal(got[:3], []int{64, 100257, 65}) || slices.Contains(got, 100258) {
		t.Errorf("allowed endoftext only = %v, %v", got, err)
	}
	if _, err := tok.EncodeWith(text, EncodeOptions{AllowedSpecial: []string{"<|nope|>"}}); err == nil {
		t.Error("unknown allowed special accepted")
	}
	if id, ok := tok.SpecialID("<|endofprompt|>"); !ok || id != 100276 {
		t.Errorf("SpecialID = %d %v", id, ok)
	}
	if tok.EOT() != 100257 || tok.VocabSize() != 100277 {
		t.Errorf("EOT %d VocabSize %d", tok.EOT(), tok.VocabSize())
	}
	if !tok.IsSpecial(100257) || tok.IsSpecial(64) {
		t.Error("IsSpecial")
	}
}

func TestDecodeStrict(t *testing.T) {
	tok := mustLoad(t, "cl100k_base")
	if _, err := tok.DecodeStrict([]int{100261}); err == nil { // a hole between specials
		t.Error("DecodeStrict accepted an unused id")
	}
	if got := tok.Decode([]int{9906, -1}); got != "Hello\uFFFD" {
		t.Errorf("Decode = %q", got)
	}
}

func TestLongPieces(t *testing.T) {
	// Long pieces take the heap path; it must agree with the quadratic scan.
	for _, name := range []string{"cl100k_base", "o200k_base"} {
		tok := mustLoad(t, name)
		for _, s := range []string{
			strings.Repeat(" ", 5000), strings.Repeat("a", 3000), strings.Repeat("ab", 700),
			strings.Repeat("\n", 999), strings.Repeat("😀", 300), strings.Repeat("xyzzy", 100),
		} {
			ids := tok.Encode(s)
			if tok.Decode(ids) != s {
				t.Fatalf("%s: round trip of %d bytes failed", name, len(s))
			}
			// Compare the heap with the scan on the same piece.
			st := tok.getState()
			parts := make([]part, 0, len(s)+1)
			for i := 0; i < len(s); i++ {
				parts = append(parts, part{start: int32(i), id: tok.m.byteIDs[s[i]]})
			}
			parts = append(parts, part{start: int32(len(s)), id: -1})
			heap := tok.m.mergeHeap(st, s, slices.Clone(parts), nil)
			scan := scanMerge(&tok.m, st, s, slices.Clone(parts))
			if !slices.Equal(heap, scan) {
				t.Errorf("%s: heap and scan disagree on %.20q...", name, s)
			}
		}
	}
}

// scanMerge forces the quadratic path whatever the length.
func scanMerge(m *model, st *encState, piece string, parts []part) []int {
	n := len(parts)
	for i := 0; i+2 < n; i++ {
		parts[i].rank, parts[i].newID = m.pair(piece, parts[i].start, parts[i+2].start, parts[i].id, parts[i+1].id)
	}
	for {
		best, bestRank := -1, uint32(noRank)
		for i := 0; i+2 < n; i++ {
			if parts[i].rank < bestRank {
				best, bestRank = i, parts[i].rank
			}
		}
		if best < 0 {
			break
		}
		parts[best].id = parts[best].newID
		copy(parts[best+1:n], parts[best+2:n])
		n--
		if best+2 < n {
			parts[best].rank, parts[best].newID = m.pair(piece, parts[best].start, parts[best+2].start, parts[best].id, parts[best+1].id)
		} else {
			parts[best].rank = noRank
		}
		if best > 0 {
			p := &parts[best-1]
			p.rank, p.newID = m.pair(piece, p.start, parts[best+1].start, p.id, parts[best].id)
		}
	}
	var out []int
	for i := 0; i+1 < n; i++ {
		out = append(out, int(parts[i].id))
	}
	return out
}

func TestEncodeBatch(t *testing.T) {
	tok := mustLoad(t, "o200k_base")
	texts := multilingual(t)
	got := tok.EncodeBatchWorkers(texts, 3)
	for i, s := range texts {
		if !slices.Equal(got[i], tok.Encode(s)) {
			t.Fatalf("batch result %d differs", i)
		}
	}
}

func TestParseTiktokenErrors(t *testing.T) {
	tests := map[string]string{
		"no space":     "QQ==\n",
		"bad base64":   "!!!! 1\n",
		"bad rank":     "QQ== x\n",
		"negative":     "QQ== -1\n",
		"duplicate":    "QQ== 1\nQQ== 2\n",
		"empty file":   "",
		"empty token":  " 3\n",
		"huge rank":    "QQ== 99999999999\n",
		"missing byte": "QQ== 0\nQg== 1\n",
		"same rank":    "QQ== 0\nQg== 0\n",
		"sparse ranks": "QQ== 999999999\n",
	}
	for name, in := range tests {
		ranks, err := ParseTiktoken(strings.NewReader(in))
		if err == nil {
			_, err = fromRanks("test", PatternCL100K, ranks, nil)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "tokenizer") {
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func TestTiktokenRoundTrip(t *testing.T) {
	tok := mustLoad(t, "cl100k_base")
	var buf bytes.Buffer
	if err := tok.WriteTiktoken(&buf); err != nil {
		t.Fatal(err)
	}
	ranks, err := ParseTiktoken(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ranks) != 100256 || ranks["Hello"] != 9906 {
		t.Fatalf("re-read %d ranks, Hello=%d", len(ranks), ranks["Hello"])
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "hello world", "a\n\n  b", "\xff\xfe", "日本語 😀", strings.Repeat(" ", 300), "'s'S'ſ"} {
		f.Add(s)
	}
	toks := []*Tokenizer{mustLoad(f, "cl100k_base"), mustLoad(f, "o200k_base"), mustLoad(f, "gpt2"), mustLoad(f, "byte")}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			if got := tok.Decode(tok.Encode(s)); got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.Name(), s, got)
			}
		}
	})
}

func FuzzParseTiktoken(f *testing.F) {
	f.Add("QQ== 0\nQg== 1\n")
	f.Add("IQ== 0\r\n\r\nIg== 1")
	f.Add("!!!! x")
	f.Fuzz(func(t *testing.T, s string) {
		ranks, err := ParseTiktoken(strings.NewReader(s))
		if err == nil {
			_, _ = fromRanks("fuzz", PatternO200K, ranks, map[string]int{"<|endoftext|>": 5})
		}
	})
}

func TestAppendEncodeNoAlloc(t *testing.T) {
	tok := mustLoad(t, "o200k_base")
	text := "The quick brown fox jumps over the lazy dog; naïve café, 12345 😀\n\tfunc main() {}\n"
	dst := make([]int, 0, 1024)
	dst = tok.AppendEncode(dst[:0], text) // warm the state and its word cache
	allocs := testing.AllocsPerRun(100, func() {
		dst = tok.AppendEncode(dst[:0], text)
	})
	if allocs != 0 {
		t.Errorf("AppendEncode allocates %.1f times per call", allocs)
	}
	if n := testing.AllocsPerRun(100, func() { tok.Count(text) }); n != 0 {
		t.Errorf("Count allocates %.1f times per call", n)
	}
}
