//go:build (darwin || freebsd || linux || netbsd) && !android

package dist

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// openMPI initializes MPI on first use and returns the world communicator.
func openMPI(opts Options) (Comm, error) {
	timeout, err := opts.timeout()
	if err != nil {
		return nil, err
	}
	st := &mpiState
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finalized.Load() {
		return nil, fmt.Errorf("dist: MPI was already finalized in this process and cannot be opened again")
	}
	if st.lib == nil {
		if err := initMPI(timeout); err != nil {
			return nil, err
		}
	}
	st.refs++
	c, err := newMPIComm(st.lib, st.lib.commWorld, true, &st.worldMu)
	if err == nil {
		err = checkWorldSize(c.size, os.Getenv)
	}
	if err != nil {
		st.refs--
		if st.refs == 0 {
			finalizeLocked()
		}
		return nil, err
	}
	return c, nil
}

// initMPI loads the library and calls MPI_Init_thread; st.mu is held.
func initMPI(timeout time.Duration) error {
	st := &mpiState
	lib, err := loadMPI(candidates(os.Getenv))
	if err != nil {
		return err
	}
	own := startOwner()
	var rc, provided int32
	own.do(func() {
		var already int32
		if lib.call(lib.initialized, uintptr(unsafe.Pointer(&already))) == mpiSuccess && already != 0 {
			rc = -1
			return
		}
		rc = lib.call(lib.initThread, 0, 0, mpiThreadMultiple, uintptr(unsafe.Pointer(&provided)))
	})
	if rc == -1 {
		own.stop()
		return fmt.Errorf("dist: MPI was initialized outside package dist; cannot take it over")
	}
	if err := lib.check("MPI_Init_thread", rc); err != nil {
		own.stop()
		return fmt.Errorf("%w (library %s)", err, lib.path)
	}
	// Failures come back as error codes instead of aborting inside MPI.
	own.do(func() { rc = lib.call(lib.commSetErrhandler, lib.commWorld, lib.errReturn) })
	if err := lib.check("MPI_Comm_set_errhandler", rc); err != nil {
		own.stop()
		return err
	}
	st.lib, st.owner, st.threads = lib, own, provided
	if provided < mpiThreadMultiple {
		logger().Warn("MPI lacks MPI_THREAD_MULTIPLE; all MPI calls are serialized", "provided", provided, "library", lib.path)
	}
	var worldRank, worldSize int32
	st.run(func() {
		lib.call(lib.commRank, lib.commWorld, uintptr(unsafe.Pointer(&worldRank)))
		lib.call(lib.commSize, lib.commWorld, uintptr(unsafe.Pointer(&worldSize)))
	})
	st.worldSize = int(worldSize)
	if timeout > 0 {
		st.dog = startWatchdog(lib, timeout, int(worldRank), int(worldSize))
	}
	if hint := bindingHint(os.Getenv, runtime.NumCPU(), onlineCPUs()); hint != "" && worldRank == 0 {
		logger().Warn(hint)
	}
	logger().Debug("MPI initialized", "impl", lib.impl.name, "version", lib.version(), "path", lib.path,
		"rank", worldRank, "size", worldSize, "threads", provided, "timeout", timeout)
	return nil
}

// checkWorldSize catches a launcher that started several processes which
// did not join one MPI job (srun without an MPI plugin, a libmpi that does
// not match the launcher): each would initialize alone and train alone.
// Only the launcher's own variable counts: under mpirun in a Slurm
// allocation, the Slurm step seen by the ranks is mpirun's daemons.
func checkWorldSize(size int, getenv func(string) string) error {
	if size != 1 {
		return nil
	}
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"} {
		s := getenv(v)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 1 {
			return nil
		}
		hint := "check that the libmpi this process loaded belongs to the MPI whose launcher started it ($" + LibraryEnv + " selects one)"
		if v == "SLURM_STEP_NUM_TASKS" {
			hint = "launch with srun --mpi=pmix (or --mpi=pmi2) so the tasks join one MPI job"
		}
		return fmt.Errorf("dist: the launcher started %d processes ($%s) but MPI sees a world of %d: %s", n, v, size, hint)
	}
	return nil
}

// run executes f as MPI's thread level requires: directly when MPI is
// thread-safe enough, on the initializing thread when it is funneled.
func (st *mpiStateT) run(f func()) {
	if st.threads >= mpiThreadSerial {
		f()
		return
	}
	st.owner.do(f)
}

// finalizeLocked finalizes MPI on the thread that initialized it; st.mu
// is held.
func finalizeLocked() error {
	st := &mpiState
	// MPI_Finalize waits for every rank: a rank that closes after an error
	// while its peers wait in a collective would hang here, so the
	// watchdog times it like a collective.
	s := &slot{size: -1}
	if st.dog != nil {
		st.dog.add(s)
	}
	var rc int32
	s.begin(opFinalize)
	st.owner.do(func() { rc = st.lib.call(st.lib.finalize) })
	s.end()
	if st.dog != nil {
		st.dog.stop()
		st.dog = nil
	}
	st.owner.stop()
	st.finalized.Store(true)
	return st.lib.check("MPI_Finalize", rc)
}

