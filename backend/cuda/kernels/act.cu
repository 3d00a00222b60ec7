// Elementwise kernels, activations, softmax and cross-entropy. Each
// mirrors the backend/cpu function of the same name; T is the storage type
// of activations (float or bf16), math is in float. Kernels named *_f32 and
// *_bf16 are the two instantiations. Element counts are 64-bit.

template <typename T>
MAI_DEV void swiglu_fwd(T *out, const T *g, const T *u, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		float x = ld(g, i);
		float s = 1.0f / (1.0f + expf(-x));
		st(out, i, x * s * ld(u, i));
	}
}

template <typename T>
MAI_DEV void swiglu_bwd(T *dg, T *du, const T *dout, const T *g, const T *u, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		float x = ld(g, i), d = ld(dout, i), uu = ld(u, i);
		float s = 1.0f / (1.0f + expf(-x));
		st(du, i, ld(du, i) + d * x * s);
		st(dg, i, ld(dg, i) + d * uu * s * (1.0f + x * (1.0f - s)));
	}
}

#define MAI_GELU_C 0.7978845608028654f // sqrt(2/pi)

template <typename T>
MAI_DEV void gelu_fwd(T *out, const T *x, i64 n, int approx) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		float v = ld(x, i), y;
		if (approx) {
			y = 0.5f * v * (1.0f + tanhf(MAI_GELU_C * (v + 0.044715f * v * v * v)));
		} else {
			y = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
		}
		st(out, i, y);
	}
}

template <typename T>
MAI_DEV void gelu_bwd(T *dx, const T *dout, const T *x, i64 n, int approx) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		float v = ld(x, i), d;
		if (approx) {
			float u = MAI_GELU_C * (v + 0.044715f * v * v * v);
			float t = tanhf(u);
			d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * MAI_GELU_C * (1.0f + 3.0f * 0.044715f * v * v);
		} else {
			d = 0.5f * (1.0f + erff(v * 0.7071067811865476f)) + v * expf(-0.5f * v * v) * 0.3989422804014327f;
		}
		st(dx, i, ld(dx, i) + ld(dout, i) * d);
	}
}

// y = a + b
template <typename T>
MAI_DEV void add(T *y, const T *a, const T *b, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		st(y, i, ld(a, i) + ld(b, i));
	}
}

// y += alpha * x
template <typename T>
MAI_DEV void axpy(T *y, const T *x, float alpha, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		st(y, i, ld(y, i) + alpha * ld(x, i));
	}
}

// x *= s
template <typename T>
MAI_DEV void scale(T *x, float s, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		st(x, i, ld(x, i) * s);
	}
}

// y[i, j] += b[j] for rows of width d.
template <typename T>
MAI_DEV void bias_add(T *y, const float *b, i64 n, int d) {
	i64 total = n * d;
	for (i64 i = gtid(); i < total; i += gstride()) {
		st(y, i, ld(y, i) + b[i % d]);
	}
}

// Softmax over rows of width d: one block per row.
template <typename T>
MAI_DEV void softmax_fwd(T *out, const T *x, int n, int d) {
	__shared__ float scratch[32];
	i64 row = blockIdx.x;
	const T *xr = x + row * d;
	T *orow = out + row * d;
	float m = MAI_NEG_INF;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float v = ld(xr, j);
		m = m > v ? m : v;
	}
	m = block_max(m, scratch);
	float s = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		s += expf(ld(xr, j) - m);
	}
	s = block_sum(s, scratch);
	float inv = 1.0f / s;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		st(orow, j, expf(ld(xr, j) - m) * inv);
	}
}

// y[i, :] = x[i, :] * s[i] over rows of d (y may be x): a MoE gate
// applied to an expert's output rows (nn's ScaleRows).
template <typename T>
MAI_DEV void scale_rows(T *y, const T *x, const float *s, i64 n, int d) {
	for (i64 i = gtid(); i < n * d; i += gstride()) {
		st(y, i, ld(x, i) * s[i / d]);
	}
}

