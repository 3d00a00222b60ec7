package model

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// TestLoadNoFloat32Copy: a quantized GGUF loaded without float32 copies
// gives the same logits as with them (the embedding rows come from the
// stored form), holds less memory, and Materialize restores the float32
// values exactly, after which a gradient tape runs.
func TestLoadNoFloat32Copy(t *testing.T) {
	cfg := familyConfigs()["llama"]
	cfg.Dim, cfg.HeadDim, cfg.FFN = 256, 64, 512
	ids := testIDs(2*40, 97) // 40 tokens a row: the prefill GEMM path
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.F16, quant.BF16} {
		t.Run(typ.String(), func(t *testing.T) {
			full, lazy := loadBothWays(t, cfg, typ, 9)
			if lazy.lazyWeight(lazy.Embed) == nil {
				t.Fatal("the embedding kept its float32 copy")
			}
			if a, b := lazy.ResidentWeightBytes(), full.ResidentWeightBytes(); a >= b/2 {
				t.Errorf("resident weights %d bytes without float32 copies, %d with: want less than half", a, b)
			}
			want := logits(t, full, ids)
			got := logits(t, lazy, ids)
			if !slices.Equal(got, want) {
				t.Fatalf("logits differ without float32 copies (relative error %.3g)", relErr(got, want))
			}
			// Decode, one token at a time through the cache.
			cf, cl := full.NewCache(1, 8), lazy.NewCache(1, 8)
			for _, id := range ids[:4] {
				of, err := full.Forward(nn.NewTape(nil, false), []int32{id}, 1, 1, cf, true)
				if err != nil {
					t.Fatal(err)
				}
				ol, err := lazy.Forward(nn.NewTape(nil, false), []int32{id}, 1, 1, cl, true)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ol.Logits.Data, of.Logits.Data) {
					t.Fatalf("decode logits differ without float32 copies (relative error %.3g)", relErr(ol.Logits.Data, of.Logits.Data))
				}
			}
			if err := lazy.Materialize(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lazy.Params, full.Params) {
				t.Fatal("materialized float32 values differ from a full load's")
			}
			tp := nn.NewTape(nil, true)
			if _, _, _, err := lazy.Loss(tp, ids[:8], ids[1:9], 1, 8); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMaterializeGEMM checks the serving load (no float32 copies, then
// MaterializeGEMM): the batched paged forward gives a full load's logits
// bit for bit, prompt and decoded rows, with a vocabulary of no multiple of
// 16 (the output head not row-stable, so materialized) and tied embeddings
// (the table multiplied as the head).
func TestMaterializeGEMM(t *testing.T) {
	for _, tied := range []bool{false, true} {
		for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q4_K} {
			t.Run(fmt.Sprintf("%v/tied=%v", typ, tied), func(t *testing.T) {
				cfg := familyConfigs()["llama"]
				cfg.Dim, cfg.HeadDim, cfg.FFN, cfg.Vocab, cfg.Tied = 256, 64, 512, 97, tied
				full, lazy := loadBothWays(t, cfg, typ, 10)
				if err := lazy.MaterializeGEMM(); err != nil {
					t.Fatal(err)
				}
				if typ != quant.Q4_K && rowStableX16(t, typ) && lazy.ResidentWeightBytes() >= full.ResidentWeightBytes()/2 {
					t.Errorf("resident weights %d bytes after MaterializeGEMM, %d with float32 copies: want less than half", lazy.ResidentWeightBytes(), full.ResidentWeightBytes())
				}
				seqs := [][]int32{testIDs(11, 97), testIDs(5, 97)}
				perm := []int32{3, 1, 0, 2, 5, 4}
				for _, from := range [][]int{nil, {6, 2}} {
					want := pagedRun(t, full, seqs, []int{64}, 4, perm, from...)
					got := pagedRun(t, lazy, seqs, []int{64}, 4, perm, from...)
					for i := range seqs {
						if !slices.Equal(got[i], want[i]) {
							t.Fatalf("decode from %v: sequence %d logits differ (relative error %.3g)", from, i, relErr(got[i], want[i]))
						}
					}
				}
			})
		}
	}
}

// loadBothWays builds a model of cfg with random weights (seed), stores it
// as a GGUF file of type typ and loads that file with and without float32
// copies of the quantized weights.
func loadBothWays(t *testing.T, cfg Config, typ quant.Type, seed uint64) (full, lazy *Model) {
	t.Helper()
	m, err := New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	if err := m.Quantize(QuantizeOptions{Type: typ, OutputType: typ}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "q.gguf")
	if err := m.SaveGGUF(path, GGUFOptions{}); err != nil {
		t.Fatal(err)
	}
	if full, err = LoadGGUF(path); err != nil {
		t.Fatal(err)
	}
	if lazy, err = LoadGGUFWith(path, LoadOptions{NoFloat32Copy: true}); err != nil {
		t.Fatal(err)
	}
	return full, lazy
}