// abort ends the whole job with code and does not return, unless the
// job has a single rank.
func (c *mpiComm) abort(code int) {
	if mpiState.worldSize <= 1 {
		return
	}
	logger().Error("aborting the MPI job", "rank", c.rank, "code", code)
	c.lib.call(c.lib.abort, c.lib.commWorld, uintptr(code))
	os.Exit(code)
}

// mpiComm is a communicator of an MPI job.
type mpiComm struct {
	lib        *mpiLib
	h          uintptr // the MPI_Comm handle
	world      bool
	rank, size int
	// mu orders this communicator's calls; when MPI is not fully
	// thread-safe it is the process-wide lock instead.
	mu     *sync.Mutex
	closed bool
	slot   *slot
}

// newMPIComm wraps handle h; mu orders its calls (every world Comm shares
// one, as they share the handle).
func newMPIComm(lib *mpiLib, h uintptr, world bool, mu *sync.Mutex) (*mpiComm, error) {
	st := &mpiState
	var rank, size int32
	var rc1, rc2 int32
	st.run(func() {
		rc1 = lib.call(lib.commRank, h, uintptr(unsafe.Pointer(&rank)))
		rc2 = lib.call(lib.commSize, h, uintptr(unsafe.Pointer(&size)))
	})
	if err := lib.check("MPI_Comm_rank", rc1); err != nil {
		return nil, err
	}
	if err := lib.check("MPI_Comm_size", rc2); err != nil {
		return nil, err
	}
	c := &mpiComm{lib: lib, h: h, world: world, rank: int(rank), size: int(size), mu: mu}
	if st.threads < mpiThreadMultiple {
		c.mu = &st.serial
	}
	c.slot = &slot{size: c.size}
	if st.dog != nil {
		st.dog.add(c.slot)
	}
	return c, nil
}

func (c *mpiComm) describe() string {
	v := c.lib.version()
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return fmt.Sprintf("mpi (%s), rank %d of %d", v, c.rank, c.size)
}

func (c *mpiComm) Rank() int { return c.rank }
func (c *mpiComm) Size() int { return c.size }

// do runs one collective under the communicator's lock and the watchdog.
func (c *mpiComm) do(what collective, fn string, f func() int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if mpiState.finalized.Load() {
		return fmt.Errorf("dist: %v on a communicator whose MPI world was closed: %w", what, ErrClosed)
	}
	var rc int32
	c.slot.begin(what)
	mpiState.run(func() { rc = f() })
	c.slot.end()
	return c.lib.check(fn, rc)
}

func (c *mpiComm) op(op Op) uintptr {
	switch op {
	case Max:
		return c.lib.opMax
	case Min:
		return c.lib.opMin
	}
	return c.lib.opSum
}

func (c *mpiComm) AllReduce(buf []float32, op Op) error {
	if err := checkOp("AllReduce", op); err != nil {
		return err
	}
	l, mop := c.lib, c.op(op)
	err := c.do(opAllReduce, "MPI_Allreduce", func() int32 {
		off := 0
		for {
			n := min(len(buf)-off, maxCount)
			rc := l.call(l.allreduce, l.impl.inPlace, uintptr(unsafe.Pointer(unsafe.SliceData(buf[off:]))),
				uintptr(n), l.float, mop, c.h)
			off += n
			if rc != mpiSuccess || off >= len(buf) {
				return rc
			}
		}
	})
	if err == nil && op == Avg {
		divide32(buf, c.size)
	}
	return err
}

func (c *mpiComm) AllReduceFloat64(buf []float64, op Op) error {
	if err := checkOp("AllReduceFloat64", op); err != nil {
		return err
	}
	l, mop := c.lib, c.op(op)
	err := c.do(opAllReduce, "MPI_Allreduce", func() int32 {
		off := 0
		for {
			n := min(len(buf)-off, maxCount)
			rc := l.call(l.allreduce, l.impl.inPlace, uintptr(unsafe.Pointer(unsafe.SliceData(buf[off:]))),
				uintptr(n), l.double, mop, c.h)
			off += n
			if rc != mpiSuccess || off >= len(buf) {
				return rc
			}
		}
	})
	if err == nil && op == Avg {
		divide64(buf, c.size)
	}
	return err
}

func (c *mpiComm) ReduceScatter(send, recv []float32, op Op) error {
	if err := checkOp("ReduceScatter", op); err != nil {
		return err
	}
	if err := checkReduceScatter(send, recv, c.size); err != nil {
		return err
	}
	l, mop := c.lib, c.op(op)
	err := c.do(opReduceScatter, "MPI_Reduce_scatter_block", func() int32 {
		return l.call(l.reduceScatterBlock, uintptr(unsafe.Pointer(unsafe.SliceData(send))),
			uintptr(unsafe.Pointer(unsafe.SliceData(recv))), uintptr(len(recv)), l.float, mop, c.h)
	})
	if err == nil && op == Avg {
		divide32(recv, c.size)
	}
	return err
}

