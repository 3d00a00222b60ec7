package tokenizer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Token types of llama.cpp's vocabularies (GGUF tokenizer.ggml.token_type).
const (
	SPNormal      int32 = 1
	SPUnknown     int32 = 2
	SPControl     int32 = 3
	SPUserDefined int32 = 4
	SPUnused      int32 = 5
	SPByte        int32 = 6
)

// SentencePieceVocab is a SentencePiece-style BPE vocabulary in the form
// llama.cpp keeps it (a GGUF "llama" tokenizer): tokens with scores and
// types, "▁" for a space, byte tokens "<0xXX>" for characters outside the
// vocabulary. Encoding merges the adjacent pair whose concatenation is the
// highest-scored token first.
type SentencePieceVocab struct {
	Tokens []string
	Scores []float32
	// Types are SPNormal, SPControl, ... per token; nil means all normal
	// (with "<0xXX>" tokens as bytes).
	Types []int32
	// Merges, when not nil, are BPE merges ("left right") that replace the
	// ones derived from the scores (as transformers does for a GGUF file
	// that carries tokenizer.ggml.merges).
	Merges []string
	// AddSpacePrefix puts "▁" before the text (llama.cpp's
	// tokenizer.ggml.add_space_prefix, on by default).
	AddSpacePrefix bool
	// Unknown, BOS and EOS are token ids, -1 for none.
	Unknown, BOS, EOS int
	// AddBOS and AddEOS tell whether encoding adds BOS and EOS.
	AddBOS, AddEOS bool
	ChatTemplate   string
}

func (v *SentencePieceVocab) typ(id int) int32 {
	if v.Types != nil && id < len(v.Types) {
		return v.Types[id]
	}
	if isByteToken(v.Tokens[id]) {
		return SPByte
	}
	return SPNormal
}

func isByteToken(s string) bool {
	if len(s) != 6 || !strings.HasPrefix(s, "<0x") || s[5] != '>' {
		return false
	}
	_, err := strconv.ParseUint(s[3:5], 16, 8)
	return err == nil
}

