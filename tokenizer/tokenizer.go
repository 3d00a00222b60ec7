// Package tokenizer is MAI's byte-pair-encoding tokenizer: it trains
// byte-level BPE vocabularies, encodes and decodes text exactly as OpenAI's
// tiktoken and Hugging Face's tokenizers do, reads and writes their file
// formats (.tiktoken ranks, GPT-2 encoder.json + vocab.bpe, tokenizer.json +
// tokenizer_config.json) and renders chat templates.
//
// A [Tokenizer] is immutable once built and safe for concurrent use.
package tokenizer

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// kind is the tokenization algorithm.
type kind uint8

const (
	// kindByteLevel: split text into pieces, then merge the bytes of each
	// piece (tiktoken, GPT-2, Llama 3, Qwen, MAI).
	kindByteLevel kind = iota
	// kindSentencePiece: normalize (spaces to ▁), merge characters, fall
	// back to byte tokens for characters outside the vocabulary (Llama 2).
	kindSentencePiece
)

// model is the vocabulary and the merge rules of a BPE tokenizer.
type model struct {
	// vocab maps a token's text to its id: raw bytes for byte-level
	// tokenizers, the vocabulary string (with ▁) for SentencePiece ones.
	// Special tokens are not in it.
	vocab map[string]int32
	// merges maps a pair of ids (a<<32 | b) to rank<<32 | merged id. When
	// nil, the tokenizer merges as tiktoken does: a pair merges when the
	// concatenation of its bytes is a token, and the token's id is its rank.
	merges map[uint64]uint64
	// byteIDs is the id of each single byte (byte-fallback tokens for
	// SentencePiece), -1 where there is none.
	byteIDs [256]int32
	// ignoreMerges looks a whole piece up in vocab before merging
	// (tiktoken always; Hugging Face's ignore_merges).
	ignoreMerges bool
	// unk is the unknown token's id, -1 if none; fuseUnk merges runs of it.
	unk     int32
	fuseUnk bool
	// bytesOnly: the vocabulary is the 256 bytes and nothing merges.
	bytesOnly bool
	// table and pairs are vocab and merges in faster forms for the hot path.
	table *strTable
	pairs *pairTable
}

// Tokenizer encodes text into token ids and decodes them back.
type Tokenizer struct {
	name  string
	kind  kind
	split *splitter
	m     model

	// decodeTab holds the bytes of each id; ok[id] is false for unused ids.
	decodeTab []string
	used      []bool

	// specials are the special tokens (EncodeWithSpecial recognizes them);
	// added are Hugging Face added tokens that are not special, which every
	// encode recognizes.
	specials    map[string]int
	specialTrie *trie
	addedTrie   *trie
	allTrie     *trie

	// SentencePiece-style normalization and decoding.
	norm              []normStep
	metaspace         *metaspace
	bytePrefixSpace   bool // ByteLevel add_prefix_space
	stripLeadingSpace bool // decoder removes one leading space

	eot, bos int
	cfg      Config

	// postPrefix and postSuffix are added by AddSpecialTokens.
	postPrefix, postSuffix []int

	// source describes how to save the tokenizer.
	ranks     bool       // tiktoken-style ranks (merges derived on save)
	mergeList [][2]int32 // Hugging Face merges in rank order
	hf        *hfSource  // components of a loaded tokenizer.json

	// states is a free list of encoding scratch memory with warm word
	// caches (a sync.Pool would drop them at every garbage collection).
	statesMu  sync.Mutex
	states    []*encState
	cacheSize int
}

// Config is the part of Hugging Face's tokenizer_config.json that MAI uses.
type Config struct {
	BOSToken     string `json:"bos_token,omitempty"`
	EOSToken     string `json:"eos_token,omitempty"`
	PadToken     string `json:"pad_token,omitempty"`
	UnkToken     string `json:"unk_token,omitempty"`
	ChatTemplate string `json:"chat_template,omitempty"`
	AddBOSToken  bool   `json:"add_bos_token,omitempty"`
	AddEOSToken  bool   `json:"add_eos_token,omitempty"`
	// ModelMaxLength is the context length, 0 if unknown.
	ModelMaxLength int `json:"-"`
}

// Message is one turn of a chat.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Name returns the tokenizer's name: an encoding name such as cl100k_base or
// the path it was loaded from.
func (t *Tokenizer) Name() string { return t.name }

