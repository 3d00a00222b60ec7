package eval

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/model"
)

func TestWriteQuantTable(t *testing.T) {
	ids := []QuantRow{
		{Type: "F32", Perplexity: Perplexity{Tokens: 9, PPL: 10}, WeightBytes: 4 << 20, Mix: "F32 100.0%"},
		{Type: "Q8_0", Perplexity: Perplexity{Tokens: 9, PPL: 10.1}, WeightBytes: 1 << 20, Mix: "Q8_0 100.0%", DeltaPPL: 0.01},
	}
	text := []QuantRow{
		{Type: "F32", Perplexity: Perplexity{Tokens: 9, PPL: 10, Bytes: 30, BitsPerByte: 1.5}, WeightBytes: 4 << 20, Mix: "F32 100.0%"},
		{Type: "Q4_K", Perplexity: Perplexity{Tokens: 9, PPL: 11, Bytes: 30, BitsPerByte: 1.6}, WeightBytes: 1 << 19, Mix: "Q4_K 100.0%", DeltaPPL: 0.1, DeltaBPB: 0.1},
	}
	tests := []struct {
		name string
		rows []QuantRow
		want []string
	}{
		{"ids", ids, []string{"type  weights   tokens  ppl      Δppl    storage", "F32   4.00 MiB  9       10.0000  -       F32 100.0%", "Q8_0  1.00 MiB  9       10.1000  +1.00%  Q8_0 100.0%"}},
		{"text", text, []string{"Q4_K  0.50 MiB  9       11.0000  +10.00%  1.6000     +0.1000     Q4_K 100.0%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteQuantTable(&b, tt.rows); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestPerplexityByQuantErrors(t *testing.T) {
	ctx := context.Background()
	dir := "../model/testdata/quant/tiny"
	tests := []struct {
		name  string
		types []string
		in    QuantInput
	}{
		{"no types", nil, QuantInput{IDs: []int32{1, 2}}},
		{"no input", []string{"f32"}, QuantInput{}},
		{"both inputs", []string{"f32"}, QuantInput{IDs: []int32{1, 2}, Texts: []string{"x"}}},
		{"unknown type", []string{"f32", "q9_9"}, QuantInput{IDs: []int32{1, 2}}},
	}
	for _, tt := range tests {
		if _, err := PerplexityByQuant(ctx, dir, tt.types, tt.in); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	rows, err := PerplexityByQuant(ctx, dir, []string{"f32", "q8_0"}, QuantInput{IDs: []int32{10, 105, 102, 32, 120, 32, 123, 10}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].Type != "Q8_0" || rows[0].Tokens != 7 || rows[1].DeltaPPL < -0.05 || rows[1].DeltaPPL > 0.05 {
		t.Errorf("rows %+v", rows)
	}
}

// TestGGUFModel scores a GGUF file written from the fixture folder: the same
// perplexity as the folder in f32, and its own tokenizer (MAI's byte
// tokenizer, from the file's metadata).
func TestGGUFModel(t *testing.T) {
	ctx := context.Background()
	dir := "../model/testdata/quant/tiny"
	g := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := model.Convert(dir, "gguf", g, model.ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	texts := []string{"func (b *Builder) String() string {\n\treturn unsafe.String(unsafe.SliceData(b.buf), len(b.buf))\n}\n"}
	var ppl []float64
	for _, p := range []string{dir, g} {
		b, err := OpenLocal(p, LocalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := PerplexityTexts(ctx, b, texts, 0)
		if err != nil {
			t.Fatal(err)
		}
		ppl = append(ppl, r.PPL)
	}
	if ppl[0] != ppl[1] || ppl[0] > 20 {
		t.Errorf("perplexity: folder %v, GGUF %v", ppl[0], ppl[1])
	}
	if c, err := OpenCodec(g); err != nil || len(c.Encode("abc")) != 3 {
		t.Errorf("OpenCodec(gguf): %v", err)
	}
	rows, err := PerplexityByQuant(ctx, g, []string{"f32", "q8_0"}, QuantInput{Texts: texts})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Type != "F32" || rows[0].PPL != ppl[0] || rows[1].Type != "Q8_0" {
		t.Errorf("rows %+v", rows)
	}
}
