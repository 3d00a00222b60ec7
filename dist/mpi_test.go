//go:build (darwin || freebsd || linux || netbsd) && !android

package dist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	childModes["collectives"] = childCollectives
	childModes["kill"] = childKill
	childModes["hang"] = childHang
	childModes["bench"] = childBench
	childModes["abort"] = childAbort
	childModes["close-early"] = childCloseEarly
}

// mpirun runs this test binary under mpirun with np ranks in the given
// child mode and returns the combined output, the error and the time taken.
func mpirun(t *testing.T, np int, mode string, limit time.Duration, env ...string) (string, error, time.Duration) {
	t.Helper()
	path, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not on PATH (install openmpi-bin and libopenmpi-dev, or run scripts/deps.sh)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--allow-run-as-root", "--oversubscribe", "-np", strconv.Itoa(np), self)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	if os.Getenv(cmaEnv) == "" {
		// Containers often forbid the cross-process copies (CMA) Open MPI's
		// shared-memory transport uses for large messages.
		cmd.Env = append(cmd.Env, cmaEnv+"=none")
	}
	cmd.Env = append(cmd.Env, env...)
	// On timeout ask mpirun to tear the job down, then kill it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("mpirun -np %d (%s) still running after %v; output:\n%s", np, mode, limit, out.String())
	}
	return out.String(), err, took
}

const cmaEnv = "OMPI_MCA_btl_vader_single_copy_mechanism"

func TestMPICollectives(t *testing.T) {
	for _, np := range []int{2, 3} {
		t.Run(fmt.Sprintf("np%d", np), func(t *testing.T) {
			out, err, took := mpirun(t, np, "collectives", 60*time.Second)
			if err != nil {
				t.Fatalf("mpirun -np %d: %v after %v; output:\n%s", np, err, took, out)
			}
			for r := range np {
				if !strings.Contains(out, fmt.Sprintf("rank %d of %d: all collectives ok", r, np)) {
					t.Errorf("rank %d did not report success; output:\n%s", r, out)
				}
			}
			t.Logf("np=%d took %v", np, took)
		})
	}
}

func TestMPIRankKilled(t *testing.T) {
	// The survivor must not wait on the watchdog: mpirun itself ends the job.
	out, err, took := mpirun(t, 2, "kill", 45*time.Second, TimeoutEnv+"=5m")
	if err == nil {
		t.Fatalf("job with a killed rank exited 0 after %v; output:\n%s", took, out)
	}
	if strings.Contains(out, "collective returned after the peer died without error") {
		t.Fatalf("survivor's collective succeeded; output:\n%s", out)
	}
	t.Logf("job ended in %v with %v; output:\n%s", took, err, out)
}

func TestMPIAbort(t *testing.T) {
	out, err, took := mpirun(t, 2, "abort", 45*time.Second, TimeoutEnv+"=5m")
	if err == nil {
		t.Fatalf("job with an aborting rank exited 0 after %v; output:\n%s", took, out)
	}
	// Open MPI's own "MPI_ABORT was invoked" notice is not always printed
	// (its help relay races the teardown); the code and dist's log are.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("job ended with %v, want exit status 3 (the Abort code)", err)
	}
	if !strings.Contains(out, "aborting the MPI job") {
		t.Errorf("no abort message from rank 1; output:\n%s", out)
	}
	t.Logf("job ended in %v with %v", took, err)
}

func TestMPIWatchdog(t *testing.T) {
	tests := []struct{ mode, want string }{
		{"hang", "AllReduce on a communicator of 2 ranks did not complete within 2s"},
		{"close-early", "Finalize (Close) did not complete within 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			out, err, took := mpirun(t, 2, tt.mode, 45*time.Second, TimeoutEnv+"=2s")
			if err == nil {
				t.Fatalf("job exited 0 after %v; output:\n%s", took, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("no watchdog message %q; output:\n%s", tt.want, out)
			}
			t.Logf("job ended in %v with %v", took, err)
		})
	}
}

