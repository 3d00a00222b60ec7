// Package dist is how MAI talks across processes: a Comm gives the trainer
// collectives (all-reduce, reduce-scatter, all-gather, broadcast, all-to-all)
// over host memory, whatever launched the job.
//
// Three kinds exist:
//
//   - "local": one process, size 1; every collective is a copy or a no-op.
//   - "mpi": Open MPI (or, by table, MPICH) opened at run time through
//     purego, with no cgo; the job is launched by mpirun or srun.
//   - "nccl": reserved for GPU collectives; it returns an error until an
//     implementation registers itself with [Register].
//
// The model never asks how many ranks there are: only the trainer holds a
// Comm. All ranks of a communicator must call the same collectives in the
// same order with matching sizes; a Comm's methods must not be called from
// several goroutines at once (use [Comm.Split] for independent streams of
// collectives).
package dist

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Comm is a communicator: a fixed group of ranks that run collectives
// together. Buffers are host memory. Every rank of the group must make the
// same sequence of calls with matching arguments.
type Comm interface {
	// Rank is this process's index in the group, in [0, Size()).
	Rank() int
	// Size is the number of ranks in the group.
	Size() int
	// AllReduce reduces buf element-wise over all ranks, in place. Every rank
	// ends with bit-identical contents.
	AllReduce(buf []float32, op Op) error
	// AllReduceFloat64 is AllReduce for float64 values.
	AllReduceFloat64(buf []float64, op Op) error
	// ReduceScatter reduces send element-wise over all ranks and leaves
	// block Rank() of the result in recv; len(send) == Size()*len(recv).
	ReduceScatter(send, recv []float32, op Op) error
	// AllGather concatenates every rank's send, in rank order, into recv;
	// len(recv) == Size()*len(send). send may be recv's own block.
	AllGather(send, recv []float32) error
	// Broadcast copies root's buf into buf on every rank.
	Broadcast(buf []byte, root int) error
	// BroadcastFloat32 copies root's buf into buf on every rank.
	BroadcastFloat32(buf []float32, root int) error
	// AllToAllV sends send[off_i : off_i+sendCounts[i]] to rank i, where
	// off_i is the sum of the earlier counts, and receives recvCounts[j]
	// elements from rank j into recv in rank order. Both count slices have
	// Size() entries; recvCounts[j] must equal rank j's sendCounts[Rank()].
	AllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int) error
	// Barrier returns once every rank of the group has entered it.
	Barrier() error
	// Split partitions the group: ranks passing the same color form a new
	// communicator, ordered by key, then by rank here. color must be >= 0.
	// Split is collective: every rank of the group must call it.
	Split(color, key int) (Comm, error)
	// Close releases the communicator. Closing the world communicator of
	// an MPI job finalizes MPI, which waits for every rank to close it: on
	// an error path call Abort instead, or the peers wait until the
	// watchdog's limit.
	Close() error
}

// Op is a reduction operator.
type Op int

// The reduction operators. Avg is Sum divided by Size().
const (
	Sum Op = iota
	Avg
	Max
	Min
)

// String returns the operator's name.
func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	case Max:
		return "max"
	case Min:
		return "min"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

func (o Op) valid() bool { return o >= Sum && o <= Min }

// ErrClosed is returned by a Comm used after Close.
var ErrClosed = errors.New("dist: communicator is closed")

// ErrNotImplemented is returned when a kind has no implementation in this
// binary yet.
var ErrNotImplemented = errors.New("dist: not implemented")

// Options tunes Open. The zero value gives the defaults.
type Options struct {
	// Timeout bounds how long one collective may block before the job is
	// aborted (a peer has died or stopped). Zero means the value of
	// $MAI_DIST_TIMEOUT (a Go duration such as "90s"), else DefaultTimeout.
	// Negative disables the watchdog.
	Timeout time.Duration
}

// DefaultTimeout is the collective watchdog's default limit.
const DefaultTimeout = 10 * time.Minute

// TimeoutEnv names the environment variable that sets the watchdog limit.
const TimeoutEnv = "MAI_DIST_TIMEOUT"

