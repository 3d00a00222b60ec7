package infer

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// blockPool hands out the blocks of a paged KV cache. A block is free, owned
// (reference count > 0: sequences read it), or cached: a full block whose
// content is known by the hash of its tokens and of every token before them,
// kept after its last owner leaves so that a later prompt with the same
// prefix can take it back without recomputing it. Cached blocks with no
// owner are evicted, least recently used first, when free blocks run out.
type blockPool struct {
	size int // positions per block
	ref  []int32
	free []int32 // free blocks, not cached

	cache map[uint64]int32 // prefix hash -> cached block
	hash  []uint64         // the block's prefix hash, when registered
	known []bool           // whether the block is registered in cache
	toks  [][]int32        // the tokens of a registered block (to rule out collisions)
	prevH []uint64         // the hash of the prefix before a registered block

	// The LRU list of unowned cached blocks: lru[b] links b between prev and next;
	// head is the least recently used; -1 ends the list.
	prev, next []int32
	head, tail int32
	idle       int // blocks on the LRU list

	hits, lookups int64 // prefix-cache statistics, in blocks
}

func newBlockPool(n, size int) *blockPool {
	p := &blockPool{size: size, ref: make([]int32, n), cache: map[uint64]int32{},
		hash: make([]uint64, n), known: make([]bool, n), toks: make([][]int32, n), prevH: make([]uint64, n),
		prev: make([]int32, n), next: make([]int32, n), head: -1, tail: -1}
	for b := n - 1; b >= 0; b-- {
		p.free = append(p.free, int32(b))
	}
	return p
}

// available is the number of blocks that can be handed out now.
func (p *blockPool) available() int { return len(p.free) + p.idle }

// used is the number of blocks owned by sequences.
func (p *blockPool) used() int { return len(p.ref) - p.available() }

// alloc returns a fresh block owned once, evicting the least recently used
// cached block if no free block is left.
func (p *blockPool) alloc() (int32, bool) {
	var b int32
	switch {
	case len(p.free) > 0:
		b = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
	case p.head >= 0:
		b = p.head
		p.unlink(b)
		p.forget(b)
	default:
		return -1, false
	}
	p.ref[b] = 1
	return b, true
}

// take adds an owner to a block, pulling a cached block off the LRU list.
func (p *blockPool) take(b int32) {
	if p.ref[b] == 0 {
		p.unlink(b)
	}
	p.ref[b]++
}

// release drops an owner; an unowned block is cached if registered, else
// freed.
func (p *blockPool) release(b int32) {
	p.ref[b]--
	if p.ref[b] > 0 {
		return
	}
	if p.known[b] {
		p.pushLRU(b)
		return
	}
	p.free = append(p.free, b)
}

// prefixHash chains the hash of a block's tokens onto the hash of the prefix
// before it.
func prefixHash(parent uint64, toks []int32) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], parent)
	h.Write(buf[:])
	for _, t := range toks {
		binary.LittleEndian.PutUint32(buf[:4], uint32(t))
		h.Write(buf[:4])
	}
	return h.Sum64()
}

// lookup returns the cached block holding toks after the prefix whose hash
// is parent, and the chained hash.
func (p *blockPool) lookup(parent uint64, toks []int32) (int32, uint64, bool) {
	h := prefixHash(parent, toks)
	p.lookups++
	b, ok := p.cache[h]
	if !ok || p.prevH[b] != parent || !slices.Equal(p.toks[b], toks) {
		return -1, h, false
	}
	p.hits++
	return b, h, true
}

// register records that block b, owned by the caller, holds toks after the
// prefix with hash parent. A prefix already cached in another block stays
// there.
func (p *blockPool) register(b int32, parent, h uint64, toks []int32) {
	if p.known[b] {
		return
	}
	if _, ok := p.cache[h]; ok {
		return
	}
	p.cache[h] = b
	p.known[b], p.hash[b], p.prevH[b] = true, h, parent
	p.toks[b] = slices.Clone(toks)
}

func (p *blockPool) forget(b int32) {
	if p.known[b] {
		delete(p.cache, p.hash[b])
		p.known[b], p.toks[b] = false, nil
	}
}

func (p *blockPool) pushLRU(b int32) {
	p.prev[b], p.next[b] = p.tail, -1
	if p.tail >= 0 {
		p.next[p.tail] = b
	} else {
		p.head = b
	}
	p.tail = b
	p.idle++
}

func (p *blockPool) unlink(b int32) {
	if p.prev[b] >= 0 {
		p.next[p.prev[b]] = p.next[b]
	} else {
		p.head = p.next[b]
	}
	if p.next[b] >= 0 {
		p.prev[p.next[b]] = p.prev[b]
	} else {
		p.tail = p.prev[b]
	}
	p.idle--
}
