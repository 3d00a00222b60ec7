package nn_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mai-llm/mai/nn"
)

// TestInferenceArena checks an inference tape with Arena set: its outputs
// equal a plain inference tape's, a pass after Reset reuses the memory of
// the pass before (once the first has sized the arena), and a pass of a
// seen shape allocates nothing.
func TestInferenceArena(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, d = 6, 32
	rnd := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	x, w := nn.Const(rnd(n*d), n, d), nn.Const(rnd(d), d)
	g, u := nn.Const(rnd(n*d), n, d), nn.Const(rnd(n*d), n, d)
	pass := func(tp *nn.Tape) *nn.Var {
		h := tp.RMSNorm(tp.Add(x, g), w, 1e-5)
		return tp.Add(tp.SwiGLU(h, u), x)
	}
	want := pass(nn.NewTape(nil, false)).Data
	tp := nn.NewTape(nil, false)
	tp.Arena = true
	var first *float32
	for i := range 3 {
		tp.Reset()
		y := pass(tp)
		if !slices.Equal(y.Data, want) {
			t.Fatalf("pass %d: arena tape output differs from a plain tape's", i)
		}
		if i == 1 {
			first = &y.Data[0]
		} else if i > 1 && &y.Data[0] != first {
			t.Fatalf("pass %d: output not in the memory of the pass before", i)
		}
	}
	if raceEnabled {
		return
	}
	if got := testing.AllocsPerRun(5, func() { tp.Reset(); pass(tp) }); got != 0 {
		t.Errorf("a pass of a seen shape allocates %v times, want 0", got)
	}
}
