package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mai-llm/mai/backend/cuda"
	"github.com/mai-llm/mai/model"
)

// TestDeviceRunMatchesCPU trains the tiny preset for a few steps on the CPU
// and on the cuda kernel emulator (f32 GEMMs: --device cuda uses bf16 ones,
// which model/gpu's tests check) (backend/cuda's kernels compiled with
// g++), with a checkpoint and a validation mid-run, and compares the
// losses and the final checkpoint (model/gpu's tests hold the per-step
// tolerances; here: losses within 1e-4 relative, parameters within 1e-4).
func TestDeviceRunMatchesCPU(t *testing.T) {
	if os.Getenv("MAI_CUDA_EMU") == "off" {
		t.Skip("MAI_CUDA_EMU=off")
	}
	dev, err := cuda.OpenEmulator()
	if err != nil {
		t.Skipf("no cuda emulator: %v", err)
	}
	defer dev.Close()
	dataDir := corpus(t, 60_000)
	run := func(name string, attach bool) (string, string, []float64) {
		cfg := tinyConfig(dataDir, filepath.Join(t.TempDir(), name))
		cfg.Batch, cfg.Seq, cfg.Steps, cfg.Warmup = 2, 16, 3, 1
		cfg.EvalEvery, cfg.EvalBatches, cfg.SaveEvery = 2, 1, 2
		tr, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if attach {
			if err := tr.attachDevice(dev, false); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := tr.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Out, sum.ModelDir, readLosses(t, cfg.Out)
	}
	cpuOut, cpuDir, cpuLoss := run("cpu", false)
	devOut, devDir, devLoss := run("emu", true)
	// Killed after the checkpoint at step 2 and resumed on the device: the
	// same run, bit for bit (the AdamW moments go back to the device).
	{
		cfg := tinyConfig(dataDir, filepath.Join(t.TempDir(), "resumed"))
		cfg.Batch, cfg.Seq, cfg.Steps, cfg.Warmup = 2, 16, 3, 1
		cfg.EvalEvery, cfg.EvalBatches, cfg.SaveEvery = 2, 1, 2
		var final string
		for _, stop := range []int{2, 0} {
			cfg.StopAfter = stop
			tr, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.attachDevice(dev, false); err != nil {
				t.Fatal(err)
			}
			sum, err := tr.Run(context.Background())
			if (stop > 0) != errors.Is(err, ErrStopped) || err != nil && stop == 0 {
				t.Fatalf("stop after %d: %v", stop, err)
			}
			if sum != nil {
				final = sum.ModelDir
			}
			tr.Close()
		}
		if got := readLosses(t, cfg.Out); !slices.Equal(got, devLoss) {
			t.Errorf("resumed on the device: losses %v, uninterrupted %v", got, devLoss)
		}
		// The last update used the moments restored from the checkpoint.
		a, err := model.Load(devDir, false)
		if err != nil {
			t.Fatal(err)
		}
		b, err := model.Load(final, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Params, b.Params) {
			t.Error("resumed on the device: final parameters differ from the uninterrupted run's")
		}
	}
	for i := range cpuLoss {
		if math.Abs(devLoss[i]-cpuLoss[i]) > 1e-4*cpuLoss[i] {
			t.Errorf("step %d: loss %.6f on the device, %.6f on the CPU", i+1, devLoss[i], cpuLoss[i])
		}
	}
	cpuVal, devVal := readValLosses(t, cpuOut), readValLosses(t, devOut)
	if len(cpuVal) == 0 || len(cpuVal) != len(devVal) {
		t.Fatalf("validation losses: CPU %v, device %v", cpuVal, devVal)
	}
	for i := range cpuVal {
		if math.Abs(devVal[i]-cpuVal[i]) > 1e-4*cpuVal[i] {
			t.Errorf("validation %d: loss %.6f on the device, %.6f on the CPU", i, devVal[i], cpuVal[i])
		}
	}
	a, err := model.Load(cpuDir, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.Load(devDir, false)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range a.Params {
		worst = max(worst, math.Abs(float64(a.Params[i])-float64(b.Params[i])))
	}
	if worst > 1e-4 {
		t.Errorf("checkpoints differ by up to %.3g", worst)
	}
	t.Logf("losses CPU %.5f, device %.5f; validation CPU %.5f, device %.5f; checkpoints within %.2g", cpuLoss, devLoss, cpuVal, devVal, worst)
}

// readValLosses returns the validation losses in a run's metrics log.
func readValLosses(t *testing.T, run string) []float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m Metrics
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m.ValLoss != nil {
			out = append(out, *m.ValLoss)
		}
	}
	return out
}

// TestDeviceFlag: cpu and auto train without a GPU; cuda without one says
// what is missing.
func TestDeviceFlag(t *testing.T) {
	dataDir := corpus(t, 60_000)
	for _, name := range []string{"cpu", "auto", "cuda", "tpu"} {
		cfg := tinyConfig(dataDir, filepath.Join(t.TempDir(), name))
		cfg.Device = name
		tr, err := New(cfg, nil)
		switch {
		case name == "tpu":
			if err == nil || !strings.Contains(err.Error(), "unknown device") {
				t.Errorf("--device tpu: %v", err)
			}
		case name == "cuda" && err != nil:
			if _, gpuErr := cuda.Open(cuda.Options{}); gpuErr == nil {
				t.Errorf("--device cuda: %v, though a GPU opens", err)
			}
			t.Logf("--device cuda without a GPU: %v", err)
		case err != nil:
			t.Errorf("--device %s: %v", name, err)
		}
		if tr != nil {
			if name == "cpu" && tr.gpu != nil {
				t.Error("--device cpu runs on the device")
			}
			tr.Close()
		}
	}
}