func (o Options) timeout() (time.Duration, error) {
	if o.Timeout != 0 {
		return o.Timeout, nil
	}
	s := os.Getenv(TimeoutEnv)
	if s == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if n, err2 := strconv.Atoi(s); err2 == nil {
			return time.Duration(n) * time.Second, nil
		}
		return 0, fmt.Errorf("dist: $%s=%q is not a duration such as 90s or 10m", TimeoutEnv, s)
	}
	return d, nil
}

// Opener opens a communicator of one kind.
type Opener func(Options) (Comm, error)

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Opener{
		"local": func(Options) (Comm, error) { return Local(), nil },
		"mpi":   openMPI,
		"nccl":  openNCCLUnavailable,
	}
)

// Register makes a kind of communicator available to Open, replacing any
// earlier one of that name. An NCCL implementation living in a subpackage
// registers itself as "nccl" from its init function.
func Register(kind string, open Opener) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	kinds[kind] = open
}

// Kinds lists the kinds Open accepts, sorted, besides "auto".
func Kinds() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Abort ends the whole job after a fatal error on this rank: for an MPI
// communicator it calls MPI_Abort, which makes the launcher kill every
// rank (so peers blocked in a collective do not wait for the watchdog),
// and does not return. In a job of one process it returns and the caller
// reports the error as usual. A trainer does
//
//	defer func() {
//		if err != nil {
//			dist.Abort(comm, 1)
//		}
//		comm.Close()
//	}()
func Abort(c Comm, code int) {
	if a, ok := c.(interface{ abort(int) }); ok {
		a.abort(code)
	}
}

// Describe names c's kind and position for logs, such as
// "mpi (Open MPI v4.1.4), rank 3 of 8" or "local".
func Describe(c Comm) string {
	if d, ok := c.(interface{ describe() string }); ok {
		return d.describe()
	}
	if _, ok := c.(*local); ok {
		return "local"
	}
	return fmt.Sprintf("%T, rank %d of %d", c, c.Rank(), c.Size())
}

// Open returns the communicator of the given kind: "auto" (or "") picks
// "mpi" when the process was started by an MPI launcher (mpirun, mpiexec,
// srun) and "local" otherwise; "local", "mpi" and "nccl" name a kind.
func Open(kind string) (Comm, error) {
	return OpenWith(kind, Options{})
}

// OpenWith is Open with options.
func OpenWith(kind string, opts Options) (Comm, error) {
	if kind == "" || kind == "auto" {
		kind = "local"
		if launcher := DetectLauncher(os.Getenv); launcher != "" {
			kind = "mpi"
		}
	}
	kindsMu.RLock()
	open, ok := kinds[kind]
	kindsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("dist: unknown communicator kind %q (want auto, %s)", kind, strings.Join(Kinds(), ", "))
	}
	return open(opts)
}

// launcherVars are environment variables set by MPI launchers in every
// process they start, with the launcher they reveal.
var launcherVars = []struct{ name, launcher string }{
	{"OMPI_COMM_WORLD_SIZE", "Open MPI mpirun"},
	{"PMIX_RANK", "PMIx (srun --mpi=pmix, prterun)"},
	{"PMI_SIZE", "PMI (MPICH hydra, srun --mpi=pmi2)"},
	{"PMI_RANK", "PMI (MPICH hydra)"},
	{"MPI_LOCALNRANKS", "MPICH hydra"},
}

// DetectLauncher reports which MPI launcher started this process, judging
// by the environment read through getenv, or "" when none did. A Slurm
// step of more than one task counts as launched, so that srun without an
// MPI plugin fails loudly instead of training N independent copies.
func DetectLauncher(getenv func(string) string) string {
	for _, v := range launcherVars {
		if getenv(v.name) != "" {
			return v.launcher
		}
	}
	if n, err := strconv.Atoi(getenv("SLURM_STEP_NUM_TASKS")); err == nil && n > 1 {
		return "Slurm srun"
	}
	return ""
}