func TestLoadMPIMissing(t *testing.T) {
	_, err := loadMPI([]string{"/nonexistent/libmpi.so.40", "libmpi-does-not-exist.so.99"})
	if err == nil {
		t.Fatal("loadMPI of missing paths succeeded")
	}
	for _, want := range []string{"no MPI library found", "libmpi-does-not-exist.so.99", "apt-get install", LibraryEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoadMPIExplicit(t *testing.T) {
	t.Setenv(LibraryEnv, "/nonexistent/libmpi.so.40")
	paths := candidates(os.Getenv)
	if len(paths) != 1 {
		t.Fatalf("with $%s set, candidates = %v, want only it", LibraryEnv, paths)
	}
	_, err := loadMPI(paths)
	if err == nil || !strings.Contains(err.Error(), "cannot open the MPI library /nonexistent/libmpi.so.40") {
		t.Errorf("error %v does not name the explicit path", err)
	}
}

func TestLoadMPIBinds(t *testing.T) {
	lib, err := loadMPI(candidates(os.Getenv))
	if err != nil {
		t.Skipf("no MPI library here: %v", err)
	}
	if lib.impl.name != "Open MPI" {
		t.Logf("found %s at %s", lib.impl.name, lib.path)
	}
	if v := lib.version(); v == "" {
		t.Error("MPI_Get_library_version returned nothing")
	} else {
		t.Logf("%s: %s", lib.path, v)
	}
	if lib.commWorld == 0 || lib.float == 0 || lib.opSum == 0 {
		t.Error("handles not resolved")
	}
}

func TestCheckWorldSize(t *testing.T) {
	tests := []struct {
		env     map[string]string
		size    int
		wantErr string
	}{
		{map[string]string{}, 1, ""},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "4"}, 4, ""},
		{map[string]string{"SLURM_STEP_NUM_TASKS": "8"}, 1, "srun --mpi=pmix"},
		{map[string]string{"SLURM_STEP_NUM_TASKS": "8"}, 8, ""},
		{map[string]string{"PMI_SIZE": "2"}, 1, "world of 1"},
		// mpirun inside a Slurm allocation: the ranks see the daemons' step.
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "64", "SLURM_STEP_NUM_TASKS": "8"}, 64, ""},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "1", "SLURM_STEP_NUM_TASKS": "8"}, 1, ""},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "4"}, 1, "belongs to the MPI"},
	}
	for _, tt := range tests {
		err := checkWorldSize(tt.size, func(k string) string { return tt.env[k] })
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("env %v size %d: err %v, want %q", tt.env, tt.size, err, tt.wantErr)
		}
	}
}

// ---- child scenarios (run under mpirun) ----

func openWorld() (Comm, error) {
	c, err := Open("auto")
	if err != nil {
		return nil, err
	}
	want, _ := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_SIZE"))
	if _, ok := c.(*mpiComm); !ok || c.Size() != want {
		return nil, fmt.Errorf("Open(auto) gave %T of size %d, want an MPI world of %d", c, c.Size(), want)
	}
	if d, want := Describe(c), fmt.Sprintf("rank %d of %d", c.Rank(), want); !strings.HasPrefix(d, "mpi (Open MPI v") || !strings.HasSuffix(d, want) {
		return nil, fmt.Errorf("Describe = %q", d)
	}
	return c, nil
}

func childCollectives() error {
	c, err := openWorld()
	if err != nil {
		return err
	}
	rank, n := c.Rank(), c.Size()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("rank %d: "+format, append([]any{rank}, args...)...)
	}
	checks := []struct {
		name string
		f    func(Comm) error
	}{
		{"allreduce ops", checkAllReduceOps},
		{"allreduce bit-identical", checkAllReduceIdentical},
		{"allreduce float64", checkAllReduceFloat64},
		{"reduce-scatter", checkReduceScatterMPI},
		{"all-gather", checkAllGatherMPI},
		{"broadcast", checkBroadcastMPI},
		{"all-to-all-v", checkAllToAllVMPI},
		{"split", checkSplitMPI},
		{"concurrent communicators", checkConcurrentMPI},
		{"bad arguments", checkBadArgs},
		{"go panics still recover", checkGoSignals},
		{"barrier", func(c Comm) error { return c.Barrier() }},
	}
	for _, ch := range checks {
		t0 := time.Now()
		err := ch.f(c)
		if os.Getenv("MAI_DIST_TEST_TIMES") != "" {
			fmt.Printf("rank %d: %s %v\n", rank, ch.name, time.Since(t0))
		}
		if err != nil {
			return fail("%s: %w", ch.name, err)
		}
	}
	left, err := c.Split(0, rank) // outlives the world
	if err != nil {
		return fail("split: %w", err)
	}
	if err := c.Close(); err != nil {
		return fail("close: %w", err)
	}
	if err := left.Barrier(); !errors.Is(err, ErrClosed) {
		return fail("Barrier on a sub-communicator after the world closed: %v, want ErrClosed", err)
	}
	if err := left.Close(); err != nil {
		return fail("closing a sub-communicator after the world: %v", err)
	}
	if err := c.AllReduce([]float32{1}, Sum); !errors.Is(err, ErrClosed) {
		return fail("AllReduce after Close: %v, want ErrClosed", err)
	}
	if _, err := Open("mpi"); err == nil {
		return fail("Open after finalize succeeded")
	}
	fmt.Printf("rank %d of %d: all collectives ok\n", rank, n)
	return nil
}