// out[row] = sum_j a[row, j] * b[row, j], one block per row: a gate's
// gradient (nn's ScaleRows backward).
template <typename T>
MAI_DEV void row_dot(float *out, const T *a, const T *b, int n, int d) {
	__shared__ float scratch[32];
	i64 row = blockIdx.x;
	float s = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		s += ld(a, row * d + j) * ld(b, row * d + j);
	}
	s = block_sum(s, scratch);
	if (threadIdx.x == 0) {
		out[row] = s;
	}
}

// dx += y * (dy - sum(dy * y))
template <typename T>
MAI_DEV void softmax_bwd(T *dx, const T *dout, const T *y, int n, int d) {
	__shared__ float scratch[32];
	i64 off = (i64)blockIdx.x * d;
	float s = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		s += ld(y, off + j) * ld(dout, off + j);
	}
	s = block_sum(s, scratch);
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float yy = ld(y, off + j);
		st(dx, off + j, ld(dx, off + j) + yy * (ld(dout, off + j) - s));
	}
}

// Cross-entropy forward over rows of v logits, one block per row. Each
// thread keeps an online (max, sum) over its strided chunk of the
// vocabulary, so logits are read once; the block combines them. A negative
// target ignores the row (loss 0); a target >= v gives NaN.
template <typename T>
MAI_DEV void xent_fwd(float *losses, float *lse, const T *logits, const int *targets, int n, int v) {
	__shared__ float scratch[32];
	i64 row = blockIdx.x;
	const T *lr = logits + row * v;
	float m = MAI_NEG_INF, s = 0.0f;
	for (int j = threadIdx.x; j < v; j += blockDim.x) {
		float x = ld(lr, j);
		if (x > m) {
			s = s * expf(m - x) + 1.0f;
			m = x;
		} else {
			s += expf(x - m);
		}
	}
	float bm = block_max(m, scratch);
	float part = (m == MAI_NEG_INF) ? 0.0f : s * expf(m - bm);
	float bs = block_sum(part, scratch);
	if (threadIdx.x == 0) {
		float l = logf(bs) + bm;
		lse[row] = l;
		int t = targets[row];
		if (t < 0) {
			losses[row] = 0.0f;
		} else if (t >= v) {
			losses[row] = mai_bits_f32(0x7fc00000u);
		} else {
			losses[row] = l - ld(lr, t);
		}
	}
}

// dlogits += scale * (softmax - onehot) for rows with a target >= 0.
template <typename T>
MAI_DEV void xent_bwd(T *dlogits, const T *logits, const float *lse, const int *targets, int n, int v, float scale) {
	i64 row = blockIdx.x;
	int t = targets[row];
	if (t < 0) {
		return;
	}
	float l = lse[row];
	i64 off = row * v;
	for (int j = threadIdx.x; j < v; j += blockDim.x) {
		float g = scale * expf(ld(logits, off + j) - l);
		if (j == t) {
			g -= scale;
		}
		st(dlogits, off + j, ld(dlogits, off + j) + g);
	}
}

// Column sums in two deterministic passes: colsum_partial writes, for each
// of gridDim.x row chunks of rows_per_block rows, the sum of every column
// into partial[chunk*d + j]; colsum_add adds the chunks' sums, in order, to
// dst. Used for bias gradients.
template <typename T>
MAI_DEV void colsum_partial(float *partial, const T *x, int n, int d, int rows_per_block) {
	int j = blockIdx.y * blockDim.x + threadIdx.x;
	if (j >= d) {
		return;
	}
	int r0 = blockIdx.x * rows_per_block;
	int r1 = mai_imin(n, r0 + rows_per_block);
	float s = 0.0f;
	for (int r = r0; r < r1; r++) {
		s += ld(x, (i64)r * d + j);
	}
	partial[(i64)blockIdx.x * d + j] = s;
}