func (c *mpiComm) AllGather(send, recv []float32) error {
	inPlace, err := checkAllGather(send, recv, c.rank, c.size)
	if err != nil {
		return err
	}
	l := c.lib
	return c.do(opAllGather, "MPI_Allgather", func() int32 {
		if inPlace {
			return l.call(l.allgather, l.impl.inPlace, 0, l.float,
				uintptr(unsafe.Pointer(unsafe.SliceData(recv))), uintptr(len(send)), l.float, c.h)
		}
		return l.call(l.allgather, uintptr(unsafe.Pointer(unsafe.SliceData(send))), uintptr(len(send)), l.float,
			uintptr(unsafe.Pointer(unsafe.SliceData(recv))), uintptr(len(send)), l.float, c.h)
	})
}

func (c *mpiComm) Broadcast(buf []byte, root int) error {
	if err := checkRoot("Broadcast", root, c.size); err != nil {
		return err
	}
	l := c.lib
	return c.do(opBroadcast, "MPI_Bcast", func() int32 {
		off := 0
		for {
			n := min(len(buf)-off, maxCount)
			rc := l.call(l.bcast, uintptr(unsafe.Pointer(unsafe.SliceData(buf[off:]))), uintptr(n), l.byte_, uintptr(root), c.h)
			off += n
			if rc != mpiSuccess || off >= len(buf) {
				return rc
			}
		}
	})
}

func (c *mpiComm) BroadcastFloat32(buf []float32, root int) error {
	if err := checkRoot("BroadcastFloat32", root, c.size); err != nil {
		return err
	}
	l := c.lib
	return c.do(opBroadcast, "MPI_Bcast", func() int32 {
		off := 0
		for {
			n := min(len(buf)-off, maxCount)
			rc := l.call(l.bcast, uintptr(unsafe.Pointer(unsafe.SliceData(buf[off:]))), uintptr(n), l.float, uintptr(root), c.h)
			off += n
			if rc != mpiSuccess || off >= len(buf) {
				return rc
			}
		}
	})
}

func (c *mpiComm) AllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int) error {
	sc, sd, rc, rd, err := checkAllToAllV(send, sendCounts, recv, recvCounts, c.size)
	if err != nil {
		return err
	}
	l := c.lib
	return c.do(opAllToAllV, "MPI_Alltoallv", func() int32 {
		return l.call(l.alltoallv,
			uintptr(unsafe.Pointer(unsafe.SliceData(send))), uintptr(unsafe.Pointer(&sc[0])), uintptr(unsafe.Pointer(&sd[0])), l.float,
			uintptr(unsafe.Pointer(unsafe.SliceData(recv))), uintptr(unsafe.Pointer(&rc[0])), uintptr(unsafe.Pointer(&rd[0])), l.float,
			c.h)
	})
}

func (c *mpiComm) Barrier() error {
	l := c.lib
	return c.do(opBarrier, "MPI_Barrier", func() int32 { return l.call(l.barrier, c.h) })
}

func (c *mpiComm) Split(color, key int) (Comm, error) {
	if color < 0 {
		return nil, fmt.Errorf("dist: Split: color %d is negative", color)
	}
	if color > maxCount || key > maxCount || key < -maxCount {
		return nil, fmt.Errorf("dist: Split: color %d or key %d outside the C int range", color, key)
	}
	l := c.lib
	var out uint64 // MPI_Comm: a pointer (Open MPI) or an int (MPICH)
	err := c.do(opSplit, "MPI_Comm_split", func() int32 {
		rc := l.call(l.commSplit, c.h, uintptr(color), uintptr(key), uintptr(unsafe.Pointer(&out)))
		if rc != mpiSuccess {
			return rc
		}
		h := uintptr(out)
		if l.impl.handleSize == 4 {
			h = uintptr(uint32(out))
		}
		return l.call(l.commSetErrhandler, h, l.errReturn)
	})
	if err != nil {
		return nil, err
	}
	h := uintptr(out)
	if l.impl.handleSize == 4 {
		h = uintptr(uint32(out))
	}
	return newMPIComm(l, h, false, new(sync.Mutex))
}

// Close frees a sub-communicator, or for the world communicator finalizes
// MPI once every world communicator Open returned is closed. Closing twice
// is a no-op.
func (c *mpiComm) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	st := &mpiState
	if st.dog != nil {
		st.dog.remove(c.slot)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !c.world {
		if st.finalized.Load() {
			return nil // MPI_Finalize released it
		}
		l := c.lib
		h := uint64(c.h)
		var rc int32
		c.mu.Lock()
		st.run(func() { rc = l.call(l.commFree, uintptr(unsafe.Pointer(&h))) })
		c.mu.Unlock()
		return l.check("MPI_Comm_free", rc)
	}
	st.refs--
	if st.refs > 0 {
		return nil
	}
	return finalizeLocked()
}
