package gguf

import (
	"fmt"

	"github.com/mai-llm/mai/format/quant"
)

// General metadata keys of llama.cpp.
const (
	KeyArchitecture        = "general.architecture"
	KeyName                = "general.name"
	KeyAlignment           = "general.alignment"
	KeyFileType            = "general.file_type"
	KeyQuantizationVersion = "general.quantization_version"
)

// Tokenizer metadata keys of llama.cpp.
const (
	KeyTokenizerModel  = "tokenizer.ggml.model"
	KeyTokenizerPre    = "tokenizer.ggml.pre"
	KeyTokens          = "tokenizer.ggml.tokens"
	KeyTokenScores     = "tokenizer.ggml.scores"
	KeyTokenTypes      = "tokenizer.ggml.token_type"
	KeyMerges          = "tokenizer.ggml.merges"
	KeyAddBOS          = "tokenizer.ggml.add_bos_token"
	KeyAddEOS          = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix  = "tokenizer.ggml.add_space_prefix"
	KeyChatTemplate    = "tokenizer.chat_template"
	keySpecialTokenFmt = "tokenizer.ggml.%s_token_id"
)

// Per-architecture key suffixes: the key is "<arch>.<suffix>" (see ArchKey).
const (
	SuffixContextLength           = "context_length"
	SuffixEmbeddingLength         = "embedding_length"
	SuffixBlockCount              = "block_count"
	SuffixFeedForwardLength       = "feed_forward_length"
	SuffixHeadCount               = "attention.head_count"
	SuffixHeadCountKV             = "attention.head_count_kv"
	SuffixKeyLength               = "attention.key_length"
	SuffixValueLength             = "attention.value_length"
	SuffixRMSEpsilon              = "attention.layer_norm_rms_epsilon"
	SuffixRopeFreqBase            = "rope.freq_base"
	SuffixRopeDimensionCount      = "rope.dimension_count"
	SuffixExpertCount             = "expert_count"
	SuffixExpertUsedCount         = "expert_used_count"
	SuffixExpertFeedForwardLength = "expert_feed_forward_length"
	SuffixVocabSize               = "vocab_size"
)

// ArchKey returns the architecture-specific key "<arch>.<suffix>".
func ArchKey(arch, suffix string) string { return arch + "." + suffix }

// Token types of tokenizer.ggml.token_type.
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// FileType is general.file_type: the dominant tensor type (llama_ftype).
type FileType uint32

// llama.cpp file types.
const (
	FileTypeF32    FileType = 0
	FileTypeF16    FileType = 1
	FileTypeQ4_0   FileType = 2
	FileTypeQ4_1   FileType = 3
	FileTypeQ8_0   FileType = 7
	FileTypeQ5_0   FileType = 8
	FileTypeQ5_1   FileType = 9
	FileTypeQ2_K   FileType = 10
	FileTypeQ3_K_S FileType = 11
	FileTypeQ3_K_M FileType = 12
	FileTypeQ3_K_L FileType = 13
	FileTypeQ4_K_S FileType = 14
	FileTypeQ4_K_M FileType = 15
	FileTypeQ5_K_S FileType = 16
	FileTypeQ5_K_M FileType = 17
	FileTypeQ6_K   FileType = 18
	FileTypeBF16   FileType = 32
)

// FileTypeFor returns the file type of a model whose weights are mostly t.
func FileTypeFor(t quant.Type) (FileType, bool) {
	m := map[quant.Type]FileType{
		quant.F32: FileTypeF32, quant.F16: FileTypeF16, quant.BF16: FileTypeBF16,
		quant.Q4_0: FileTypeQ4_0, quant.Q4_1: FileTypeQ4_1, quant.Q5_0: FileTypeQ5_0,
		quant.Q5_1: FileTypeQ5_1, quant.Q8_0: FileTypeQ8_0, quant.Q4_K: FileTypeQ4_K_S,
		quant.Q5_K: FileTypeQ5_K_S, quant.Q6_K: FileTypeQ6_K,
	}
	ft, ok := m[t]
	return ft, ok
}

