package tokenizer

import (
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// The GPT-style split patterns, as their owners publish them. The splitter
// recognizes these strings and runs a hand-written matcher with the exact
// leftmost-first backtracking semantics of the regular expression; any other
// pattern falls back to a backtracking regexp engine.
const (
	// PatternGPT2 is the pre-tokenization pattern of GPT-2, r50k_base and p50k_base.
	PatternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// PatternCL100K is the pattern of cl100k_base as tiktoken has published it
	// since version 0.8. It differs from [PatternCL100KLegacy] in one case
	// only: a whitespace run that ends the text is one piece (`\s++$`).
	PatternCL100K = `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
	// PatternCL100KLegacy is the first published cl100k_base pattern, also used
	// by Llama 3 and by github.com/tiktoken-go/tokenizer.
	PatternCL100KLegacy = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// PatternQwen2 is the Llama 3 pattern with single-digit numbers (Qwen2, Qwen2.5).
	PatternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patternCL100KPortable is PatternCL100K without possessive quantifiers
	// and with `\s+(?![\s\S])` for `\s++$`: the same splits, in a syntax that
	// both Hugging Face's Rust regex and JavaScript (transformers.js) accept.
	// Save writes it.
	patternCL100KPortable = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+(?![\s\S])|\s*[\r\n]+|\s+(?!\S)|\s+`
	// PatternO200K is the pattern of o200k_base (GPT-4o).
	PatternO200K = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// splitKind selects the matcher of a splitter.
type splitKind uint8

const (
	splitNone   splitKind = iota // the whole text is one piece
	splitGPT2                    // PatternGPT2
	splitCL100K                  // PatternCL100K family (digits, trailing whitespace vary)
	splitO200K                   // PatternO200K
	splitRegexp                  // any other pattern, through regexp2
	splitChain                   // several splitters, each cutting the pieces of the last
)

// splitter cuts text into pre-tokenization pieces. It is immutable and safe
// for concurrent use.
type splitter struct {
	kind       splitKind
	digits     int  // longest digit run of one piece (cl100k family)
	trailingWS bool // `\s++$`: a whitespace run that ends the text is one piece
	// regexp2Compat reproduces how github.com/dlclark/regexp2 (used by the
	// peer github.com/tiktoken-go/tokenizer) runs these patterns: its
	// `\s*[\r\n]+` branch never lets \s* take a line break, as if it were
	// `[^\S\r\n]*[\r\n]+`. Only tests set it, to compare with that peer.
	regexp2Compat bool
	pattern       string
	re            *regexp2.Regexp
	chain         []*splitter
}

// knownPatterns maps published pattern strings to hand-written matchers.
var knownPatterns = map[string]splitter{
	PatternGPT2: {kind: splitGPT2},
	// The GPT-2 pattern as tiktoken rewrote it (equivalent).
	`'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`: {kind: splitGPT2},
	`'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`:         {kind: splitGPT2},
	PatternCL100K:         {kind: splitCL100K, digits: 3, trailingWS: true},
	patternCL100KPortable: {kind: splitCL100K, digits: 3, trailingWS: true},
	PatternCL100KLegacy:   {kind: splitCL100K, digits: 3},
	// The intermediate tiktoken 0.6 spelling of the legacy pattern (equivalent).
	`'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`: {kind: splitCL100K, digits: 3},
	PatternQwen2: {kind: splitCL100K, digits: 1},
	PatternO200K: {kind: splitO200K},
}

// portablePattern returns the spelling of a pattern to write into files.
func portablePattern(p string) string {
	if p == PatternCL100K {
		return patternCL100KPortable
	}
	return p
}

// newSplitter returns the splitter for a pattern; "" means no splitting.
func newSplitter(pattern string) (*splitter, error) {
	if pattern == "" {
		return &splitter{kind: splitNone}, nil
	}
	if k, ok := knownPatterns[pattern]; ok {
		k.pattern = pattern
		classTable()
		return &k, nil
	}
	re, err := regexp2.Compile(pattern, regexp2.Unicode)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: split pattern %q: %w", pattern, err)
	}
	return &splitter{kind: splitRegexp, pattern: pattern, re: re}, nil
}

// newChainSplitter applies patterns one after the other, as a Hugging Face
// Sequence of Split pre-tokenizers does.
func newChainSplitter(patterns []string) (*splitter, error) {
	switch len(patterns) {
	case 0:
		return newSplitter("")
	case 1:
		return newSplitter(patterns[0])
	}
	sp := &splitter{kind: splitChain}
	for _, p := range patterns {
		c, err := newSplitter(p)
		if err != nil {
			return nil, err
		}
		sp.chain = append(sp.chain, c)
	}
	return sp, nil
}

// appendPieces appends the end offsets of the pieces of s to dst. The pieces
// tile s: the first starts at 0 and each next one where the last ended.
func (sp *splitter) appendPieces(dst []int32, s string) []int32 {
	switch sp.kind {
	case splitNone:
		if len(s) > 0 {
			dst = append(dst, int32(len(s)))
		}
		return dst
	case splitRegexp:
		return sp.appendRegexpPieces(dst, s)
	case splitChain:
		return sp.appendChainPieces(dst, s)
	}
	for p := 0; p < len(s); {
		p = sp.next(s, p)
		dst = append(dst, int32(p))
	}
	return dst
}

func (sp *splitter) appendChainPieces(dst []int32, s string) []int32 {
	cur := sp.chain[0].appendPieces(nil, s)
	for _, c := range sp.chain[1:] {
		var next []int32
		start := 0
		for _, end := range cur {
			for _, e := range c.appendPieces(nil, s[start:end]) {
				next = append(next, int32(start)+e)
			}
			start = int(end)
		}
		cur = next
	}
	return append(dst, cur...)
}

// next returns the end of the piece that starts at p < len(s).
func (sp *splitter) next(s string, p int) int {
	switch sp.kind {
	case splitCL100K:
		return nextCL100K(s, p, sp.digits, sp.trailingWS, sp.regexp2Compat)
	case splitO200K:
		return nextO200K(s, p, sp.regexp2Compat)
	case splitGPT2:
		return nextGPT2(s, p)
	}
	return len(s)
}

// appendRegexpPieces splits with a general pattern the way Hugging Face's
// Split pre-tokenizer with the Isolated behavior does: each match is a piece
// and so is each run of text between matches.
func (sp *splitter) appendRegexpPieces(dst []int32, s string) []int32 {
	idx, err := sp.re.FindAllStringIndex(s, -1)
	if err != nil {
		// regexp2 fails only on a timeout, which is not set; keep the text whole.
		return append(dst, int32(len(s)))
	}
	prev := 0
	for _, m := range idx {
		if m[0] > prev {
			dst = append(dst, int32(m[0]))
		}
		if m[1] > m[0] {
			dst = append(dst, int32(m[1]))
		}
		prev = m[1]
	}
	if prev < len(s) {
		dst = append(dst, int32(len(s)))
	}
	return dst
}

// Character classes used by the matchers.
const (
	cLetter  = 1 << iota // \p{L}
	cNumber              // \p{N}
	cSpace               // \s (Unicode White_Space)
	cUpper               // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	cLower               // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	cNewline             // [\r\n]
)

// tableSize covers the Basic and Supplementary Multilingual Planes; runes
// above it are classified through package unicode.
const tableSize = 0x20000

var classTable = sync.OnceValue(func() *[tableSize]uint8 {
	var t [tableSize]uint8
	for r := rune(0); r < tableSize; r++ {
		t[r] = classifySlow(r)
	}
	return &t
})

func classifySlow(r rune) uint8 {
	var c uint8
	switch {
	case r == '\r' || r == '\n':
		c = cSpace | cNewline
	case r < 0x80:
		switch {
		case 'a' <= r && r <= 'z':
			c = cLetter | cLower
		case 'A' <= r && r <= 'Z':
			c = cLetter | cUpper
		case '0' <= r && r <= '9':
			c = cNumber
		case unicode.IsSpace(r):
			c = cSpace
		}
	case unicode.IsLetter(r):
		c = cLetter
		switch {
		case unicode.Is(unicode.Lu, r) || unicode.Is(unicode.Lt, r):
			c |= cUpper
		case unicode.Is(unicode.Ll, r):
			c |= cLower
		default: // Lm, Lo
			c |= cUpper | cLower
		}
	case unicode.IsMark(r):
		c = cUpper | cLower
	case unicode.IsNumber(r):
		c = cNumber
	case unicode.IsSpace(r):
		c = cSpace
	}
	return c
}

// asciiClass is the class of each ASCII byte, for the fast path.
var asciiClass = func() (t [128]uint8) {
	for r := rune(0); r < 128; r++ {
		t[r] = classifySlow(r)
	}
	return t
}()

// classAt decodes the rune at s[p:] and returns its class and width. An
// invalid UTF-8 byte is one character of no class (like U+FFFD, a symbol).
func classAt(s string, p int) (uint8, int) {
	b := s[p]
	if b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, w := utf8.DecodeRuneInString(s[p:])
	if r == utf8.RuneError && w == 1 {
		return 0, 1
	}
	if r < tableSize {
		return classTable()[r], w
	}
	return classifySlow(r), w
}

// runEnd returns the end of the run of characters of class mask starting at p.
func runEnd(s string, p int, mask uint8) int {
	for p < len(s) {
		c, w := classAt(s, p)
		if c&mask == 0 {
			break
		}
		p += w
	}
	return p
}

// isOther reports a character outside \s, \p{L} and \p{N}.
func isOther(c uint8) bool { return c&(cLetter|cNumber|cSpace) == 0 }

// contraction returns the length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at s[p:],
// or 0. With fold it matches case-insensitively the way tiktoken's Unicode
// regex does, where 's' also matches U+017F LATIN SMALL LETTER LONG S.
func contraction(s string, p int, fold bool) int {
	if p+1 >= len(s) || s[p] != '\'' {
		return 0
	}
	c1 := s[p+1]
	if fold {
		c1 |= 0x20 * boolByte('A' <= c1 && c1 <= 'Z')
	}
	switch c1 {
	case 's', 'd', 'm', 't':
		return 2
	case 'l', 'v', 'r':
		if p+2 >= len(s) {
			return 0
		}
		c2 := s[p+2]
		if fold {
			c2 |= 0x20 * boolByte('A' <= c2 && c2 <= 'Z')
		}
		if (c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e') {
			return 3
		}
	case 0xC5: // U+017F is C5 BF
		if fold && p+2 < len(s) && s[p+2] == 0xBF {
			return 3
		}
	}
	return 0
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// whitespaceEnd implements the whitespace alternatives shared by the
// patterns, for a whitespace run s[p:q] (q > p):
//
//	\s++$        (trailingWS) the run ends the text: all of it
//	\s*[\r\n]+   (newlines) through the last \r or \n of the run
//	\s+(?!\S)    all of the run at the end of text, else all but its last character
//	\s+          the single character left
func whitespaceEnd(s string, p, q int, newlines, trailingWS, compat bool) int {
	if trailingWS && q == len(s) {
		return q
	}
	if newlines && compat {
		i := p
		for i < q && s[i] != '\n' && s[i] != '\r' {
			_, w := utf8.DecodeRuneInString(s[i:q])
			i += w
		}
		if i < q {
			for i < q && (s[i] == '\n' || s[i] == '\r') {
				i++
			}
			return i
		}
	} else if newlines {
		// \r and \n are single bytes that never occur inside a multi-byte character.
		for i := q - 1; i >= p; i-- {
			if s[i] == '\n' || s[i] == '\r' {
				return i + 1
			}
		}
	}
	if q == len(s) {
		return q
	}
	_, w := utf8.DecodeLastRuneInString(s[p:q])
	if q-w > p {
		return q - w
	}
	return q
}

// nextCL100K matches the cl100k_base family of patterns at p.
func nextCL100K(s string, p, digits int, trailingWS, compat bool) int {
	if n := contraction(s, p, true); n > 0 {
		return p + n
	}
	c0, w0 := classAt(s, p)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c0&cLetter != 0 {
		return runEnd(s, p+w0, cLetter)
	}
	if c0&(cNewline|cNumber) == 0 && p+w0 < len(s) {
		if c1, w1 := classAt(s, p+w0); c1&cLetter != 0 {
			return runEnd(s, p+w0+w1, cLetter)
		}
	}
	// \p{N}{1,3}
	if c0&cNumber != 0 {
		q := p + w0
		for n := 1; n < digits && q < len(s); n++ {
			c, w := classAt(s, q)
			if c&cNumber == 0 {
				break
			}
			q += w
		}
		return q
	}
	// ?[^\s\p{L}\p{N}]+[\r\n]*
	if q, ok := punctuation(s, p, c0, w0, false); ok {
		return q
	}
	// c0 is whitespace.
	return whitespaceEnd(s, p, runEnd(s, p+w0, cSpace), true, trailingWS, compat)
}

// punctuation matches ` ?[^\s\p{L}\p{N}]+[\r\n]*` (with slash, `[\r\n/]*`) at p,
// where c0 and w0 describe the character at p.
func punctuation(s string, p int, c0 uint8, w0 int, slash bool) (int, bool) {
	q := p
	if s[p] == ' ' {
		if p+1 >= len(s) {
			return 0, false
		}
		c1, _ := classAt(s, p+1)
		if !isOther(c1) {
			return 0, false
		}
		q = p + 1
	} else if !isOther(c0) {
		return 0, false
	}
	for q < len(s) {
		c, w := classAt(s, q)
		if !isOther(c) {
			break
		}
		q += w
	}
	for q < len(s) && (s[q] == '\r' || s[q] == '\n' || (slash && s[q] == '/')) {
		q++
	}
	return q, true
}

// nextO200K matches PatternO200K at p.
func nextO200K(s string, p int, compat bool) int {
	c0, w0 := classAt(s, p)
	prefix := c0&(cLetter|cNumber|cNewline) == 0 // [^\r\n\p{L}\p{N}] can be taken
	// Alternative 1: prefix? U* W+ contraction?, with and then without the prefix.
	if prefix {
		if q := o200kWordLower(s, p+w0); q > 0 {
			return q
		}
	}
	if q := o200kWordLower(s, p); q > 0 {
		return q
	}
	// Alternative 2: prefix? U+ W* contraction?
	if prefix {
		if q := o200kWordUpper(s, p+w0); q > 0 {
			return q
		}
	}
	if q := o200kWordUpper(s, p); q > 0 {
		return q
	}
	if c0&cNumber != 0 {
		q := p + w0
		for n := 1; n < 3 && q < len(s); n++ {
			c, w := classAt(s, q)
			if c&cNumber == 0 {
				break
			}
			q += w
		}
		return q
	}
	if q, ok := punctuation(s, p, c0, w0, true); ok {
		return q
	}
	return whitespaceEnd(s, p, runEnd(s, p+w0, cSpace), true, false, compat)
}

// o200kWordLower matches `[U]*[W]+(?i:'s|...)?` at i and returns its end, or 0.
// The greedy U* gives back characters until W+ can match: the match ends
// after the W-run that follows the U-run, or else after the last W character
// inside the U-run.
func o200kWordLower(s string, i int) int {
	lastW := 0
	q := i
	for q < len(s) {
		c, w := classAt(s, q)
		if c&cUpper == 0 {
			break
		}
		q += w
		if c&cLower != 0 {
			lastW = q
		}
	}
	end := 0
	if q < len(s) {
		if c, w := classAt(s, q); c&cLower != 0 {
			end = runEnd(s, q+w, cLower)
		}
	}
	if end == 0 {
		end = lastW
	}
	if end == 0 {
		return 0
	}
	return end + contraction(s, end, true)
}

// o200kWordUpper matches `[U]+[W]*(?i:'s|...)?` at i and returns its end, or 0.
func o200kWordUpper(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c, _ := classAt(s, i)
	if c&cUpper == 0 {
		return 0
	}
	q := runEnd(s, i, cUpper)
	q = runEnd(s, q, cLower)
	return q + contraction(s, q, true)
}

// nextGPT2 matches PatternGPT2 at p.
func nextGPT2(s string, p int) int {
	if n := contraction(s, p, false); n > 0 {
		return p + n
	}
	c0, w0 := classAt(s, p)
	start, c, w := p, c0, w0
	if s[p] == ' ' && p+1 < len(s) {
		c1, w1 := classAt(s, p+1)
		if c1&(cLetter|cNumber) != 0 || isOther(c1) {
			start, c, w = p+1, c1, w1
		}
	}
	switch {
	case c&cLetter != 0:
		return runEnd(s, start+w, cLetter)
	case c&cNumber != 0:
		return runEnd(s, start+w, cNumber)
	case isOther(c):
		q := start + w
		for q < len(s) {
			c, w := classAt(s, q)
			if !isOther(c) {
				break
			}
			q += w
		}
		return q
	}
	return whitespaceEnd(s, p, runEnd(s, p+w0, cSpace), false, false, false)
}
