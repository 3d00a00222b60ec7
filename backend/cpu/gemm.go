package cpu

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(A) is m×k (A is m×k, or k×m when transA) and op(B) is k×n (B is k×n, or
// n×k when transB). lda, ldb, ldc are row strides. Work is split over p.
func Gemm(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// Placeholder until the packed kernel lands: row-parallel, cache-friendly loop order.
	p.For(m, 4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*ldc : i*ldc+n]
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
				if av == 0 {
					continue
				}
				if !transB {
					bl := b[l*ldb : l*ldb+n]
					for j, bv := range bl {
						ci[j] += av * bv
					}
				} else {
					for j := 0; j < n; j++ {
						ci[j] += av * b[j*ldb+l]
					}
				}
			}
		}
	})
}