// Config returns the tokenizer configuration (special token names, chat template).
func (t *Tokenizer) Config() Config { return t.cfg }

// VocabSize returns the number of token ids, special tokens included: every
// id is below it.
func (t *Tokenizer) VocabSize() int { return len(t.decodeTab) }

// EOT returns the end-of-text token id (or the end-of-sequence id), -1 if none.
func (t *Tokenizer) EOT() int { return t.eot }

// BOS returns the beginning-of-sequence token id, -1 if none.
func (t *Tokenizer) BOS() int { return t.bos }

// SpecialID returns the id of a special token given its text, such as "<|endoftext|>".
func (t *Tokenizer) SpecialID(name string) (int, bool) {
	id, ok := t.specials[name]
	return id, ok
}

// Specials returns the special tokens and their ids.
func (t *Tokenizer) Specials() map[string]int {
	m := make(map[string]int, len(t.specials))
	for k, v := range t.specials {
		m[k] = v
	}
	return m
}

// IsSpecial reports whether id is a special token.
func (t *Tokenizer) IsSpecial(id int) bool {
	if id < 0 || id >= len(t.decodeTab) {
		return false
	}
	s := t.decodeTab[id]
	sid, ok := t.specials[s]
	return ok && sid == id
}

// Token returns the bytes of token id, and false if id is not a token.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.decodeTab) || !t.used[id] {
		return "", false
	}
	return t.decodeTab[id], true
}

// encState is the scratch memory of one encoding goroutine.
type encState struct {
	bounds     []int32
	parts      []part
	next, prev []int32
	heap       []uint64
	norm       []byte
	count      []int
	cache      map[string][]int32
}

// cacheMaxPiece is the longest piece the word cache keeps.
const cacheMaxPiece = 64

func (t *Tokenizer) getState() *encState {
	t.statesMu.Lock()
	if n := len(t.states); n > 0 {
		st := t.states[n-1]
		t.states = t.states[:n-1]
		t.statesMu.Unlock()
		return st
	}
	t.statesMu.Unlock()
	return &encState{cache: make(map[string][]int32, 1024)}
}

// maxIdleStates bounds the free list.
const maxIdleStates = 64

func (t *Tokenizer) putState(st *encState) {
	if cap(st.parts) > 1<<16 { // do not keep scratch grown by a huge piece
		st.parts, st.next, st.prev, st.heap, st.norm, st.bounds = nil, nil, nil, nil, nil, nil
	}
	t.statesMu.Lock()
	if len(t.states) < maxIdleStates {
		t.states = append(t.states, st)
	}
	t.statesMu.Unlock()
}

// Encode encodes ordinary text: special-token text such as "<|endoftext|>" is
// encoded as the plain characters it consists of.
func (t *Tokenizer) Encode(text string) []int {
	return t.AppendEncode(make([]int, 0, len(text)/3+8), text)
}

// AppendEncode appends the ids of ordinary text to dst and returns the
// extended slice; it allocates nothing when dst has room.
func (t *Tokenizer) AppendEncode(dst []int, text string) []int {
	st := t.getState()
	dst = t.encodeWith(st, dst, text, t.addedTrie)
	t.putState(st)
	return dst
}

// EncodeWithSpecial encodes text in which special tokens are recognized:
// "<|endoftext|>" becomes the end-of-text id.
func (t *Tokenizer) EncodeWithSpecial(text string) []int {
	st := t.getState()
	dst := t.encodeWith(st, make([]int, 0, len(text)/4+4), text, t.allTrie)
	t.putState(st)
	return dst
}

// EncodeOptions selects how special-token text is treated, as tiktoken's
// encode does with allowed_special and disallowed_special.
type EncodeOptions struct {
	// AllowedSpecial lists the special tokens encoded as themselves.
	AllowedSpecial []string
	// AllowAllSpecial allows every special token.
	AllowAllSpecial bool
	// DisallowedSpecial lists special tokens whose text in the input is an error.
	DisallowedSpecial []string
	// DisallowAllSpecial makes every special token that is not allowed an
	// error (tiktoken's default, disallowed_special="all").
	DisallowAllSpecial bool
}

// ErrDisallowedSpecial is returned when the text holds a disallowed special token.
var ErrDisallowedSpecial = errors.New("text contains a disallowed special token")

