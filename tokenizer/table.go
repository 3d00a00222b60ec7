package tokenizer

import (
	"encoding/binary"
	"unsafe"
)

// strTable maps token bytes to ids. It is open addressing over one array of
// 16-byte slots that hold a token's first 8 bytes, its length and its id, so
// a lookup of a token of up to 8 bytes (most of them) touches one cache line;
// on the encoding hot path it is several times faster than a Go map.
type strTable struct {
	slots []tableSlot
	mask  uint64
	keys  []string // id -> token bytes, to compare tokens longer than 8 bytes
}

type tableSlot struct {
	head uint64 // the first 8 bytes, little-endian, zero padded
	meta uint64 // len<<32 | id+1; 0 when empty
}

// head8 packs the first (up to) 8 bytes of s.
func head8(s string) uint64 {
	n := len(s)
	b := unsafe.Slice(unsafe.StringData(s), n)
	switch {
	case n >= 8:
		return binary.LittleEndian.Uint64(b)
	case n >= 4:
		return uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<(8*(n-4))
	case n > 0:
		return uint64(b[0]) | uint64(b[n/2])<<(8*(n/2)) | uint64(b[n-1])<<(8*(n-1))
	}
	return 0
}

// hashKey hashes s given its head.
func hashKey(head uint64, s string) uint64 {
	h := (head ^ uint64(len(s))*0x9E3779B97F4A7C15) * 0xbf58476d1ce4e5b9
	if len(s) > 8 {
		b := unsafe.Slice(unsafe.StringData(s), len(s))[8:]
		for len(b) >= 8 {
			h = (h ^ h>>29 ^ binary.LittleEndian.Uint64(b)) * 0xbf58476d1ce4e5b9
			b = b[8:]
		}
		var v uint64
		for i, c := range b {
			v |= uint64(c) << (8 * i)
		}
		h = (h ^ h>>29 ^ v) * 0xbf58476d1ce4e5b9
	}
	h ^= h >> 32
	h *= 0xff51afd7ed558ccd
	h ^= h >> 29
	return h
}

// newStrTable indexes keys (id -> bytes) for the given ids.
func newStrTable(keys []string, ids []int32) *strTable {
	size := 16
	for size < len(ids)+len(ids)/2 {
		size *= 2
	}
	t := &strTable{slots: make([]tableSlot, size), mask: uint64(size - 1), keys: keys}
	for _, id := range ids {
		s := keys[id]
		head := head8(s)
		i := hashKey(head, s) & t.mask
		for t.slots[i].meta != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i] = tableSlot{head, uint64(len(s))<<32 | uint64(uint32(id+1))}
	}
	return t
}

// get returns the id of s.
func (t *strTable) get(s string) (int32, bool) {
	head := head8(s)
	meta := uint64(len(s)) << 32
	for i := hashKey(head, s) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		if sl.meta == 0 {
			return -1, false
		}
		if sl.head == head && sl.meta&^0xffffffff == meta {
			id := int32(uint32(sl.meta)) - 1
			if len(s) <= 8 || t.keys[id] == s {
				return id, true
			}
		}
	}
}

// pairTable maps a pair of ids to rank<<32 | merged id, by open addressing.
type pairTable struct {
	slots []pairSlot
	shift uint
	mask  uint64
}

type pairSlot struct {
	key uint64 // pair key + 1; 0 is empty
	val uint64
}

func newPairTable(m map[uint64]uint64) *pairTable {
	size, bits := 16, uint(4)
	for size < len(m)+len(m)/2 {
		size *= 2
		bits++
	}
	t := &pairTable{slots: make([]pairSlot, size), shift: 64 - bits, mask: uint64(size - 1)}
	for k, v := range m {
		i := (k * 0x9E3779B97F4A7C15) >> t.shift
		for t.slots[i].key != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i] = pairSlot{k + 1, v}
	}
	return t
}

func (t *pairTable) get(k uint64) (uint64, bool) {
	for i := (k * 0x9E3779B97F4A7C15) >> t.shift; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.key == k+1 {
			return s.val, true
		}
		if s.key == 0 {
			return 0, false
		}
	}
}
