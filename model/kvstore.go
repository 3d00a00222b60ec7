package model

import (
	"fmt"

	"github.com/mai-llm/mai/backend/cpu"
)

// KVType is how a KV cache stores keys and values.
type KVType string

// KV cache types.
const (
	KVF32 KVType = "f32"
	KVF16 KVType = "f16"
)

// ParseKVType checks a KV cache type name ("" is f32).
func ParseKVType(s string) (KVType, error) {
	switch KVType(s) {
	case "", KVF32:
		return KVF32, nil
	case KVF16:
		return KVF16, nil
	}
	return "", fmt.Errorf("KV cache type %q: want f32 or f16", s)
}

// kvStore is the memory of a KV cache (KVCache, PagedKV): per layer, keys
// and values in float32 (K, V) or in half precision (K16, V16; K and V
// nil): half the memory, and half the bytes a decode step at a long context
// reads.
type kvStore struct {
	K, V     [][]float32
	K16, V16 [][]uint16
}

// newKVStore allocates layers layers of n values of type t each, writing
// them at once when touch is set (a decode step that wrote a fresh page paid
// a page fault for it; fresh memory reads as zeros already).
func newKVStore(layers, n int, t KVType, touch bool) kvStore {
	var s kvStore
	for range layers {
		if t == KVF16 {
			k, v := make([]uint16, n), make([]uint16, n)
			if touch {
				clear(k)
				clear(v)
			}
			s.K16, s.V16 = append(s.K16, k), append(s.V16, v)
			continue
		}
		k, v := make([]float32, n), make([]float32, n)
		if touch {
			clear(k)
			clear(v)
		}
		s.K, s.V = append(s.K, k), append(s.V, v)
	}
	return s
}

// Type is how the cache stores keys and values.
func (s *kvStore) Type() KVType {
	if s.K16 != nil {
		return KVF16
	}
	return KVF32
}

// layers is the number of layers the cache holds.
func (s *kvStore) layers() int { return len(s.K) + len(s.K16) }

// put writes keys k and values v (the same length) of layer l from value
// offset off on.
func (s *kvStore) put(l, off int, k, v []float32) {
	if s.K16 != nil {
		cpu.F32ToF16s(s.K16[l][off:off+len(k)], k)
		cpu.F32ToF16s(s.V16[l][off:off+len(v)], v)
		return
	}
	copy(s.K[l][off:off+len(k)], k)
	copy(s.V[l][off:off+len(v)], v)
}
