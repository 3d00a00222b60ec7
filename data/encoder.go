package data

import (
	"fmt"
	"iter"
	"strings"
)

// Encoder turns text into token ids. Implementations must be safe for concurrent use
// by several goroutines. *tokenizer.Tokenizer satisfies it.
type Encoder interface {
	Encode(text string) []int
	VocabSize() int
	EOT() int // end-of-text token id, or -1 when there is none
}

// ByteEncoder encodes text as its UTF-8 bytes (ids 0..255) with end-of-text id 256.
type ByteEncoder struct{}

// Encode returns the bytes of text as token ids.
func (ByteEncoder) Encode(text string) []int {
	out := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		out[i] = int(text[i])
	}
	return out
}

// VocabSize is 257: 256 bytes and the end-of-text token.
func (ByteEncoder) VocabSize() int { return 257 }

// EOT is 256.
func (ByteEncoder) EOT() int { return 256 }

// DefaultShardTokens is the default maximum number of tokens per shard file.
const DefaultShardTokens = 100_000_000

// ShardOptions configures WriteShards.
type ShardOptions struct {
	// ShardTokens caps the tokens per shard file; 0 means DefaultShardTokens.
	ShardTokens int64
	// ValFraction of the documents go to the "val" split: every round(1/ValFraction)-th
	// document, starting with the first, so any corpus of two or more documents has a
	// validation split when ValFraction > 0.
	ValFraction float64
	// DType is "uint16", "uint32" or "" (uint16 when the vocabulary fits).
	DType string
	// Tokenizer is the name recorded in the manifest.
	Tokenizer string
	// NoEOT leaves out the end-of-text token after each document.
	NoEOT bool
}

// WriteShards tokenizes docs with enc and writes train (and val) shards with a
// manifest into dir. It is the quick path for tests and the quickstart; the full
// pipeline is Prepare.
func WriteShards(dir string, docs iter.Seq[string], enc Encoder, opts ShardOptions) error {
	if opts.ValFraction < 0 || opts.ValFraction >= 1 {
		return fmt.Errorf("write shards: validation fraction %v outside [0,1)", opts.ValFraction)
	}
	eot := enc.EOT()
	if opts.NoEOT {
		eot = -1
	}
	name := opts.Tokenizer
	if name == "" {
		name = fmt.Sprintf("%T", enc)
		name = strings.TrimPrefix(name, "*")
	}
	w, err := NewShardSetWriter(dir, name, enc.VocabSize(), eot, opts.DType, opts.ShardTokens)
	if err != nil {
		return fmt.Errorf("write shards: %w", err)
	}
	every := int64(0)
	if opts.ValFraction > 0 {
		every = max(2, int64(1/opts.ValFraction+0.5))
	}
	var i int64
	for text := range docs {
		toks := enc.Encode(text)
		if eot >= 0 {
			toks = append(toks, eot)
		}
		split := "train"
		if every > 0 && i%every == 0 {
			split = "val"
		}
		i++
		if err := w.AddInts(split, toks); err != nil {
			w.Abort()
			return fmt.Errorf("write shards: document %d: %w", i-1, err)
		}
	}
	if i == 0 {
		w.Abort()
		return fmt.Errorf("write shards: no documents")
	}
	if _, err := w.Close(); err != nil {
		return fmt.Errorf("write shards: %w", err)
	}
	return nil
}