// EncodeWith encodes text with explicit special-token rules, exactly as
// tiktoken's Encoding.encode(text, allowed_special=..., disallowed_special=...).
func (t *Tokenizer) EncodeWith(text string, opts EncodeOptions) ([]int, error) {
	allowed := t.allTrie
	if !opts.AllowAllSpecial {
		allowed = t.addedTrie
		if len(opts.AllowedSpecial) > 0 {
			var err error
			if allowed, err = t.subTrie(opts.AllowedSpecial, true); err != nil {
				return nil, err
			}
		}
	}
	var disallowed *trie
	switch {
	case opts.DisallowAllSpecial && !opts.AllowAllSpecial:
		var names []string
		skip := make(map[string]bool, len(opts.AllowedSpecial))
		for _, s := range opts.AllowedSpecial {
			skip[s] = true
		}
		for s := range t.specials {
			if !skip[s] {
				names = append(names, s)
			}
		}
		disallowed, _ = t.subTrie(names, false)
	case len(opts.DisallowedSpecial) > 0:
		var err error
		if disallowed, err = t.subTrie(opts.DisallowedSpecial, false); err != nil {
			return nil, err
		}
	}
	if disallowed != nil {
		if start, end, _ := disallowed.find(text, 0); start >= 0 {
			return nil, fmt.Errorf("tokenizer: %w %q at byte %d", ErrDisallowedSpecial, text[start:end], start)
		}
	}
	st := t.getState()
	dst := t.encodeWith(st, make([]int, 0, len(text)/4+4), text, allowed)
	t.putState(st)
	return dst, nil
}

// subTrie builds a matcher for the named special tokens.
func (t *Tokenizer) subTrie(names []string, withAdded bool) (*trie, error) {
	tr := newTrie()
	for _, n := range names {
		id, ok := t.specials[n]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %q is not a special token of %s", n, t.name)
		}
		tr.add(n, int32(id))
	}
	if withAdded && t.addedTrie != nil {
		for _, e := range t.addedTrie.entries {
			tr.add(e.text, e.id)
		}
	}
	return tr, nil
}

// encodeWith encodes text, turning the matches of specials (may be nil) into their ids.
func (t *Tokenizer) encodeWith(st *encState, dst []int, text string, specials *trie) []int {
	if specials == nil || len(specials.entries) == 0 {
		return t.encodeOrdinary(st, dst, text, true)
	}
	first := true
	for len(text) > 0 {
		start, end, id := specials.find(text, 0)
		if start < 0 {
			break
		}
		if start > 0 {
			dst = t.encodeOrdinary(st, dst, text[:start], first)
		}
		dst = append(dst, int(id))
		text = text[end:]
		first = false
	}
	if len(text) > 0 {
		dst = t.encodeOrdinary(st, dst, text, first)
	}
	return dst
}

// encodeOrdinary encodes text that holds no special tokens. atStart tells
// whether the text begins the input (for SentencePiece's prepend scheme "first").
func (t *Tokenizer) encodeOrdinary(st *encState, dst []int, text string, atStart bool) []int {
	if t.kind == kindSentencePiece {
		return t.encodeSentencePiece(st, dst, text, atStart)
	}
	if len(t.norm) > 0 || t.bytePrefixSpace {
		b := applyNorm(st.norm[:0], t.norm, text)
		if t.bytePrefixSpace && (len(b) == 0 || b[0] != ' ') {
			b = append(b, 0)
			copy(b[1:], b)
			b[0] = ' '
		}
		st.norm = b
		text = string(b) // the pieces below are cached by copy, so b may be reused
	}
	if t.split.kind == splitNone || t.split.kind == splitRegexp {
		bounds := t.split.appendPieces(st.bounds[:0], text)
		st.bounds = bounds
		start := 0
		for _, end := range bounds {
			dst = t.encodePiece(st, dst, text[start:end])
			start = int(end)
		}
		return dst
	}
	for p := 0; p < len(text); {
		q := t.split.next(text, p)
		dst = t.encodePiece(st, dst, text[p:q])
		p = q
	}
	return dst
}

