package cuda

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices with
// backend/cpu's Gemm argument meaning: op(A) is m×k (A is m×k, or k×m when
// transA), op(B) is k×n (B is k×n, or n×k when transB), lda, ldb, ldc are
// row strides in elements. A and B are both f32 or both bf16; C is f32, or
// bf16 when A and B are; accumulation is f32 (no TF32). With beta == 0, C
// is not read. It runs through cuBLASLt (heuristic algorithm, workspace),
// falling back to cuBLAS.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a *Buffer, lda int, b *Buffer, ldb int, beta float32, c *Buffer, ldc int) error {
	ck := d.check("gemm")
	if m < 0 || n < 0 || k < 0 {
		ck.fail("negative size m=%d n=%d k=%d", m, n, k)
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	if ck.err == nil {
		switch {
		case lda < max(1, colsA):
			ck.fail("lda = %d is below the %d columns of A", lda, colsA)
		case ldb < max(1, colsB):
			ck.fail("ldb = %d is below the %d columns of B", ldb, colsB)
		case ldc < max(1, n):
			ck.fail("ldc = %d is below the %d columns of C", ldc, n)
		}
	}
	need := func(rows, cols, ld int) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		return (rows-1)*ld + cols
	}
	ck.buf("a", a, need(rowsA, colsA, lda), F32, BF16)
	ck.buf("b", b, need(rowsB, colsB, ldb), F32, BF16)
	ck.buf("c", c, need(m, n, ldc), F32, BF16)
	if ck.err == nil && a.dtype != b.dtype {
		ck.fail("a is %v and b is %v; they must match", a.dtype, b.dtype)
	}
	if ck.err == nil && a.dtype == F32 && c.dtype != F32 {
		ck.fail("f32 inputs need an f32 c, got %v", c.dtype)
	}
	if ck.err != nil {
		return ck.err
	}
	if m == 0 || n == 0 {
		return nil
	}
	g := rowMajorGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	return d.run(func() error { return d.drv.gemm(&g) })
}

// rowMajorGemm maps a row-major GEMM onto cuBLAS's column-major one: a
// row-major matrix is the column-major view of its transpose, and
// Cᵀ = op(B)ᵀ·op(A)ᵀ, so B and A swap places (and m and n), each keeping
// its own transpose flag.
func rowMajorGemm(transA, transB bool, m, n, k int, alpha float32, a *Buffer, lda int, b *Buffer, ldb int, beta float32, c *Buffer, ldc int) gemmArgs {
	return gemmArgs{
		transA: transB, transB: transA,
		m: n, n: m, k: k,
		alpha: alpha, beta: beta,
		a: b.ptr, aType: b.dtype, lda: ldb,
		b: a.ptr, bType: a.dtype, ldb: lda,
		c: c.ptr, cType: c.dtype, ldc: ldc,
	}
}