func checkAllReduceOps(c Comm) error {
	rank, n := c.Rank(), c.Size()
	const m = 1000
	for _, op := range []Op{Sum, Avg, Max, Min} {
		buf := make([]float32, m)
		for i := range buf {
			buf[i] = float32((rank + 1) * i)
		}
		if err := c.AllReduce(buf, op); err != nil {
			return err
		}
		for i, got := range buf {
			var want float32
			switch op {
			case Sum:
				want = float32(i * n * (n + 1) / 2)
			case Avg:
				want = float32(i*n*(n+1)/2) / float32(n)
			case Max:
				want = float32(n * i)
			case Min:
				want = float32(i)
			}
			if got != want {
				return fmt.Errorf("%v: buf[%d]=%v, want %v", op, i, got, want)
			}
		}
	}
	// Zero length is a valid collective that every rank makes.
	return c.AllReduce(nil, Sum)
}

// checkAllReduceIdentical reduces values whose sum depends on the order
// of additions, then checks every rank holds the same bits as rank 0 and
// the result is close to a float64 reference.
func checkAllReduceIdentical(c Comm) error {
	rank, n := c.Rank(), c.Size()
	scale := [...]float64{1e-6, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6}
	for _, m := range []int{7, 1 << 16} { // 256 KiB takes the large-message algorithms
		gen := func(r int) []float32 {
			rng := rand.New(rand.NewPCG(uint64(r), 42))
			v := make([]float32, m)
			for i := range v {
				v[i] = float32((rng.Float64() - 0.5) * scale[rng.IntN(len(scale))])
			}
			return v
		}
		for _, op := range []Op{Sum, Avg} {
			buf := gen(rank)
			if err := c.AllReduce(buf, op); err != nil {
				return err
			}
			ref := make([]float64, m)
			mag := make([]float64, m) // sum of magnitudes bounds the rounding error
			for r := range n {
				for i, v := range gen(r) {
					ref[i] += float64(v)
					mag[i] += math.Abs(float64(v))
				}
			}
			for i := range ref {
				if op == Avg {
					ref[i] /= float64(n)
					mag[i] /= float64(n)
				}
				if d := math.Abs(float64(buf[i]) - ref[i]); d > float64(n)*0x1p-23*mag[i] {
					return fmt.Errorf("%v m=%d: buf[%d]=%v, float64 reference %v", op, m, i, buf[i], ref[i])
				}
			}
			root := make([]float32, m)
			copy(root, buf)
			if err := c.BroadcastFloat32(root, 0); err != nil {
				return err
			}
			for i := range buf {
				if math.Float32bits(buf[i]) != math.Float32bits(root[i]) {
					return fmt.Errorf("%v m=%d: element %d is %v here, %v on rank 0", op, m, i, buf[i], root[i])
				}
			}
		}
	}
	return nil
}

