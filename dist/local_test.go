package dist

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLocalCollectives(t *testing.T) {
	c := Local()
	if c.Rank() != 0 || c.Size() != 1 {
		t.Fatalf("Local rank %d size %d", c.Rank(), c.Size())
	}
	if d := Describe(c); d != "local" {
		t.Errorf("Describe(Local()) = %q", d)
	}
	for _, op := range []Op{Sum, Avg, Max, Min} {
		buf := []float32{1.5, -2, 3}
		if err := c.AllReduce(buf, op); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(buf, []float32{1.5, -2, 3}) {
			t.Errorf("AllReduce %v changed buf: %v", op, buf)
		}
		b64 := []float64{1e300, -1}
		if err := c.AllReduceFloat64(b64, op); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b64, []float64{1e300, -1}) {
			t.Errorf("AllReduceFloat64 %v changed buf: %v", op, b64)
		}
		recv := make([]float32, 3)
		if err := c.ReduceScatter([]float32{4, 5, 6}, recv, op); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(recv, []float32{4, 5, 6}) {
			t.Errorf("ReduceScatter %v: %v", op, recv)
		}
	}
	recv := make([]float32, 2)
	if err := c.AllGather([]float32{7, 8}, recv); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recv, []float32{7, 8}) {
		t.Errorf("AllGather: %v", recv)
	}
	if err := c.AllGather(recv, recv); err != nil {
		t.Errorf("in-place AllGather: %v", err)
	}
	b := []byte("hello")
	if err := c.Broadcast(b, 0); err != nil || string(b) != "hello" {
		t.Errorf("Broadcast: %q, %v", b, err)
	}
	f := []float32{1, 2}
	if err := c.BroadcastFloat32(f, 0); err != nil || !slices.Equal(f, []float32{1, 2}) {
		t.Errorf("BroadcastFloat32: %v, %v", f, err)
	}
	out := []float32{-1, -1, -1, -1}
	if err := c.AllToAllV([]float32{1, 2, 3}, []int{3}, out, []int{3}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []float32{1, 2, 3, -1}) {
		t.Errorf("AllToAllV: %v", out)
	}
	if err := c.Barrier(); err != nil {
		t.Error(err)
	}
	sub, err := c.Split(3, 7)
	if err != nil || sub.Rank() != 0 || sub.Size() != 1 {
		t.Fatalf("Split: %v, %v", sub, err)
	}
	if err := sub.Close(); err != nil {
		t.Error(err)
	}
	if err := sub.Barrier(); !errors.Is(err, ErrClosed) {
		t.Errorf("Barrier after Close: %v, want ErrClosed", err)
	}
	if err := c.Barrier(); err != nil {
		t.Errorf("closing a sub-communicator closed its parent: %v", err)
	}
	Abort(c, 1) // returns for one process
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.AllReduce([]float32{1}, Sum); !errors.Is(err, ErrClosed) {
		t.Errorf("AllReduce after Close: %v, want ErrClosed", err)
	}
}

func TestLocalBadArguments(t *testing.T) {
	c := Local()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"op", c.AllReduce(nil, Op(9)), "unknown reduction"},
		{"op64", c.AllReduceFloat64(nil, Op(-1)), "unknown reduction"},
		{"reduce-scatter len", c.ReduceScatter(make([]float32, 4), make([]float32, 3), Sum), "len(send)=4"},
		{"reduce-scatter overlap", func() error { b := make([]float32, 4); return c.ReduceScatter(b, b, Sum) }(), "overlap"},
		{"all-gather len", c.AllGather(make([]float32, 2), make([]float32, 3)), "len(recv)=3"},
		{"all-gather overlap", func() error { b := make([]float32, 3); return c.AllGather(b[1:], b[:2]) }(), "overlaps"},
		{"broadcast root", c.Broadcast(nil, 1), "root 1 out of range"},
		{"broadcast negative root", c.BroadcastFloat32(nil, -1), "root -1"},
		{"alltoallv counts", c.AllToAllV(nil, []int{0, 0}, nil, []int{0}), "len(sendCounts)=2"},
		{"alltoallv negative", c.AllToAllV(nil, []int{-1}, nil, []int{0}), "negative"},
		{"alltoallv capacity", c.AllToAllV(make([]float32, 2), []int{3}, make([]float32, 3), []int{3}), "buffer holds 2"},
		{"alltoallv mismatch", c.AllToAllV(make([]float32, 2), []int{2}, make([]float32, 3), []int{3}), "expects 3"},
		{"split color", func() error { _, err := c.Split(-1, 0); return err }(), "color -1"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, tt.err, tt.want)
		}
	}
}