// encodePiece appends the ids of one pre-tokenized piece of a byte-level tokenizer.
func (t *Tokenizer) encodePiece(st *encState, dst []int, piece string) []int {
	m := &t.m
	if m.bytesOnly {
		for i := 0; i < len(piece); i++ {
			dst = append(dst, int(m.byteIDs[piece[i]]))
		}
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.table.get(piece); ok {
			return append(dst, int(id))
		}
	}
	if len(piece) == 1 {
		return append(dst, int(m.byteIDs[piece[0]]))
	}
	cacheable := len(piece) <= cacheMaxPiece && t.cacheSize > 0
	if cacheable {
		if ids, ok := st.cache[piece]; ok {
			for _, id := range ids {
				dst = append(dst, int(id))
			}
			return dst
		}
	}
	parts := st.parts[:0]
	for i := 0; i < len(piece); i++ {
		parts = append(parts, part{start: int32(i), id: m.byteIDs[piece[i]]})
	}
	parts = append(parts, part{start: int32(len(piece)), id: -1})
	st.parts = parts
	n0 := len(dst)
	dst = m.mergeParts(st, piece, parts, dst)
	if cacheable {
		if len(st.cache) >= t.cacheSize {
			clear(st.cache)
		}
		ids := make([]int32, len(dst)-n0)
		for i, id := range dst[n0:] {
			ids[i] = int32(id)
		}
		st.cache[strings.Clone(piece)] = ids
	}
	return dst
}

// Count returns the number of tokens of ordinary text without keeping them.
func (t *Tokenizer) Count(text string) int {
	st := t.getState()
	st.count = t.encodeWith(st, st.count[:0], text, t.addedTrie)
	n := len(st.count)
	if cap(st.count) > 1<<20 {
		st.count = nil
	}
	t.putState(st)
	return n
}

// CountBatch counts the tokens of many texts on all cores.
func (t *Tokenizer) CountBatch(texts []string) int64 {
	var total atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(texts)) {
		wg.Go(func() {
			var n int64
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) {
					break
				}
				n += int64(t.Count(texts[i]))
			}
			total.Add(n)
		})
	}
	wg.Wait()
	return total.Load()
}

// EncodeBatch encodes many ordinary texts on all cores; the result is in the
// order of texts.
func (t *Tokenizer) EncodeBatch(texts []string) [][]int {
	return t.EncodeBatchWorkers(texts, 0)
}

// EncodeBatchWorkers is EncodeBatch with a number of goroutines (0: GOMAXPROCS).
func (t *Tokenizer) EncodeBatchWorkers(texts []string, workers int) [][]int {
	out := make([][]int, len(texts))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(texts))
	if workers <= 1 {
		for i, s := range texts {
			out[i] = t.Encode(s)
		}
		return out
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			st := t.getState()
			defer t.putState(st)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) {
					return
				}
				out[i] = t.encodeWith(st, make([]int, 0, len(texts[i])/4+4), texts[i], t.addedTrie)
			}
		})
	}
	wg.Wait()
	return out
}

// Decode returns the text of ids. The bytes of the tokens are concatenated
// as they are, so Decode(Encode(s)) == s for every string s, valid UTF-8 or
// not. An id that is not a token decodes as U+FFFD; see [Tokenizer.DecodeStrict].
func (t *Tokenizer) Decode(ids []int) string {
	b := t.appendDecode(make([]byte, 0, len(ids)*4), ids, false)
	return t.finishDecode(b)
}

// DecodeStrict is Decode that fails on an id that is not a token.
func (t *Tokenizer) DecodeStrict(ids []int) (string, error) {
	for _, id := range ids {
		if id < 0 || id >= len(t.decodeTab) || !t.used[id] {
			return "", fmt.Errorf("tokenizer: id %d is not a token of %s (vocabulary size %d)", id, t.name, len(t.decodeTab))
		}
	}
	return t.Decode(ids), nil
}

// AppendDecode appends the bytes of ids to dst without the decoder's final
// cleanup (the leading-space strip of SentencePiece tokenizers); it suits
// streaming one token at a time.
func (t *Tokenizer) AppendDecode(dst []byte, ids []int) []byte {
	return t.appendDecode(dst, ids, false)
}

func (t *Tokenizer) appendDecode(dst []byte, ids []int, _ bool) []byte {
	for _, id := range ids {
		if id < 0 || id >= len(t.decodeTab) || !t.used[id] {
			dst = utf8.AppendRune(dst, utf8.RuneError)
			continue
		}
		dst = append(dst, t.decodeTab[id]...)
	}
	return dst
}

func (t *Tokenizer) finishDecode(b []byte) string {
	if t.stripLeadingSpace && len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return string(b)
}
