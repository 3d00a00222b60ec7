//go:build (darwin || freebsd || linux || netbsd) && !android

package dist

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// collective names an operation for the watchdog's message.
type collective int32

const (
	opNone collective = iota
	opAllReduce
	opReduceScatter
	opAllGather
	opBroadcast
	opAllToAllV
	opBarrier
	opSplit
	opFinalize
)

var collectiveNames = [...]string{"none", "AllReduce", "ReduceScatter", "AllGather", "Broadcast", "AllToAllV", "Barrier", "Split", "Finalize (Close)"}

func (c collective) String() string { return collectiveNames[c] }

// slot records the collective a communicator is blocked in, if any.
type slot struct {
	size  int
	what  atomic.Int32
	start atomic.Int64 // unix nanoseconds; 0 when idle
}

func (s *slot) begin(what collective) {
	s.what.Store(int32(what))
	s.start.Store(time.Now().UnixNano())
}

func (s *slot) end() { s.start.Store(0) }

// watchdog aborts the MPI job when a collective blocks longer than its
// limit: a peer rank that died or hung would otherwise leave this one
// waiting forever when the launcher does not tear the job down.
type watchdog struct {
	lib         *mpiLib
	limit       time.Duration
	rank, world int

	mu    sync.Mutex
	slots map[*slot]struct{}
	quit  chan struct{}
	done  chan struct{}
}

func startWatchdog(lib *mpiLib, limit time.Duration, rank, world int) *watchdog {
	w := &watchdog{lib: lib, limit: limit, rank: rank, world: world,
		slots: map[*slot]struct{}{}, quit: make(chan struct{}), done: make(chan struct{})}
	tick := min(max(limit/10, 10*time.Millisecond), time.Second)
	go w.loop(tick)
	return w
}

func (w *watchdog) add(s *slot) {
	w.mu.Lock()
	w.slots[s] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdog) remove(s *slot) {
	w.mu.Lock()
	delete(w.slots, s)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	close(w.quit)
	<-w.done
}

func (w *watchdog) loop(tick time.Duration) {
	defer close(w.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case now := <-t.C:
			w.mu.Lock()
			for s := range w.slots {
				start := s.start.Load()
				if start == 0 {
					continue
				}
				if d := now.Sub(time.Unix(0, start)); d > w.limit {
					w.mu.Unlock()
					w.fire(collective(s.what.Load()), s.size, d)
					return
				}
			}
			w.mu.Unlock()
		}
	}
}

// fire reports the stuck collective and ends the job: MPI_Abort asks the
// launcher to kill every rank; if that has not ended this process soon,
// it exits by itself (the launcher then sees a rank fail).
func (w *watchdog) fire(what collective, size int, waited time.Duration) {
	where := fmt.Sprintf(" on a communicator of %d ranks", size)
	if size < 0 {
		where = ""
	}
	msg := fmt.Sprintf("dist: rank %d of %d: %v%s did not complete within %v (waited %v); "+
		"a peer rank has probably died, hung or failed without dist.Abort. Aborting the job (set $%s to change the limit)",
		w.rank, w.world, what, where, w.limit, waited.Round(time.Millisecond), TimeoutEnv)
	fmt.Fprintln(os.Stderr, msg)
	logger().Error("collective timed out; aborting the job", "rank", w.rank, "op", what.String(), "limit", w.limit)
	go w.lib.call(w.lib.abort, w.lib.commWorld, 1)
	time.Sleep(10 * time.Second)
	os.Exit(1)
}
