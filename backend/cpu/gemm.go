package cpu

import (
	"fmt"
	"sync"
)

// Blocking parameters of the packed GEMM (the BLIS loop nest). A block of
// op(A), gemmMC×gemmKC, is packed into micro-panels of mr rows and stays in L2;
// a panel of op(B), gemmKC×gemmNC, is packed into micro-panels of nr columns
// and streams from L3; the microkernel keeps an mr×nr tile of C in registers.
const (
	gemmKC = 192
	gemmMC = 144 // a multiple of every kernel's mr (12, 6, 4)
	gemmNC = 3072

	// gemmSmall is the m*n*k up to which Gemm skips packing and runs a plain
	// loop (measured: packing with the AVX kernels wins from about 8×8×8).
	gemmSmall = 8 * 8 * 8
	// gemmSkinnyRows is the m up to which Gemm runs dot products or row
	// updates instead of packing (a matrix-vector product and its kin).
	gemmSkinnyRows = 4
	// gemmMinWork is the m*n*k each extra thread must get to be worth waking:
	// about 20 µs of AVX-512 work, several times what waking a worker costs
	// (and the Go scheduler's spinning while it wakes).
	gemmMinWork = 1 << 22
)

// gemmKernel is a register-blocked microkernel over packed panels.
type gemmKernel struct {
	name   string
	isa    string // the instructions it uses, as peakLoopFor names them
	mr, nr int
	// tile computes the full mr×nr tile
	//   c[i*ldc+j] = sum_p a[p*mr+i]*b[p*nr+j] + beta*c[i*ldc+j]
	// for p < kc, where a and b are packed micro-panels. With beta == 0 it
	// does not read c.
	tile func(kc int, a, b, c []float32, ldc int, beta float32)
}