// ModelParams are the hyperparameters llama.cpp reads for a llama-family
// model. Zero optional fields are not written.
type ModelParams struct {
	Arch              string // "llama", "qwen2", "qwen2moe", ...; required
	Name              string // general.name; optional
	ContextLength     int
	EmbeddingLength   int
	BlockCount        int
	FeedForwardLength int
	HeadCount         int
	HeadCountKV       int
	// KeyLength and ValueLength are the head dimension, needed when it is not
	// EmbeddingLength/HeadCount; optional.
	KeyLength, ValueLength int
	// RopeDimensionCount is the number of rotated dimensions per head; optional.
	RopeDimensionCount int
	RopeFreqBase       float32
	RMSNormEpsilon     float32
	// ExpertCount and ExpertUsedCount describe a mixture of experts; zero
	// for a dense model.
	ExpertCount, ExpertUsedCount int
	// ExpertFeedForwardLength is the expert hidden size where it differs
	// from FeedForwardLength (Qwen2-MoE); optional.
	ExpertFeedForwardLength int
	// VocabSize is written as <arch>.vocab_size; optional.
	VocabSize int
}

// SetModelParams writes the architecture and hyperparameter keys, with the
// types llama.cpp expects (uint32 counts, float32 rope base and epsilon).
func (w *Writer) SetModelParams(p ModelParams) error {
	if p.Arch == "" {
		return fmt.Errorf("gguf: ModelParams.Arch is empty")
	}
	required := []struct {
		suffix string
		v      int
	}{
		{SuffixContextLength, p.ContextLength},
		{SuffixEmbeddingLength, p.EmbeddingLength},
		{SuffixBlockCount, p.BlockCount},
		{SuffixFeedForwardLength, p.FeedForwardLength},
		{SuffixHeadCount, p.HeadCount},
		{SuffixHeadCountKV, p.HeadCountKV},
	}
	for _, r := range required {
		if r.v <= 0 || r.v > 1<<31 {
			return fmt.Errorf("gguf: ModelParams: %s = %d, want a positive count", r.suffix, r.v)
		}
	}
	if p.RMSNormEpsilon <= 0 {
		return fmt.Errorf("gguf: ModelParams: RMSNormEpsilon = %g, want > 0", p.RMSNormEpsilon)
	}
	if p.ExpertUsedCount > p.ExpertCount {
		return fmt.Errorf("gguf: ModelParams: %d experts used of %d", p.ExpertUsedCount, p.ExpertCount)
	}
	set := func(k string, v any) error { return w.Set(k, v) }
	if err := set(KeyArchitecture, p.Arch); err != nil {
		return err
	}
	if p.Name != "" {
		if err := set(KeyName, p.Name); err != nil {
			return err
		}
	}
	for _, r := range required {
		if err := set(ArchKey(p.Arch, r.suffix), uint32(r.v)); err != nil {
			return err
		}
	}
	optional := []struct {
		suffix string
		v      int
	}{
		{SuffixKeyLength, p.KeyLength},
		{SuffixValueLength, p.ValueLength},
		{SuffixRopeDimensionCount, p.RopeDimensionCount},
		{SuffixExpertCount, p.ExpertCount},
		{SuffixExpertUsedCount, p.ExpertUsedCount},
		{SuffixExpertFeedForwardLength, p.ExpertFeedForwardLength},
		{SuffixVocabSize, p.VocabSize},
	}
	for _, o := range optional {
		if o.v < 0 || o.v > 1<<31 {
			return fmt.Errorf("gguf: ModelParams: %s = %d out of range", o.suffix, o.v)
		}
		if o.v > 0 {
			if err := set(ArchKey(p.Arch, o.suffix), uint32(o.v)); err != nil {
				return err
			}
		}
	}
	if p.RopeFreqBase > 0 {
		if err := set(ArchKey(p.Arch, SuffixRopeFreqBase), p.RopeFreqBase); err != nil {
			return err
		}
	}
	return set(ArchKey(p.Arch, SuffixRMSEpsilon), p.RMSNormEpsilon)
}

