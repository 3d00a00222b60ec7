package cpu

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestPoolFor checks that For runs every index once, in the chunks Chunks
// describes, including nested and concurrent calls.
func TestPoolFor(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := NewPool(threads)
		for _, tc := range []struct{ n, grain int }{{0, 1}, {1, 1}, {5, 1}, {7, 3}, {100, 1}, {1000, 64}, {1000, 10000}} {
			hits := make([]atomic.Int32, tc.n)
			parts, size := p.Chunks(tc.n, tc.grain)
			var calls atomic.Int32
			p.For(tc.n, tc.grain, func(lo, hi int) {
				calls.Add(1)
				if lo%max(size, 1) != 0 || (hi != tc.n && hi-lo != size) {
					t.Errorf("threads %d n %d: chunk [%d,%d) is not one of Chunks' (size %d)", threads, tc.n, lo, hi, size)
				}
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			if int(calls.Load()) != parts {
				t.Errorf("threads %d n %d grain %d: %d chunks, Chunks says %d", threads, tc.n, tc.grain, calls.Load(), parts)
			}
			for i := range hits {
				if hits[i].Load() != 1 {
					t.Fatalf("threads %d n %d: index %d ran %d times", threads, tc.n, i, hits[i].Load())
				}
			}
		}
		// Nested and concurrent calls complete and cover everything.
		var total atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < 50; r++ {
					p.For(6, 1, func(lo, hi int) {
						for i := lo; i < hi; i++ {
							p.For(10, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
						}
					})
				}
			}()
		}
		wg.Wait()
		if got := total.Load(); got != 4*50*6*10 {
			t.Errorf("threads %d: nested concurrent loops covered %d indices, want %d", threads, got, 4*50*6*10)
		}
	}
}

func poolNop(lo, hi int) {}

// TestPoolAllocs checks that For and a kernel's parallel call allocate
// nothing once warm.
func TestPoolAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	p := NewPool(3)
	x, y := make([]float32, 1<<16), make([]float32, 1<<16)
	p.For(100, 1, poolNop)
	Axpy(p, y, 2, x)
	if got := testing.AllocsPerRun(50, func() { p.For(100, 1, poolNop) }); got != 0 {
		t.Errorf("For allocates %v times per call", got)
	}
	if got := testing.AllocsPerRun(50, func() { Axpy(p, y, 2, x) }); got != 0 {
		t.Errorf("Axpy allocates %v times per call", got)
	}
}

// TestPoolForSplit checks that forSplit runs every index once in chunks of
// at least grain, with up to split chunks per thread.
func TestPoolForSplit(t *testing.T) {
	for _, threads := range []int{1, 2, 3} {
		p := NewPool(threads)
		for _, tc := range []struct{ n, grain, split int }{{1, 1, 4}, {7, 1, 4}, {100, 1, 4}, {100, 30, 4}, {1000, 1, 8}} {
			hits := make([]atomic.Int32, tc.n)
			var chunks atomic.Int32
			p.forSplit(tc.n, tc.grain, tc.split, func(lo, hi int) {
				chunks.Add(1)
				if hi-lo < min(tc.grain, tc.n) && hi != tc.n {
					t.Errorf("n=%d grain=%d: chunk [%d,%d) below the grain", tc.n, tc.grain, lo, hi)
				}
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Fatalf("threads=%d n=%d: index %d ran %d times", threads, tc.n, i, h)
				}
			}
			if c := int(chunks.Load()); threads > 1 && c > threads*tc.split {
				t.Errorf("threads=%d n=%d split=%d: %d chunks", threads, tc.n, tc.split, c)
			}
		}
	}
}