func checkAllReduceFloat64(c Comm) error {
	rank, n := c.Rank(), c.Size()
	buf := []float64{1e15 + float64(rank), -float64(rank), 0.5 * float64(rank)}
	if err := c.AllReduceFloat64(buf, Sum); err != nil {
		return err
	}
	tri := float64(n * (n - 1) / 2)
	want := []float64{1e15*float64(n) + tri, -tri, 0.5 * tri}
	for i := range want {
		if buf[i] != want[i] {
			return fmt.Errorf("sum[%d]=%v, want %v", i, buf[i], want[i])
		}
	}
	buf = []float64{float64(rank), -float64(rank)}
	if err := c.AllReduceFloat64(buf, Max); err != nil {
		return err
	}
	if buf[0] != float64(n-1) || buf[1] != 0 {
		return fmt.Errorf("max=%v, want [%d 0]", buf, n-1)
	}
	buf = []float64{float64(rank)}
	if err := c.AllReduceFloat64(buf, Avg); err != nil {
		return err
	}
	if buf[0] != float64(n-1)/2 {
		return fmt.Errorf("avg=%v, want %v", buf[0], float64(n-1)/2)
	}
	return nil
}

func checkReduceScatterMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	const m = 5
	for _, op := range []Op{Sum, Avg, Max} {
		send := make([]float32, n*m)
		for j := range send {
			send[j] = float32(rank*1000 + j)
		}
		recv := make([]float32, m)
		if err := c.ReduceScatter(send, recv, op); err != nil {
			return err
		}
		for k, got := range recv {
			j := rank*m + k
			var want float32
			switch op {
			case Sum:
				want = float32(1000*n*(n-1)/2 + n*j)
			case Avg:
				want = float32(1000*n*(n-1)/2+n*j) / float32(n)
			case Max:
				want = float32(1000*(n-1) + j)
			}
			if got != want {
				return fmt.Errorf("%v: recv[%d]=%v, want %v", op, k, got, want)
			}
		}
	}
	return nil
}

func checkAllGatherMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	const m = 4
	send := make([]float32, m)
	for k := range send {
		send[k] = float32(rank*10 + k)
	}
	check := func(recv []float32) error {
		for j, got := range recv {
			if want := float32((j/m)*10 + j%m); got != want {
				return fmt.Errorf("recv[%d]=%v, want %v", j, got, want)
			}
		}
		return nil
	}
	recv := make([]float32, n*m)
	if err := c.AllGather(send, recv); err != nil {
		return err
	}
	if err := check(recv); err != nil {
		return err
	}
	// In place: send is this rank's own block of recv.
	recv = make([]float32, n*m)
	copy(recv[rank*m:], send)
	if err := c.AllGather(recv[rank*m:(rank+1)*m], recv); err != nil {
		return fmt.Errorf("in place: %w", err)
	}
	return check(recv)
}

func checkBroadcastMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	root := n - 1
	buf := make([]byte, 300)
	if rank == root {
		for i := range buf {
			buf[i] = byte(i * 7)
		}
	}
	if err := c.Broadcast(buf, root); err != nil {
		return err
	}
	for i, b := range buf {
		if b != byte(i*7) {
			return fmt.Errorf("byte %d = %d, want %d", i, b, byte(i*7))
		}
	}
	f := []float32{float32(rank), float32(rank) + 0.5}
	if err := c.BroadcastFloat32(f, 0); err != nil {
		return err
	}
	if f[0] != 0 || f[1] != 0.5 {
		return fmt.Errorf("BroadcastFloat32 from 0 gave %v", f)
	}
	return nil
}

// checkAllToAllVMPI: rank r sends r+i+1 elements valued r*100+i*10+k to
// rank i, so it receives j+r+1 elements from rank j.
func checkAllToAllVMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	sendCounts := make([]int, n)
	recvCounts := make([]int, n)
	var send []float32
	for i := range n {
		sendCounts[i] = rank + i + 1
		recvCounts[i] = i + rank + 1
		for k := range sendCounts[i] {
			send = append(send, float32(rank*100+i*10+k))
		}
	}
	total := 0
	for _, v := range recvCounts {
		total += v
	}
	recv := make([]float32, total+3) // spare room stays untouched
	for i := range recv {
		recv[i] = -1
	}
	if err := c.AllToAllV(send, sendCounts, recv, recvCounts); err != nil {
		return err
	}
	off := 0
	for j := range n {
		for k := range recvCounts[j] {
			if want := float32(j*100 + rank*10 + k); recv[off] != want {
				return fmt.Errorf("from rank %d element %d = %v, want %v", j, k, recv[off], want)
			}
			off++
		}
	}
	for _, v := range recv[off:] {
		if v != -1 {
			return fmt.Errorf("spare room written: %v", recv[off:])
		}
	}
	return nil
}

