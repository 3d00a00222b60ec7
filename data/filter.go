package data

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/abadojack/whatlanggo"
)

// Filter decides whether a document stays. It may rewrite d.Text (C4 drops lines).
// A filter must be safe for concurrent use.
type Filter interface {
	Name() string
	// Keep reports whether d stays, and if not, why (a short reason key).
	Keep(d *Document) (bool, string)
}

// FilterConfig configures the built-in filters. Each has Enabled and, for the prose
// filters, the document kinds it applies to (by default "text" and "web", not "code").
type FilterConfig struct {
	Length           LengthFilter           `yaml:"length" json:"length"`
	Language         LanguageFilter         `yaml:"language" json:"language"`
	GopherQuality    GopherQualityFilter    `yaml:"gopher_quality" json:"gopher_quality"`
	GopherRepetition GopherRepetitionFilter `yaml:"gopher_repetition" json:"gopher_repetition"`
	C4               C4Filter               `yaml:"c4" json:"c4"`
	C4BadWords       BadWordsFilter         `yaml:"c4_badwords" json:"c4_badwords"`
	FineWeb          FineWebFilter          `yaml:"fineweb" json:"fineweb"`
}

// DefaultFilterConfig returns the filters with datatrove's default thresholds, all on.
func DefaultFilterConfig() FilterConfig {
	prose := []string{"text", "web"}
	return FilterConfig{
		Length:   LengthFilter{Enabled: true, MinChars: 50, MaxChars: 1_000_000},
		Language: LanguageFilter{Enabled: true, Languages: []string{"en"}, MinConfidence: 0.5, Kinds: prose},
		GopherQuality: GopherQualityFilter{Enabled: true, Kinds: prose, MinDocWords: 50, MaxDocWords: 100_000,
			MinAvgWordLength: 3, MaxAvgWordLength: 10, MaxSymbolWordRatio: 0.1, MaxBulletLinesRatio: 0.9,
			MaxEllipsisLinesRatio: 0.3, MinAlphaWordsRatio: 0.8, MinStopWords: 2},
		GopherRepetition: GopherRepetitionFilter{Enabled: true, Kinds: prose, DupLineFrac: 0.3, DupParaFrac: 0.3,
			DupLineCharFrac: 0.2, DupParaCharFrac: 0.2,
			TopNGrams: map[int]float64{2: 0.2, 3: 0.18, 4: 0.16},
			DupNGrams: map[int]float64{5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}},
		C4: C4Filter{Enabled: true, Kinds: []string{"web"}, MinWordsPerLine: 3, MaxWordLength: 1000, MinSentences: 5,
			TerminalPunct: true, LoremIpsum: true, CurlyBraces: true, Javascript: true, Policy: true, RemoveCitations: true},
		C4BadWords: BadWordsFilter{Enabled: true, Kinds: []string{"web"}},
		FineWeb: FineWebFilter{Enabled: true, Kinds: []string{"web"}, LinePunctThr: 0.12, ShortLineThr: 0.67,
			ShortLineLength: 30, CharDupRatio: 0.01, NewLineRatio: 0.3},
	}
}

// Build returns the enabled filters in pipeline order.
func (c *FilterConfig) Build() ([]Filter, error) {
	var fs []Filter
	if c.Length.Enabled {
		fs = append(fs, &c.Length)
	}
	if c.Language.Enabled {
		l := c.Language
		if err := l.init(); err != nil {
			return nil, err
		}
		fs = append(fs, &l)
	}
	if c.GopherQuality.Enabled {
		fs = append(fs, &c.GopherQuality)
	}
	if c.GopherRepetition.Enabled {
		fs = append(fs, &c.GopherRepetition)
	}
	if c.C4.Enabled {
		fs = append(fs, &c.C4)
	}
	if c.C4BadWords.Enabled {
		b := c.C4BadWords
		if err := b.init(); err != nil {
			return nil, err
		}
		fs = append(fs, &b)
	}
	if c.FineWeb.Enabled {
		fs = append(fs, &c.FineWeb)
	}
	return fs, nil
}

