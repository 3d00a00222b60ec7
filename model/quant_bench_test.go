package model

import (
	"testing"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// BenchmarkDecode measures single-sequence decoding (one token per forward
// pass through the KV cache) of a 2-layer, dim-1024 Llama-style model with
// random weights (25M parameters, 100 MB in f32) in each weight type.
//
//	go test -run XXX -bench Decode -benchtime 64x ./model
func BenchmarkDecode(b *testing.B) {
	cfg := maiBase()
	cfg.Vocab, cfg.Dim, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.HeadDim, cfg.FFN, cfg.MaxSeq = 4096, 1024, 2, 16, 4, 64, 2816, 512
	for _, typ := range []quant.Type{quant.F32, quant.BF16, quant.Q8_0, quant.Q4_0, quant.Q4_K} {
		b.Run(typ.String(), func(b *testing.B) {
			m, err := New(cfg, false)
			if err != nil {
				b.Fatal(err)
			}
			m.Init(1)
			if typ != quant.F32 {
				if err := m.Quantize(QuantizeOptions{Type: typ, OutputType: typ}); err != nil {
					b.Fatal(err)
				}
			}
			tp := nn.NewTape(m.Pool, false)
			cache := m.NewCache(1, cfg.MaxSeq)
			prompt := testIDs(16, cfg.Vocab)
			if _, err := m.Forward(tp, prompt, 1, len(prompt), cache, true); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if cache.Len == cache.Max {
					cache.Len = len(prompt)
				}
				if _, err := m.Forward(tp, []int32{int32(i % cfg.Vocab)}, 1, 1, cache, true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(m.WeightBytes())/(1<<20), "weight-MiB")
		})
	}
}
