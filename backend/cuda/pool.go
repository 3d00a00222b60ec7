package cuda

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// memPool caches device allocations by size class so that a training step
// allocates nothing from the driver once the first step has run. A freed
// block goes straight back to its free list: every kernel runs on the
// device's one stream, so work queued later that reuses the block runs
// after the work that used it (stream-ordered reuse). It is only touched on
// the executor's thread.
type memPool struct {
	drv    driver
	free   map[int][]uintptr // by class size in bytes
	live   map[uintptr]int
	inUse  int64 // bytes handed out
	cached int64 // bytes on free lists
	allocs int   // driver allocations made (tests check reuse)
}

func newMemPool(drv driver) *memPool {
	return &memPool{drv: drv, free: map[int][]uintptr{}, live: map[uintptr]int{}}
}

// poolMinClass is the smallest block (and the alignment every buffer gets).
const poolMinClass = 512

// classSize rounds a request up to its size class: powers of two up to
// 1 MiB, then multiples of 2 MiB (at most 2 MiB, or under 50% for small
// blocks, is wasted).
func classSize(n int) int {
	switch {
	case n <= poolMinClass:
		return poolMinClass
	case n <= 1<<20:
		return 1 << bits.Len(uint(n-1))
	default:
		const step = 2 << 20
		return (n + step - 1) / step * step
	}
}

// get returns a block of at least n bytes and its class. When the driver
// is out of memory, cached blocks are released and the allocation retried
// once.
func (p *memPool) get(n int) (uintptr, int, error) {
	c := classSize(n)
	if l := p.free[c]; len(l) > 0 {
		ptr := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		p.cached -= int64(c)
		p.live[ptr] = c
		p.inUse += int64(c)
		return ptr, c, nil
	}
	ptr, err := p.drv.alloc(c)
	if err != nil && errors.Is(err, ErrOutOfMemory) && p.cached > 0 {
		if terr := p.trim(); terr != nil {
			return 0, 0, terr
		}
		ptr, err = p.drv.alloc(c)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cuda: allocating %d bytes (%d in use, %d cached): %w", c, p.inUse, p.cached, err)
	}
	p.allocs++
	p.live[ptr] = c
	p.inUse += int64(c)
	return ptr, c, nil
}

// put returns a block to its free list.
func (p *memPool) put(ptr uintptr) error {
	c, ok := p.live[ptr]
	if !ok {
		return fmt.Errorf("cuda: freeing %#x, which this device's pool did not allocate (or freed already)", ptr)
	}
	delete(p.live, ptr)
	p.inUse -= int64(c)
	p.free[c] = append(p.free[c], ptr)
	p.cached += int64(c)
	return nil
}

// trim gives every cached block back to the driver. The caller must have
// synchronized the stream if blocks may still be in use by queued work.
func (p *memPool) trim() error {
	if err := p.drv.sync(); err != nil {
		return err
	}
	classes := make([]int, 0, len(p.free))
	for c := range p.free {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	var first error
	for _, c := range classes {
		for _, ptr := range p.free[c] {
			if err := p.drv.free(ptr); err != nil && first == nil {
				first = err
			}
			p.cached -= int64(c)
		}
		delete(p.free, c)
	}
	return first
}

// releaseAll frees every block, live or cached (device shutdown).
func (p *memPool) releaseAll() error {
	first := p.trim()
	for ptr := range p.live {
		if err := p.drv.free(ptr); err != nil && first == nil {
			first = err
		}
	}
	clear(p.live)
	p.inUse = 0
	return first
}