func appliesTo(kinds []string, d *Document) bool {
	return len(kinds) == 0 || slices.Contains(kinds, d.Kind)
}

// LengthFilter drops documents shorter or longer than a number of characters (bytes).
type LengthFilter struct {
	Enabled  bool     `yaml:"enabled" json:"enabled"`
	Kinds    []string `yaml:"kinds" json:"kinds,omitempty"`
	MinChars int      `yaml:"min_chars" json:"min_chars"`
	MaxChars int      `yaml:"max_chars" json:"max_chars"`
}

// Name is "length".
func (f *LengthFilter) Name() string { return "length" }

// Keep applies the bounds.
func (f *LengthFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	n := len(strings.TrimSpace(d.Text))
	if n < f.MinChars {
		return false, "too_short"
	}
	if f.MaxChars > 0 && n > f.MaxChars {
		return false, "too_long"
	}
	return true, ""
}

// LanguageFilter keeps documents whose detected language (whatlanggo's trigram
// models, 84 languages) is in Languages with at least MinConfidence.
type LanguageFilter struct {
	Enabled       bool     `yaml:"enabled" json:"enabled"`
	Kinds         []string `yaml:"kinds" json:"kinds,omitempty"`
	Languages     []string `yaml:"languages" json:"languages"` // ISO 639-1 codes
	MinConfidence float64  `yaml:"min_confidence" json:"min_confidence"`
	// SampleChars is how much of the text is examined (default 1000).
	SampleChars int `yaml:"sample_chars" json:"sample_chars"`
	want        map[whatlanggo.Lang]bool
}

func (f *LanguageFilter) init() error {
	f.want = map[whatlanggo.Lang]bool{}
	for _, code := range f.Languages {
		l := whatlanggo.CodeToLang(code)
		if l == -1 {
			// CodeToLang knows ISO 639-3; accept 639-1 too.
			for cand := range whatlanggo.Langs {
				if cand.Iso6391() == code {
					l = cand
				}
			}
		}
		if l == -1 {
			return fmt.Errorf("language filter: unknown language code %q", code)
		}
		f.want[l] = true
	}
	if f.SampleChars <= 0 {
		f.SampleChars = 1000
	}
	return nil
}

// Name is "language".
func (f *LanguageFilter) Name() string { return "language" }

// Keep detects the language of the first SampleChars characters.
func (f *LanguageFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) || len(f.want) == 0 {
		return true, ""
	}
	s := d.Text
	if len(s) > f.SampleChars {
		cut := f.SampleChars
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	info := whatlanggo.Detect(s)
	if info.Lang >= 0 {
		d.Lang = info.Lang.Iso6391()
	}
	if !f.want[info.Lang] {
		return false, "other_language"
	}
	if info.Confidence < f.MinConfidence {
		return false, "low_confidence"
	}
	return true, ""
}

