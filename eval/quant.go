package eval

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mai-llm/mai/model"
)

// QuantRow is the perplexity of one model with its weight matrices stored in
// one type, run through the same engine as the float32 model (the CPU's
// quantized kernels where the type has them).
type QuantRow struct {
	// Type is the weight type: "F32" (the model as loaded; "loaded" when
	// that is a quantized GGUF file) or a quantization type (Q8_0, Q4_0,
	// Q4_K, F16, BF16, ...).
	Type string `json:"type"`
	Perplexity
	// WeightBytes is the size of the weights in their storage types;
	// Mix says how many values each type holds.
	WeightBytes int64  `json:"weight_bytes"`
	Mix         string `json:"dtype_mix"`
	// DeltaPPL is the relative change of the perplexity from the first row
	// (PPL/PPL₀ - 1), DeltaBPB the change of bits per byte (text only).
	DeltaPPL float64 `json:"delta_ppl"`
	DeltaBPB float64 `json:"delta_bits_per_byte,omitempty"`
}

// QuantInput is what PerplexityByQuant scores: token ids, or texts.
type QuantInput struct {
	IDs    []int32
	Texts  []string
	Stride int // sliding-window step in tokens (0: half the context)
}

// PerplexityByQuant loads the model at path (a model folder, a training run
// directory or a GGUF file) once per type, quantizes its weight matrices to the type
// (as `mai quantize` does; "f32" leaves the model as loaded), and scores the
// input with each. The first row is the reference of the deltas, so list f32 first.
func PerplexityByQuant(ctx context.Context, path string, types []string, in QuantInput) ([]QuantRow, error) {
	if len(types) == 0 {
		return nil, fmt.Errorf("quant perplexity: no types")
	}
	if (len(in.IDs) > 0) == (len(in.Texts) > 0) {
		return nil, fmt.Errorf("quant perplexity: give token ids or texts")
	}
	parsed := make([]string, len(types))
	for i, name := range types {
		name = strings.TrimSpace(name)
		if strings.EqualFold(name, "f32") {
			parsed[i] = "F32"
			continue
		}
		t, err := model.ParseQuantType(name)
		if err != nil {
			return nil, err
		}
		parsed[i] = t.String()
	}
	src, err := resolveModel(path)
	if err != nil {
		return nil, err
	}
	codec, _, err := src.codec()
	if err != nil {
		return nil, err
	}
	var rows []QuantRow
	for _, name := range parsed {
		m, err := src.load()
		if err != nil {
			return nil, err
		}
		row := QuantRow{Type: name}
		if name == "F32" && m.Quantized() {
			row.Type = "loaded" // a quantized GGUF file as it is
		}
		if name != "F32" {
			t, _ := model.ParseQuantType(name)
			if err := m.Quantize(model.QuantizeOptions{Type: t}); err != nil {
				return nil, fmt.Errorf("quantize to %s: %w", name, err)
			}
		}
		b := NewLocal(m, codec, LocalOptions{Name: src.name() + "@" + name})
		var p *Perplexity
		if len(in.IDs) > 0 {
			p, err = PerplexityIDs(ctx, b, in.IDs, in.Stride)
		} else {
			p, err = PerplexityTexts(ctx, b, in.Texts, in.Stride)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		row.Perplexity, row.WeightBytes, row.Mix = *p, m.WeightBytes(), model.FormatMix(m.DTypeMix())
		if len(rows) > 0 {
			row.DeltaPPL = p.PPL/rows[0].PPL - 1
			if p.Bytes > 0 {
				row.DeltaBPB = p.BitsPerByte - rows[0].BitsPerByte
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// WriteQuantTable prints the rows as a table: type, weight size, tokens,
// perplexity and its change from the first row, bits per byte (text) and
// the storage mix.
func WriteQuantTable(w io.Writer, rows []QuantRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	text := len(rows) > 0 && rows[0].Bytes > 0
	if text {
		fmt.Fprintln(tw, "type\tweights\ttokens\tppl\tΔppl\tbits/byte\tΔbits/byte\tstorage")
	} else {
		fmt.Fprintln(tw, "type\tweights\ttokens\tppl\tΔppl\tstorage")
	}
	for i, r := range rows {
		delta, dbpb := "-", "-"
		if i > 0 {
			delta = fmt.Sprintf("%+.2f%%", 100*r.DeltaPPL)
			dbpb = fmt.Sprintf("%+.4f", r.DeltaBPB)
		}
		size := fmt.Sprintf("%.2f MiB", float64(r.WeightBytes)/(1<<20))
		if text {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.4f\t%s\t%.4f\t%s\t%s\n", r.Type, size, r.Tokens, r.PPL, delta, r.BitsPerByte, dbpb, r.Mix)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.4f\t%s\t%s\n", r.Type, size, r.Tokens, r.PPL, delta, r.Mix)
		}
	}
	return tw.Flush()
}
