package tokenizer

import "math"

// noRank marks a pair of parts that cannot merge.
const noRank = math.MaxUint32

// part is one symbol of a piece during byte-pair merging: it starts at byte
// start of the piece, is token id, and merges with its right neighbor into
// newID at priority rank (lower first).
type part struct {
	start int32
	id    int32
	rank  uint32
	newID int32
}

// heapLimit is the piece length from which merging switches from the
// quadratic scan (fastest for words) to a heap (n log n, for long pieces).
const heapLimit = 128

// pair returns the rank and result of merging the symbols a and b, where the
// merged symbol covers piece[start:end].
func (m *model) pair(piece string, start, end, a, b int32) (uint32, int32) {
	if m.merges == nil {
		if id, ok := m.table.get(piece[start:end]); ok {
			return uint32(id), id
		}
		return noRank, -1
	}
	if v, ok := m.pairs.get(uint64(uint32(a))<<32 | uint64(uint32(b))); ok {
		return uint32(v >> 32), int32(uint32(v))
	}
	return noRank, -1
}

// mergeParts runs byte-pair merging over parts, whose last element is a
// sentinel marking the end of the piece, and appends the resulting ids.
func (m *model) mergeParts(st *encState, piece string, parts []part, out []int) []int {
	if len(parts)-1 >= heapLimit {
		return m.mergeHeap(st, piece, parts, out)
	}
	n := len(parts)
	for i := 0; i+2 < n; i++ {
		parts[i].rank, parts[i].newID = m.pair(piece, parts[i].start, parts[i+2].start, parts[i].id, parts[i+1].id)
	}
	for {
		best, bestRank := -1, uint32(noRank)
		for i := 0; i+2 < n; i++ {
			if parts[i].rank < bestRank {
				best, bestRank = i, parts[i].rank
			}
		}
		if best < 0 {
			break
		}
		parts[best].id = parts[best].newID
		copy(parts[best+1:n], parts[best+2:n])
		n--
		if best+2 < n {
			parts[best].rank, parts[best].newID = m.pair(piece, parts[best].start, parts[best+2].start, parts[best].id, parts[best+1].id)
		} else {
			parts[best].rank = noRank
		}
		if best > 0 {
			p := &parts[best-1]
			p.rank, p.newID = m.pair(piece, p.start, parts[best+1].start, p.id, parts[best].id)
		}
	}
	for i := 0; i+1 < n; i++ {
		out = append(out, int(parts[i].id))
	}
	return out
}

// mergeHeap is mergeParts for long pieces: the parts form a linked list and
// the mergeable pairs sit in a min-heap keyed by (rank, start), which picks
// the same pair as the scan (lowest rank, leftmost first).
func (m *model) mergeHeap(st *encState, piece string, parts []part, out []int) []int {
	n := len(parts) - 1 // symbols; parts[n] is the sentinel
	next := grow(st.next, n+1)
	prev := grow(st.prev, n+1)
	st.next, st.prev = next, prev
	h := st.heap[:0]
	for i := 0; i < n; i++ {
		next[i], prev[i] = int32(i+1), int32(i-1)
	}
	next[n] = int32(n)
	for i := 0; i+1 < n; i++ {
		parts[i].rank, parts[i].newID = m.pair(piece, parts[i].start, parts[i+2].start, parts[i].id, parts[i+1].id)
		if parts[i].rank != noRank {
			h = heapPush(h, uint64(parts[i].rank)<<32|uint64(i))
		}
	}
	parts[n-1].rank = noRank
	for len(h) > 0 {
		var top uint64
		top, h = heapPop(h)
		i := int32(uint32(top))
		r := uint32(top >> 32)
		if parts[i].start < 0 || parts[i].rank != r {
			continue // stale: merged away or re-ranked
		}
		j := next[i]
		parts[i].id = parts[i].newID
		parts[j].start = -1
		k := next[j]
		next[i] = k
		if k < int32(n) {
			prev[k] = i
			parts[i].rank, parts[i].newID = m.pair(piece, parts[i].start, partStart(parts, next[k], n), parts[i].id, parts[k].id)
			if parts[i].rank != noRank {
				h = heapPush(h, uint64(parts[i].rank)<<32|uint64(i))
			}
		} else {
			parts[i].rank = noRank
		}
		if p := prev[i]; p >= 0 {
			parts[p].rank, parts[p].newID = m.pair(piece, parts[p].start, partStart(parts, k, n), parts[p].id, parts[i].id)
			if parts[p].rank != noRank {
				h = heapPush(h, uint64(parts[p].rank)<<32|uint64(p))
			}
		}
	}
	st.heap = h
	for i := int32(0); i < int32(n); i = next[i] {
		out = append(out, int(parts[i].id))
	}
	return out
}

// partStart is the byte offset where list element k starts (the piece end for the sentinel).
func partStart(parts []part, k int32, n int) int32 {
	if k >= int32(n) {
		return parts[n].start
	}
	return parts[k].start
}

func grow(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n, n+n/2)
	}
	return s[:n]
}

func heapPush(h []uint64, v uint64) []uint64 {
	h = append(h, v)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p] <= v {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = v
	return h
}

func heapPop(h []uint64) (uint64, []uint64) {
	top := h[0]
	last := h[len(h)-1]
	h = h[:len(h)-1]
	n := len(h)
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r] < h[l] {
			l = r
		}
		if last <= h[l] {
			break
		}
		h[i] = h[l]
		i = l
	}
	if n > 0 {
		h[i] = last
	}
	return top, h
}
