package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseHFConfig checks parameter counts of hand-written config.json files
// against the sizes their authors published.
func TestParseHFConfig(t *testing.T) {
	tests := []struct {
		file          string
		total, active float64 // published, in parameters
		tol           float64
		family        string
		notes         int
	}{
		// Llama 3 report: 405B dense.
		{"llama-3.1-405b.json", 405e9, 405e9, 0.01, "llama", 0},
		// Narayanan et al. 2021, Table 2: GPT-3 is 174.6B parameters.
		{"gpt3-175b.json", 174.6e9, 174.6e9, 0.002, "gpt2", 0},
		// Narayanan et al. 2021, Table 1: 1008.0B and 529.6B.
		{"megatron-1t.json", 1008.0e9, 1008.0e9, 0.002, "gpt2", 0},
		{"megatron-530b.json", 529.6e9, 529.6e9, 0.002, "gpt2", 0},
		// Mistral AI: Mixtral 8x7B has 46.7B total and 12.9B active.
		{"mixtral-8x7b.json", 46.7e9, 12.9e9, 0.01, "mixtral", 0},
		// Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B active.
		{"qwen2-moe-a2.7b.json", 14.3e9, 2.7e9, 0.02, "qwen2_moe", 0},
		// DeepSeek-V3: 671B total, 37B active; MLA and the 3 dense layers are
		// approximated, so the count is only close.
		{"deepseek-v3.json", 671e9, 37e9, 0.06, "deepseek_v3", 2},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, notes, err := ParseHFConfig(data)
			if err != nil {
				t.Fatal(err)
			}
			total, active := c.Params()
			if !near(float64(total), tc.total, tc.tol) || !near(float64(active), tc.active, tc.tol) {
				t.Errorf("params %.4g total / %.4g active, want %.4g / %.4g (±%.0f%%)", float64(total), float64(active), tc.total, tc.active, 100*tc.tol)
			}
			if c.Family != tc.family {
				t.Errorf("family %q, want %q", c.Family, tc.family)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes %q, want %d", notes, tc.notes)
			}
		})
	}
}

func TestParseHFConfigErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"not json", `{"hidden_size": `, "config.json"},
		{"no hidden size", `{"model_type":"llama","num_hidden_layers":2,"num_attention_heads":2,"vocab_size":10,"intermediate_size":8}`, "hidden_size"},
		{"no vocab", `{"model_type":"llama","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":8}`, "vocab_size"},
		{"negative", `{"model_type":"llama","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"vocab_size":10,"intermediate_size":-8}`, "negative"},
		{"heads do not divide", `{"model_type":"llama","hidden_size":10,"num_hidden_layers":2,"num_attention_heads":3,"vocab_size":10,"intermediate_size":8}`, "head_dim"},
		{"bad gqa", `{"model_type":"llama","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10,"intermediate_size":8}`, "kv_heads"},
		{"moe without top-k", `{"model_type":"mixtral","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"vocab_size":10,"intermediate_size":8,"num_local_experts":4}`, "top_k"},
		{"string size", `{"model_type":"llama","hidden_size":"8"}`, "config.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseHFConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadModel(t *testing.T) {
	if _, name, _, err := LoadModel("mai-1-500b"); err != nil || name != "mai-1-500b" {
		t.Errorf("preset: name %q, err %v", name, err)
	}
	if _, name, _, err := LoadModel("testdata/llama-3.1-405b.json"); err != nil || name != "llama-3.1-405b" {
		t.Errorf("file: name %q, err %v", name, err)
	}
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/mixtral-8x7b.json")
	sub := filepath.Join(dir, "mixtral")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, name, _, err := LoadModel(sub); err != nil || name != "mixtral" || c.Experts != 8 {
		t.Errorf("directory: name %q, experts %d, err %v", name, c.Experts, err)
	}
	for _, bad := range []string{"", "no-such-preset", filepath.Join(dir, "missing.json")} {
		if _, _, _, err := LoadModel(bad); err == nil {
			t.Errorf("LoadModel(%q): want an error", bad)
		}
	}
}

func FuzzParseHFConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"hidden_size": 1e3}`))
	f.Add([]byte(`{"model_type":"gpt2","n_embd":4,"n_layer":1,"n_head":2,"vocab_size":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := ParseHFConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
	})
}
