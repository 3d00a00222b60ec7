// Package cpu is the CPU backend: a worker pool, a packed and parallel GEMM and
// the fused kernels the transformer needs, forward and backward, on float32 slices.
package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs work on a fixed set of goroutines, one per usable core, with
// static partitioning: a given thread count always cuts a loop into the same
// chunks, so results are bit-identical run to run. Which goroutine runs a
// chunk is not fixed: the caller and the woken workers take chunks in turn,
// so a worker that the operating system is slow to schedule delays nothing
// (its chunk is taken by whoever is free). A Pool may be used by several
// goroutines at once, and For may be called from inside a chunk.
type Pool struct {
	n    int
	work chan *forJob
}

// forJob is one For call in flight. Chunks are claimed by atomically
// incrementing next; the job goes back to forJobs when the last goroutine that
// saw it lets go (refs), so a worker that wakes late never touches a job that
// has been reused.
type forJob struct {
	fn               func(lo, hi int)
	n, chunk, parts  int64
	next, done, refs atomic.Int64
	finished         chan struct{}
}

var forJobs = sync.Pool{New: func() any { return &forJob{finished: make(chan struct{}, 1)} }}

// NewPool starts a pool of n workers; n <= 0 means GOMAXPROCS.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, work: make(chan *forJob, 4*n)}
	for i := 1; i < n; i++ { // the caller's goroutine is worker 0
		go func() {
			for {
				j := p.next()
				if j == nil {
					return
				}
				j.help()
				j.release()
			}
		}()
	}
	return p
}

// Threads reports the number of workers.
func (p *Pool) Threads() int { return p.n }

// Chunks reports how many chunks For(n, grain, ·) cuts [0,n) into, and
// their size: chunk i is [i*size, min((i+1)*size, n)).
func (p *Pool) Chunks(n, grain int) (parts, size int) {
	if n <= 0 {
		return 0, 0
	}
	grain = max(grain, 1)
	parts = min(p.n, (n+grain-1)/grain)
	if parts <= 1 {
		return 1, n
	}
	size = (n + parts - 1) / parts
	return (n + size - 1) / size, size
}

// For splits [0,n) into at most Threads() contiguous chunks (see Chunks) and
// runs fn on each, blocking until all finish. Chunks smaller than grain are
// merged so that tiny loops run on the calling goroutine. fn should be a
// function value that allocates nothing per call (a method value bound once,
// or a function literal that captures nothing).
func (p *Pool) For(n, grain int, fn func(lo, hi int)) { p.forSplit(n, grain, 1, fn) }

// forSplit is For with up to split chunks per thread, each taken by
// whichever thread is free: a thread that starts late or runs slower then
// takes fewer chunks instead of holding the others up at the end.
func (p *Pool) forSplit(n, grain, split int, fn func(lo, hi int)) {
	parts, size := p.Chunks(n, grain)
	if split > 1 && parts > 1 {
		grain = max(grain, 1)
		parts = max(1, min(p.n*split, n/grain))
		size = (n + parts - 1) / parts
		parts = (n + size - 1) / size
	}
	if parts == 0 {
		return
	}
	if parts == 1 {
		fn(0, n)
		return
	}
	j := forJobs.Get().(*forJob)
	j.fn, j.n, j.chunk, j.parts = fn, int64(n), int64(size), int64(parts)
	j.next.Store(0)
	j.done.Store(0)
	j.refs.Store(1)
	for i := 1; i < parts; i++ {
		j.refs.Add(1)
		select {
		case p.work <- j:
		default: // every worker is busy: the caller will run the chunk
			j.refs.Add(-1)
		}
	}
	j.help()
	if !spinUntil(func() bool { return j.done.Load() == j.parts }) {
		<-j.finished
	}
	j.release()
}

// spinFor is how long a worker out of work, or a caller waiting for the
// other chunks, polls before parking its goroutine. Waking a parked thread
// costs tens of microseconds on a VM, as much as a decode step's small
// products take; OpenMP runtimes spin for the same reason. Kept short so a
// busy machine loses little.
const spinFor = 30 * time.Microsecond

// next returns the next job, polling for spinFor before it blocks; nil
// when the pool's channel is closed.
func (p *Pool) next() *forJob {
	var j *forJob
	spinUntil(func() bool {
		select {
		case j = <-p.work:
			return true
		default:
			return false
		}
	})
	if j != nil {
		return j
	}
	j, ok := <-p.work
	if !ok {
		return nil
	}
	return j
}

// spinUntil polls cond for up to spinFor and reports whether it held.
func spinUntil(cond func() bool) bool {
	var start time.Time
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if i&63 == 63 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinFor {
				return false
			}
		}
	}
}

// help runs unclaimed chunks until none is left.
func (j *forJob) help() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.parts {
			return
		}
		lo := i * j.chunk
		j.fn(int(lo), int(min(lo+j.chunk, j.n)))
		if j.done.Add(1) == j.parts {
			select {
			case j.finished <- struct{}{}:
			default:
			}
		}
	}
}

// release drops one reference; the last one recycles the job.
func (j *forJob) release() {
	if j.refs.Add(-1) == 0 {
		j.fn = nil
		select { // drain a completion signal nobody waited for
		case <-j.finished:
		default:
		}
		forJobs.Put(j)
	}
}

var (
	defaultOnce sync.Once
	defaultPool *Pool
)

// Default returns the process-wide pool sized to GOMAXPROCS.
func Default() *Pool {
	defaultOnce.Do(func() { defaultPool = NewPool(0) })
	return defaultPool
}

// job carries the arguments of one parallel kernel call to the workers. Jobs
// are recycled through a jobs free list and run is bound once per job, so a
// call allocates nothing.
type job[A any] struct {
	args A
	fn   func(a *A, lo, hi int)
	run  func(lo, hi int)
}

func (j *job[A]) call(lo, hi int) { j.fn(&j.args, lo, hi) }

// jobs is a free list of jobs with arguments of type A.
type jobs[A any] struct{ free sync.Pool }

// parallel runs fn(&args, lo, hi) over the chunks of [0,n) as p.For does.
// fn should be a top-level function (a function value that captures nothing),
// so that nothing is allocated per call.
func parallel[A any](p *Pool, js *jobs[A], n, grain int, args A, fn func(a *A, lo, hi int)) {
	parallelSplit(p, js, n, grain, 1, args, fn)
}

// parallelSplit is parallel with up to split chunks per thread (forSplit).
func parallelSplit[A any](p *Pool, js *jobs[A], n, grain, split int, args A, fn func(a *A, lo, hi int)) {
	if n <= 0 {
		return
	}
	j, _ := js.free.Get().(*job[A])
	if j == nil {
		j = new(job[A])
		j.run = j.call
	}
	j.args, j.fn = args, fn
	p.forSplit(n, grain, split, j.run)
	var zero A
	j.args, j.fn = zero, nil // drop references to the caller's slices
	js.free.Put(j)
}
