package nn_test

import (
	"math/rand/v2"
	"testing"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// stepper runs full training steps (forward, backward, AdamW) of a preset
// on fixed random tokens, as train.BenchTrain does.
type stepper struct {
	m    *model.Model
	tp   *nn.Tape
	opt  *nn.AdamW
	segs []nn.Segment
	x, y []int32
	b, t int
}

func newStepper(tb testing.TB, preset string, b, t int, p *cpu.Pool) *stepper {
	c, err := model.Preset(preset)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := model.New(c, true)
	if err != nil {
		tb.Fatal(err)
	}
	m.Init(1)
	m.Pool = p
	rng := rand.New(rand.NewPCG(1, 2))
	s := &stepper{m: m, tp: nn.NewTape(p, true), opt: nn.NewAdamW(len(m.Params), 0.9, 0.95, 1e-8, 0.1),
		segs: m.Segments(), x: make([]int32, b*t), y: make([]int32, b*t), b: b, t: t}
	for i := range s.x {
		s.x[i], s.y[i] = int32(rng.IntN(c.Vocab)), int32(rng.IntN(c.Vocab))
	}
	return s
}

func (s *stepper) step(tb testing.TB) float32 {
	s.m.ZeroGrad()
	s.tp.Reset()
	loss, _, _, err := s.m.Loss(s.tp, s.x, s.y, s.b, s.t)
	if err != nil {
		tb.Fatal(err)
	}
	l := loss.Data[0]
	if err := s.tp.Backward(loss); err != nil {
		tb.Fatal(err)
	}
	s.opt.Update(s.m.Pool, s.m.Params, s.m.Grads, s.segs, 1e-4)
	return l
}

// benchSteppers keeps one warmed-up stepper per preset, so that the
// benchmark's calibration runs and a CPU profile see only steady-state steps.
var benchSteppers = map[string]*stepper{}

// BenchmarkTrainStep times training steps of the presets mai bench train
// measures: go test ./nn -run XXX -bench TrainStep -cpuprofile cpu.out.
func BenchmarkTrainStep(b *testing.B) {
	for _, tc := range []struct {
		preset string
		b, t   int
	}{{"tiny", 16, 128}, {"gpt2-124m", 4, 64}} {
		b.Run(tc.preset, func(b *testing.B) {
			s := benchSteppers[tc.preset]
			if s == nil {
				s = newStepper(b, tc.preset, tc.b, tc.t, cpu.Default())
				s.step(b)
				s.step(b)
				benchSteppers[tc.preset] = s
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.step(b)
			}
			b.ReportMetric(float64(b.N*tc.b*tc.t)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// TestTrainStepAllocs checks that a full training step of the tiny preset
// (forward, backward, AdamW) allocates nothing once the first step has sized
// the tape's arena.
func TestTrainStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	for _, threads := range []int{1, 3} {
		s := newStepper(t, "tiny", 4, 48, cpu.NewPool(threads))
		s.step(t)
		s.step(t)
		if got := testing.AllocsPerRun(3, func() { s.step(t) }); got != 0 {
			t.Errorf("%d threads: a training step allocates %v times, want 0", threads, got)
		}
	}
}
