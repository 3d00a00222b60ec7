package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const quantFixture = "../../model/testdata/quant"

// TestEvalPerplexityByQuant runs `mai eval ppl --quant` on the tiny trained
// byte-level model of model/testdata/quant and its held-out text: one row
// per type, f32 first, the quantized models smaller and near its
// perplexity (q8_0 within 1%, 4-bit types within 10%).
func TestEvalPerplexityByQuant(t *testing.T) {
	args := []string{"eval", "ppl", "--model", quantFixture + "/tiny", "--quant", "f32,q8_0,q4_0,q4_K", "--text", quantFixture + "/heldout.txt"}
	stdout, stderr, code := mai(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []struct {
		Type        string  `json:"type"`
		Tokens      int     `json:"tokens"`
		PPL         float64 `json:"ppl"`
		BitsPerByte float64 `json:"bits_per_byte"`
		WeightBytes int64   `json:"weight_bytes"`
		DeltaPPL    float64 `json:"delta_ppl"`
	}
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("output is not a JSON list of rows: %v\n%s", err, stdout)
	}
	want := []struct {
		typ   string
		limit float64
	}{{"F32", 0}, {"Q8_0", 0.01}, {"Q4_0", 0.10}, {"Q4_K", 0.10}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %s", len(rows), len(want), stdout)
	}
	for i, w := range want {
		r := rows[i]
		if r.Type != w.typ || r.Tokens != rows[0].Tokens || r.Tokens < 1000 || r.PPL <= 1 || r.BitsPerByte <= 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		if r.PPL > 16 {
			t.Errorf("%s: perplexity %.2f: the fixture model reads as untrained", r.Type, r.PPL)
		}
		if i == 0 {
			continue
		}
		if r.DeltaPPL < -w.limit || r.DeltaPPL > w.limit {
			t.Errorf("%s: perplexity %+.2f%% from f32's (limit %.0f%%)", r.Type, 100*r.DeltaPPL, 100*w.limit)
		}
		if r.WeightBytes*3 > rows[0].WeightBytes {
			t.Errorf("%s: %d weight bytes, f32 %d: not quantized", r.Type, r.WeightBytes, rows[0].WeightBytes)
		}
	}
	t.Logf("%s", stdout)

	args[5] = "f32,q4_0" // the table, on fewer types
	table, stderr, code := mai(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "type") || !strings.Contains(lines[0], "bits/byte") || !strings.HasPrefix(lines[2], "Q4_0") {
		t.Errorf("table:\n%s", table)
	}
}

func TestEvalPerplexityByQuantErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"server", []string{"--server", "http://127.0.0.1:1", "--quant", "q8_0", "--ids", "1,2,3"}, "--quant needs --model"},
		{"bad type", []string{"--model", quantFixture + "/tiny", "--quant", "f32,q3_X", "--ids", "1,2,3"}, "q3_X"},
		{"no input", []string{"--model", quantFixture + "/tiny", "--quant", "f32"}, "nothing to score"},
		{"two inputs", []string{"--model", quantFixture + "/tiny", "--quant", "f32", "--ids", "1,2", "--text", quantFixture + "/heldout.txt"}, "give one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := mai(t, append([]string{"eval", "ppl"}, tt.args...)...)
			if code != 1 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q: want one line naming %q", code, stderr, tt.want)
			}
		})
	}
}