// checkSplitMPI splits by parity with reversed keys, so sub-ranks run
// opposite to world ranks, and reduces within each half.
func checkSplitMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	color := rank % 2
	sub, err := c.Split(color, -rank)
	if err != nil {
		return err
	}
	var members []int
	for r := range n {
		if r%2 == color {
			members = append(members, r)
		}
	}
	if sub.Size() != len(members) {
		return fmt.Errorf("sub size %d, want %d", sub.Size(), len(members))
	}
	wantRank := 0
	for _, r := range members {
		if r > rank {
			wantRank++
		}
	}
	if sub.Rank() != wantRank {
		return fmt.Errorf("sub rank %d, want %d (keys reversed)", sub.Rank(), wantRank)
	}
	buf := []float32{float32(rank)}
	if err := sub.AllReduce(buf, Sum); err != nil {
		return err
	}
	sum := 0
	for _, r := range members {
		sum += r
	}
	if buf[0] != float32(sum) {
		return fmt.Errorf("sub sum %v, want %d", buf[0], sum)
	}
	// A sub-communicator of one: every rank alone.
	solo, err := c.Split(rank, 0)
	if err != nil {
		return err
	}
	if solo.Size() != 1 || solo.Rank() != 0 {
		return fmt.Errorf("solo split size %d rank %d", solo.Size(), solo.Rank())
	}
	if err := solo.Close(); err != nil {
		return err
	}
	if err := sub.Close(); err != nil {
		return err
	}
	if err := sub.Barrier(); !errors.Is(err, ErrClosed) {
		return fmt.Errorf("Barrier on closed sub: %v, want ErrClosed", err)
	}
	if _, err := c.Split(-1, 0); err == nil {
		return fmt.Errorf("Split(-1) succeeded")
	}
	return nil
}

