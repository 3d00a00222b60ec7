package model

import (
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// TestDecodeOneMatchesTape checks the tape-free single-token decode path
// (decodeOne) against the tape's forward pass over the whole sequence, for
// each quantized type and for families with biases, tied heads, GQA and
// partial rotary embeddings.
func TestDecodeOneMatchesTape(t *testing.T) {
	const n = 12
	for _, fam := range []string{"llama", "qwen2", "phi3"} {
		for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.F16, quant.Q4_K} {
			t.Run(fam+"/"+typ.String(), func(t *testing.T) {
				cfg := familyConfigs()[fam]
				cfg.Dim, cfg.HeadDim, cfg.FFN = 256, 32, 512
				cfg.Heads, cfg.KVHeads = 8, 2
				m, err := New(cfg, false)
				if err != nil {
					t.Fatal(err)
				}
				m.Init(3)
				if err := m.Quantize(QuantizeOptions{Type: typ, OutputType: typ}); err != nil {
					t.Fatal(err)
				}
				ids := testIDs(n, cfg.Vocab)
				tp := nn.NewTape(nil, false)
				if !m.canDecodeOne(tp, 1, 1, m.NewCache(1, n), nil, nil, true) {
					t.Fatal("the decode path does not take this model")
				}
				full, err := m.Forward(nn.NewTape(nil, false), ids, 1, n, nil, false)
				if err != nil {
					t.Fatal(err)
				}
				v := cfg.Vocab
				cache := m.NewCache(1, n)
				flips := 0
				for i, id := range ids {
					out, err := m.Forward(tp, []int32{id}, 1, 1, cache, true)
					if err != nil {
						t.Fatal(err)
					}
					want := full.Logits.Data[i*v : (i+1)*v]
					// Summation order differs; for the 8-bit activation types
					// that can flip the rounding of an activation to int8 now
					// and then, a visible but small step.
					switch e := relErr(out.Logits.Data, want); {
					case e > 2e-2:
						t.Fatalf("position %d: decode logits differ from the tape's by %.3g", i, e)
					case e > 2e-5:
						if flips++; flips > 2 {
							t.Fatalf("position %d: decode logits differ from the tape's by %.3g (the %d-th position off)", i, e, flips)
						}
					}
				}
				if cache.Len != n {
					t.Fatalf("cache length %d after %d steps", cache.Len, n)
				}
			})
		}
	}
}

// TestKVCacheF16 decodes with a half-precision KV cache — the single-token
// path of quantized models and the tape's path (float32 weights, two
// sequences), after a prefill of several tokens — and checks the logits
// against a float32 cache's, within what rounding keys and values to f16
// moves them.
func TestKVCacheF16(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  quant.Type // 0: float32 weights
		b    int
	}{{"q8_0", quant.Q8_0, 1}, {"f32", 0, 1}, {"f32-batch2", 0, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := familyConfigs()["llama"]
			cfg.Dim, cfg.HeadDim, cfg.FFN, cfg.Heads, cfg.KVHeads = 256, 64, 512, 4, 2
			m, err := New(cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(5)
			if tc.typ != 0 {
				if err := m.Quantize(QuantizeOptions{Type: tc.typ, OutputType: tc.typ}); err != nil {
					t.Fatal(err)
				}
			}
			const pre, steps = 5, 7
			ids := testIDs(tc.b*(pre+steps), cfg.Vocab)
			run := func(kv KVType) [][]float32 {
				cache := m.NewCacheOf(tc.b, pre+steps, kv)
				if cache.Type() != kv {
					t.Fatalf("cache type %v, want %v", cache.Type(), kv)
				}
				tp := nn.NewTape(nil, false)
				var prompt []int32
				for i := range tc.b {
					prompt = append(prompt, ids[i*(pre+steps):i*(pre+steps)+pre]...)
				}
				out, err := m.Forward(tp, prompt, tc.b, pre, cache, true)
				if err != nil {
					t.Fatal(err)
				}
				logits := [][]float32{slices.Clone(out.Logits.Data)}
				for s := range steps {
					step := make([]int32, tc.b)
					for i := range tc.b {
						step[i] = ids[i*(pre+steps)+pre+s]
					}
					if out, err = m.Forward(tp, step, tc.b, 1, cache, true); err != nil {
						t.Fatal(err)
					}
					logits = append(logits, slices.Clone(out.Logits.Data))
				}
				return logits
			}
			want, got := run(KVF32), run(KVF16)
			// Quantized models round activations to int8, which a small
			// change can flip now and then: a visible but small step.
			tol := 1e-2
			if tc.typ != 0 {
				tol = 3e-2
			}
			for s := range want {
				if e := relErr(got[s], want[s]); e > tol || e == 0 && s > 0 {
					t.Fatalf("step %d: f16 cache logits differ from the f32 cache's by %.3g", s, e)
				}
			}
		})
	}
	if _, err := ParseKVType("q8"); err == nil {
		t.Error("ParseKVType accepted q8")
	}
}

// TestPagedKVF16 runs the batched paged forward over a half-precision cache
// (head size 64: the vector kernels) against a float32 cache.
func TestPagedKVF16(t *testing.T) {
	cfg := familyConfigs()["llama"]
	cfg.Dim, cfg.HeadDim, cfg.FFN, cfg.Heads, cfg.KVHeads = 256, 64, 512, 4, 2
	m, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(6)
	run := func(kv KVType) []float32 {
		cache, err := m.NewPagedKVOf(4, 8, kv)
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.ForwardPaged(nn.NewTape(nil, false), cache, []SeqChunk{{IDs: testIDs(21, cfg.Vocab), Blocks: []int32{2, 0, 3}, Logits: RowsAll}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Logits[0]
	}
	if e := relErr(run(KVF16), run(KVF32)); e > 1e-2 || e == 0 {
		t.Fatalf("f16 paged cache logits differ from the f32 cache's by %.3g", e)
	}
}