// words splits text into whitespace-separated words with surrounding punctuation
// removed; words made only of punctuation are dropped.
func words(text string) []string {
	f := strings.Fields(text)
	out := f[:0]
	for _, w := range f {
		w = strings.TrimFunc(w, isPunct)
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

func isPunct(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }

var gopherStopWords = map[string]bool{"the": true, "be": true, "to": true, "of": true, "and": true, "that": true, "have": true, "with": true}

// GopherQualityFilter applies the quality rules of the Gopher paper (Rae et al. 2021).
type GopherQualityFilter struct {
	Enabled               bool     `yaml:"enabled" json:"enabled"`
	Kinds                 []string `yaml:"kinds" json:"kinds,omitempty"`
	MinDocWords           int      `yaml:"min_doc_words" json:"min_doc_words"`
	MaxDocWords           int      `yaml:"max_doc_words" json:"max_doc_words"`
	MinAvgWordLength      float64  `yaml:"min_avg_word_length" json:"min_avg_word_length"`
	MaxAvgWordLength      float64  `yaml:"max_avg_word_length" json:"max_avg_word_length"`
	MaxSymbolWordRatio    float64  `yaml:"max_symbol_word_ratio" json:"max_symbol_word_ratio"`
	MaxBulletLinesRatio   float64  `yaml:"max_bullet_lines_ratio" json:"max_bullet_lines_ratio"`
	MaxEllipsisLinesRatio float64  `yaml:"max_ellipsis_lines_ratio" json:"max_ellipsis_lines_ratio"`
	MinAlphaWordsRatio    float64  `yaml:"min_alpha_words_ratio" json:"min_alpha_words_ratio"`
	MinStopWords          int      `yaml:"min_stop_words" json:"min_stop_words"`
}

// Name is "gopher_quality".
func (f *GopherQualityFilter) Name() string { return "gopher_quality" }

// Keep applies the rules in the paper's order.
func (f *GopherQualityFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	text := d.Text
	raw := strings.Fields(text)
	ws := words(text)
	if len(ws) < f.MinDocWords || len(raw) == 0 {
		return false, "short_doc"
	}
	if f.MaxDocWords > 0 && len(ws) > f.MaxDocWords {
		return false, "long_doc"
	}
	total := 0
	for _, w := range ws {
		total += utf8.RuneCountInString(w)
	}
	avg := float64(total) / float64(len(ws))
	if avg < f.MinAvgWordLength {
		return false, "below_avg_word_length"
	}
	if f.MaxAvgWordLength > 0 && avg > f.MaxAvgWordLength {
		return false, "above_avg_word_length"
	}
	nw := float64(len(raw))
	if f.MaxSymbolWordRatio > 0 {
		if float64(strings.Count(text, "#"))/nw > f.MaxSymbolWordRatio {
			return false, "too_many_hashes"
		}
		if float64(strings.Count(text, "...")+strings.Count(text, "…"))/nw > f.MaxSymbolWordRatio {
			return false, "too_many_ellipsis"
		}
	}
	lines := strings.Split(text, "\n")
	bullets, ellipsis := 0, 0
	for _, l := range lines {
		t := strings.TrimLeft(l, " \t")
		if strings.HasPrefix(t, "•") || strings.HasPrefix(t, "-") || strings.HasPrefix(t, "*") {
			bullets++
		}
		t = strings.TrimRight(l, " \t\r")
		if strings.HasSuffix(t, "...") || strings.HasSuffix(t, "…") {
			ellipsis++
		}
	}
	if f.MaxBulletLinesRatio > 0 && float64(bullets)/float64(len(lines)) > f.MaxBulletLinesRatio {
		return false, "too_many_bullets"
	}
	if f.MaxEllipsisLinesRatio > 0 && float64(ellipsis)/float64(len(lines)) > f.MaxEllipsisLinesRatio {
		return false, "too_many_end_ellipsis"
	}
	alpha, stop := 0, 0
	for _, w := range raw {
		if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
			alpha++
		}
	}
	for _, w := range ws {
		if gopherStopWords[strings.ToLower(w)] {
			stop++
		}
	}
	if float64(alpha)/nw < f.MinAlphaWordsRatio {
		return false, "below_alpha_words_ratio"
	}
	if stop < f.MinStopWords {
		return false, "few_stop_words"
	}
	return true, ""
}

// GopherRepetitionFilter drops documents with repeated lines, paragraphs and n-grams
// (Gopher paper, table A1).
type GopherRepetitionFilter struct {
	Enabled         bool            `yaml:"enabled" json:"enabled"`
	Kinds           []string        `yaml:"kinds" json:"kinds,omitempty"`
	DupLineFrac     float64         `yaml:"dup_line_frac" json:"dup_line_frac"`
	DupParaFrac     float64         `yaml:"dup_para_frac" json:"dup_para_frac"`
	DupLineCharFrac float64         `yaml:"dup_line_char_frac" json:"dup_line_char_frac"`
	DupParaCharFrac float64         `yaml:"dup_para_char_frac" json:"dup_para_char_frac"`
	TopNGrams       map[int]float64 `yaml:"top_n_grams" json:"top_n_grams"` // n -> max fraction of chars in the most frequent n-gram
	DupNGrams       map[int]float64 `yaml:"dup_n_grams" json:"dup_n_grams"` // n -> max fraction of chars in duplicated n-grams
}

// Name is "gopher_repetition".
func (f *GopherRepetitionFilter) Name() string { return "gopher_repetition" }

var paraSplit = regexp.MustCompile(`\n{2,}`)

// findDuplicates counts repeated elements and their characters.
func findDuplicates(xs []string) (dups, chars int) {
	seen := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		if _, ok := seen[x]; ok {
			dups++
			chars += len(x)
		} else {
			seen[x] = struct{}{}
		}
	}
	return
}