// ReadModelParams reads the hyperparameters of f's architecture. The
// architecture, embedding length, block count and head count are required;
// others are zero when absent (head_count_kv defaults to head_count, as in
// llama.cpp).
func ReadModelParams(f *File) (ModelParams, error) {
	var p ModelParams
	arch, ok := f.String(KeyArchitecture)
	if !ok {
		return p, fmt.Errorf("gguf: %s missing or not a string", KeyArchitecture)
	}
	p.Arch = arch
	p.Name, _ = f.String(KeyName)
	get := func(suffix string, dst *int, required bool) error {
		v, ok := f.Uint(ArchKey(arch, suffix))
		if !ok {
			if _, present := f.Get(ArchKey(arch, suffix)); present {
				return fmt.Errorf("gguf: %s is not a non-negative integer", ArchKey(arch, suffix))
			}
			if required {
				return fmt.Errorf("gguf: %s missing", ArchKey(arch, suffix))
			}
			return nil
		}
		if v > 1<<31 {
			return fmt.Errorf("gguf: %s = %d out of range", ArchKey(arch, suffix), v)
		}
		*dst = int(v)
		return nil
	}
	fields := []struct {
		suffix   string
		dst      *int
		required bool
	}{
		{SuffixContextLength, &p.ContextLength, false},
		{SuffixEmbeddingLength, &p.EmbeddingLength, true},
		{SuffixBlockCount, &p.BlockCount, true},
		{SuffixFeedForwardLength, &p.FeedForwardLength, false},
		{SuffixHeadCount, &p.HeadCount, true},
		{SuffixHeadCountKV, &p.HeadCountKV, false},
		{SuffixKeyLength, &p.KeyLength, false},
		{SuffixValueLength, &p.ValueLength, false},
		{SuffixRopeDimensionCount, &p.RopeDimensionCount, false},
		{SuffixExpertCount, &p.ExpertCount, false},
		{SuffixExpertUsedCount, &p.ExpertUsedCount, false},
		{SuffixExpertFeedForwardLength, &p.ExpertFeedForwardLength, false},
		{SuffixVocabSize, &p.VocabSize, false},
	}
	for _, fl := range fields {
		if err := get(fl.suffix, fl.dst, fl.required); err != nil {
			return p, err
		}
	}
	if p.HeadCountKV == 0 {
		p.HeadCountKV = p.HeadCount
	}
	if v, ok := f.Float(ArchKey(arch, SuffixRopeFreqBase)); ok {
		p.RopeFreqBase = float32(v)
	}
	if v, ok := f.Float(ArchKey(arch, SuffixRMSEpsilon)); ok {
		p.RMSNormEpsilon = float32(v)
	}
	return p, nil
}

// Tokenizer is the tokenizer.* metadata of llama.cpp.
type Tokenizer struct {
	// Model is "gpt2" (byte-level BPE), "llama" (SentencePiece BPE) or
	// "none" (no vocabulary: token ids only).
	Model string
	// Pre names the pre-tokenizer for "gpt2" models ("default",
	// "llama-bpe", "qwen2", ...); optional.
	Pre string
	// Tokens are the token strings, by id.
	Tokens []string
	// Scores are per-token scores (SentencePiece); optional.
	Scores []float32
	// Types are per-token types (TokenNormal, TokenControl, ...); optional.
	Types []int32
	// Merges are BPE merges as "left right"; required for "gpt2".
	Merges []string
	// Special maps special-token roles ("bos", "eos", "unknown", "padding",
	// "sep", "cls", "mask", "eot", "eom") to token ids.
	Special map[string]int
	// AddBOS and AddEOS tell llama.cpp whether to add BOS/EOS when
	// tokenizing.
	AddBOS, AddEOS bool
	// AddSpacePrefix, when not nil, tells a "llama" tokenizer whether to
	// put a space before the text (llama.cpp's default, when absent, is
	// true).
	AddSpacePrefix *bool
	// ChatTemplate is a Jinja chat template; optional.
	ChatTemplate string
}