// goKernel is the portable microkernel, used where no assembly kernel runs.
var goKernel = gemmKernel{name: "go4x4", isa: "go", mr: 4, nr: 4, tile: tile4x4Go}

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(A) is m×k (A is m×k, or k×m when transA) and op(B) is k×n (B is k×n, or
// n×k when transB). lda, ldb, ldc are row strides. Work is split over p.
//
// With beta == 0, C is written without being read (it may hold NaN). Invalid
// sizes or strides, or slices too short for them, panic with a message naming
// the argument, as BLAS implementations do.
func Gemm(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(activeKernel(), gemmSmall, p, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemm is Gemm with an explicit microkernel and small-problem threshold, so
// that tests can run every kernel and force the packed path on tiny sizes.
func gemm(kern gemmKernel, small int, p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmCheck(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(p, m, n, beta, c, ldc)
		return
	}
	if m*n*k <= small {
		gemmDirect(transA, transB, 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	j := gemmJobs.Get().(*gemmJob)
	defer func() {
		*j = gemmJob{run: j.run, runSkinny: j.runSkinny} // drop the references to the caller's slices
		gemmJobs.Put(j)
	}()
	j.kern = kern
	j.transA, j.transB = transA, transB
	j.m, j.n, j.k = m, n, k
	j.alpha, j.beta = alpha, beta
	j.a, j.b, j.c = a, b, c
	j.lda, j.ldb, j.ldc = lda, ldb, ldc
	if m <= gemmSkinnyRows && small > 0 && (!transA || !transB || m*k <= len(j.arow)) {
		// Few rows: at most a few reads of B, no packing. Split over columns,
		// each thread getting about gemmMinWork multiply-adds or more.
		p.For(n, max(16, gemmMinWork/(m*k)), j.runSkinny)
		return
	}
	j.tm, j.tn = gemmSplit(p.Threads(), m, n, k, kern.mr, kern.nr)
	p.For(j.tm*j.tn, 1, j.run)
}

// gemmJob carries one call's arguments to the pool's workers. Jobs are reused,
// and run is bound once per job, so that a call allocates no closure.
type gemmJob struct {
	kern           gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	tm, tn         int // the thread grid over C
	run            func(lo, hi int)
	runSkinny      func(lo, hi int)
	arow           []float32 // rows of a transposed A, gathered (skinny path)
}

var gemmJobs = sync.Pool{New: func() any {
	j := &gemmJob{arow: make([]float32, gemmSkinnyRows*gemmKC*16)}
	j.run = j.blocks
	j.runSkinny = j.skinny
	return j
}}

// blocks computes blocks [lo,hi) of the tm×tn grid over C.
func (j *gemmJob) blocks(lo, hi int) {
	kern := j.kern
	mt := (j.m + kern.mr - 1) / kern.mr // row tiles
	nt := (j.n + kern.nr - 1) / kern.nr // column tiles
	buf := gemmBufs.Get().(*gemmBuf)
	for w := lo; w < hi; w++ {
		m0, m1 := splitTiles(mt, j.tm, w/j.tn, kern.mr, j.m)
		n0, n1 := splitTiles(nt, j.tn, w%j.tn, kern.nr, j.n)
		if m0 < m1 && n0 < n1 {
			gemmBlock(kern, buf, j.transA, j.transB, m0, m1, n0, n1, j.k, j.alpha, j.a, j.lda, j.b, j.ldb, j.beta, j.c, j.ldc)
		}
	}
	gemmBufs.Put(buf)
}

// skinny computes columns [lo,hi) of C for m ≤ gemmSkinnyRows.
func (j *gemmJob) skinny(lo, hi int) {
	m, k, a, lda, b, ldb, c, ldc := j.m, j.k, j.a, j.lda, j.b, j.ldb, j.c, j.ldc
	alpha, beta := j.alpha, j.beta
	if j.transB {
		// C[i][col] = alpha·dot(op(A) row i, row col of b) + beta·C[i][col].
		var rows [gemmSkinnyRows][]float32
		for i := range m {
			if j.transA {
				r := j.arow[i*k : (i+1)*k]
				for l := range r {
					r[l] = a[l*lda+i]
				}
				rows[i] = r
			} else {
				rows[i] = a[i*lda : i*lda+k]
			}
		}
		for col := lo; col < hi; col++ {
			bj := b[col*ldb : col*ldb+k]
			for i := range m {
				s := alpha * gemmDot(rows[i], bj)
				if beta != 0 {
					s += beta * c[i*ldc+col]
				}
				c[i*ldc+col] = s
			}
		}
		return
	}
	// C[i][lo:hi] = beta·C[i][lo:hi] + Σ_l alpha·op(A)[i][l]·b[l][lo:hi], in
	// column blocks that stay in L1.
	const block = 1024
	for c0 := lo; c0 < hi; c0 += block {
		c1 := min(c0+block, hi)
		for i := range m {
			ci := c[i*ldc+c0 : i*ldc+c1]
			if beta == 0 {
				clear(ci)
			} else if beta != 1 {
				for x := range ci {
					ci[x] *= beta
				}
			}
		}
		for l := range k {
			bl := b[l*ldb+c0 : l*ldb+c1]
			for i := range m {
				var av float32
				if j.transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				gemmAxpy(alpha*av, bl, c[i*ldc+c0:i*ldc+c1])
			}
		}
	}
}

// gemmCheck panics with a clear message if the arguments do not describe
// matrices that fit their slices.
func gemmCheck(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cpu.Gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("A", ar, ac, a, lda)
	checkMat("B", br, bc, b, ldb)
	checkMat("C", m, n, c, ldc)
}

func checkMat(name string, rows, cols int, s []float32, ld int) {
	if ld < max(cols, 1) {
		panic(fmt.Sprintf("cpu.Gemm: %s has %d columns but row stride %d", name, cols, ld))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(s) < need {
		panic(fmt.Sprintf("cpu.Gemm: %s is %d×%d with stride %d and needs %d elements, has %d", name, rows, cols, ld, need, len(s)))
	}
}

// scaleC sets C = beta*C, without reading C when beta == 0.
func scaleC(p *Pool, m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	p.For(m, max(1, 1<<14/max(n, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(ci)
				continue
			}
			for j := range ci {
				ci[j] *= beta
			}
		}
	})
}

// gemmDirect computes rows [m0,m1) of C without packing, for problems too
// small to pay for it.
func gemmDirect(transA, transB bool, m0, m1, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := m0; i < m1; i++ {
		ci := c[i*ldc : i*ldc+n]
		if transB {
			// C[i][j] = sum_l A[i][l]*B[j][l]: dot products.
			for j := range ci {
				bj := b[j*ldb : j*ldb+k]
				var s float32
				if transA {
					for l, bv := range bj {
						s += a[l*lda+i] * bv
					}
				} else {
					ai := a[i*lda : i*lda+k]
					for l, bv := range bj {
						s += ai[l] * bv
					}
				}
				if beta == 0 {
					ci[j] = alpha * s
				} else {
					ci[j] = alpha*s + beta*ci[j]
				}
			}
			continue
		}
		// C[i][:] = sum_l A[i][l]*B[l][:]: row updates.
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		for l := 0; l < k; l++ {
			var av float32
			if transA {
				av = a[l*lda+i]
			} else {
				av = a[i*lda+l]
			}
			av *= alpha
			bl := b[l*ldb : l*ldb+n]
			for j, bv := range bl {
				ci[j] += av * bv
			}
		}
	}
}

// gemmSplit picks a tm×tn grid of threads over C (tm*tn ≤ threads) that
// minimises the estimated time of the slowest thread: its multiply-adds plus
// what it packs.
func gemmSplit(threads, m, n, k, mr, nr int) (tm, tn int) {
	work := m * n * k
	t := min(threads, max(1, work/gemmMinWork))
	mt := (m + mr - 1) / mr
	nt := (n + nr - 1) / nr
	bestTM, bestTN, best := 1, 1, -1
	for a := 1; a <= t; a++ {
		if t%a != 0 || a > mt || t/a > nt {
			continue
		}
		bm := (mt + a - 1) / a * mr
		bn := (nt + t/a - 1) / (t / a) * nr
		// One packed element costs about as much as 8 multiply-adds.
		cost := bm*bn*k + 8*(bm*k*((bn+gemmNC-1)/gemmNC)+bn*k)
		if best < 0 || cost < best {
			bestTM, bestTN, best = a, t/a, cost
		}
	}
	return bestTM, bestTN
}

// splitTiles returns the element range [lo,hi) of part w of tiles tiles split
// into parts parts, each tile size wide, clipped to limit.
func splitTiles(tiles, parts, w, size, limit int) (lo, hi int) {
	per := tiles / parts
	extra := tiles % parts
	start := w*per + min(w, extra)
	end := start + per
	if w < extra {
		end++
	}
	return min(start*size, limit), min(end*size, limit)
}

// gemmBuf holds one thread's packed panels.
type gemmBuf struct {
	a, b []float32
	tile []float32
}

var gemmBufs = sync.Pool{New: func() any {
	return &gemmBuf{
		a:    make([]float32, gemmMC*gemmKC),
		b:    make([]float32, gemmKC*gemmNC),
		tile: make([]float32, 32*32),
	}
}}

// gemmBlock computes the block rows [m0,m1) × columns [n0,n1) of C.
func gemmBlock(kern gemmKernel, buf *gemmBuf, transA, transB bool, m0, m1, n0, n1, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := kern.mr, kern.nr
	tile := buf.tile[:mr*nr]
	for jc := n0; jc < n1; jc += gemmNC {
		nc := min(gemmNC, n1-jc)
		for pc := 0; pc < k; pc += gemmKC {
			kc := min(gemmKC, k-pc)
			bp := buf.b[:(nc+nr-1)/nr*nr*kc]
			packB(bp, b, ldb, transB, pc, kc, jc, nc, nr)
			bet := beta
			if pc > 0 {
				bet = 1
			}
			for ic := m0; ic < m1; ic += gemmMC {
				mc := min(gemmMC, m1-ic)
				ap := buf.a[:(mc+mr-1)/mr*mr*kc]
				packA(ap, a, lda, transA, ic, mc, pc, kc, mr, alpha)
				for jr := 0; jr < nc; jr += nr {
					bpanel := bp[jr*kc : (jr+nr)*kc]
					nn := min(nr, nc-jr)
					for ir := 0; ir < mc; ir += mr {
						apanel := ap[ir*kc : (ir+mr)*kc]
						mm := min(mr, mc-ir)
						off := (ic+ir)*ldc + jc + jr
						if mm == mr && nn == nr {
							kern.tile(kc, apanel, bpanel, c[off:], ldc, bet)
							continue
						}
						kern.tile(kc, apanel, bpanel, tile, nr, 0)
						for i := range mm {
							ci := c[off+i*ldc : off+i*ldc+nn]
							ti := tile[i*nr : i*nr+nn]
							if bet == 0 {
								copy(ci, ti)
								continue
							}
							for j, t := range ti {
								ci[j] = t + bet*ci[j]
							}
						}
					}
				}
			}
		}
	}
}

// packA packs alpha*op(A)[ic:ic+mc, pc:pc+kc] into micro-panels of mr rows:
// ap[(ir/mr)*kc*mr + p*mr + r] = alpha*op(A)[ic+ir+r, pc+p], zero-padded past mc.
func packA(ap, a []float32, lda int, transA bool, ic, mc, pc, kc, mr int, alpha float32) {
	if transA {
		// op(A)[i][p] = a[p*lda+i]: row p of a holds column p of op(A); deal
		// each row's mc values into the micro-panels, mr to a panel.
		full := mc / mr * mr
		packPanels(ap, a[pc*lda+ic:], mr, full/mr, kc, lda, mr*kc, alpha)
		if mm := mc - full; mm > 0 {
			dst := ap[full*kc : (full+mr)*kc]
			for p := range kc {
				src := a[(pc+p)*lda+ic+full:]
				src = src[:mm]
				d := dst[p*mr : p*mr+mr]
				for r, v := range src {
					d[r] = alpha * v
				}
				clear(d[mm:])
			}
		}
		return
	}
	// op(A)[i][p] = a[i*lda+p]: each micro-panel transposes mr rows of a.
	for ir := 0; ir < mc; ir += mr {
		dst := ap[ir*kc : (ir+mr)*kc]
		mm := min(mr, mc-ir)
		if mm == mr {
			packTrans(dst, a[(ic+ir)*lda+pc:], mr, kc, lda, alpha)
			continue
		}
		for r := range mr {
			if r >= mm {
				for p := range kc {
					dst[p*mr+r] = 0
				}
				continue
			}
			row := a[(ic+ir+r)*lda+pc:]
			row = row[:kc]
			for p, v := range row {
				dst[p*mr+r] = alpha * v
			}
		}
	}
}

// packB packs op(B)[pc:pc+kc, jc:jc+nc] into micro-panels of nr columns:
// bp[(jr/nr)*kc*nr + p*nr + j] = op(B)[pc+p, jc+jr+j], zero-padded past nc.
func packB(bp, b []float32, ldb int, transB bool, pc, kc, jc, nc, nr int) {
	if !transB {
		// op(B)[p][j] = b[p*ldb+j]: deal each row's nc values into the
		// micro-panels, nr to a panel.
		full := nc / nr * nr
		packPanels(bp, b[pc*ldb+jc:], nr, full/nr, kc, ldb, nr*kc, 1)
		if nn := nc - full; nn > 0 {
			dst := bp[full*kc : (full+nr)*kc]
			for p := range kc {
				d := dst[p*nr : p*nr+nr]
				copy(d, b[(pc+p)*ldb+jc+full:][:nn])
				clear(d[nn:])
			}
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p]: each micro-panel transposes nr rows of b.
	for jr := 0; jr < nc; jr += nr {
		dst := bp[jr*kc : (jr+nr)*kc]
		nn := min(nr, nc-jr)
		if nn == nr {
			packTrans(dst, b[(jc+jr)*ldb+pc:], nr, kc, ldb, 1)
			continue
		}
		for j := range nr {
			if j >= nn {
				for p := range kc {
					dst[p*nr+j] = 0
				}
				continue
			}
			col := b[(jc+jr+j)*ldb+pc:]
			col = col[:kc]
			for p, v := range col {
				dst[p*nr+j] = v
			}
		}
	}
}

// packTransGo is the portable packTrans: dst[p*rows+r] = alpha*src[r*stride+p].
func packTransGo(dst, src []float32, rows, kc, stride int, alpha float32) {
	r := 0
	for ; r+4 <= rows; r += 4 {
		packTrans4Go(dst, rows, r, src[r*stride:], stride, kc, alpha)
	}
	for ; r < rows; r++ {
		row := src[r*stride:]
		row = row[:kc]
		for p, v := range row {
			dst[p*rows+r] = alpha * v
		}
	}
}

// packTrans4Go transposes four rows of src into slots off..off+3 of a
// micro-panel rows wide.
func packTrans4Go(dst []float32, rows, off int, src []float32, stride, kc int, alpha float32) {
	r0 := src[:kc]
	r1 := src[stride:][:kc]
	r2 := src[2*stride:][:kc]
	r3 := src[3*stride:][:kc]
	dst = dst[:rows*kc]
	for p := range kc {
		d := dst[p*rows+off : p*rows+off+4 : p*rows+off+4]
		d[0] = alpha * r0[p]
		d[1] = alpha * r1[p]
		d[2] = alpha * r2[p]
		d[3] = alpha * r3[p]
	}
}

// tile4x4Go is the portable 4×4 microkernel.
func tile4x4Go(kc int, a, b, c []float32, ldc int, beta float32) {
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:4*kc]
	b = b[:4*kc]
	for p := 0; p < len(a); p += 4 {
		ap := a[p : p+4 : p+4]
		bp := b[p : p+4 : p+4]
		a0, a1, a2, a3 := ap[0], ap[1], ap[2], ap[3]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	store4(c[0:4:4], c00, c01, c02, c03, beta)
	store4(c[ldc:ldc+4:ldc+4], c10, c11, c12, c13, beta)
	store4(c[2*ldc:2*ldc+4:2*ldc+4], c20, c21, c22, c23, beta)
	store4(c[3*ldc:3*ldc+4:3*ldc+4], c30, c31, c32, c33, beta)
}

func store4(c []float32, v0, v1, v2, v3, beta float32) {
	if beta == 0 {
		c[0], c[1], c[2], c[3] = v0, v1, v2, v3
		return
	}
	c[0] = v0 + beta*c[0]
	c[1] = v1 + beta*c[1]
	c[2] = v2 + beta*c[2]
	c[3] = v3 + beta*c[3]
}

// transName names a transpose variant the BLAS way: "NN", "NT", "TN" or "TT".
func transName(transA, transB bool) string {
	s := [2]byte{'N', 'N'}
	if transA {
		s[0] = 'T'
	}
	if transB {
		s[1] = 'T'
	}
	return string(s[:])
}

// packPanelsGo is the portable packPanels.
func packPanelsGo(dst, src []float32, width, panels, rows, srcStride, panelStride int, alpha float32) {
	for r := range rows {
		row := src[r*srcStride : r*srcStride+panels*width]
		for q := range panels {
			d := dst[q*panelStride+r*width : q*panelStride+r*width+width]
			for i, v := range row[q*width : q*width+width] {
				d[i] = alpha * v
			}
		}
	}
}

// gemmDotGo is the portable gemmDot.
func gemmDotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// gemmAxpyGo is the portable gemmAxpy.
func gemmAxpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