// Keep applies the line, paragraph and n-gram repetition rules.
func (f *GopherRepetitionFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	text := d.Text
	n := float64(len(text))
	if n == 0 {
		return false, "empty"
	}
	paras := paraSplit.Split(strings.TrimSpace(text), -1)
	pd, pc := findDuplicates(paras)
	if f.DupParaFrac > 0 && float64(pd)/float64(len(paras)) > f.DupParaFrac {
		return false, "dup_para_frac"
	}
	if f.DupParaCharFrac > 0 && float64(pc)/n > f.DupParaCharFrac {
		return false, "dup_para_char_frac"
	}
	lines := strings.FieldsFunc(text, func(r rune) bool { return r == '\n' })
	ld, lc := findDuplicates(lines)
	if f.DupLineFrac > 0 && len(lines) > 0 && float64(ld)/float64(len(lines)) > f.DupLineFrac {
		return false, "dup_line_frac"
	}
	if f.DupLineCharFrac > 0 && float64(lc)/n > f.DupLineCharFrac {
		return false, "dup_line_char_frac"
	}
	ws := words(text)
	rs := newRolling(ws)
	var tab u64table
	for _, k := range sortedIntKeys(f.TopNGrams) {
		if k <= 0 || len(ws) < k {
			continue
		}
		tab.reset(len(ws))
		best, bestLen := 0, 0
		for i := 0; i+k <= len(ws); i++ {
			c := tab.inc(rs.hash(i, k))
			if l := rs.chars(i, k) + k - 1; c > best || c == best && l > bestLen {
				best, bestLen = c, l
			}
		}
		if best > 1 && float64(best*bestLen)/n > f.TopNGrams[k] {
			return false, fmt.Sprintf("top_%d_gram", k)
		}
	}
	for _, k := range sortedIntKeys(f.DupNGrams) {
		if k <= 0 || len(ws) < k {
			continue
		}
		tab.reset(len(ws))
		rep := 0
		for i := 0; i+k <= len(ws); {
			if tab.inc(rs.hash(i, k)) > 1 {
				rep += rs.chars(i, k)
				i += k
			} else {
				i++
			}
		}
		if float64(rep)/n > f.DupNGrams[k] {
			return false, fmt.Sprintf("duplicated_%d_grams", k)
		}
	}
	return true, ""
}

// rolling gives O(1) hashes and character counts of word n-grams.
type rolling struct {
	pre, pow []uint64
	lens     []int
}

const rollMul = 0x9e3779b97f4a7c15

func newRolling(ws []string) *rolling {
	r := &rolling{pre: make([]uint64, len(ws)+1), pow: make([]uint64, len(ws)+1), lens: make([]int, len(ws)+1)}
	r.pow[0] = 1
	for i, w := range ws {
		r.pre[i+1] = r.pre[i]*rollMul + hashString(w)
		r.pow[i+1] = r.pow[i] * rollMul
		r.lens[i+1] = r.lens[i] + len(w)
	}
	return r
}

func (r *rolling) hash(i, k int) uint64 { return r.pre[i+k] - r.pre[i]*r.pow[k] }
func (r *rolling) chars(i, k int) int   { return r.lens[i+k] - r.lens[i] }

// u64table counts uint64 keys with open addressing; reset reuses the memory.
type u64table struct {
	keys []uint64
	cnt  []int32
	used []bool
	mask uint64
}

func (t *u64table) reset(n int) {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	if cap(t.keys) >= size {
		t.keys, t.cnt, t.used = t.keys[:size], t.cnt[:size], t.used[:size]
		clear(t.used)
	} else {
		t.keys, t.cnt, t.used = make([]uint64, size), make([]int32, size), make([]bool, size)
	}
	t.mask = uint64(size - 1)
}