// SentencePieceFromHF reads a SentencePiece-style tokenizer.json (BPE with
// byte_fallback, "▁" for spaces through a Prepend/Replace normalizer or a
// Metaspace pre-tokenizer, as Llama 2 and Mistral ship) and, when not nil,
// its tokenizer_config.json, into llama.cpp's form. The BPE merges become
// scores: a token made by the merge of rank r scores -r, so that merging
// the best-scored pair first applies the merges in their order; tokens no
// merge makes score below all of them (-(merges+id)); bytes and special
// tokens score 0.
func SentencePieceFromHF(tokenizerJSON, configJSON []byte) (*SentencePieceVocab, error) {
	var f hfFile
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	// Build it with MAI's reader: this checks the file and the pipeline.
	t, err := buildHF(&f, "tokenizer.json")
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if t.kind != kindSentencePiece || !f.Model.ByteFallback {
		return nil, errors.New("tokenizer.json: not a SentencePiece-style BPE tokenizer (want byte_fallback and no ByteLevel pre-tokenizer)")
	}
	v := &SentencePieceVocab{Unknown: -1, BOS: -1, EOS: -1}
	// The space prefix: a Prepend("▁") normalizer or Metaspace prepending.
	for _, st := range t.norm {
		if st.kind == "prepend" && st.from == "▁" {
			v.AddSpacePrefix = true
		}
		if st.kind != "prepend" && st.kind != "replace" {
			return nil, fmt.Errorf("tokenizer.json: normalizer %q has no llama.cpp equivalent", st.kind)
		}
	}
	if ms := t.metaspace; ms != nil {
		if ms.replacement != "▁" {
			return nil, fmt.Errorf("tokenizer.json: Metaspace replacement %q (llama.cpp uses ▁)", ms.replacement)
		}
		v.AddSpacePrefix = ms.scheme != "never"
		if ms.split {
			// llama.cpp merges across ▁ (runs of spaces, "▁▁"); a splitting
			// Metaspace never does.
			slog.Warn("tokenizer.json: Metaspace with split: llama.cpp does not split at ▁, so runs of spaces may tokenize differently")
		}
	}

	keys, ids, err := parseVocab(f.Model.Vocab)
	if err != nil {
		return nil, err
	}
	n := len(t.decodeTab)
	v.Tokens = make([]string, n)
	v.Types = make([]int32, n)
	v.Scores = make([]float32, n)
	set := make([]bool, n)
	for i, k := range keys {
		v.Tokens[ids[i]], set[ids[i]] = k, true
		v.Types[ids[i]] = SPNormal
		if isByteToken(k) {
			v.Types[ids[i]] = SPByte
		}
	}
	for _, a := range f.AddedTokens {
		v.Tokens[a.ID], set[a.ID] = a.Content, true
		v.Types[a.ID] = SPUserDefined
		if a.Special {
			v.Types[a.ID] = SPControl
		}
	}
	if f.Model.UnkToken != nil {
		for id, s := range v.Tokens {
			if set[id] && s == *f.Model.UnkToken {
				v.Unknown, v.Types[id] = id, SPUnknown
				break
			}
		}
	}
	for id := range v.Tokens {
		if !set[id] {
			v.Tokens[id], v.Types[id] = fmt.Sprintf("[PAD%d]", id), SPUnused
		}
	}
	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		return nil, err
	}
	first := map[string]int{}
	for r, m := range merges {
		if _, ok := first[m[0]+m[1]]; !ok {
			first[m[0]+m[1]] = r
		}
	}
	for id, s := range v.Tokens {
		if v.Types[id] != SPNormal {
			continue
		}
		if r, ok := first[s]; ok {
			v.Scores[id] = -float32(r)
		} else {
			v.Scores[id] = -float32(len(merges) + id)
		}
	}

	if configJSON != nil {
		if err := t.applyConfig(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	find := func(name string) int {
		for id, s := range v.Tokens {
			if name != "" && s == name && set[id] {
				return id
			}
		}
		return -1
	}
	v.BOS, v.EOS = find(t.cfg.BOSToken), find(t.cfg.EOSToken)
	v.AddBOS, v.AddEOS, v.ChatTemplate = t.cfg.AddBOSToken, t.cfg.AddEOSToken, t.cfg.ChatTemplate
	if configJSON == nil {
		// Without a config, the post-processor tells what is added.
		v.AddBOS = len(t.postPrefix) > 0
		v.AddEOS = len(t.postSuffix) > 0
		if len(t.postPrefix) > 0 {
			v.BOS = t.postPrefix[0]
		}
		if len(t.postSuffix) > 0 {
			v.EOS = t.postSuffix[len(t.postSuffix)-1]
		}
	}
	return v, nil
}

// HFMerges derives BPE merges from the scores as transformers' converters
// do (generate_merges in convert_slow_tokenizer.py): every split of a
// normal token into two tokens is a merge, ordered by the token's score
// (highest first), then by the longer left part, splits of one token by
// their parts' ids. With Merges set, those are returned instead.
func (v *SentencePieceVocab) HFMerges() ([][2]string, error) {
	if v.Merges != nil {
		out := make([][2]string, 0, len(v.Merges))
		for i, m := range v.Merges {
			a, b, ok := strings.Cut(m, " ")
			if !ok || a == "" || b == "" {
				return nil, fmt.Errorf("merge %d %q: want two tokens separated by a space", i, m)
			}
			out = append(out, [2]string{a, b})
		}
		return out, nil
	}
	if len(v.Scores) != len(v.Tokens) {
		return nil, fmt.Errorf("%d tokens and %d scores: merges cannot be derived", len(v.Tokens), len(v.Scores))
	}
	ids := make(map[string]int, len(v.Tokens))
	for id, s := range v.Tokens {
		if _, dup := ids[s]; !dup && v.typ(id) != SPUnused {
			ids[s] = id
		}
	}
	type merge struct {
		l, r       string
		score      float32
		lLen, rLen int
		order      int
	}
	var ms []merge
	for id, s := range v.Tokens {
		if v.typ(id) != SPNormal || ids[s] != id {
			continue
		}
		var local []merge
		for i := range s {
			if i == 0 {
				continue
			}
			l, r := s[:i], s[i:]
			if _, ok := ids[l]; !ok {
				continue
			}
			if _, ok := ids[r]; !ok {
				continue
			}
			local = append(local, merge{l: l, r: r, score: v.Scores[id],
				lLen: utf8.RuneCountInString(l), rLen: utf8.RuneCountInString(r)})
		}
		slices.SortStableFunc(local, func(a, b merge) int {
			return cmp.Or(cmp.Compare(ids[a.l], ids[b.l]), cmp.Compare(ids[a.r], ids[b.r]))
		})
		for _, m := range local {
			m.order = len(ms)
			ms = append(ms, m)
		}
	}
	slices.SortStableFunc(ms, func(a, b merge) int {
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(b.lLen, a.lLen), cmp.Compare(b.rLen, a.rLen))
	})
	out := make([][2]string, len(ms))
	for i, m := range ms {
		out[i] = [2]string{m.l, m.r}
	}
	return out, nil
}

