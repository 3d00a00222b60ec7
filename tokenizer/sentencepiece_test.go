package tokenizer

import (
	"container/heap"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// spmBigram is a candidate merge of llama.cpp's SentencePiece tokenizer.
type spmBigram struct {
	left, right int
	score       float32
	size        int
}

type spmQueue []spmBigram

func (q spmQueue) Len() int { return len(q) }
func (q spmQueue) Less(i, j int) bool {
	// The highest score first, then the leftmost (llama.cpp's comparator).
	return q[i].score > q[j].score || q[i].score == q[j].score && q[i].left < q[j].left
}
func (q spmQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *spmQueue) Push(x any)   { *q = append(*q, x.(spmBigram)) }
func (q *spmQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// spmEncode encodes text as llama.cpp's llm_tokenizer_spm does with the
// vocabulary v, whose token ids ids holds (no special tokens in the text): spaces to ▁, a leading ▁
// with AddSpacePrefix, the best-scored adjacent pair merged first, and the
// symbols that are no token resegmented or written as byte tokens.
func spmEncode(v *SentencePieceVocab, ids map[string]int, text string) []int {
	if text == "" {
		return nil
	}
	if v.AddSpacePrefix {
		text = " " + text
	}
	text = strings.ReplaceAll(text, " ", "▁")
	type sym struct {
		start, n   int
		prev, next int
	}
	var syms []sym
	for off := 0; off < len(text); {
		_, n := utf8.DecodeRuneInString(text[off:])
		syms = append(syms, sym{start: off, n: n, prev: len(syms) - 1, next: len(syms) + 1})
		off += n
	}
	syms[len(syms)-1].next = -1
	var q spmQueue
	revMerge := map[string][2]int{}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		s := text[syms[l].start : syms[l].start+syms[l].n+syms[r].n]
		id, ok := ids[s]
		if !ok {
			return
		}
		heap.Push(&q, spmBigram{left: l, right: r, score: v.Scores[id], size: len(s)})
		revMerge[s] = [2]int{l, r}
	}
	for i := 1; i < len(syms); i++ {
		try(i-1, i)
	}
	for q.Len() > 0 {
		b := heap.Pop(&q).(spmBigram)
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	var out []int
	var reseg func(s sym)
	reseg = func(s sym) {
		str := text[s.start : s.start+s.n]
		if id, ok := ids[str]; ok {
			out = append(out, id)
			return
		}
		if p, ok := revMerge[str]; ok {
			reseg(syms[p[0]])
			reseg(syms[p[1]])
			return
		}
		for j := range len(str) {
			out = append(out, ids[byteTokenName(str[j])])
		}
	}
	for i := 0; i != -1; i = syms[i].next {
		reseg(syms[i])
	}
	return out
}

func byteTokenName(b byte) string {
	const hex = "0123456789ABCDEF"
	return "<0x" + string(hex[b>>4]) + string(hex[b&15]) + ">"
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spTexts are the multilingual set plus code with runs of spaces and tabs.
func spTexts(t *testing.T) []string {
	texts := multilingual(t)
	texts = append(texts, "", " ", "  ", "\t", "a  b   c    d", "    return x\n\t\tif y {\n", "aaaaaaaaaa", "▁▁x", "<0x41>")
	texts = append(texts, string(readFileT(t, "sentencepiece.go")), string(readFileT(t, "hf.go")))
	return texts
}

// TestSentencePieceRoundTrip takes the Llama 2 / Mistral tokenizer.json of
// testdata (equal to transformers.js, see TestHFReference) to llama.cpp's
// form (tokens, scores, types) and back to a tokenizer.json with merges
// derived from the scores: both tokenizer.json files give the same ids as
// llama.cpp's SentencePiece algorithm on the vocabulary and scores.
func TestSentencePieceRoundTrip(t *testing.T) {
	tjPath, tcPath, ok := hfFiles(t, "", "llama2")
	if !ok {
		t.Skip("no llama2 tokenizer in testdata")
	}
	tj, tc := readFileT(t, tjPath), readFileT(t, tcPath)
	orig, err := ParseHF(tj, tc, "llama2")
	if err != nil {
		t.Fatal(err)
	}
	v, err := SentencePieceFromHF(tj, tc)
	if err != nil {
		t.Fatal(err)
	}
	if !v.AddSpacePrefix || v.Unknown != 0 || v.BOS != 1 || v.EOS != 2 || !v.AddBOS || v.AddEOS {
		t.Fatalf("vocab: space prefix %v unk %d bos %d eos %d add bos %v add eos %v", v.AddSpacePrefix, v.Unknown, v.BOS, v.EOS, v.AddBOS, v.AddEOS)
	}
	wantTypes := map[int]int32{0: SPUnknown, 1: SPControl, 2: SPControl, 3: SPByte, 258: SPByte, 259: SPNormal}
	for id, typ := range wantTypes {
		if v.Types[id] != typ {
			t.Errorf("token %d %q: type %d, want %d", id, v.Tokens[id], v.Types[id], typ)
		}
	}
	tj2, tc2, err := v.MarshalHF()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseHF(tj2, tc2, "llama2 from gguf")
	if err != nil {
		t.Fatal(err)
	}
	if back.VocabSize() != orig.VocabSize() {
		t.Fatalf("vocab size %d, want %d", back.VocabSize(), orig.VocabSize())
	}
	ids := map[string]int{}
	for id, s := range v.Tokens {
		ids[s] = id
	}
	texts := spTexts(t)
	for _, s := range texts {
		want := orig.Encode(s)
		if got := back.Encode(s); !slices.Equal(got, want) {
			reportDiff(t, "round trip", orig, s, got, want)
			return
		}
		if ref := spmEncode(v, ids, s); !slices.Equal(ref, want) {
			reportDiff(t, "llama.cpp's algorithm", orig, s, ref, want)
			return
		}
		if got, want := back.Decode(want), orig.Decode(want); got != want {
			t.Fatalf("decode %q, want %q", clipText(got), clipText(want))
		}
	}
	sameEncoding(t, orig, back, []string{"<s>Hello</s> world", "</s><s>"})
	if got, want := back.AddSpecialTokens([]int{5}), orig.AddSpecialTokens([]int{5}); !slices.Equal(got, want) {
		t.Errorf("AddSpecialTokens = %v, want %v", got, want)
	}
	if c, o := back.Config(), orig.Config(); c.BOSToken != o.BOSToken || c.EOSToken != o.EOSToken || c.UnkToken != o.UnkToken || c.AddBOSToken != o.AddBOSToken {
		t.Errorf("config %+v, want %+v", c, o)
	}
	t.Logf("%d texts encode alike", len(texts))

	// A GGUF from llama.cpp's converter carries SentencePiece's own scores,
	// which for this vocabulary fall with the id: merges derived from them
	// must encode as llama.cpp does with them.
	native := *v
	native.Scores = make([]float32, len(v.Scores))
	for id := range native.Scores {
		if v.Types[id] == SPNormal {
			native.Scores[id] = -float32(id)
		}
	}
	tjN, tcN, err := native.MarshalHF()
	if err != nil {
		t.Fatal(err)
	}
	nat, err := ParseHF(tjN, tcN, "native scores")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range texts {
		if got, want := nat.Encode(s), spmEncode(&native, ids, s); !slices.Equal(got, want) {
			reportDiff(t, "native scores", orig, s, got, want)
			return
		}
	}

	// The same vocabulary with Metaspace pre-tokenization instead of the
	// Prepend/Replace normalizer (as transformers writes non-legacy Llama
	// tokenizers) converts alike, and encodes alike except for text that
	// starts with a space: Metaspace adds no second ▁ there, llama.cpp and
	// the legacy normalizer do.
	var raw map[string]any
	if err := json.Unmarshal(tj, &raw); err != nil {
		t.Fatal(err)
	}
	raw["normalizer"] = nil
	raw["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false}
	tjMeta, _ := json.Marshal(raw)
	meta, err := ParseHF(tjMeta, tc, "metaspace")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := SentencePieceFromHF(tjMeta, tc)
	if err != nil {
		t.Fatal(err)
	}
	if !vm.AddSpacePrefix || !slices.Equal(vm.Scores, v.Scores) || !slices.Equal(vm.Types, v.Types) {
		t.Fatal("Metaspace tokenizer.json converts differently from the normalizer one")
	}
	for _, s := range multilingual(t) {
		if strings.HasPrefix(s, " ") {
			continue
		}
		if got, want := meta.Encode(s), orig.Encode(s); !slices.Equal(got, want) {
			reportDiff(t, "metaspace", orig, s, got, want)
			return
		}
	}
}

// TestHFMerges checks the merge order of transformers' generate_merges on
// a small vocabulary: by the made token's score, then the longer left
// part, then the parts' ids.
func TestHFMerges(t *testing.T) {
	v := &SentencePieceVocab{
		Tokens: []string{"<unk>", "<0x41>", "a", "b", "c", "ab", "bc", "abc", "ca"},
		Scores: []float32{0, 0, -100, -100, -100, -1, -3, -2, -2},
		Types:  []int32{SPUnknown, SPByte, SPNormal, SPNormal, SPNormal, SPNormal, SPNormal, SPNormal, SPNormal},
	}
	got, err := v.HFMerges()
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"a", "b"}, {"ab", "c"}, {"a", "bc"}, {"c", "a"}, {"b", "c"}}
	if !slices.Equal(got, want) {
		t.Errorf("HFMerges = %v, want %v", got, want)
	}
	v.Merges = []string{"b c", "a bc"}
	if got, _ := v.HFMerges(); !slices.Equal(got, [][2]string{{"b", "c"}, {"a", "bc"}}) {
		t.Errorf("HFMerges with Merges = %v", got)
	}
	v.Merges = []string{"bc"}
	if _, err := v.HFMerges(); err == nil {
		t.Error("a merge without a space was accepted")
	}
}

func TestSentencePieceFromHFErrors(t *testing.T) {
	tests := []struct{ name, json string }{
		{"not json", `{`},
		{"byte level", `{"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{},"merges":[]}}`},
		{"no byte fallback", `{"normalizer":{"type":"Replace","pattern":{"String":" "},"content":"▁"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`},
		{"nfkc", `{"normalizer":{"type":"NFKC"},"model":{"type":"BPE","byte_fallback":true,"vocab":{"a":0},"merges":[]}}`},
	}
	for _, tt := range tests {
		if _, err := SentencePieceFromHF([]byte(tt.json), nil); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	// Without byte tokens, unknown characters become <unk>.
	v := &SentencePieceVocab{Tokens: []string{"<unk>", "▁", "a", "▁a"}, Scores: []float32{0, -5, -5, -1},
		Types: []int32{SPUnknown, SPNormal, SPNormal, SPNormal}, Unknown: 0, BOS: -1, EOS: -1, AddSpacePrefix: true}
	tj, tc, err := v.MarshalHF()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseHF(tj, tc, "no bytes")
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a xa"); !slices.Equal(got, []int{3, 1, 0, 2}) {
		t.Errorf("Encode without byte tokens = %v, want [3 1 0 2]", got)
	}
}

func FuzzSentencePieceFromHF(f *testing.F) {
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"model":{"type":"BPE","byte_fallback":true,"unk_token":"<unk>","vocab":{"<unk>":0,"<0x41>":1,"a":2,"b":3,"ab":4},"merges":["a b"]}}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first"},"model":{"type":"BPE","byte_fallback":true,"vocab":{"<0x00>":0,"x":1},"merges":[]},"added_tokens":[{"id":2,"content":"<s>","special":true}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := SentencePieceFromHF(data, nil)
		if err != nil {
			return
		}
		tj, tc, err := v.MarshalHF()
		if err != nil {
			return
		}
		if _, err := ParseHF(tj, tc, "fuzz"); err != nil {
			t.Fatalf("MarshalHF wrote a tokenizer.json that does not parse: %v", err)
		}
	})
}
