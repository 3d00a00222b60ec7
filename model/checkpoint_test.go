package model

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mai-llm/mai/nn"
)

// familyConfigs are tiny configs of every family, exercising each adapter.
func familyConfigs() map[string]Config {
	base := Config{Vocab: 97, Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, FFN: 48, MaxSeq: 64,
		Norm: "rmsnorm", NormEps: 1e-5, Pos: "rope", RopeTheta: 10000, MLP: "swiglu", Act: "silu", BOS: 1, EOS: 2}
	with := func(f func(c *Config)) Config { c := base; f(&c); return c }
	return map[string]Config{
		"llama":   with(func(c *Config) { c.Family = "llama" }),
		"mistral": with(func(c *Config) { c.Family, c.SlidingWindow = "mistral", 8 }),
		"qwen2":   with(func(c *Config) { c.Family, c.QKVBias, c.Tied = "qwen2", true, true }),
		"qwen3":   with(func(c *Config) { c.Family, c.QKNorm = "qwen3", true }),
		"phi3": with(func(c *Config) {
			c.Family, c.PartialRotary = "phi3", 0.5
			c.RopeScaling = &RopeScaling{Type: "longrope", ShortFactor: []float64{1, 1.1}, LongFactor: []float64{2, 3}, OriginalMaxPos: 32}
		}),
		"mixtral": with(func(c *Config) {
			c.Family, c.Experts, c.TopK, c.ExpertFFN, c.NormTopK = "mixtral", 4, 2, 48, true
		}),
		"qwen2_moe": with(func(c *Config) {
			c.Family, c.QKVBias, c.Experts, c.TopK, c.ExpertFFN, c.SharedExperts, c.SharedFFN, c.SharedGate = "qwen2_moe", true, 4, 2, 24, 1, 40, true
		}),
		"gpt2": with(func(c *Config) {
			c.Family, c.Norm, c.NormBias, c.Pos, c.MLP, c.Act = "gpt2", "layernorm", true, "learned", "gelu", "gelu_new"
			c.KVHeads, c.QKVBias, c.OutBias, c.MLPBias, c.Tied = 4, true, true, true, true
		}),
		"llama3-scaled": with(func(c *Config) {
			c.Family = "llama"
			c.RopeScaling = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 16}
		}),
		"yarn": with(func(c *Config) {
			c.Family, c.QKVBias = "qwen2", true
			c.RopeScaling = &RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPos: 16}
		}),
	}
}

func logits(t *testing.T, m *Model, ids []int32) []float32 {
	t.Helper()
	out, err := m.Forward(nn.NewTape(nil, false), ids, 2, len(ids)/2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return out.Logits.Data
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ids := make([]int32, 2*20)
	for i := range ids {
		ids[i] = int32((i*37 + 5) % 97)
	}
	for name, cfg := range familyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			for i := range m.Params { // make norms and biases non-trivial too
				m.Params[i] += float32(i%7) * 1e-3
			}
			dir := t.TempDir()
			// A tiny shard limit forces the sharded layout with an index.
			if err := m.Save(dir, "f32", 20_000); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "model.safetensors.index.json")); err != nil {
				t.Fatalf("want a sharded checkpoint: %v", err)
			}
			back, err := Load(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.Params, m.Params) {
				t.Fatal("reloaded parameters differ")
			}
			if !slices.Equal(logits(t, back, ids), logits(t, m, ids)) {
				t.Fatal("reloaded model gives different logits")
			}
		})
	}
}

func TestSaveBF16(t *testing.T) {
	cfg := familyConfigs()["llama"]
	m, _ := New(cfg, false)
	m.Init(1)
	dir := t.TempDir()
	if err := m.Save(dir, "bf16", 0); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range back.Params {
		if d := v - m.Params[i]; d > 0.01*abs(m.Params[i])+1e-6 || -d > 0.01*abs(m.Params[i])+1e-6 {
			t.Fatalf("bf16 round trip too far at %d: %v vs %v", i, v, m.Params[i])
		}
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []string{
		`{"model_type": "bert"}`,
		`{"model_type": "llama", "vocab_size": 0, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4}`,
		`{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2, "intermediate_size": 4}`,
		`{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "rope_scaling": {"type": "weird", "factor": 2}}`,
		`not json`,
	} {
		if _, err := ParseConfig([]byte(c)); err == nil {
			t.Errorf("ParseConfig(%s): want an error", c)
		}
	}
}

func TestRopeParametersForms(t *testing.T) {
	old := `{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "rope_theta": 500000, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}`
	v5 := `{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "rope_parameters": {"rope_theta": 500000, "rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}`
	a, err := ParseConfig([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseConfig([]byte(v5))
	if err != nil {
		t.Fatal(err)
	}
	if a.RopeTheta != 500000 || b.RopeTheta != 500000 || a.RopeScaling.Type != "llama3" || b.RopeScaling.Type != "llama3" || b.RopeScaling.Factor != 8 {
		t.Fatalf("rope settings: %+v %+v / %+v %+v", a.RopeTheta, a.RopeScaling, b.RopeTheta, b.RopeScaling)
	}
}

func FuzzParseConfig(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "hf", "mixtral", "config.json"))
	f.Add(b)
	f.Add([]byte(`{"model_type":"gpt2","n_embd":8,"n_layer":1,"n_head":2,"vocab_size":5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("ParseConfig accepted an invalid config: %v", err)
			}
		}
	})
}