// MarshalHF writes the vocabulary as a Hugging Face tokenizer.json and
// tokenizer_config.json in the form transformers gives a Llama tokenizer
// converted from SentencePiece or GGUF (legacy): a Prepend("▁") and
// Replace(" ", "▁") normalizer, BPE with fuse_unk and byte_fallback (when
// the vocabulary has <0xXX> tokens; without them unknown characters become
// the unknown token) over
// merges derived from the scores (see HFMerges), control and user-defined
// tokens as added tokens, BOS/EOS added by the post-processor as AddBOS
// and AddEOS say.
func (v *SentencePieceVocab) MarshalHF() (tokenizerJSON, configJSON []byte, err error) {
	if v.Types != nil && len(v.Types) != len(v.Tokens) {
		return nil, nil, fmt.Errorf("%d tokens and %d types", len(v.Tokens), len(v.Types))
	}
	merges, err := v.HFMerges()
	if err != nil {
		return nil, nil, err
	}
	vocab := make(map[string]int, len(v.Tokens))
	added := []hfAddedToken{}
	hasByte := false
	for id, s := range v.Tokens {
		typ := v.typ(id)
		if typ == SPUnused {
			continue
		}
		if typ == SPByte {
			hasByte = true
		}
		if typ == SPControl || typ == SPUserDefined || typ == SPUnknown {
			added = append(added, hfAddedToken{ID: id, Content: s, Special: typ != SPUserDefined})
		}
		if _, dup := vocab[s]; !dup {
			vocab[s] = id
		}
	}
	tokenAt := func(id int) (string, bool) {
		if id >= 0 && id < len(v.Tokens) {
			return v.Tokens[id], true
		}
		return "", false
	}
	var unk any
	if s, ok := tokenAt(v.Unknown); ok {
		unk = s
	}
	mergeStrs := make([]string, len(merges))
	for i, m := range merges {
		mergeStrs[i] = m[0] + " " + m[1]
	}
	var norm []any
	if v.AddSpacePrefix {
		norm = append(norm, map[string]any{"type": "Prepend", "prepend": "▁"})
	}
	norm = append(norm, map[string]any{"type": "Replace", "pattern": map[string]string{"String": " "}, "content": "▁"})
	dec := []any{
		map[string]any{"type": "Replace", "pattern": map[string]string{"String": "▁"}, "content": " "},
		map[string]any{"type": "ByteFallback"},
		map[string]any{"type": "Fuse"},
	}
	if v.AddSpacePrefix {
		dec = append(dec, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0})
	}
	var post any
	bos, hasBOS := tokenAt(v.BOS)
	eos, hasEOS := tokenAt(v.EOS)
	if v.AddBOS && hasBOS || v.AddEOS && hasEOS {
		type tmplItem = map[string]any
		special := func(s string) tmplItem {
			return tmplItem{"SpecialToken": map[string]any{"id": s, "type_id": 0}}
		}
		var single, pair []tmplItem
		specials := map[string]any{}
		if v.AddBOS && hasBOS {
			single = append(single, special(bos))
			pair = append(pair, special(bos))
			specials[bos] = map[string]any{"id": bos, "ids": []int{v.BOS}, "tokens": []string{bos}}
		}
		single = append(single, tmplItem{"Sequence": map[string]any{"id": "A", "type_id": 0}})
		pair = append(pair, tmplItem{"Sequence": map[string]any{"id": "A", "type_id": 0}})
		if v.AddEOS && hasEOS {
			single = append(single, special(eos))
			pair = append(pair, special(eos))
			specials[eos] = map[string]any{"id": eos, "ids": []int{v.EOS}, "tokens": []string{eos}}
		}
		if v.AddBOS && hasBOS {
			pair = append(pair, tmplItem{"SpecialToken": map[string]any{"id": bos, "type_id": 1}})
		}
		pair = append(pair, tmplItem{"Sequence": map[string]any{"id": "B", "type_id": 1}})
		if v.AddEOS && hasEOS {
			pair = append(pair, tmplItem{"SpecialToken": map[string]any{"id": eos, "type_id": 1}})
		}
		post = map[string]any{"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added,
		"normalizer":     map[string]any{"type": "Sequence", "normalizers": norm},
		"pre_tokenizer":  nil,
		"post_processor": post,
		"decoder":        map[string]any{"type": "Sequence", "decoders": dec},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": unk, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": hasByte, "ignore_merges": false,
			"vocab": vocab, "merges": mergeStrs},
	}
	if tokenizerJSON, err = json.Marshal(tj); err != nil {
		return nil, nil, err
	}
	cfg := map[string]any{"tokenizer_class": "LlamaTokenizerFast", "legacy": true, "clean_up_tokenization_spaces": false,
		"add_bos_token": v.AddBOS, "add_eos_token": v.AddEOS}
	if hasBOS {
		cfg["bos_token"] = bos
	}
	if hasEOS {
		cfg["eos_token"] = eos
	}
	if s, ok := tokenAt(v.Unknown); ok {
		cfg["unk_token"] = s
	}
	if v.ChatTemplate != "" {
		cfg["chat_template"] = v.ChatTemplate
	}
	if configJSON, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return nil, nil, err
	}
	return append(tokenizerJSON, '\n'), append(configJSON, '\n'), nil
}