extern "C" __global__ void colsum_add(float *dst, const float *partial, int chunks, int d) {
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= d) {
		return;
	}
	float s = 0.0f;
	for (int c = 0; c < chunks; c++) {
		s += partial[(i64)c * d + j];
	}
	dst[j] += s;
}

// Sum (or sum of squares) of x in float64: reduce_partial writes one
// partial per block, each thread striding over the grid in a fixed
// pattern; reduce_final sums the partials in order into out[0] (float64)
// and, when outf is not null, out[0]*scale into outf[0] as float. The
// result depends only on n, the grid and the block size: deterministic.
template <typename T>
MAI_DEV void reduce_partial(double *partial, const T *x, i64 n, int square) {
	__shared__ double scratch[32];
	double s = 0.0;
	for (i64 i = gtid(); i < n; i += gstride()) {
		double v = (double)ld(x, i);
		s += square ? v * v : v;
	}
	s = block_sum_f64(s, scratch);
	if (threadIdx.x == 0) {
		partial[blockIdx.x] = s;
	}
}

extern "C" __global__ void reduce_final(double *out, float *outf, const double *partial, int parts, double scale) {
	__shared__ double scratch[32];
	double s = 0.0;
	for (int i = threadIdx.x; i < parts; i += blockDim.x) {
		s += partial[i];
	}
	s = block_sum_f64(s, scratch);
	if (threadIdx.x == 0) {
		out[0] = s;
		if (outf) {
			outf[0] = (float)(s * scale);
		}
	}
}

// Global-norm clipping without a host round trip: norm = sqrt(sumsq[0]);
// when max_norm > 0 and norm > max_norm, x *= max_norm / (norm + 1e-6),
// exactly as nn.ClipGrads computes the factor.
extern "C" __global__ void clip_scale(float *x, i64 n, const double *sumsq, double max_norm) {
	double norm = sqrt(sumsq[0]);
	if (!(max_norm > 0.0 && norm > max_norm)) {
		return;
	}
	float c = (float)(max_norm / (norm + 1e-6));
	for (i64 i = gtid(); i < n; i += gstride()) {
		x[i] *= c;
	}
}

extern "C" __global__ void cast_f32_bf16(bf16_t *dst, const float *src, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		dst[i] = f32_to_bf16(src[i]);
	}
}

extern "C" __global__ void cast_bf16_f32(float *dst, const bf16_t *src, i64 n) {
	for (i64 i = gtid(); i < n; i += gstride()) {
		dst[i] = bf16_to_f32(src[i]);
	}
}

// The exported instantiations (written out, not generated by a macro, so
// that their signatures can be read from this file).

extern "C" __global__ void swiglu_fwd_f32(float *out, const float *g, const float *u, i64 n) { swiglu_fwd(out, g, u, n); }
extern "C" __global__ void swiglu_bwd_f32(float *dg, float *du, const float *dout, const float *g, const float *u, i64 n) { swiglu_bwd(dg, du, dout, g, u, n); }
extern "C" __global__ void gelu_fwd_f32(float *out, const float *x, i64 n, int approx) { gelu_fwd(out, x, n, approx); }
extern "C" __global__ void gelu_bwd_f32(float *dx, const float *dout, const float *x, i64 n, int approx) { gelu_bwd(dx, dout, x, n, approx); }
extern "C" __global__ void add_f32(float *y, const float *a, const float *b, i64 n) { add(y, a, b, n); }
extern "C" __global__ void axpy_f32(float *y, const float *x, float alpha, i64 n) { axpy(y, x, alpha, n); }
extern "C" __global__ void scale_f32(float *x, float s, i64 n) { scale(x, s, n); }
extern "C" __global__ void bias_add_f32(float *y, const float *b, i64 n, int d) { bias_add(y, b, n, d); }
extern "C" __global__ void scale_rows_f32(float *y, const float *x, const float *s, i64 n, int d) { scale_rows(y, x, s, n, d); }
extern "C" __global__ void row_dot_f32(float *out, const float *a, const float *b, int n, int d) { row_dot(out, a, b, n, d); }
extern "C" __global__ void softmax_fwd_f32(float *out, const float *x, int n, int d) { softmax_fwd(out, x, n, d); }
extern "C" __global__ void softmax_bwd_f32(float *dx, const float *dout, const float *y, int n, int d) { softmax_bwd(dx, dout, y, n, d); }
extern "C" __global__ void xent_fwd_f32(float *losses, float *lse, const float *logits, const int *targets, int n, int v) { xent_fwd(losses, lse, logits, targets, n, v); }
extern "C" __global__ void xent_bwd_f32(float *dlogits, const float *logits, const float *lse, const int *targets, int n, int v, float scale) { xent_bwd(dlogits, logits, lse, targets, n, v, scale); }
extern "C" __global__ void colsum_partial_f32(float *partial, const float *x, int n, int d, int rows_per_block) { colsum_partial(partial, x, n, d, rows_per_block); }
extern "C" __global__ void reduce_partial_f32(double *partial, const float *x, i64 n, int square) { reduce_partial(partial, x, n, square); }