// SetTokenizer writes the tokenizer keys.
func (w *Writer) SetTokenizer(t Tokenizer) error {
	if t.Model == "" {
		return fmt.Errorf("gguf: Tokenizer.Model is empty")
	}
	n := len(t.Tokens)
	if t.Scores != nil && len(t.Scores) != n || t.Types != nil && len(t.Types) != n {
		return fmt.Errorf("gguf: tokenizer has %d tokens, %d scores and %d types", n, len(t.Scores), len(t.Types))
	}
	kvs := []KV{{KeyTokenizerModel, t.Model}}
	if t.Pre != "" {
		kvs = append(kvs, KV{KeyTokenizerPre, t.Pre})
	}
	if t.Tokens != nil {
		kvs = append(kvs, KV{KeyTokens, t.Tokens})
	}
	if t.Scores != nil {
		kvs = append(kvs, KV{KeyTokenScores, t.Scores})
	}
	if t.Types != nil {
		kvs = append(kvs, KV{KeyTokenTypes, t.Types})
	}
	if t.Merges != nil {
		kvs = append(kvs, KV{KeyMerges, t.Merges})
	}
	for _, role := range sortedKeys(t.Special) {
		id := t.Special[role]
		if id < 0 || (n > 0 && id >= n) {
			return fmt.Errorf("gguf: special token %s = %d outside the %d-token vocabulary", role, id, n)
		}
		kvs = append(kvs, KV{fmt.Sprintf(keySpecialTokenFmt, role), uint32(id)})
	}
	kvs = append(kvs, KV{KeyAddBOS, t.AddBOS}, KV{KeyAddEOS, t.AddEOS})
	if t.AddSpacePrefix != nil {
		kvs = append(kvs, KV{KeyAddSpacePrefix, *t.AddSpacePrefix})
	}
	if t.ChatTemplate != "" {
		kvs = append(kvs, KV{KeyChatTemplate, t.ChatTemplate})
	}
	for _, kv := range kvs {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	return nil
}

// ReadTokenizer reads the tokenizer keys of f.
func ReadTokenizer(f *File) (Tokenizer, error) {
	var t Tokenizer
	model, ok := f.String(KeyTokenizerModel)
	if !ok {
		return t, fmt.Errorf("gguf: %s missing", KeyTokenizerModel)
	}
	t.Model = model
	t.Pre, _ = f.String(KeyTokenizerPre)
	t.Tokens, _ = f.Strings(KeyTokens)
	t.Merges, _ = f.Strings(KeyMerges)
	if v, ok := f.Get(KeyTokenScores); ok {
		if t.Scores, ok = v.([]float32); !ok {
			return t, fmt.Errorf("gguf: %s is %T, want []float32", KeyTokenScores, v)
		}
	}
	if v, ok := f.Get(KeyTokenTypes); ok {
		if t.Types, ok = v.([]int32); !ok {
			return t, fmt.Errorf("gguf: %s is %T, want []int32", KeyTokenTypes, v)
		}
	}
	for _, role := range []string{"bos", "eos", "unknown", "padding", "sep", "cls", "mask", "eot", "eom"} {
		if id, ok := f.Uint(fmt.Sprintf(keySpecialTokenFmt, role)); ok {
			if t.Special == nil {
				t.Special = map[string]int{}
			}
			t.Special[role] = int(id)
		}
	}
	t.AddBOS, _ = f.Bool(KeyAddBOS)
	t.AddEOS, _ = f.Bool(KeyAddEOS)
	if v, ok := f.Bool(KeyAddSpacePrefix); ok {
		t.AddSpacePrefix = &v
	}
	t.ChatTemplate, _ = f.String(KeyChatTemplate)
	return t, nil
}
