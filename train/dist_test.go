package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mai-llm/mai/dist"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// The distributed tests re-execute this test binary under mpirun; these
// variables tell the child what to do.
const (
	childEnv  = "MAI_TRAIN_TEST_CHILD"  // "train": run Launch with the config below
	configEnv = "MAI_TRAIN_TEST_CONFIG" // the Config as JSON
	killEnv   = "MAI_TRAIN_TEST_KILL"   // rank 1 kills itself (SIGKILL) once this step is checkpointed
	failEnv   = "MAI_TRAIN_TEST_FAIL"   // rank 1 trains on this (missing) data directory instead
	cmaEnv    = "OMPI_MCA_btl_vader_single_copy_mechanism"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := child(); err != nil {
			fmt.Fprintf(os.Stderr, "child: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child() error {
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		return err
	}
	if s := os.Getenv(killEnv); s != "" && os.Getenv("OMPI_COMM_WORLD_RANK") == "1" {
		step, _ := strconv.Atoi(s)
		go func() {
			want := fmt.Sprintf("checkpoints/step-%07d", step)
			for {
				b, _ := os.ReadFile(filepath.Join(cfg.Out, "latest"))
				if got := strings.TrimSpace(string(b)); got != "" && got >= want {
					fmt.Fprintf(os.Stderr, "rank 1: killing myself after %s\n", got)
					now, _ := time.Now().MarshalText()
					os.WriteFile(filepath.Join(cfg.Out, "killed_at"), now, 0o644)
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	if dir := os.Getenv(failEnv); dir != "" && os.Getenv("OMPI_COMM_WORLD_RANK") == "1" {
		cfg.Data = dir
	}
	_, err := Launch(context.Background(), cfg, os.Stderr, nil)
	if errors.Is(err, ErrStopped) {
		return nil
	}
	return err
}

// mpirunTrain runs the training config on np ranks under mpirun and returns
// the combined output and the error.
func mpirunTrain(t *testing.T, np int, cfg Config, limit time.Duration, env ...string) (string, error, time.Duration) {
	t.Helper()
	path, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dist = "mpi"
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", strconv.Itoa(np), self)
	cmd.Env = append(os.Environ(), childEnv+"=train", configEnv+"="+string(b))
	if os.Getenv(cmaEnv) == "" {
		// Containers often forbid the cross-process copies Open MPI's
		// shared-memory transport uses for large messages.
		cmd.Env = append(cmd.Env, cmaEnv+"=none")
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("mpirun -np %d still running after %v (a hang); output:\n%s", np, limit, out.String())
	}
	return out.String(), err, took
}

// distConfig is a short run: per-rank batch b, 20 steps, validation at the
// end, checkpoints every 10 steps, one thread per rank.
func distConfig(dataDir, out, preset string, b int) Config {
	c := tinyConfig(dataDir, out)
	c.Preset, c.Batch, c.Steps, c.Warmup = preset, b, 20, 4
	c.EvalEvery, c.SaveEvery, c.Threads = 20, 10, 1
	if preset == "tiny-moe" {
		// Top-2 routing is discontinuous: once the float rounding of two
		// runs differs (the ranks' partial gradient sums are added in
		// another order than one process adds them), a token whose 2nd and
		// 3rd expert are within that rounding of each other can take
		// another expert, and the runs then part by 1e-5..1e-3. Over 20
		// steps of this corpus that happens for seeds 1 and 2 and for none
		// of seeds 3 to 6 (largest differences 1e-7..2e-7); the test uses
		// seed 4. A failure that shows agreement to ~1e-7 and then a jump
		// is such a routing flip, not a wrong reduction.
		c.Seed = 4
	}
	return c
}

type metricsLine struct {
	Loss    float64  `json:"loss"`
	ValLoss *float64 `json:"val_loss"`
	Memory  *Memory  `json:"memory"`
}

// readMemory returns the per-rank training memory the run reported.
func readMemory(t *testing.T, out string) Memory {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var m metricsLine
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Memory == nil {
		t.Fatalf("no memory in the first line of %s/metrics.jsonl (%v): %s", out, err, line)
	}
	return *m.Memory
}

// checkMemory requires each per-rank figure of the distributed run at most
// its limit times the one-process figure (and the optimizer state at least
// 0.45 of it: sharded, not missing).
func checkMemory(t *testing.T, what string, got, one Memory, params, grads, opt float64) {
	t.Helper()
	for _, c := range []struct {
		name     string
		got, one int64
		limit    float64
	}{{"parameters", got.Params, one.Params, params}, {"gradients", got.Grads, one.Grads, grads}, {"optimizer state", got.Optimizer, one.Optimizer, opt}} {
		r := float64(c.got) / float64(c.one)
		t.Logf("%s: %s per rank %d bytes, one process %d (%.3f)", what, c.name, c.got, c.one, r)
		if r > c.limit {
			t.Errorf("%s: %s per rank %d bytes = %.3f of one process's %d, want at most %.2f", what, c.name, c.got, r, c.one, c.limit)
		}
	}
	if r := float64(got.Optimizer) / float64(one.Optimizer); r < 0.45 {
		t.Errorf("%s: optimizer state per rank only %.3f of one process's", what, r)
	}
}

// deepInit writes a dense model like the tiny preset but with 16 narrower
// layers: ZeRO-2's gradient working set is about two blocks, so the
// gradient memory per rank approaches 1/ranks only with many blocks.
func deepInit(t *testing.T) string {
	t.Helper()
	c, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN = 64, 16, 4, 2, 16, 176
	m, err := model.New(c, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	dir := filepath.Join(t.TempDir(), "deep")
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readMetrics(t *testing.T, out string) (losses []float64, val float64) {
	t.Helper()
	losses = readLosses(t, out)
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m metricsLine
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m.ValLoss != nil {
			val = *m.ValLoss
		}
	}
	return losses, val
}

// compareRuns requires every step's loss and the last validation loss
// within tol (relative) of the reference run's.
func compareRuns(t *testing.T, what, out, ref string, tol float64) {
	t.Helper()
	got, gotVal := readMetrics(t, out)
	want, wantVal := readMetrics(t, ref)
	if len(got) != len(want) {
		t.Fatalf("%s: %d steps, want %d", what, len(got), len(want))
	}
	worst := 0.0
	for i := range want {
		d := math.Abs(got[i]-want[i]) / math.Abs(want[i])
		worst = math.Max(worst, d)
		if d > tol {
			t.Errorf("%s: step %d loss %.8f, one process %.8f (relative difference %.2g > %g)", what, i+1, got[i], want[i], d, tol)
		}
	}
	if d := math.Abs(gotVal-wantVal) / wantVal; wantVal == 0 || d > tol {
		t.Errorf("%s: validation loss %.8f, one process %.8f", what, gotVal, wantVal)
	}
	t.Logf("%s: %d steps, largest relative loss difference %.2g", what, len(want), worst)
}

func runLocal(t *testing.T, cfg Config) {
	t.Helper()
	tr, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(context.Background()); err != nil && !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
}

// resumeLocal continues the run in dir in one process with config cfg,
// which must find a checkpoint at step want.
func resumeLocal(t *testing.T, cfg Config, dir string, want int) {
	t.Helper()
	cfg.Out = dir
	tr, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.step != want {
		t.Fatalf("resumed at step %d, want %d", tr.step, want)
	}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDistributed trains on two MPI ranks and checks that every step's loss
// (and the validation loss) equals the one-process run with the same global
// batch within 1e-5 relative:
//
//   - dense (16 blocks), with ZeRO-2, gradient accumulation and small
//     gradient buckets; per rank, the optimizer state is half and the
//     gradients less than two thirds of one process's;
//     then rank 1 is killed (SIGKILL) right after the checkpoint at step 10:
//     the job must end with an error within the time limit, not hang, and
//     one process resuming from that checkpoint continues as if the run had
//     not been interrupted;
//   - MoE with the experts split over the two ranks (all-to-all dispatch)
//     and ZeRO-2: each rank holds half the experts (parameters, gradients,
//     optimizer state) and half the optimizer state of the rest; stopped
//     at step 15 and resumed from the checkpoint at step 10 that the two
//     ranks wrote, by one process and by four ranks.
func TestDistributed(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	dataDir := corpus(t, 300_000)
	t.Run("dense", func(t *testing.T) {
		init := deepInit(t)
		one := distConfig(dataDir, filepath.Join(t.TempDir(), "one"), "tiny", 4)
		one.Accum, one.Init = 2, init
		runLocal(t, one)

		two := distConfig(dataDir, filepath.Join(t.TempDir(), "two"), "tiny", 2)
		two.Accum, two.Init, two.Zero, two.BucketMB = 2, init, 2, 0.1
		out, err, took := mpirunTrain(t, 2, two, 3*time.Minute)
		if err != nil {
			t.Fatalf("mpirun -np 2: %v after %v; output:\n%s", err, took, out)
		}
		t.Logf("2 ranks: %v", took)
		compareRuns(t, "2 ranks", two.Out, one.Out, 1e-5)
		// Parameters are replicated (plus the chunk being updated); the
		// gradients are this rank's half plus two blocks in flight and the
		// embeddings; the optimizer state is half.
		checkMemory(t, "ZeRO-2", readMemory(t, two.Out), readMemory(t, one.Out), 1.15, 0.67, 0.51)

		// The survivor would wait in a collective: mpirun must end the job
		// long before the watchdog (set high here) would.
		killed := two
		killed.Out = filepath.Join(t.TempDir(), "killed")
		out, err, took = mpirunTrain(t, 2, killed, 2*time.Minute, killEnv+"=10", "MAI_DIST_TIMEOUT=10m")
		if err == nil {
			t.Fatalf("job with a killed rank exited 0 after %v; output:\n%s", took, out)
		}
		if !strings.Contains(out, "killing myself") {
			t.Fatalf("rank 1 was not killed; output:\n%s", out)
		}
		if !strings.Contains(out, "signal 9") && !strings.Contains(out, "Killed") {
			t.Errorf("no clear message about the killed rank; output:\n%s", out)
		}
		var killedAt time.Time
		if b, err := os.ReadFile(filepath.Join(killed.Out, "killed_at")); err != nil || killedAt.UnmarshalText(b) != nil {
			t.Fatalf("no kill time: %v", err)
		}
		// mpirun's own teardown, not the collective watchdog, ends the job.
		if after := time.Since(killedAt); after > 30*time.Second {
			t.Errorf("the job ended %v after rank 1 was killed", after)
		} else {
			t.Logf("the job ended %v after rank 1 was killed (%v)", after.Round(time.Millisecond), err)
		}
		if n := len(readLosses(t, killed.Out)); n >= two.Steps {
			t.Fatalf("the killed job finished all %d steps", n)
		}
		resumeLocal(t, one, killed.Out, 10)
		compareRuns(t, "2 ranks, killed, resumed by 1", killed.Out, one.Out, 1e-5)
	})
	t.Run("moe", func(t *testing.T) {
		one := distConfig(dataDir, filepath.Join(t.TempDir(), "one"), "tiny-moe", 4)
		runLocal(t, one)

		two := distConfig(dataDir, filepath.Join(t.TempDir(), "two"), "tiny-moe", 2)
		two.Zero, two.BucketMB = 2, 0.25
		out, err, took := mpirunTrain(t, 2, two, 3*time.Minute)
		if err != nil {
			t.Fatalf("mpirun -np 2: %v after %v; output:\n%s", err, took, out)
		}
		t.Logf("2 ranks: %v", took)
		compareRuns(t, "2 ranks", two.Out, one.Out, 1e-5)
		b, _ := os.ReadFile(filepath.Join(two.Out, "metrics.jsonl"))
		if !strings.Contains(string(b), `"moe_dropped":[0,0,0,0]`) {
			t.Errorf("metrics.jsonl of the MoE run reports no dropped-token counts (or dropped some without a capacity factor)")
		}

		// Experts are 80% of tiny-moe: a rank holds the dense 20% and half
		// the experts.
		checkMemory(t, "expert parallel, ZeRO-2", readMemory(t, two.Out), readMemory(t, one.Out), 0.66, 0.66, 0.51)

		part := two
		part.Out, part.StopAfter = filepath.Join(t.TempDir(), "part"), 15
		if out, err, took := mpirunTrain(t, 2, part, 3*time.Minute); err != nil {
			t.Fatalf("mpirun -np 2 (stop after 15): %v after %v; output:\n%s", err, took, out)
		}
		// The same checkpoint resumed by four ranks (two experts each).
		four := two
		four.Out, four.Batch = filepath.Join(t.TempDir(), "four"), 1
		if err := os.CopyFS(four.Out, os.DirFS(part.Out)); err != nil {
			t.Fatal(err)
		}
		resumeLocal(t, one, part.Out, 10)
		compareRuns(t, "2 ranks, stopped, resumed by 1", part.Out, one.Out, 1e-5)
		out, err, took = mpirunTrain(t, 4, four, 3*time.Minute)
		if err != nil {
			t.Fatalf("mpirun -np 4 (resume): %v after %v; output:\n%s", err, took, out)
		}
		if !strings.Contains(out, "step=10") {
			t.Errorf("the 4-rank run did not resume at step 10; output:\n%s", out)
		}
		t.Logf("4 ranks, resumed: %v", took)
		compareRuns(t, "2 ranks, stopped, resumed by 4", four.Out, one.Out, 1e-5)
	})
}

// TestBucketPlan checks the gradient buckets: every parameter in exactly
// one bucket, buckets triggered from the last block to the embeddings (so
// the first ones are reduced while the backward pass still runs), and
// pack/unpack and the AdamW segments consistent.
func TestBucketPlan(t *testing.T) {
	for _, preset := range []string{"tiny", "tiny-moe"} {
		c, err := model.Preset(preset)
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.New(c, true)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(1)
		for _, zero := range []int{0, 1, 2, 3} {
			dp := &dataParallel{zero: zero}
			dp.plan(m, &model.Parallel{}, dist.Local(), nil, 1<<16)
			seen := make([]int, len(m.Params))
			last := m.Cfg.Layers + 1
			var units []int
			for u := m.Cfg.Layers; u >= -1; u-- {
				for _, b := range dp.byUnit[u] {
					if u > last {
						t.Fatalf("%s: bucket order", preset)
					}
					last = u
					units = append(units, u)
					pos := 0
					for _, s := range b.spans {
						for i := s.off; i < s.off+s.n; i++ {
							seen[i]++
						}
						pos += s.n
					}
					if pos != b.n {
						t.Fatalf("%s: bucket spans hold %d values, n is %d", preset, pos, b.n)
					}
					segLen := 0
					for _, sg := range b.segs {
						if sg.Off != segLen {
							t.Fatalf("%s: segments not contiguous", preset)
						}
						segLen += sg.Len
					}
					if segLen != b.n {
						t.Fatalf("%s: segments cover %d of %d", preset, segLen, b.n)
					}
					buf := make([]float32, b.n)
					b.pack(buf, m.Params, 0, b.n)
					out := make([]float32, len(m.Params))
					b.unpack(out, buf, 0, b.n)
					for _, s := range b.spans {
						if !slices.Equal(out[s.off:s.off+s.n], m.Params[s.off:s.off+s.n]) {
							t.Fatalf("%s: pack/unpack round trip", preset)
						}
					}
				}
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("%s: parameter value %d is in %d buckets", preset, i, n)
				}
			}
			if len(units) < 3 || units[0] < m.Cfg.Layers-1 || units[len(units)-1] != -1 {
				t.Errorf("%s: buckets triggered at units %v: want several, from the head to the embeddings", preset, units)
			}
		}
	}
	segs := []nn.Segment{{Off: 0, Len: 10, Decay: true}, {Off: 10, Len: 5}, {Off: 15, Len: 5, Decay: true}}
	got := clipSegs(segs, 8, 17)
	want := []nn.Segment{{Off: 0, Len: 2, Decay: true}, {Off: 2, Len: 5}, {Off: 7, Len: 2, Decay: true}}
	if !slices.Equal(got, want) {
		t.Errorf("clipSegs = %v, want %v", got, want)
	}
}

// TestDistConfigErrors checks that bad distributed settings are refused
// with a message naming the setting.
func TestDistConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Dist = "tcp" }, "--dist"},
		{func(c *Config) { c.Zero = 4 }, "--zero"},
		{func(c *Config) { c.Zero = -1 }, "--zero"},
		{func(c *Config) { c.ExpertParallel = -1 }, "--expert-parallel"},
		{func(c *Config) { c.CapacityFactor = -0.5 }, "--capacity-factor"},
		{func(c *Config) { c.BucketMB = -1 }, "--bucket-mb"},
	} {
		c := Defaults()
		c.Data, c.Out = "x", "y"
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
	}
	mc, _ := model.Preset("tiny-moe")
	if _, err := expertRanks(&Config{ExpertParallel: 3}, &mc, 6); err == nil || !strings.Contains(err.Error(), "8") {
		t.Errorf("3 expert ranks for 8 experts: %v", err)
	}
	for _, tc := range []struct{ world, want int }{{1, 1}, {2, 2}, {3, 1}, {4, 4}, {6, 2}, {16, 8}} {
		if g, err := expertRanks(&Config{}, &mc, tc.world); err != nil || g != tc.want {
			t.Errorf("automatic expert ranks for %d ranks: %d, %v; want %d", tc.world, g, err, tc.want)
		}
	}
}

// TestDistributedRankFails gives rank 1 a missing data directory: it must
// print its error with its rank and abort the job, so that rank 0, waiting
// for it, does not hang.
func TestDistributedRankFails(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	dataDir := corpus(t, 100_000)
	cfg := distConfig(dataDir, filepath.Join(t.TempDir(), "run"), "tiny", 2)
	missing := filepath.Join(t.TempDir(), "no-such-data")
	out, err, took := mpirunTrain(t, 2, cfg, time.Minute, failEnv+"="+missing, "MAI_DIST_TIMEOUT=10m")
	if err == nil {
		t.Fatalf("job with a failing rank exited 0; output:\n%s", out)
	}
	if !strings.Contains(out, "rank 1 of 2") || !strings.Contains(out, "no-such-data") {
		t.Fatalf("no error naming rank 1 and its cause; output:\n%s", out)
	}
	t.Logf("job ended after %v with %v", took.Round(time.Millisecond), err)
}

// rankComm is a communicator that only knows its rank and size: enough to
// plan and allocate a rank's buffers without running collectives.
type rankComm struct {
	dist.Comm
	rank, size int
}

func (c rankComm) Rank() int { return c.rank }
func (c rankComm) Size() int { return c.size }

// TestShardAllocation lays out rank 1 of 2 (experts split, all ZeRO
// stages) and checks that it holds exactly its parameters with their
// values, the other rank's experts not at all, gradients in its own
// buffers, the optimizer moments of its shard taken from the full ones,
// and memory figures that add up.
func TestShardAllocation(t *testing.T) {
	c, err := model.Preset("tiny-moe")
	if err != nil {
		t.Fatal(err)
	}
	for _, zero := range []int{0, 1, 2, 3} {
		m, err := model.New(c, true)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(3)
		orig := map[string][]float32{}
		for _, p := range m.Tensors {
			orig[p.Name] = slices.Clone(p.V.Data)
		}
		n := len(m.Params)
		opt := nn.NewAdamW(n, 0.9, 0.95, 1e-8, 0.1)
		for i := range opt.M {
			opt.M[i], opt.V[i] = float32(i), float32(2*i)
		}
		world := rankComm{rank: 1, size: 2}
		par := &model.Parallel{Experts: world}
		dp := &dataParallel{zero: zero, t: &Trainer{Cfg: Config{Accum: 2}}}
		held := dp.plan(m, par, world, nil, 1<<14)
		full := slices.Clone(m.Params)
		dp.allocate(m, held, opt)
		if zero == 3 {
			checkParamShards(t, dp, m, full)
		}

		lo, hi := par.LocalExperts(c.Experts)
		var expertVals int
		for _, p := range m.Tensors {
			e, isExpert := expertOf(p.Name)
			if isExpert {
				expertVals += len(orig[p.Name])
			}
			if isExpert && (e < lo || e >= hi) {
				if p.V.Data != nil || p.V.Grad != nil {
					t.Fatalf("zero %d: %s belongs to rank 0 but has memory here", zero, p.Name)
				}
				continue
			}
			if zero == 3 && p.V.Data == nil && unitOf(p.Name, c.Layers) >= 0 && unitOf(p.Name, c.Layers) < c.Layers {
				// A block's parameters (checked in checkParamShards).
			} else if !slices.Equal(p.V.Data, orig[p.Name]) {
				t.Fatalf("zero %d: %s lost its values", zero, p.Name)
			}
			if len(p.V.Grad) != len(orig[p.Name]) {
				t.Fatalf("zero %d: %s has a gradient of %d values for %d", zero, p.Name, len(p.V.Grad), len(orig[p.Name]))
			}
		}
		if want := n - expertVals/2; dp.local != want || (zero < 3 && len(dp.params) != want) {
			t.Fatalf("zero %d: rank holds %d values, want %d", zero, dp.local, want)
		}
		// The moments of what this rank updates come from the full ones.
		for _, b := range dp.buckets {
			if zero == 0 {
				break
			}
			full := make([]float32, n)
			b.unpackFull(full, b.m, b.lo, b.hi)
			pos := 0
			for _, s := range b.spans {
				for i := max(b.lo, pos); i < min(b.hi, pos+s.n); i++ {
					if j := s.full + i - pos; full[j] != opt.M[j] {
						t.Fatalf("zero %d: moment %d is %v, want %v", zero, j, full[j], opt.M[j])
					}
				}
				pos += s.n
			}
		}
		local := int64(4 * dp.local)
		if zero == 3 {
			local = zero3Bytes(dp)
		}
		if dp.mem.Params != local {
			t.Errorf("zero %d: parameter bytes %d, want %d", zero, dp.mem.Params, local)
		}
		// ZeRO-1/2: moments of this rank's experts and half the rest.
		dense := n - expertVals
		if want, slack := int64(8*(expertVals/2+dense/2)), int64(8*len(dp.buckets)); zero > 0 && (dp.mem.Optimizer < want-slack || dp.mem.Optimizer > want+slack) {
			t.Errorf("zero %d: optimizer bytes %d, want %d", zero, dp.mem.Optimizer, want)
		}
		if zero == 2 && float64(dp.mem.Grads) > 0.65*float64(4*n) {
			t.Errorf("zero 2: gradient bytes %d, more than 0.65 of one process's %d", dp.mem.Grads, 4*n)
		}
		t.Logf("zero %d: params %d, grads %d, optimizer %d bytes (one process: %d each, optimizer %d)", zero, dp.mem.Params, dp.mem.Grads, dp.mem.Optimizer, 4*n, 8*n)
	}
}

// TestDistributedZero3 trains with the parameters sharded (ZeRO-3) on two
// MPI ranks and checks that every step's loss (and the validation loss)
// equals the one-process run with the same global batch within 1e-5
// relative, that each rank holds about half the parameters (plus one
// gathered block and the embeddings), and that the checkpoint the two
// ranks wrote at step 10 resumes as if uninterrupted in one process, on two
// ranks without ZeRO-3 and on four ranks with it.
func TestDistributedZero3(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	dataDir := corpus(t, 300_000)
	init := deepInit(t)
	one := distConfig(dataDir, filepath.Join(t.TempDir(), "one"), "tiny", 4)
	one.Accum, one.Init = 2, init
	runLocal(t, one)

	two := distConfig(dataDir, filepath.Join(t.TempDir(), "two"), "tiny", 2)
	two.Accum, two.Init, two.Zero = 2, init, 3
	out, err, took := mpirunTrain(t, 2, two, 2*time.Minute)
	if err != nil {
		t.Fatalf("mpirun -np 2: %v after %v; output:\n%s", err, took, out)
	}
	t.Logf("2 ranks: %v", took)
	compareRuns(t, "2 ranks, ZeRO-3", two.Out, one.Out, 1e-5)
	// Parameters: half of the blocks, one gathered block, and the
	// embeddings and final norm whole; gradients and optimizer state as
	// ZeRO-2.
	checkMemory(t, "ZeRO-3", readMemory(t, two.Out), readMemory(t, one.Out), 0.6, 0.67, 0.51)
	if got, want := readMemory(t, two.Out).Params, zero3Params(t, init, 2); got < want || got > want+4*64 {
		t.Errorf("ZeRO-3: parameter bytes per rank %d, want %d (half of each block, one gathered block, the rest whole)", got, want)
	}

	// Resume the checkpoint at step 10 in other layouts.
	for _, tc := range []struct {
		name  string
		ranks int
		zero  int
	}{{"1 process", 1, 0}, {"2 ranks without ZeRO-3", 2, 0}, {"4 ranks with ZeRO-3", 4, 3}} {
		cfg := one
		if tc.ranks > 1 {
			cfg = two
			cfg.Batch, cfg.Zero = 4/tc.ranks, tc.zero
		}
		cfg.Out = filepath.Join(t.TempDir(), "resumed")
		atStep(t, two.Out, cfg.Out, 10)
		if tc.ranks == 1 {
			resumeLocal(t, cfg, cfg.Out, 10)
		} else {
			out, err, took := mpirunTrain(t, tc.ranks, cfg, 2*time.Minute)
			if err != nil {
				t.Fatalf("mpirun -np %d (resume): %v after %v; output:\n%s", tc.ranks, err, took, out)
			}
			if !strings.Contains(out, "step=10") {
				t.Errorf("%s did not resume at step 10; output:\n%s", tc.name, out)
			}
		}
		compareRuns(t, "2 ranks with ZeRO-3, resumed at step 10 by "+tc.name, cfg.Out, one.Out, 1e-5)
	}
}

// TestDistributedZero3MoE is TestDistributedZero3 for a MoE model: with
// the experts split over two ranks (the rest sharded by ZeRO-3), and on
// four ranks in two expert groups (each expert sharded over its group).
func TestDistributedZero3MoE(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	dataDir := corpus(t, 300_000)
	one := distConfig(dataDir, filepath.Join(t.TempDir(), "one"), "tiny-moe", 4)
	runLocal(t, one)
	two := distConfig(dataDir, filepath.Join(t.TempDir(), "two"), "tiny-moe", 2)
	two.Zero = 3
	out, err, took := mpirunTrain(t, 2, two, 2*time.Minute)
	if err != nil {
		t.Fatalf("mpirun -np 2: %v after %v; output:\n%s", err, took, out)
	}
	t.Logf("2 ranks: %v", took)
	compareRuns(t, "2 ranks, experts split, ZeRO-3", two.Out, one.Out, 1e-5)
	// ZeRO-2 holds 0.61 (dense 20% whole, half the experts).
	checkMemory(t, "expert parallel, ZeRO-3", readMemory(t, two.Out), readMemory(t, one.Out), 0.58, 0.66, 0.51)

	// Four ranks in two expert groups: each expert's parameters are
	// sharded over the two ranks holding it, gathered on their own
	// communicator.
	four := two
	four.Out, four.Batch, four.ExpertParallel = filepath.Join(t.TempDir(), "four"), 1, 2
	out, err, took = mpirunTrain(t, 4, four, 2*time.Minute)
	if err != nil {
		t.Fatalf("mpirun -np 4: %v after %v; output:\n%s", err, took, out)
	}
	t.Logf("4 ranks: %v", took)
	compareRuns(t, "4 ranks, 2 expert groups, ZeRO-3", four.Out, one.Out, 1e-5)
	// Per rank: a quarter of the optimizer state; the parameters of
	// four blocks, one of them gathered at a time, are less than ZeRO-2's
	// (its own experts' half and the rest whole: 0.6).
	got, ref := readMemory(t, four.Out), readMemory(t, one.Out)
	if r := float64(got.Optimizer) / float64(ref.Optimizer); r < 0.24 || r > 0.26 {
		t.Errorf("4 ranks, ZeRO-3: optimizer state per rank %.3f of one process's, want 0.25", r)
	}
	r := float64(got.Params) / float64(ref.Params)
	t.Logf("4 ranks, ZeRO-3: parameters per rank %d bytes (%.3f of one process's)", got.Params, r)
	if r > 0.45 {
		t.Errorf("4 ranks, ZeRO-3: parameters per rank %.3f of one process's, want at most 0.45", r)
	}
}

// atStep copies the run in from to dir as it was right after the
// checkpoint at step.
func atStep(t *testing.T, from, dir string, step int) {
	t.Helper()
	if err := os.CopyFS(dir, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest"), fmt.Appendf(nil, "checkpoints/step-%07d\n", step), 0o644); err != nil {
		t.Fatal(err)
	}
}

// zero3Params is the parameter memory one of n ranks needs with ZeRO-3 for
// the dense model in dir, up to chunk padding: its 1/n of every block, one
// block gathered, and the embeddings and final norm whole.
func zero3Params(t *testing.T, dir string, n int) int64 {
	t.Helper()
	m, err := model.Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var kept, blocks, largest int
	block := map[int]int{}
	for _, p := range m.Tensors {
		if u := unitOf(p.Name, m.Cfg.Layers); u >= 0 && u < m.Cfg.Layers {
			blocks += p.V.Len()
			block[u] += p.V.Len()
			largest = max(largest, block[u])
			continue
		}
		kept += p.V.Len()
	}
	return 4 * int64(kept+blocks/n+largest)
}

// checkParamShards checks a ZeRO-3 layout: every block shared with other
// ranks holds its chunk of the full values and no data until gathered; a
// gather (by a one-rank communicator that returns this rank's chunk in
// every place, enough for the layout) points the block's variables into
// the slot, the next gather releases them, and evict empties the slot.
func checkParamShards(t *testing.T, dp *dataParallel, m *model.Model, full []float32) {
	t.Helper()
	sharded := 0
	for _, b := range dp.buckets {
		if b.pshard == nil {
			if dp.shardsParams(b) {
				t.Fatalf("zero 3: bucket of block %d has no parameter chunk", b.first)
			}
			continue
		}
		sharded++
		got := make([]float32, len(full))
		want := make([]float32, len(full))
		b.unpackFull(got, b.pshard, b.lo, b.hi)
		b.packFull(b.shard, full, b.lo, b.hi) // scratch of the chunk's size
		b.unpackFull(want, b.shard, b.lo, b.hi)
		if !slices.Equal(got, want) {
			t.Fatalf("zero 3: block %d's chunk differs from the full parameters", b.first)
		}
		for _, v := range b.vars {
			if v.Data != nil {
				t.Fatalf("zero 3: block %d has parameter memory before a gather", b.first)
			}
		}
	}
	if sharded < dp.layers {
		t.Fatalf("zero 3: %d parameter-sharded buckets for %d blocks", sharded, dp.layers)
	}
	for _, bs := range dp.blocks {
		for _, b := range bs {
			b.gcomm = copyComm{size: b.size}
		}
	}
	for l := range 2 {
		if err := dp.gather(l); err != nil {
			t.Fatal(err)
		}
		for _, b := range dp.blocks[l] {
			if b.pslot.holder != b || &b.vars[0].Data[0] != &b.pslot.buf[0] {
				t.Fatalf("zero 3: block %d is not in its slot after a gather", l)
			}
			// The gathered values: this rank's chunk in every rank's place.
			for i, v := range b.vars {
				for j, x := range v.Data {
					if k := (b.pos[i] + j) % b.chunk; x != b.pshard[k] {
						t.Fatalf("zero 3: block %d gathered value %d of %d is %v, want %v", l, j, i, x, b.pshard[k])
					}
				}
			}
		}
	}
	for _, b := range dp.blocks[0] {
		if b.vars[0].Data != nil {
			t.Fatal("zero 3: block 0 keeps its memory after block 1 was gathered")
		}
	}
	dp.evict()
	for _, b := range dp.blocks[1] {
		if b.pslot.holder != nil || b.vars[0].Data != nil {
			t.Fatal("zero 3: block 1 still gathered after evict")
		}
	}
}

// copyComm all-gathers by repeating this rank's part.
type copyComm struct {
	dist.Comm
	size int
}

func (c copyComm) AllGather(send, recv []float32) error {
	for i := range c.size {
		copy(recv[i*len(send):], send)
	}
	return nil
}

// zero3Bytes is what a ZeRO-3 rank should hold in parameters: the whole
// ones, its chunks, and a slot per group.
func zero3Bytes(dp *dataParallel) int64 {
	n := int64(dp.kept)
	slot := map[*paramSlot]bool{}
	for _, bs := range dp.blocks {
		for _, b := range bs {
			n += int64(len(b.pshard))
			if !slot[b.pslot] {
				slot[b.pslot] = true
				n += int64(len(b.pslot.buf))
			}
		}
	}
	return 4 * n
}