// checkConcurrentMPI runs collectives on two communicators of the same
// ranks from two goroutines at once (MPI_THREAD_MULTIPLE), as a trainer
// overlapping data-parallel all-reduce with expert all-to-all does.
func checkConcurrentMPI(c Comm) error {
	rank, n := c.Rank(), c.Size()
	var comms [2]Comm
	for i := range comms {
		sub, err := c.Split(0, rank)
		if err != nil {
			return err
		}
		defer sub.Close()
		comms[i] = sub
	}
	errs := make(chan error, len(comms))
	for i, sub := range comms {
		go func() {
			for iter := range 50 {
				buf := make([]float32, 1000)
				for k := range buf {
					buf[k] = float32(i*1000 + iter + rank)
				}
				if err := sub.AllReduce(buf, Sum); err != nil {
					errs <- err
					return
				}
				if want := float32(n*(i*1000+iter) + n*(n-1)/2); buf[0] != want || buf[999] != want {
					errs <- fmt.Errorf("comm %d iteration %d: got %v, want %v", i, iter, buf[0], want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range comms {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// checkBadArgs: every rank makes the same bad calls, which fail before
// reaching MPI, so the collective sequence stays aligned.
func checkBadArgs(c Comm) error {
	n := c.Size()
	bad := map[string]error{
		"reduce-scatter len": c.ReduceScatter(make([]float32, n*3+1), make([]float32, 3), Sum),
		"all-gather len":     c.AllGather(make([]float32, 2), make([]float32, 2*n+1)),
		"root":               c.Broadcast(make([]byte, 1), n),
		"op":                 c.AllReduce(make([]float32, 1), Op(99)),
		"counts len":         c.AllToAllV(nil, make([]int, n+1), nil, make([]int, n)),
		"counts overflow":    c.AllToAllV(make([]float32, 1), make([]int, n), make([]float32, 1), append(make([]int, n-1), 5)),
	}
	for name, err := range bad {
		if err == nil {
			return fmt.Errorf("%s: no error", name)
		}
	}
	return nil
}

// checkGoSignals: Open MPI installs signal handlers; Go's own SIGSEGV
// handling (nil dereference -> panic) must still work after MPI_Init.
func checkGoSignals(Comm) (err error) {
	defer func() {
		if r := recover(); r == nil {
			err = fmt.Errorf("nil dereference did not panic")
		}
	}()
	var p *int
	sink = *p
	return nil
}

var sink int

func childKill() error {
	c, err := openWorld()
	if err != nil {
		return err
	}
	buf := []float32{1}
	if err := c.AllReduce(buf, Sum); err != nil {
		return err
	}
	if c.Rank() == 1 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	time.Sleep(200 * time.Millisecond)
	if err := c.AllReduce(buf, Sum); err != nil {
		return fmt.Errorf("collective after the peer died: %w", err)
	}
	fmt.Println("collective returned after the peer died without error")
	return nil
}

func childAbort() error {
	c, err := openWorld()
	if err != nil {
		return err
	}
	buf := []float32{1}
	if err := c.AllReduce(buf, Sum); err != nil {
		return err
	}
	if c.Rank() == 1 {
		Abort(c, 3)
		return fmt.Errorf("Abort returned in a job of %d ranks", c.Size())
	}
	if err := c.AllReduce(buf, Sum); err != nil {
		return fmt.Errorf("collective with an aborted peer: %w", err)
	}
	return fmt.Errorf("collective with an aborted peer returned")
}

// childCloseEarly: rank 1 closes (finalizes) while rank 0 waits in a
// collective, the trap of a deferred Close on an error path.
func childCloseEarly() error {
	if os.Getenv("OMPI_COMM_WORLD_RANK") == "0" {
		// Rank 1's watchdog, in MPI_Finalize, must fire first.
		os.Setenv(TimeoutEnv, "30s")
	}
	c, err := openWorld()
	if err != nil {
		return err
	}
	if c.Rank() == 1 {
		return c.Close()
	}
	buf := []float32{1}
	if err := c.AllReduce(buf, Sum); err != nil {
		return fmt.Errorf("collective with a finalized peer: %w", err)
	}
	return fmt.Errorf("collective with a finalized peer returned")
}

func childHang() error {
	c, err := openWorld()
	if err != nil {
		return err
	}
	buf := []float32{1}
	if err := c.AllReduce(buf, Sum); err != nil {
		return err
	}
	if c.Rank() == 1 {
		time.Sleep(2 * time.Minute)
		return nil
	}
	if err := c.AllReduce(buf, Sum); err != nil {
		return fmt.Errorf("collective with a hung peer: %w", err)
	}
	return fmt.Errorf("collective with a hung peer returned")
}

// BenchmarkMPIAllReduce launches a 2-rank job that times AllReduce(Sum)
// at several sizes and reports rank 0's figures: the time per call and the
// bus bandwidth, 2(n-1)/n times the bytes per call over the time.
func BenchmarkMPIAllReduce(b *testing.B) {
	path, err := exec.LookPath("mpirun")
	if err != nil {
		b.Skip("mpirun is not on PATH")
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		cmd := exec.Command(path, "--allow-run-as-root", "--oversubscribe", "-np", "2", self)
		cmd.Env = append(os.Environ(), childEnv+"=bench")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			var elems int
			var us, busbw float64
			if _, err := fmt.Sscanf(line, "allreduce elems=%d us=%g busbw_GBps=%g", &elems, &us, &busbw); err == nil {
				b.ReportMetric(us, fmt.Sprintf("us/op-%dB", 4*elems))
				if elems >= 1<<16 {
					b.ReportMetric(busbw, fmt.Sprintf("GB/s-%dB", 4*elems))
				}
			}
		}
	}
}

func childBench() error {
	c, err := openWorld()
	if err != nil {
		return err
	}
	defer c.Close()
	n := c.Size()
	for _, elems := range []int{1, 1 << 10, 1 << 16, 1 << 20} {
		buf := make([]float32, elems)
		iters := max(5, min(2000, (64<<20)/(4*elems)))
		for range 3 { // warm up
			if err := c.AllReduce(buf, Sum); err != nil {
				return err
			}
		}
		if err := c.Barrier(); err != nil {
			return err
		}
		t0 := time.Now()
		for range iters {
			if err := c.AllReduce(buf, Sum); err != nil {
				return err
			}
		}
		per := time.Since(t0).Seconds() / float64(iters)
		busbw := float64(4*elems) * 2 * float64(n-1) / float64(n) / per / 1e9
		if c.Rank() == 0 {
			fmt.Printf("allreduce elems=%d us=%.2f busbw_GBps=%.3f\n", elems, per*1e6, busbw)
		}
	}
	return nil
}
