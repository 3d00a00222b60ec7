package model

import (
	"math"
	"testing"

	"github.com/mai-llm/mai/nn"
)

// TestPackedEqualsSeparate packs two documents into one row and checks each
// document's logits equal those of running it alone.
func TestPackedEqualsSeparate(t *testing.T) {
	m, err := New(familyConfigs()["qwen2"], false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(5)
	a := []int32{3, 14, 15, 92, 65, 35}
	b := []int32{89, 79, 32, 38}
	row := append(append([]int32{}, a...), b...)
	pk := &Packed{}
	for i := range a {
		pk.Pos, pk.Start = append(pk.Pos, int32(i)), append(pk.Start, 0)
	}
	for i := range b {
		pk.Pos, pk.Start = append(pk.Pos, int32(i)), append(pk.Start, int32(len(a)))
	}
	tp := nn.NewTape(nil, false)
	packed, err := m.forward(tp, row, 1, len(row), nil, false, pk)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Cfg.Vocab
	off := 0
	for _, doc := range [][]int32{a, b} {
		alone, err := m.Forward(tp, doc, 1, len(doc), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range alone.Logits.Data {
			if d := math.Abs(float64(v - packed.Logits.Data[off*V+i])); d > 1e-5 {
				t.Fatalf("logit %d of document at %d differs by %g", i, off, d)
			}
		}
		off += len(doc)
	}
}
