package cpu

import (
	"fmt"
	"math"
)

// PagedAttn describes causal attention for a ragged batch of sequences whose
// keys and values live in a paged cache: fixed-size blocks of BlockSize
// positions, each position a row of KV*D values, shared by all sequences.
// Sequence i owns query rows [QStart[i], QStart[i+1]) of the batch; its first
// query sits at absolute position Pos0[i], and its positions map to cache
// rows through its block table: position s is row
// Blocks[i][s/BlockSize]*BlockSize + s%BlockSize. Query t attends the keys at
// positions <= its own (and within Window positions when Window > 0), which
// must already be in the cache.
type PagedAttn struct {
	H, KV, D  int
	BlockSize int
	Window    int
	Scale     float32
	QStart    []int
	Pos0      []int
	Blocks    [][]int32
}

// Validate checks that the description is consistent with caches of
// cacheRows rows, so that the kernel cannot index out of range.
func (a *PagedAttn) Validate(cacheRows int) error {
	if a.H <= 0 || a.KV <= 0 || a.D <= 0 || a.H%a.KV != 0 || a.BlockSize <= 0 {
		return fmt.Errorf("paged attention: bad shape H=%d KV=%d D=%d block=%d", a.H, a.KV, a.D, a.BlockSize)
	}
	n := len(a.Pos0)
	if len(a.QStart) != n+1 || len(a.Blocks) != n {
		return fmt.Errorf("paged attention: %d sequences but %d row offsets and %d block tables", n, len(a.QStart), len(a.Blocks))
	}
	for i := 0; i < n; i++ {
		if a.QStart[i+1] < a.QStart[i] || a.Pos0[i] < 0 {
			return fmt.Errorf("paged attention: sequence %d has rows [%d,%d) at position %d", i, a.QStart[i], a.QStart[i+1], a.Pos0[i])
		}
		end := a.Pos0[i] + a.QStart[i+1] - a.QStart[i]
		if need := (end + a.BlockSize - 1) / a.BlockSize; len(a.Blocks[i]) < need {
			return fmt.Errorf("paged attention: sequence %d spans %d positions but has %d blocks of %d", i, end, len(a.Blocks[i]), a.BlockSize)
		}
		for _, b := range a.Blocks[i] {
			if b < 0 || (int(b)+1)*a.BlockSize > cacheRows {
				return fmt.Errorf("paged attention: sequence %d uses block %d outside the cache", i, b)
			}
		}
	}
	return nil
}

// PagedAttentionForward writes out [N, H*D] for queries q [N, H*D] against
// the paged caches k and v [rows, KV*D]. Each query row is computed exactly
// as AttentionForward computes it (same order of operations), so a sequence
// gets the same numbers whether it runs alone, in a batch, or in chunks.
func PagedAttentionForward(p *Pool, a *PagedAttn, out, q, k, v []float32) {
	pagedAttention(p, a, out, q, func(qi, sc []float32, row int) { vDotRows(qi, k[row:], a.KV*a.D, sc, a.Scale) },
		func(oi, sc []float32, row int) { vAxpyRows(oi, v[row:], a.KV*a.D, sc) })
}

// PagedAttentionForwardF16 is PagedAttentionForward over caches that hold
// keys and values in half precision.
func PagedAttentionForwardF16(p *Pool, a *PagedAttn, out, q []float32, k, v []uint16) {
	pagedAttention(p, a, out, q, func(qi, sc []float32, row int) { vDotRowsF16(qi, k[row:], a.KV*a.D, sc, a.Scale) },
		func(oi, sc []float32, row int) { vAxpyRowsF16(oi, v[row:], a.KV*a.D, sc) })
}

// pagedAttention runs the query rows over p: dots(qi, sc, row) scores the
// positions of one cache block from offset row on (len(sc) of them, KV*D
// apart), axpys(oi, sc, row) adds their values weighted by sc.
func pagedAttention(p *Pool, a *PagedAttn, out, q []float32, dots, axpys func(qi, sc []float32, row int)) {
	n := a.QStart[len(a.QStart)-1]
	seqOf := make([]int32, n)
	for i := 0; i+1 < len(a.QStart); i++ {
		for r := a.QStart[i]; r < a.QStart[i+1]; r++ {
			seqOf[r] = int32(i)
		}
	}
	grp := a.H / a.KV
	w := a.KV * a.D
	bs := a.BlockSize
	p.For(n*a.H, 4, func(lo, hi int) {
		var buf []float32
		for r := lo; r < hi; r++ {
			row, h := r/a.H, r%a.H
			i := seqOf[row]
			pos := a.Pos0[i] + row - a.QStart[i]
			s0 := 0
			if a.Window > 0 {
				s0 = max(0, pos-a.Window+1)
			}
			s1 := pos + 1
			if cap(buf) < s1 {
				buf = make([]float32, s1+s1/2)
			}
			buf = buf[:s1]
			kh := h / grp
			blocks := a.Blocks[i]
			qi := q[(row*a.H+h)*a.D:][:a.D]
			oi := out[(row*a.H+h)*a.D:][:a.D]
			m := float32(math.Inf(-1))
			// Positions run contiguously (w apart) within a block.
			for s := s0; s < s1; {
				e := min(s1, (s/bs+1)*bs)
				dots(qi, buf[s:e], (int(blocks[s/bs])*bs+s%bs)*w+kh*a.D)
				s = e
			}
			if s0 < s1 {
				m = vMax(buf[s0:s1])
			}
			sum := vExpSub(buf[s0:s1], buf[s0:s1], m)
			clear(oi)
			vScale(buf[s0:s1], 1/sum)
			for s := s0; s < s1; {
				e := min(s1, (s/bs+1)*bs)
				axpys(oi, buf[s:e], (int(blocks[s/bs])*bs+s%bs)*w+kh*a.D)
				s = e
			}
		}
	})
}

// GemmRowStable is Gemm (C = alpha*op(A)*op(B) + beta*C) computed so that
// every row of C gets the same bits whatever m is: it always runs the packed
// kernel, whose sums over k do not depend on how rows are tiled. Batched
// inference uses it so that a sequence decodes identically alone or in a
// batch of any size.
func GemmRowStable(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(activeKernel(), 0, p, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
