package model

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/nn"
)

func testIDs(n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32((i*37 + 5) % vocab)
	}
	return ids
}

func maxAbsDiff(a, b []float32) float64 {
	var worst float64
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	return worst
}

// stripKey rewrites a GGUF file without the given metadata keys, as a
// file from another writer would be.
func stripKeys(t *testing.T, path string, keys ...string) string {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := gguf.NewWriter()
	for _, kv := range f.KV {
		if !slices.Contains(keys, kv.Key) && kv.Key != gguf.KeyAlignment {
			if err := w.Set(kv.Key, kv.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ti := range f.Tensors {
		b, _ := f.Bytes(ti.Name)
		if err := w.Add(gguf.Tensor{Name: ti.Name, Type: ti.Type, Shape: ti.Shape(), Data: bytes.Clone(b)}); err != nil {
			t.Fatal(err)
		}
	}
	out := strings.TrimSuffix(path, ".gguf") + "-foreign.gguf"
	if err := w.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGGUFRoundTrip saves every family as GGUF and reads it back: with MAI's
// config the model is identical; from llama.cpp's keys alone (as a file
// written by another tool) the logits agree.
func TestGGUFRoundTrip(t *testing.T) {
	ids := testIDs(2*20, 97)
	for name, cfg := range familyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			for i := range m.Params {
				m.Params[i] += float32(i%7) * 1e-3
			}
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := m.SaveGGUF(path, GGUFOptions{Name: name}); err != nil {
				t.Fatal(err)
			}
			back, err := LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.Params, m.Params) {
				t.Fatal("reloaded parameters differ")
			}
			want := logits(t, m, ids)
			if !slices.Equal(logits(t, back, ids), want) {
				t.Fatal("reloaded model gives different logits")
			}
			foreign, err := LoadGGUF(stripKeys(t, path, KeyMAIConfig))
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(logits(t, foreign, ids), want); d > 1e-5 {
				t.Fatalf("from llama.cpp keys only: max abs logit difference %.3g (config %+v)", d, foreign.Cfg)
			}
		})
	}
}

// TestGGUFFromHFFixtures converts the transformers fixtures to GGUF with
// format/gguf's converter (llama.cpp's layout, the file llama.cpp runs) and
// with Model.SaveGGUF; both load back with the same logits as the HF folder,
// which match transformers within 1e-4.
func TestGGUFFromHFFixtures(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "hf", name)
			hf, err := Load(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			ids, shape, _ := ref.Int32("input_ids")
			wantHF, _, _ := ref.Float32("logits")
			fwd := func(m *Model) []float32 {
				out, err := m.Forward(nn.NewTape(nil, false), ids, shape[0], shape[1], nil, false)
				if err != nil {
					t.Fatal(err)
				}
				return out.Logits.Data
			}
			want := fwd(hf)

			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			params, err := gguf.ParamsFromHFConfig(cj)
			if err != nil {
				t.Fatal(err)
			}
			w, err := gguf.ConvertHF(set, gguf.ConvertOptions{Params: params, Type: quant.F32, Tokenizer: &gguf.Tokenizer{Model: "none"}})
			if err != nil {
				t.Fatal(err)
			}
			conv := filepath.Join(t.TempDir(), "conv.gguf")
			if err := w.WriteFile(conv); err != nil {
				t.Fatal(err)
			}
			own := filepath.Join(t.TempDir(), "own.gguf")
			if err := hf.SaveGGUF(own, GGUFOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{conv, own} {
				m, err := LoadGGUF(p)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(m.Params, hf.Params) {
					t.Fatalf("%s: parameters differ from the HF folder's", filepath.Base(p))
				}
				got := fwd(m)
				if !slices.Equal(got, want) {
					t.Fatalf("%s: logits differ from the HF folder's (max %.3g)", filepath.Base(p), maxAbsDiff(got, want))
				}
				if d := maxAbsDiff(got, wantHF); d > 1e-4 {
					t.Fatalf("%s: logits differ from transformers by %.3g", filepath.Base(p), d)
				}
			}
		})
	}
}

// TestGGUFQuantizedRoundTrip: a quantized model saved as GGUF reads back
// with the same bytes and the same logits, and its logits stay near the
// float32 model's.
func TestGGUFQuantizedRoundTrip(t *testing.T) {
	cfg := familyConfigs()["llama"]
	cfg.Dim, cfg.HeadDim, cfg.FFN = 256, 64, 512
	ids := testIDs(2*12, 97)
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.F16, quant.BF16} {
		t.Run(typ.String(), func(t *testing.T) {
			m, err := New(cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(7)
			f32 := logits(t, m, ids)
			if err := m.Quantize(QuantizeOptions{Type: typ}); err != nil {
				t.Fatal(err)
			}
			q := logits(t, m, ids)
			tol := map[quant.Type]float64{quant.Q8_0: 0.02, quant.Q4_0: 0.2, quant.Q4_K: 0.2, quant.F16: 0.002, quant.BF16: 0.02}[typ]
			if e := relErr(q, f32); e > tol {
				t.Errorf("quantized logits differ from float32 by %.3g (relative), more than %g", e, tol)
			}
			path := filepath.Join(t.TempDir(), "q.gguf")
			if err := m.SaveGGUF(path, GGUFOptions{}); err != nil {
				t.Fatal(err)
			}
			back, err := LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Tensors {
				if a, b := m.StorageType(p.Name), back.StorageType(p.Name); a != b {
					t.Fatalf("%s stored as %v, reads back as %v", p.Name, a, b)
				}
				if m.q.stored[p.Name] != nil && !bytes.Equal(m.q.stored[p.Name].bytes(), back.q.stored[p.Name].bytes()) {
					t.Fatalf("%s: bytes differ after the round trip", p.Name)
				}
			}
			if !slices.Equal(logits(t, back, ids), q) {
				t.Fatal("reloaded quantized model gives different logits")
			}
			t.Logf("%v: %s, logits relative to float32: %.3g", typ, FormatMix(back.DTypeMix()), relErr(q, f32))
		})
	}
}

// TestEOSLists: Llama 3 style eos_token_id lists in config.json and
// generation_config.json are all end-of-sequence ids, and survive saving.
func TestEOSLists(t *testing.T) {
	dir := t.TempDir()
	cfg := familyConfigs()["llama"]
	m, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	cj := `{"model_type": "llama", "vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48, "eos_token_id": [2, 5]}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cj), 0o644)
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": [2, 7, 5]}`), 0o644)
	back, err := Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Cfg.EOSIDs(); !slices.Equal(got, []int{2, 5, 7}) {
		t.Fatalf("EOS ids %v, want [2 5 7]", got)
	}
	out := t.TempDir()
	if err := back.Save(out, "f32", 0); err != nil {
		t.Fatal(err)
	}
	again, err := Load(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Cfg.EOSIDs(); !slices.Equal(got, []int{2, 5, 7}) {
		t.Fatalf("after saving: EOS ids %v, want [2 5 7]", got)
	}
}