func TestOpen(t *testing.T) {
	for _, v := range launcherVars {
		t.Setenv(v.name, "")
	}
	t.Setenv("SLURM_STEP_NUM_TASKS", "")
	tests := []struct {
		kind    string
		wantErr string
	}{
		{"", ""},
		{"auto", ""},
		{"local", ""},
		{"nccl", "not implemented"},
		{"gloo", `unknown communicator kind "gloo"`},
	}
	for _, tt := range tests {
		c, err := Open(tt.kind)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open(%q): %v, want error containing %q", tt.kind, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tt.kind, err)
			continue
		}
		if _, ok := c.(*local); !ok {
			t.Errorf("Open(%q) = %T, want local", tt.kind, c)
		}
		c.Close()
	}
	if _, err := Open("nccl"); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Open(nccl): %v, want ErrNotImplemented", err)
	}
	if got := Kinds(); !slices.Equal(got, []string{"local", "mpi", "nccl"}) {
		t.Errorf("Kinds() = %v", got)
	}
}

func TestDetectLauncher(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI mpirun"},
		{map[string]string{"PMIX_RANK": "0"}, "PMIx (srun --mpi=pmix, prterun)"},
		{map[string]string{"PMI_SIZE": "4"}, "PMI (MPICH hydra, srun --mpi=pmi2)"},
		{map[string]string{"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, ""},
		{map[string]string{"SLURM_STEP_NUM_TASKS": "16"}, "Slurm srun"},
	}
	for _, tt := range tests {
		if got := DetectLauncher(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("DetectLauncher(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestOptionsTimeout(t *testing.T) {
	tests := []struct {
		opt     Options
		env     string
		want    time.Duration
		wantErr bool
	}{
		{Options{}, "", DefaultTimeout, false},
		{Options{}, "90s", 90 * time.Second, false},
		{Options{}, "30", 30 * time.Second, false},
		{Options{}, "soon", 0, true},
		{Options{Timeout: time.Minute}, "90s", time.Minute, false},
		{Options{Timeout: -1}, "", -1, false},
	}
	for _, tt := range tests {
		t.Setenv(TimeoutEnv, tt.env)
		got, err := tt.opt.timeout()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%+v with $%s=%q: %v, %v; want %v", tt.opt, TimeoutEnv, tt.env, got, err, tt.want)
		}
	}
}

func TestRegister(t *testing.T) {
	Register("test-kind", func(Options) (Comm, error) { return Local(), nil })
	t.Cleanup(func() {
		kindsMu.Lock()
		delete(kinds, "test-kind")
		kindsMu.Unlock()
	})
	c, err := Open("test-kind")
	if err != nil || c.Size() != 1 {
		t.Fatalf("Open(test-kind): %v, %v", c, err)
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{Sum: "sum", Avg: "avg", Max: "max", Min: "min", Op(7): "Op(7)"} {
		if got := op.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(op), got, want)
		}
	}
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1\n": 2, "0-63,128-191": 128, "0,2,4-5": 4, "": 0, "x": 0, "3-1": 0} {
		if got := countCPUList(in); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestBindingHint(t *testing.T) {
	tests := []struct {
		env     map[string]string
		allowed int
		online  string
		warn    bool
	}{
		{map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 1, "0-1", false},
		{map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "1"}, 1, "0-63", true},
		{map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "8"}, 8, "0-63", false},
		{map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 1, "0-15", true},
		{map[string]string{}, 1, "0-63", false},
		{map[string]string{"SLURM_NTASKS_PER_NODE": "4"}, 2, "0-31", true},
	}
	for _, tt := range tests {
		got := bindingHint(func(k string) string { return tt.env[k] }, tt.allowed, tt.online)
		if (got != "") != tt.warn {
			t.Errorf("bindingHint(%v, %d, %q) = %q, want warning %v", tt.env, tt.allowed, tt.online, got, tt.warn)
		}
	}
}

func FuzzCountCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-1\n", "0-63,128-191", "", "x", "3-1", "1-", ",", "0-9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := countCPUList(s); n < 0 || n > 1<<20*(strings.Count(s, ",")+1) {
			t.Errorf("countCPUList(%q) = %d", s, n)
		}
	})
}
