// Package cpu is the CPU backend: a worker pool, a packed and parallel GEMM and
// the fused kernels the transformer needs, forward and backward, on float32 slices.
package cpu

import (
	"runtime"
	"sync"
)

// Pool runs work on a fixed set of goroutines, one per usable core, with
// static partitioning so that a given thread count always splits work the same
// way (bit-identical results run to run).
type Pool struct {
	n    int
	work chan task
}

type task struct {
	fn     func(lo, hi int)
	lo, hi int
	wg     *sync.WaitGroup
}

// NewPool starts a pool of n workers; n <= 0 means GOMAXPROCS.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, work: make(chan task, n)}
	for i := 1; i < n; i++ { // the caller's goroutine is worker 0
		go func() {
			for t := range p.work {
				t.fn(t.lo, t.hi)
				t.wg.Done()
			}
		}()
	}
	return p
}

// Threads reports the number of workers.
func (p *Pool) Threads() int { return p.n }

// For splits [0,n) into at most Threads() contiguous chunks and runs fn on
// each, blocking until all finish. Chunks smaller than grain are merged so
// that tiny loops run on the calling goroutine.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := p.n
	if m := (n + grain - 1) / grain; m < parts {
		parts = m
	}
	if parts <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + parts - 1) / parts
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		lo := i * chunk
		hi := min(lo+chunk, n)
		if lo >= hi {
			wg.Done()
			continue
		}
		p.work <- task{fn: fn, lo: lo, hi: hi, wg: &wg}
	}
	fn(0, min(chunk, n))
	wg.Wait()
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
