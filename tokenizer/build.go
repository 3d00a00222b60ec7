package tokenizer

import (
	"fmt"
	"sort"
)

// defaultCacheSize is the number of words each encoding goroutine remembers.
const defaultCacheSize = 1 << 14

// fromRanks builds a byte-level tokenizer that merges the way tiktoken does:
// ranks maps each token's bytes to its rank, which is also its id.
func fromRanks(name, pattern string, ranks map[string]int, specials map[string]int) (*Tokenizer, error) {
	sp, err := newSplitter(pattern)
	if err != nil {
		return nil, err
	}
	size := 0
	for tok, r := range ranks {
		if r < 0 || r >= 1<<30 {
			return nil, fmt.Errorf("tokenizer: %s: token %q has rank %d out of range", name, tok, r)
		}
		size = max(size, r+1)
	}
	for s, id := range specials {
		if id < 0 || id >= 1<<30 {
			return nil, fmt.Errorf("tokenizer: %s: special token %q has id %d out of range", name, s, id)
		}
		size = max(size, id+1)
	}
	if err := checkIDSpace(size, len(ranks)+len(specials)); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	t := &Tokenizer{
		name:      name,
		kind:      kindByteLevel,
		split:     sp,
		decodeTab: make([]string, size),
		used:      make([]bool, size),
		ranks:     true,
	}
	t.m.vocab = make(map[string]int32, len(ranks))
	t.m.ignoreMerges = true
	t.m.unk = -1
	for tok, r := range ranks {
		if tok == "" {
			return nil, fmt.Errorf("tokenizer: %s: empty token at rank %d", name, r)
		}
		if t.used[r] {
			return nil, fmt.Errorf("tokenizer: %s: rank %d given to both %q and %q", name, r, t.decodeTab[r], tok)
		}
		t.decodeTab[r], t.used[r] = tok, true
		t.m.vocab[tok] = int32(r)
	}
	for b := range 256 {
		id, ok := t.m.vocab[string([]byte{byte(b)})]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s: no token for the single byte 0x%02x, so some text could not be encoded", name, b)
		}
		t.m.byteIDs[b] = id
	}
	if err := t.addSpecials(specials); err != nil {
		return nil, err
	}
	t.finish()
	return t, nil
}

// checkIDSpace rejects vocabularies whose ids are mostly holes: a corrupt
// file must give an error, not a huge allocation.
func checkIDSpace(size, tokens int) error {
	if size > 4*tokens+1<<16 {
		return fmt.Errorf("largest id %d is far beyond the %d tokens (corrupt file?)", size-1, tokens)
	}
	return nil
}

// addSpecials registers special tokens, which must not collide with other tokens.
func (t *Tokenizer) addSpecials(specials map[string]int) error {
	if t.specials == nil {
		t.specials = make(map[string]int, len(specials))
	}
	names := make([]string, 0, len(specials))
	for s := range specials {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		id := specials[s]
		if s == "" {
			return fmt.Errorf("tokenizer: %s: empty special token", t.name)
		}
		if id >= len(t.decodeTab) {
			t.growTo(id + 1)
		}
		if t.used[id] && t.decodeTab[id] != s {
			return fmt.Errorf("tokenizer: %s: special token %q has id %d, which is already %q", t.name, s, id, t.decodeTab[id])
		}
		t.decodeTab[id], t.used[id] = s, true
		t.specials[s] = id
	}
	return nil
}

func (t *Tokenizer) growTo(n int) {
	for len(t.decodeTab) < n {
		t.decodeTab = append(t.decodeTab, "")
		t.used = append(t.used, false)
	}
}

// finish derives the matchers and well-known ids once the vocabulary is complete.
func (t *Tokenizer) finish() {
	t.specialTrie = newTrie()
	for s, id := range t.specials {
		t.specialTrie.add(s, int32(id))
	}
	t.allTrie = newTrie()
	for _, e := range t.specialTrie.entries {
		t.allTrie.add(e.text, e.id)
	}
	if t.addedTrie != nil {
		for _, e := range t.addedTrie.entries {
			t.allTrie.add(e.text, e.id)
		}
	}
	t.m.bytesOnly = t.kind == kindByteLevel && len(t.m.vocab) == 256 && len(t.m.merges) == 0
	ids := make([]int32, 0, len(t.m.vocab))
	keys := make([]string, len(t.decodeTab))
	for s, id := range t.m.vocab {
		ids = append(ids, id)
		keys[id] = s
	}
	t.m.table = newStrTable(keys, ids)
	if t.m.merges != nil {
		t.m.pairs = newPairTable(t.m.merges)
	}
	if t.cacheSize == 0 {
		t.cacheSize = defaultCacheSize
	}
	t.eot, t.bos = -1, -1
	for _, name := range []string{t.cfg.EOSToken, "<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"} {
		if id, ok := t.specials[name]; ok && name != "" {
			t.eot = id
			break
		}
	}
	for _, name := range []string{t.cfg.BOSToken, "<|begin_of_text|>", "<s>", "<bos>"} {
		if id, ok := t.specials[name]; ok && name != "" {
			t.bos = id
			break
		}
	}
	if t.cfg.EOSToken == "" && t.eot >= 0 {
		t.cfg.EOSToken = t.decodeTab[t.eot]
	}
}

// clone returns a copy of t that shares its read-only tables.
func (t *Tokenizer) clone() *Tokenizer {
	return &Tokenizer{
		name: t.name, kind: t.kind, split: t.split, m: t.m,
		decodeTab: t.decodeTab, used: t.used,
		specials: t.specials, specialTrie: t.specialTrie, addedTrie: t.addedTrie, allTrie: t.allTrie,
		norm: t.norm, metaspace: t.metaspace, bytePrefixSpace: t.bytePrefixSpace, stripLeadingSpace: t.stripLeadingSpace,
		eot: t.eot, bos: t.bos, cfg: t.cfg,
		postPrefix: t.postPrefix, postSuffix: t.postSuffix,
		ranks: t.ranks, mergeList: t.mergeList, hf: t.hf, cacheSize: t.cacheSize,
	}
}
