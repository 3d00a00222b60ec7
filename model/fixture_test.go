package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/nn"
)

func fixture(t *testing.T, name string) (*Model, *safetensors.File) {
	t.Helper()
	dir := filepath.Join("testdata", "hf", name)
	m, err := Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return m, ref
}

func TestHFLogits(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		t.Run(name, func(t *testing.T) {
			m, ref := fixture(t, name)
			ids, shape, err := ref.Int32("input_ids")
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := ref.Float32("logits")
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.Forward(nn.NewTape(nil, false), ids, shape[0], shape[1], nil, false)
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for i, v := range out.Logits.Data {
				worst = math.Max(worst, math.Abs(float64(v-want[i])))
			}
			t.Logf("%s: max abs logit error %.2e", name, worst)
			if worst > 1e-4 {
				t.Fatalf("max abs logit error %.3e > 1e-4", worst)
			}
		})
	}
}

func TestHFTrainStep(t *testing.T) {
	m, ref := fixture(t, "llama")
	dir := filepath.Join("testdata", "hf", "llama")
	step, err := safetensors.Open(filepath.Join(dir, "train_step.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer step.Close()
	var hp struct {
		LR          float64   `json:"lr"`
		Betas       []float64 `json:"betas"`
		Eps         float64   `json:"eps"`
		WeightDecay float64   `json:"weight_decay"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "train_step.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &hp); err != nil {
		t.Fatal(err)
	}
	ids, shape, _ := ref.Int32("input_ids")
	bsz, T := shape[0], shape[1]
	targets := make([]int32, len(ids))
	for i := range targets {
		if i%T == T-1 {
			targets[i] = -1
		} else {
			targets[i] = ids[i+1]
		}
	}
	tp := nn.NewTape(nil, true)
	loss, _, _, err := m.Loss(tp, ids, targets, bsz, T)
	if err != nil {
		t.Fatal(err)
	}
	wantLoss, _, _ := step.Float32("loss")
	if d := math.Abs(float64(loss.Data[0]-wantLoss[0])) / float64(wantLoss[0]); d > 1e-5 {
		t.Fatalf("loss %v, want %v", loss.Data[0], wantLoss[0])
	}
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Tensors {
		want, _, err := step.Float32("grad." + p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if e := relErr(p.V.Grad, want); e > 1e-4 {
			t.Errorf("grad %s: relative error %.2e", p.Name, e)
		}
	}
	segs := m.Segments()
	for i := range segs {
		segs[i].Decay = true // the fixture decays every parameter
	}
	opt := nn.NewAdamW(len(m.Params), hp.Betas[0], hp.Betas[1], hp.Eps, hp.WeightDecay)
	opt.Update(m.Pool, m.Params, m.Grads, segs, hp.LR)
	for _, p := range m.Tensors {
		want, _, err := step.Float32("after_step." + p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if e := relErr(p.V.Data, want); e > 1e-4 {
			t.Errorf("updated %s: relative error %.2e", p.Name, e)
		}
	}
}

// relErr is ‖a−b‖/‖b‖.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
