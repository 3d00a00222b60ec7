package infer

import "testing"

func TestBlockPool(t *testing.T) {
	p := newBlockPool(3, 2)
	var bs []int32
	for range 3 {
		b, ok := p.alloc()
		if !ok {
			t.Fatal("alloc failed with free blocks")
		}
		bs = append(bs, b)
	}
	if _, ok := p.alloc(); ok || p.available() != 0 || p.used() != 3 {
		t.Fatalf("full pool: available %d used %d", p.available(), p.used())
	}
	// Register two blocks as a chain, release everything: the registered
	// ones are cached (available, not free), the other is free.
	h0 := prefixHash(0, []int32{1, 2})
	p.register(bs[0], 0, h0, []int32{1, 2})
	h1 := prefixHash(h0, []int32{3, 4})
	p.register(bs[1], h0, h1, []int32{3, 4})
	for _, b := range bs {
		p.release(b)
	}
	if p.available() != 3 || p.idle != 2 || len(p.free) != 1 {
		t.Fatalf("after release: available %d idle %d free %d", p.available(), p.idle, len(p.free))
	}
	// The chain is found again; a different parent or tokens are not.
	if b, _, ok := p.lookup(0, []int32{1, 2}); !ok || b != bs[0] {
		t.Fatalf("lookup of the first block: %d %v", b, ok)
	}
	if _, _, ok := p.lookup(0, []int32{3, 4}); ok {
		t.Fatal("a block matched under the wrong parent")
	}
	p.take(bs[0]) // owned again: off the LRU list
	if p.idle != 1 || p.ref[bs[0]] != 1 {
		t.Fatalf("take: idle %d ref %d", p.idle, p.ref[bs[0]])
	}
	// Allocation uses the free block first, then evicts the cached one.
	if b, _ := p.alloc(); b != bs[2] {
		t.Fatalf("allocated %d, want the free block %d", b, bs[2])
	}
	if b, _ := p.alloc(); b != bs[1] {
		t.Fatalf("allocated %d, want the evicted block %d", b, bs[1])
	}
	if _, _, ok := p.lookup(h0, []int32{3, 4}); ok {
		t.Fatal("an evicted block is still found")
	}
	if _, ok := p.alloc(); ok {
		t.Fatal("allocated from a pool whose blocks are all owned")
	}
	if p.hits != 1 || p.lookups != 3 {
		t.Errorf("hits %d lookups %d", p.hits, p.lookups)
	}
}
