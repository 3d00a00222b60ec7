package train

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/internal/cputime"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/model/gpu"
	"github.com/mai-llm/mai/nn"
)

// BenchConfig sets the workload of BenchTrain.
type BenchConfig struct {
	Preset  string
	Batch   int
	Seq     int
	Steps   int // timed steps (after one warm-up step)
	Threads int
	// Device is cpu (also when empty), cuda or auto (see Config.Device).
	Device string
}

// BenchResult is what BenchTrain measured. Times are medians over steps.
type BenchResult struct {
	Preset         string  `json:"preset"`
	Params         int64   `json:"params"`
	Batch          int     `json:"batch"`
	Seq            int     `json:"seq"`
	Threads        int     `json:"threads"`
	ISA            string  `json:"isa,omitempty"`    // the CPU kernels' instruction set (cpu.ISA)
	Device         string  `json:"device,omitempty"` // the GPU, when the step ran on one
	MsPerStep      float64 `json:"ms_per_step"`
	CPUMsPerStep   float64 `json:"cpu_ms_per_step"`
	TokensPerS     float64 `json:"tokens_per_s"`
	FLOPsPerToken  float64 `json:"flops_per_token"`
	GFLOPS         float64 `json:"gflops"`
	PeakGFLOPS     float64 `json:"peak_gflops"`
	FractionOfPeak float64 `json:"fraction_of_peak"`
}

// BenchTrain times full training steps (forward, backward, AdamW update) of
// a preset on random tokens, as llm.c's train_gpt2 does.
func BenchTrain(bc BenchConfig) (*BenchResult, error) {
	if bc.Batch <= 0 || bc.Seq <= 0 || bc.Steps <= 0 {
		return nil, fmt.Errorf("bench train: batch, seq and steps must be positive")
	}
	c, err := model.Preset(bc.Preset)
	if err != nil {
		return nil, err
	}
	if bc.Seq > c.MaxSeq {
		return nil, fmt.Errorf("bench train: seq %d exceeds the preset's context %d", bc.Seq, c.MaxSeq)
	}
	m, err := model.New(c, true)
	if err != nil {
		return nil, err
	}
	m.Init(1)
	p := cpu.NewPool(bc.Threads)
	m.Pool = p
	rng := rand.New(rand.NewPCG(1, 2))
	x, y := make([]int32, bc.Batch*bc.Seq), make([]int32, bc.Batch*bc.Seq)
	for i := range x {
		x[i], y[i] = int32(rng.IntN(c.Vocab)), int32(rng.IntN(c.Vocab))
	}
	if bc.Device != "" && bc.Device != "cpu" {
		dev, err := gpu.OpenDevice(bc.Device, &c)
		if err != nil {
			return nil, fmt.Errorf("bench train: %w", err)
		}
		if dev != nil {
			defer dev.Close()
			return benchDevice(bc, c, m, dev, x, y) // device.go
		}
	}
	opt := nn.NewAdamW(len(m.Params), 0.9, 0.95, 1e-8, 0.1)
	segs := m.Segments()
	tp := nn.NewTape(p, true)
	var wall, cpuT []float64
	for s := 0; s <= bc.Steps; s++ {
		c0, _ := cputime.Process()
		t0 := time.Now()
		m.ZeroGrad()
		tp.Reset()
		loss, _, _, err := m.Loss(tp, x, y, bc.Batch, bc.Seq)
		if err != nil {
			return nil, err
		}
		if err := tp.Backward(loss); err != nil {
			return nil, err
		}
		opt.Update(p, m.Params, m.Grads, segs, 1e-4)
		if s > 0 { // the first step warms caches and the allocator
			wall = append(wall, time.Since(t0).Seconds())
			c1, _ := cputime.Process()
			cpuT = append(cpuT, (c1 - c0).Seconds())
		}
	}
	total, _ := c.Params()
	r := &BenchResult{Preset: bc.Preset, Params: total, Batch: bc.Batch, Seq: bc.Seq, Threads: p.Threads(), ISA: cpu.ISA(),
		MsPerStep: 1000 * median(wall), CPUMsPerStep: 1000 * median(cpuT), FLOPsPerToken: c.FLOPsPerToken(bc.Seq)}
	r.TokensPerS = float64(bc.Batch*bc.Seq) / median(wall)
	r.GFLOPS = r.FLOPsPerToken * r.TokensPerS / 1e9
	r.PeakGFLOPS = cpu.MeasurePeak(p).GFLOPS
	if r.PeakGFLOPS > 0 {
		r.FractionOfPeak = r.GFLOPS / r.PeakGFLOPS
	}
	return r, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