// inc adds one to key's count and returns the new count.
func (t *u64table) inc(key uint64) int {
	i := splitmix64(key) & t.mask
	for {
		if !t.used[i] {
			t.used[i], t.keys[i], t.cnt[i] = true, key, 1
			return 1
		}
		if t.keys[i] == key {
			t.cnt[i]++
			return int(t.cnt[i])
		}
		i = (i + 1) & t.mask
	}
}

func ngramLen(ws []string) int {
	n := 0
	for _, w := range ws {
		n += len(w)
	}
	return n
}

func ngramHash(hs []uint64) uint64 {
	h := uint64(len(hs))
	for _, x := range hs {
		h = splitmix64(h ^ x)
	}
	return h
}

func sortedIntKeys(m map[int]float64) []int {
	k := make([]int, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}

// C4Filter applies the C4 rules (Raffel et al. 2020) line by line: it keeps lines
// that end in terminal punctuation and have enough words, removes JavaScript and
// policy lines and citation marks, and drops the whole document for "lorem ipsum",
// a curly brace, or too few sentences.
type C4Filter struct {
	Enabled         bool     `yaml:"enabled" json:"enabled"`
	Kinds           []string `yaml:"kinds" json:"kinds,omitempty"`
	MinWordsPerLine int      `yaml:"min_words_per_line" json:"min_words_per_line"`
	MaxWordLength   int      `yaml:"max_word_length" json:"max_word_length"`
	MinSentences    int      `yaml:"min_sentences" json:"min_sentences"`
	TerminalPunct   bool     `yaml:"terminal_punct" json:"terminal_punct"`
	LoremIpsum      bool     `yaml:"lorem_ipsum" json:"lorem_ipsum"`
	CurlyBraces     bool     `yaml:"curly_braces" json:"curly_braces"`
	Javascript      bool     `yaml:"javascript" json:"javascript"`
	Policy          bool     `yaml:"policy" json:"policy"`
	RemoveCitations bool     `yaml:"remove_citations" json:"remove_citations"`
}

// Name is "c4".
func (f *C4Filter) Name() string { return "c4" }

var (
	citationRE     = regexp.MustCompile(`\[\d*\]|\[edit\]|\[citation needed\]`)
	sentenceEndRE  = regexp.MustCompile(`[.!?]+(["')\]]*)(\s|$)`)
	policyPhrases  = []string{"terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"}
	terminalSuffix = []string{".", "?", "!", "\"", "'", "”", "’"}
)

// Keep filters lines and may rewrite d.Text.
func (f *C4Filter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	var kept []string
	sentences := 0
	for _, line := range strings.Split(d.Text, "\n") {
		line = strings.TrimSpace(line)
		ws := strings.Fields(line)
		if f.MaxWordLength > 0 && slices.ContainsFunc(ws, func(w string) bool { return len(w) > f.MaxWordLength }) {
			continue
		}
		if f.RemoveCitations {
			line = citationRE.ReplaceAllString(line, "")
		}
		if f.TerminalPunct && (!hasAnySuffix(line, terminalSuffix) || strings.HasSuffix(line, "...")) {
			continue
		}
		if len(ws) < f.MinWordsPerLine {
			continue
		}
		low := strings.ToLower(line)
		if f.LoremIpsum && strings.Contains(low, "lorem ipsum") {
			return false, "lorem_ipsum"
		}
		if f.Javascript && strings.Contains(low, "javascript") {
			continue
		}
		if f.CurlyBraces && strings.Contains(line, "{") {
			return false, "curly_bracket"
		}
		if f.Policy && slices.ContainsFunc(policyPhrases, func(p string) bool { return strings.Contains(low, p) }) {
			continue
		}
		sentences += max(1, len(sentenceEndRE.FindAllStringIndex(line, -1)))
		kept = append(kept, line)
	}
	if sentences < f.MinSentences {
		return false, "too_few_sentences"
	}
	d.Text = strings.Join(kept, "\n")
	return true, ""
}

func hasAnySuffix(s string, suf []string) bool {
	for _, x := range suf {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

//go:embed badwords_en.txt
var defaultBadWords string

// BadWordsFilter drops documents containing a word from a list (C4's bad-words rule).
// The built-in English list is short; WordsFile replaces it with one word or phrase
// per line (e.g. the LDNOOBW list C4 used).
type BadWordsFilter struct {
	Enabled   bool     `yaml:"enabled" json:"enabled"`
	Kinds     []string `yaml:"kinds" json:"kinds,omitempty"`
	WordsFile string   `yaml:"words_file" json:"words_file,omitempty"`
	words     map[string]bool
	phrases   []string
}

func (f *BadWordsFilter) init() error {
	src := defaultBadWords
	if f.WordsFile != "" {
		b, err := readFileString(f.WordsFile)
		if err != nil {
			return fmt.Errorf("bad words filter: %w", err)
		}
		src = b
	}
	f.words = map[string]bool{}
	f.phrases = nil
	for _, l := range strings.Split(src, "\n") {
		l = strings.ToLower(strings.TrimSpace(l))
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, " ") {
			f.phrases = append(f.phrases, l)
		} else {
			f.words[l] = true
		}
	}
	return nil
}

// Name is "c4_badwords".
func (f *BadWordsFilter) Name() string { return "c4_badwords" }

// Keep looks for listed words (whole words, case-insensitive) and phrases.
func (f *BadWordsFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	low := strings.ToLower(d.Text)
	for i := 0; i < len(low); {
		r, n := utf8.DecodeRuneInString(low[i:])
		if !unicode.IsLetter(r) {
			i += n
			continue
		}
		j := i + n
		for j < len(low) {
			r, n := utf8.DecodeRuneInString(low[j:])
			if !unicode.IsLetter(r) {
				break
			}
			j += n
		}
		if f.words[low[i:j]] {
			return false, "bad_word"
		}
		i = j
	}
	for _, p := range f.phrases {
		if strings.Contains(low, p) {
			return false, "bad_word"
		}
	}
	return true, ""
}

// FineWebFilter applies FineWeb's line rules (Penedo et al. 2024): enough lines end
// in punctuation, not too many short lines, few duplicated line characters, and not
// a list (too many newlines per word).
type FineWebFilter struct {
	Enabled         bool     `yaml:"enabled" json:"enabled"`
	Kinds           []string `yaml:"kinds" json:"kinds,omitempty"`
	LinePunctThr    float64  `yaml:"line_punct_thr" json:"line_punct_thr"`
	ShortLineThr    float64  `yaml:"short_line_thr" json:"short_line_thr"`
	ShortLineLength int      `yaml:"short_line_length" json:"short_line_length"`
	CharDupRatio    float64  `yaml:"char_dup_ratio" json:"char_dup_ratio"`
	NewLineRatio    float64  `yaml:"new_line_ratio" json:"new_line_ratio"`
}

// Name is "fineweb".
func (f *FineWebFilter) Name() string { return "fineweb" }

// Keep applies the four line rules.
func (f *FineWebFilter) Keep(d *Document) (bool, string) {
	if !appliesTo(f.Kinds, d) {
		return true, ""
	}
	var lines []string
	for _, l := range strings.Split(d.Text, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return false, "empty"
	}
	punct, short := 0, 0
	for _, l := range lines {
		if hasAnySuffix(strings.TrimRight(l, " \t\r"), terminalSuffix) {
			punct++
		}
		if utf8.RuneCountInString(l) <= f.ShortLineLength {
			short++
		}
	}
	n := float64(len(lines))
	if float64(punct)/n < f.LinePunctThr {
		return false, "line_punct_ratio"
	}
	if float64(short)/n > f.ShortLineThr {
		return false, "short_line_ratio"
	}
	_, dupChars := findDuplicates(lines)
	if c := len(d.Text) - strings.Count(d.Text, "\n"); c > 0 && float64(dupChars)/float64(c) > f.CharDupRatio {
		return false, "char_dup_ratio"
	}
	if nw := len(words(d.Text)); nw == 0 || float64(strings.Count(d.Text, "\n"))/float64(nw) > f.NewLineRatio {
		return false, "list_ratio"
	}
	return true, ""
}