extern "C" __global__ void swiglu_fwd_bf16(bf16_t *out, const bf16_t *g, const bf16_t *u, i64 n) { swiglu_fwd(out, g, u, n); }
extern "C" __global__ void swiglu_bwd_bf16(bf16_t *dg, bf16_t *du, const bf16_t *dout, const bf16_t *g, const bf16_t *u, i64 n) { swiglu_bwd(dg, du, dout, g, u, n); }
extern "C" __global__ void gelu_fwd_bf16(bf16_t *out, const bf16_t *x, i64 n, int approx) { gelu_fwd(out, x, n, approx); }
extern "C" __global__ void gelu_bwd_bf16(bf16_t *dx, const bf16_t *dout, const bf16_t *x, i64 n, int approx) { gelu_bwd(dx, dout, x, n, approx); }
extern "C" __global__ void scale_rows_bf16(bf16_t *y, const bf16_t *x, const float *s, i64 n, int d) { scale_rows(y, x, s, n, d); }
extern "C" __global__ void row_dot_bf16(float *out, const bf16_t *a, const bf16_t *b, int n, int d) { row_dot(out, a, b, n, d); }
extern "C" __global__ void add_bf16(bf16_t *y, const bf16_t *a, const bf16_t *b, i64 n) { add(y, a, b, n); }
extern "C" __global__ void axpy_bf16(bf16_t *y, const bf16_t *x, float alpha, i64 n) { axpy(y, x, alpha, n); }
extern "C" __global__ void scale_bf16(bf16_t *x, float s, i64 n) { scale(x, s, n); }
extern "C" __global__ void bias_add_bf16(bf16_t *y, const float *b, i64 n, int d) { bias_add(y, b, n, d); }
extern "C" __global__ void softmax_fwd_bf16(bf16_t *out, const bf16_t *x, int n, int d) { softmax_fwd(out, x, n, d); }
extern "C" __global__ void softmax_bwd_bf16(bf16_t *dx, const bf16_t *dout, const bf16_t *y, int n, int d) { softmax_bwd(dx, dout, y, n, d); }
extern "C" __global__ void xent_fwd_bf16(float *losses, float *lse, const bf16_t *logits, const int *targets, int n, int v) { xent_fwd(losses, lse, logits, targets, n, v); }
extern "C" __global__ void xent_bwd_bf16(bf16_t *dlogits, const bf16_t *logits, const float *lse, const int *targets, int n, int v, float scale) { xent_bwd(dlogits, logits, lse, targets, n, v, scale); }
extern "C" __global__ void colsum_partial_bf16(float *partial, const bf16_t *x, int n, int d, int rows_per_block) { colsum_partial(partial, x, n, d, rows_per_block); }
extern "C" __global__ void reduce_partial_bf16(double *partial, const bf16_t *x, i64 n, int square) { reduce_partial(partial, x, n, square); }
