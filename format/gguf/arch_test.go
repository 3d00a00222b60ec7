package gguf

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/format/safetensors"
)

// The llama fixture lives with the safetensors package; the mixtral one here.
const (
	llamaDir   = "../safetensors/testdata"
	mixtralDir = "testdata/mixtral"
)

func readParams(t *testing.T, dir string) ModelParams {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParamsFromHFConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParamsFromHFConfig(t *testing.T) {
	llama := readParams(t, llamaDir)
	want := ModelParams{Arch: "llama", ContextLength: 128, EmbeddingLength: 64, BlockCount: 2, FeedForwardLength: 176,
		HeadCount: 4, HeadCountKV: 2, RopeDimensionCount: 16, RopeFreqBase: 10000, RMSNormEpsilon: 1e-5, VocabSize: 512}
	if !reflect.DeepEqual(llama, want) {
		t.Errorf("llama params\n got %+v\nwant %+v", llama, want)
	}
	mix := readParams(t, mixtralDir)
	if mix.Arch != "llama" || mix.ExpertCount != 4 || mix.ExpertUsedCount != 2 || mix.RopeFreqBase != 1e6 || mix.RopeDimensionCount != 16 {
		t.Errorf("mixtral params %+v", mix)
	}
	p, err := ParamsFromHFConfig([]byte(`{"model_type":"qwen2","hidden_size":96,"num_attention_heads":4,"head_dim":32,"rope_theta":5e5,"num_hidden_layers":1}`))
	if err != nil || p.Arch != "qwen2" || p.KeyLength != 32 || p.HeadCountKV != 4 || p.RopeFreqBase != 5e5 {
		t.Errorf("qwen2: %+v %v", p, err)
	}
	for _, bad := range []string{`{`, `{"model_type":"gpt2"}`, `{"model_type":"llama"}`} {
		if _, err := ParamsFromHFConfig([]byte(bad)); err == nil {
			t.Errorf("ParamsFromHFConfig(%s) succeeded", bad)
		}
	}
}

func TestModelParamsRoundTrip(t *testing.T) {
	p := ModelParams{Arch: "qwen2moe", Name: "tiny", ContextLength: 4096, EmbeddingLength: 2048, BlockCount: 24,
		FeedForwardLength: 5632, HeadCount: 16, HeadCountKV: 4, KeyLength: 128, ValueLength: 128, RopeDimensionCount: 128,
		RopeFreqBase: 1e6, RMSNormEpsilon: 1e-6, ExpertCount: 60, ExpertUsedCount: 4, ExpertFeedForwardLength: 1408, VocabSize: 151936}
	w := NewWriter()
	if err := w.SetModelParams(p); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(encodeFile(t, w))
	if err != nil {
		t.Fatal(err)
	}
	// llama.cpp reads these with fixed types.
	types := map[string]any{
		"general.architecture":                      "qwen2moe",
		"qwen2moe.context_length":                   uint32(4096),
		"qwen2moe.embedding_length":                 uint32(2048),
		"qwen2moe.block_count":                      uint32(24),
		"qwen2moe.feed_forward_length":              uint32(5632),
		"qwen2moe.attention.head_count":             uint32(16),
		"qwen2moe.attention.head_count_kv":          uint32(4),
		"qwen2moe.rope.freq_base":                   float32(1e6),
		"qwen2moe.attention.layer_norm_rms_epsilon": float32(1e-6),
		"qwen2moe.expert_count":                     uint32(60),
		"qwen2moe.expert_used_count":                uint32(4),
		"qwen2moe.expert_feed_forward_length":       uint32(1408),
		"qwen2moe.attention.key_length":             uint32(128),
		"qwen2moe.rope.dimension_count":             uint32(128),
	}
	for k, v := range types {
		if got, _ := f.Get(k); !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	got, err := ReadModelParams(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip\n got %+v\nwant %+v", got, p)
	}
	// Missing and invalid values.
	if err := NewWriter().SetModelParams(ModelParams{Arch: "llama"}); err == nil {
		t.Error("SetModelParams with zero counts succeeded")
	}
	if err := NewWriter().SetModelParams(ModelParams{}); err == nil {
		t.Error("SetModelParams without Arch succeeded")
	}
	w2 := NewWriter()
	w2.Set(KeyArchitecture, "llama")
	w2.Set("llama.embedding_length", uint32(8))
	f2, _ := Parse(encodeFile(t, w2))
	if _, err := ReadModelParams(f2); err == nil || !strings.Contains(err.Error(), "block_count missing") {
		t.Errorf("ReadModelParams without block_count: %v", err)
	}
	w2.Set("llama.block_count", int32(-1))
	f2, _ = Parse(encodeFile(t, w2))
	if _, err := ReadModelParams(f2); err == nil || !strings.Contains(err.Error(), "not a non-negative") {
		t.Errorf("ReadModelParams with negative block_count: %v", err)
	}
}

func TestTokenizerRoundTrip(t *testing.T) {
	tok := Tokenizer{
		Model: "gpt2", Pre: "llama-bpe",
		Tokens:  []string{"<s>", "</s>", "a", "b", "ab"},
		Types:   []int32{TokenControl, TokenControl, TokenNormal, TokenNormal, TokenNormal},
		Scores:  []float32{0, 0, -1, -2, -3},
		Merges:  []string{"a b"},
		Special: map[string]int{"bos": 0, "eos": 1, "padding": 1},
		AddBOS:  true, ChatTemplate: "{{ messages }}",
		AddSpacePrefix: new(false),
	}
	w := NewWriter()
	if err := w.SetTokenizer(tok); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(encodeFile(t, w))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("tokenizer.ggml.bos_token_id"); v != uint32(0) {
		t.Errorf("bos id = %#v", v)
	}
	got, err := ReadTokenizer(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tok) {
		t.Errorf("round trip\n got %+v\nwant %+v", got, tok)
	}
	bad := []Tokenizer{
		{},
		{Model: "gpt2", Tokens: []string{"a"}, Scores: []float32{1, 2}},
		{Model: "gpt2", Tokens: []string{"a"}, Special: map[string]int{"bos": 3}},
	}
	for _, b := range bad {
		if err := NewWriter().SetTokenizer(b); err == nil {
			t.Errorf("SetTokenizer(%+v) succeeded", b)
		}
	}
	if _, err := ReadTokenizer(f2empty(t)); err == nil {
		t.Error("ReadTokenizer without a model succeeded")
	}
}

func f2empty(t *testing.T) *File {
	f, err := Parse(encodeFile(t, NewWriter()))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestNames(t *testing.T) {
	tests := []struct {
		hf, gguf string
		expert   int
		arch     string // for the reverse mapping; "" = not reversible to hf
	}{
		{"model.embed_tokens.weight", "token_embd.weight", -1, "llama"},
		{"model.norm.weight", "output_norm.weight", -1, "llama"},
		{"lm_head.weight", "output.weight", -1, "llama"},
		{"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", -1, "llama"},
		{"model.layers.11.self_attn.k_proj.bias", "blk.11.attn_k.bias", -1, "qwen2"},
		{"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight", -1, "llama"},
		{"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight", -1, "llama"},
		{"model.layers.3.self_attn.q_norm.weight", "blk.3.attn_q_norm.weight", -1, "qwen3"},
		{"model.layers.3.self_attn.qkv_proj.weight", "blk.3.attn_qkv.weight", -1, "phi3"},
		{"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight", -1, "llama"},
		{"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight", -1, "llama"},
		{"model.layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight", -1, "llama"},
		{"model.layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight", -1, "llama"},
		{"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight", -1, "llama"},
		{"model.layers.3.mlp.gate_up_proj.weight", "blk.3.ffn_up.weight", -1, ""},
		{"model.layers.1.block_sparse_moe.gate.weight", "blk.1.ffn_gate_inp.weight", -1, "llama"},
		{"model.layers.1.block_sparse_moe.experts.7.w1.weight", "blk.1.ffn_gate_exps.weight", 7, "llama"},
		{"model.layers.1.block_sparse_moe.experts.0.w3.weight", "blk.1.ffn_up_exps.weight", 0, "llama"},
		{"model.layers.1.block_sparse_moe.experts.2.w2.weight", "blk.1.ffn_down_exps.weight", 2, "llama"},
		{"model.layers.2.mlp.gate.weight", "blk.2.ffn_gate_inp.weight", -1, "qwen2moe"},
		{"model.layers.2.mlp.experts.59.gate_proj.weight", "blk.2.ffn_gate_exps.weight", 59, "qwen2moe"},
		{"model.layers.2.mlp.experts.5.up_proj.weight", "blk.2.ffn_up_exps.weight", 5, "qwen2moe"},
		{"model.layers.2.mlp.experts.5.down_proj.weight", "blk.2.ffn_down_exps.weight", 5, "qwen3moe"},
		{"model.layers.2.mlp.shared_expert.gate_proj.weight", "blk.2.ffn_gate_shexp.weight", -1, "qwen2moe"},
		{"model.layers.2.mlp.shared_expert.up_proj.weight", "blk.2.ffn_up_shexp.weight", -1, "qwen2moe"},
		{"model.layers.2.mlp.shared_expert.down_proj.weight", "blk.2.ffn_down_shexp.weight", -1, "qwen2moe"},
		{"model.layers.2.mlp.shared_expert_gate.weight", "blk.2.ffn_gate_inp_shexp.weight", -1, "qwen2moe"},
	}
	for _, tt := range tests {
		g, e, ok := GGUFName(tt.hf)
		if !ok || g != tt.gguf || e != tt.expert {
			t.Errorf("GGUFName(%s) = %s %d %v, want %s %d", tt.hf, g, e, ok, tt.gguf, tt.expert)
		}
		if tt.arch == "" {
			continue
		}
		hf, ok := HFName(tt.arch, tt.gguf, tt.expert)
		if !ok || hf != tt.hf {
			t.Errorf("HFName(%s, %s, %d) = %s %v, want %s", tt.arch, tt.gguf, tt.expert, hf, ok, tt.hf)
		}
	}
	for _, bad := range []string{"model.layers.x.mlp.up_proj.weight", "model.layers.01.mlp.up_proj.weight", "model.layers.1.mlp.foo.weight",
		"model.embed_tokens.scale", "embed", "model.layers.1.mlp.experts.0.w1.weight", "model.layers.1.block_sparse_moe.experts.0.up_proj.weight",
		"model.layers.1.mlp.experts.-1.up_proj.weight", "transformer.h.0.attn.weight"} {
		if g, _, ok := GGUFName(bad); ok {
			t.Errorf("GGUFName(%s) = %s", bad, g)
		}
	}
	for _, bad := range []string{"blk.x.attn_q.weight", "blk.0.nope.weight", "token_embd", "blk.0.ffn_up_exps.weight"} {
		if hf, ok := HFName("llama", bad, -1); ok {
			t.Errorf("HFName(%s) = %s", bad, hf)
		}
	}
}

func TestPermuteQK(t *testing.T) {
	// One head of 4 rows of 1: HF rotate-half pairs (0,2), (1,3) become
	// adjacent pairs.
	got, err := PermuteQK([]float32{0, 1, 2, 3, 4, 5, 6, 7}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 2, 1, 3, 4, 6, 5, 7}; !slices.Equal(got, want) {
		t.Errorf("PermuteQK = %v, want %v", got, want)
	}
	// Rows move whole; the inverse restores.
	rng := rand.New(rand.NewPCG(1, 1))
	w := randFloats(rng, 4*16*8)
	p, _ := PermuteQK(w, 4, 8)
	if !slices.Equal(p[1*8:2*8], w[8*8:9*8]) { // row 1 = head 0, i 0, j 1 <- row 0*16 + 1*8 + 0
		t.Error("row 1 of the permuted weight is not row 8 of the original")
	}
	back, _ := UnpermuteQK(p, 4, 8)
	if !slices.Equal(back, w) {
		t.Error("UnpermuteQK does not invert PermuteQK")
	}
	for _, c := range []struct{ n, heads, cols int }{{10, 3, 1}, {12, 2, 2}, {8, 0, 1}} {
		if _, err := PermuteQK(make([]float32, c.n), c.heads, c.cols); err == nil {
			t.Errorf("PermuteQK(%v) succeeded", c)
		}
	}
}

// convertFixture converts a fixture directory and reopens the written file.
func convertFixture(t *testing.T, dir string, opts ConvertOptions) (*File, *safetensors.Set) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	opts.Params = readParams(t, dir)
	w, err := ConvertHF(set, opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, set
}

func TestConvertLlamaF32(t *testing.T) {
	f, set := convertFixture(t, llamaDir, ConvertOptions{Type: quant.F32, Tokenizer: &Tokenizer{Model: "none"}})
	if len(f.Tensors) != 21 || f.Tensors[0].Name != "token_embd.weight" || f.Tensors[1].Name != "blk.0.attn_k.weight" {
		t.Errorf("tensors: first %s last %s of %d", f.Tensors[0].Name, f.Tensors[len(f.Tensors)-1].Name, len(f.Tensors))
	}
	if ft, _ := f.Uint(KeyFileType); ft != uint64(FileTypeF32) {
		t.Errorf("file type %d", ft)
	}
	info, _ := f.Tensor("blk.0.attn_k.weight")
	if !slices.Equal(info.Dims, []uint64{64, 32}) || info.Type != quant.F32 {
		t.Errorf("attn_k: %+v", info)
	}
	// Q rows are permuted: GGUF row 1 is HF row 8 (head dim 16).
	q, _, _ := f.Float32("blk.1.attn_q.weight")
	hq, _, _ := set.Float32("model.layers.1.self_attn.q_proj.weight")
	if !slices.Equal(q[64:128], hq[8*64:9*64]) || !slices.Equal(q[:64], hq[:64]) {
		t.Error("attn_q rows are not permuted as llama.cpp expects")
	}
	// Back to HF names and layout, exactly.
	seen := 0
	err := ReadHF(f, func(name string, shape []int, data []float32) error {
		want, wshape, err := set.Float32(name)
		if err != nil {
			t.Errorf("ReadHF gave unknown tensor %s", name)
			return nil
		}
		if !slices.Equal(shape, wshape) || !slices.Equal(data, want) {
			t.Errorf("%s differs after the round trip", name)
		}
		seen++
		return nil
	})
	if err != nil || seen != 21 {
		t.Errorf("ReadHF: %v, %d tensors", err, seen)
	}
}

func TestConvertMixtral(t *testing.T) {
	f, set := convertFixture(t, mixtralDir, ConvertOptions{Type: quant.F16})
	info, ok := f.Tensor("blk.1.ffn_down_exps.weight")
	if !ok || !slices.Equal(info.Shape(), []int{4, 64, 176}) || info.Type != quant.F16 {
		t.Errorf("ffn_down_exps: %+v", info)
	}
	if r, _ := f.Tensor("blk.0.ffn_gate_inp.weight"); r.Type != quant.F32 {
		t.Errorf("router stored as %v, want F32", r.Type)
	}
	if n, _ := f.Tensor("blk.0.attn_norm.weight"); n.Type != quant.F32 {
		t.Errorf("norm stored as %v", n.Type)
	}
	names := map[string]bool{}
	err := ReadHF(f, func(name string, shape []int, data []float32) error {
		want, wshape, err := set.Float32(name)
		if err != nil {
			t.Errorf("unknown tensor %s", name)
			return nil
		}
		if !slices.Equal(shape, wshape) {
			t.Errorf("%s: shape %v, want %v", name, shape, wshape)
		}
		for i := range want {
			if d := data[i] - quant.F16ToF32(quant.F32ToF16(want[i])); d != 0 && len(shape) == 2 && !strings.Contains(name, "gate.") {
				t.Errorf("%s[%d] = %v, want f16(%v)", name, i, data[i], want[i])
				break
			}
		}
		names[name] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(set.Names()) {
		t.Errorf("ReadHF gave %d tensors, source has %d", len(names), len(set.Names()))
	}
}

func TestConvertTypes(t *testing.T) {
	// Rows of 64 do not fill a 256-block: Q4_K falls back to Q5_0; rows of
	// 176 do not fill a 32-block either: F16.
	f, _ := convertFixture(t, llamaDir, ConvertOptions{Type: quant.Q4_K, OutputType: quant.Q8_0})
	want := map[string]quant.Type{
		"token_embd.weight":      quant.Q5_0,
		"blk.0.attn_q.weight":    quant.Q5_0,
		"blk.0.ffn_down.weight":  quant.F16,
		"blk.0.attn_norm.weight": quant.F32,
		"output.weight":          quant.Q8_0,
	}
	for name, typ := range want {
		if info, _ := f.Tensor(name); info.Type != typ {
			t.Errorf("%s stored as %v, want %v", name, info.Type, typ)
		}
	}
	if ft, _ := f.Uint(KeyFileType); ft != uint64(FileTypeQ4_K_S) {
		t.Errorf("file type %d", ft)
	}
	// TypeFor overrides everything.
	f2, _ := convertFixture(t, llamaDir, ConvertOptions{TypeFor: func(string, []int) quant.Type { return quant.BF16 }})
	for _, ti := range f2.Tensors {
		if ti.Type != quant.BF16 {
			t.Errorf("%s stored as %v with TypeFor", ti.Name, ti.Type)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	set, err := safetensors.OpenDir(mixtralDir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	p := readParams(t, mixtralDir)
	p.ExpertCount = 8
	if _, err := ConvertHF(set, ConvertOptions{Params: p}); err == nil || !strings.Contains(err.Error(), "ExpertCount is 8") {
		t.Errorf("wrong expert count: %v", err)
	}
	if _, err := ConvertHF(set, ConvertOptions{Params: readParams(t, mixtralDir), Type: quant.Q2_K}); err == nil {
		t.Error("Q2_K conversion succeeded")
	}
	dir := t.TempDir()
	safetensors.Write(filepath.Join(dir, "model.safetensors"), []safetensors.Tensor{
		safetensors.F32Tensor("transformer.wte.weight", []int{2, 2}, make([]float32, 4)),
	}, nil)
	odd, _ := safetensors.OpenDir(dir)
	defer odd.Close()
	if _, err := ConvertHF(odd, ConvertOptions{Params: readParams(t, llamaDir)}); err == nil || !strings.Contains(err.Error(), "no GGUF name") {
		t.Errorf("unknown tensor: %v", err)
	}
}
