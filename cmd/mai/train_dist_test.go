package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestTrainMPI runs `mpirun -np 2 mai train` on a text folder (rank 0
// tokenizes it while rank 1 waits) with --dist left at auto, a MoE preset
// and a capacity factor: one "done" line, progress with dropped tokens, and
// a checkpoint.
func TestTrainMPI(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	corpus := corpusDir(t)
	run := filepath.Join(t.TempDir(), "run")
	stdout, stderr := mpiTrain(t, mpirun, 3*time.Minute, "train", "--preset", "tiny-moe", "--data", corpus, "--out", run, "--batch", "2", "--seq", "32",
		"--steps", "3", "--warmup", "1", "--eval-every", "3", "--eval-batches", "2", "--save-every", "0",
		"--log-every", "1", "--threads", "1", "--capacity-factor", "0.5")
	if n := strings.Count(stdout, "done: 3 steps"); n != 1 {
		t.Errorf("want one done line (rank 0), got %d:\n%s", n, stdout)
	}
	if !strings.Contains(stderr, "step     3/3") || !strings.Contains(stderr, "| dropped ") {
		t.Errorf("no progress line with dropped tokens:\n%s", stderr)
	}
	if got := len(losses(t, run)); got != 3 {
		t.Errorf("metrics.jsonl has %d steps, want 3", got)
	}
	b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if !strings.Contains(string(b), `"moe_dropped":[0.`) {
		t.Errorf("metrics.jsonl reports no dropped tokens with capacity factor 0.5:\n%s", b)
	}
	st, err := os.ReadFile(filepath.Join(run, "checkpoints", "step-0000003", "trainer_state.json"))
	if err != nil || !strings.Contains(string(st), `"world": 2`) {
		t.Errorf("final checkpoint: %v\n%s", err, st)
	}
}

// TestTrainMPIZero3 runs `mpirun -np 2 mai train --zero 3` (parameters
// sharded over the ranks) on a dense preset, then continues the run in one
// process from the checkpoint the two ranks wrote.
func TestTrainMPIZero3(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	corpus := corpusDir(t)
	run := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--preset", "tiny", "--data", corpus, "--out", run, "--seq", "32",
		"--warmup", "1", "--eval-every", "0", "--save-every", "0", "--log-every", "1", "--threads", "1"}
	stdout, stderr := mpiTrain(t, mpirun, 2*time.Minute, append(args, "--batch", "2", "--steps", "3", "--zero", "3")...)
	if n := strings.Count(stdout, "done: 3 steps"); n != 1 {
		t.Errorf("want one done line (rank 0), got %d:\n%s", n, stdout)
	}
	if n := strings.Count(stderr, "zero=3"); n != 2 {
		t.Errorf("want a training memory line with zero=3 from each rank, got %d:\n%s", n, stderr)
	}
	out, errOut, code := mai(t, append(args, "--batch", "4", "--steps", "5")...)
	if code != 0 || !strings.Contains(errOut, "step=3") || !strings.Contains(out, "done: 5 steps") {
		t.Fatalf("resuming in one process: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if got := len(losses(t, run)); got != 5 {
		t.Errorf("metrics.jsonl has %d steps, want 5", got)
	}
}

// TestDeployFiles checks that every `mai train` flag used in deploy/ exists
// and that the Kubernetes manifests parse.
func TestDeployFiles(t *testing.T) {
	train, _, err := rootCmd.Find([]string{"train"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(file string, args []string) {
		n := 0
		for i, a := range args {
			if a != "mai" || i+1 >= len(args) || args[i+1] != "train" {
				continue
			}
			n++
			for _, f := range args[i+2:] {
				name, ok := strings.CutPrefix(f, "--")
				if !ok {
					continue
				}
				name, _, _ = strings.Cut(name, "=")
				if train.Flags().Lookup(name) == nil {
					t.Errorf("%s: mai train has no flag --%s", file, name)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no mai train command", file)
		}
	}
	for _, f := range []string{"slurm/train.sbatch", "mpirun/train.sh"} {
		b, err := os.ReadFile(filepath.Join("../../deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		check(f, strings.Fields(strings.ReplaceAll(string(b), "\\\n", " ")))
	}
	b, err := os.ReadFile("../../deploy/kubernetes/mpijob.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var kinds []string
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Spec       struct {
				MPIReplicaSpecs map[string]struct {
					Replicas      int    `yaml:"replicas"`
					RestartPolicy string `yaml:"restartPolicy"`
					Template      struct {
						Spec struct {
							Containers []struct {
								Command []string `yaml:"command"`
								Args    []string `yaml:"args"`
							} `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"mpiReplicaSpecs"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("mpijob.yaml: %v", err)
		}
		kinds = append(kinds, doc.APIVersion+" "+doc.Kind)
		if doc.Kind != "MPIJob" {
			continue
		}
		l := doc.Spec.MPIReplicaSpecs["Launcher"]
		w := doc.Spec.MPIReplicaSpecs["Worker"]
		if l.Replicas != 1 || w.Replicas < 1 || len(l.Template.Spec.Containers) == 0 {
			t.Fatalf("mpijob.yaml: want 1 launcher and workers, got %d and %d", l.Replicas, w.Replicas)
		}
		c := l.Template.Spec.Containers[0]
		args := append(append([]string{}, c.Command...), c.Args...)
		check("kubernetes/mpijob.yaml", args)
		for i, a := range args {
			if a == "-np" && i+1 < len(args) && args[i+1] != "" && args[i+1] != strconv.Itoa(w.Replicas) {
				t.Errorf("mpijob.yaml: mpirun -np %s but %d workers with one slot each", args[i+1], w.Replicas)
			}
		}
	}
	if !strings.Contains(strings.Join(kinds, ","), "kubeflow.org/v2beta1 MPIJob") {
		t.Errorf("mpijob.yaml holds %v, no kubeflow.org/v2beta1 MPIJob", kinds)
	}
}

// mpiTrain runs `mpirun -np 2 mai ARGS` and returns its output, failing the
// test if it fails or outlives timeout.
func mpiTrain(t *testing.T, mpirun string, timeout time.Duration, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpirun, append([]string{"--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", maiBin}, args...)...)
	cmd.Env = os.Environ()
	if os.Getenv("OMPI_MCA_btl_vader_single_copy_mechanism") == "" {
		cmd.Env = append(cmd.Env, "OMPI_MCA_btl_vader_single_copy_mechanism=none")
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("mpirun -np 2 mai %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}
