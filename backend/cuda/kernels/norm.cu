// RMSNorm and LayerNorm, forward and backward, mirroring backend/cpu's
// norm.go. One block per row in the forward; the backward also runs one
// block per chunk of rows and keeps the weight gradient of its chunk in
// shared memory (each column owned by one thread), written out as a partial
// row that colsum_add then sums in a fixed order: no atomics, bit-identical
// runs.
//
// The forward kernels fuse the residual add: when x2 is not null they
// normalize x + x2 and store that sum (rounded to T) in sum, which the
// backward then takes as its x.

template <typename T>
MAI_DEV void rmsnorm_fwd(T *out, float *rstd, T *sum, const T *x, const T *x2, const float *w, int n, int d, float eps) {
	__shared__ float scratch[32];
	i64 off = (i64)blockIdx.x * d;
	float ss = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float v = ld(x, off + j);
		if (x2) {
			st(sum, off + j, v + ld(x2, off + j));
			v = ld(sum, off + j); // normalize what the backward will see
		}
		ss += v * v;
	}
	ss = block_sum(ss, scratch);
	float r = rsqrtf(ss / (float)d + eps);
	if (rstd && threadIdx.x == 0) {
		rstd[blockIdx.x] = r;
	}
	const T *src = x2 ? sum : x;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		st(out, off + j, ld(src, off + j) * r * w[j]);
	}
}

// dx += r*(g*w) - r^3/d * x * sum(g*w*x); dw_partial[chunk, j] = sum over
// the chunk's rows of g*x*r (only when dw_partial is not null).
template <typename T>
MAI_DEV void rmsnorm_bwd(T *dx, float *dw_partial, const T *dout, const T *x, const float *w, const float *rstd, int n, int d, int rows_per_block) {
	__shared__ float scratch[32];
	MAI_DYN_SMEM(float, dwacc);
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		dwacc[j] = 0.0f;
	}
	int r0 = blockIdx.x * rows_per_block;
	int r1 = mai_imin(n, r0 + rows_per_block);
	for (int row = r0; row < r1; row++) {
		i64 off = (i64)row * d;
		float r = rstd[row];
		float dot = 0.0f;
		for (int j = threadIdx.x; j < d; j += blockDim.x) {
			dot += ld(dout, off + j) * w[j] * ld(x, off + j);
		}
		dot = block_sum(dot, scratch);
		float c = dot * r * r * r / (float)d;
		for (int j = threadIdx.x; j < d; j += blockDim.x) {
			float g = ld(dout, off + j), xv = ld(x, off + j);
			st(dx, off + j, ld(dx, off + j) + r * g * w[j] - c * xv);
			dwacc[j] += g * xv * r;
		}
	}
	if (dw_partial) {
		for (int j = threadIdx.x; j < d; j += blockDim.x) {
			dw_partial[(i64)blockIdx.x * d + j] = dwacc[j];
		}
	}
}

template <typename T>
MAI_DEV void layernorm_fwd(T *out, float *mean, float *rstd, T *sum, const T *x, const T *x2, const float *w, const float *b, int n, int d, float eps) {
	__shared__ float scratch[32];
	i64 off = (i64)blockIdx.x * d;
	float s = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float v = ld(x, off + j);
		if (x2) {
			st(sum, off + j, v + ld(x2, off + j));
			v = ld(sum, off + j);
		}
		s += v;
	}
	const T *src = x2 ? sum : x;
	float m = block_sum(s, scratch) / (float)d;
	float ss = 0.0f;
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float dv = ld(src, off + j) - m;
		ss += dv * dv;
	}
	float r = rsqrtf(block_sum(ss, scratch) / (float)d + eps);
	if (threadIdx.x == 0) {
		mean[blockIdx.x] = m;
		rstd[blockIdx.x] = r;
	}
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		float o = (ld(src, off + j) - m) * r * w[j];
		if (b) {
			o += b[j];
		}
		st(out, off + j, o);
	}
}

template <typename T>
MAI_DEV void layernorm_bwd(T *dx, float *dw_partial, float *db_partial, const T *dout, const T *x, const float *w, const float *mean, const float *rstd, int n, int d, int rows_per_block) {
	__shared__ float scratch[32];
	MAI_DYN_SMEM(float, acc); // dw in [0, d), db in [d, 2d)
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		acc[j] = 0.0f; // columns j and d+j belong to this thread alone
		acc[d + j] = 0.0f;
	}
	int r0 = blockIdx.x * rows_per_block;
	int r1 = mai_imin(n, r0 + rows_per_block);
	for (int row = r0; row < r1; row++) {
		i64 off = (i64)row * d;
		float m = mean[row], r = rstd[row];
		float sg = 0.0f, sgx = 0.0f;
		for (int j = threadIdx.x; j < d; j += blockDim.x) {
			float g = ld(dout, off + j);
			float xh = (ld(x, off + j) - m) * r;
			float gw = g * w[j];
			sg += gw;
			sgx += gw * xh;
			acc[j] += g * xh;
			acc[d + j] += g;
		}
		float mg = block_sum(sg, scratch) / (float)d;
		float mgx = block_sum(sgx, scratch) / (float)d;
		for (int j = threadIdx.x; j < d; j += blockDim.x) {
			float xh = (ld(x, off + j) - m) * r;
			st(dx, off + j, ld(dx, off + j) + r * (ld(dout, off + j) * w[j] - mg - xh * mgx));
		}
	}
	for (int j = threadIdx.x; j < d; j += blockDim.x) {
		if (dw_partial) {
			dw_partial[(i64)blockIdx.x * d + j] = acc[j];
		}
		if (db_partial) {
			db_partial[(i64)blockIdx.x * d + j] = acc[d + j];
		}
	}
}

// RoPE in the Hugging Face "rotate half" convention over x [n, heads, d]:
// pairs (i, i+rot/2) for i < rot/2 are rotated by the angle of the row's
// position, dimensions past rot are copied. sign -1 rotates backwards (the
// backward pass); accumulate adds into out instead of writing it. One
// thread per output element.
template <typename T>
MAI_DEV void rope(T *out, const T *x, const float *cosT, const float *sinT, const int *pos, int n, int heads, int d, int rot, float sign, int accumulate) {
	int half = rot / 2;
	i64 total = (i64)n * heads * d;
	for (i64 i = gtid(); i < total; i += gstride()) {
		int j = (int)(i % d);
		i64 row = i / ((i64)heads * d);
		i64 base = i - j;
		float y;
		if (j < half) {
			i64 t = (i64)pos[row] * half + j;
			float c = cosT[t], s = sign * sinT[t];
			y = ld(x, base + j) * c - ld(x, base + j + half) * s;
		} else if (j < rot) {
			i64 t = (i64)pos[row] * half + (j - half);
			float c = cosT[t], s = sign * sinT[t];
			y = ld(x, base + j) * c + ld(x, base + j - half) * s;
		} else {
			y = ld(x, i);
		}
		if (accumulate) {
			y += ld(out, i);
		}
		st(out, i, y);
	}
}

// Embedding rows: out[i] = w[ids[i]] (NaN for an id outside [0, vocab)).
template <typename T>
MAI_DEV void embedding_fwd(T *out, const float *w, const int *ids, int n, int d, int vocab) {
	i64 total = (i64)n * d;
	for (i64 i = gtid(); i < total; i += gstride()) {
		i64 row = i / d;
		int j = (int)(i % d);
		int id = ids[row];
		float v = (id >= 0 && id < vocab) ? w[(i64)id * d + j] : mai_bits_f32(0x7fc00000u);
		st(out, i, v);
	}
}

// Embedding gradient without atomics: the host groups the token positions
// by id (order lists positions sorted by id, stably; segment s covers
// order[seg_start[s] .. seg_start[s+1]) and belongs to row seg_id[s]). One
// thread per (segment, column) sums its occurrences in order and adds the
// sum to dw.
template <typename T>
MAI_DEV void embedding_bwd(float *dw, const T *dout, const int *order, const int *seg_start, const int *seg_id, int nseg, int d) {
	int s = blockIdx.x;
	int j = blockIdx.y * blockDim.x + threadIdx.x;
	if (s >= nseg || j >= d) {
		return;
	}
	float acc = 0.0f;
	for (int k = seg_start[s]; k < seg_start[s + 1]; k++) {
		acc += ld(dout, (i64)order[k] * d + j);
	}
	dw[(i64)seg_id[s] * d + j] += acc;
}

// The exported instantiations.

extern "C" __global__ void rmsnorm_fwd_f32(float *out, float *rstd, float *sum, const float *x, const float *x2, const float *w, int n, int d, float eps) { rmsnorm_fwd(out, rstd, sum, x, x2, w, n, d, eps); }
extern "C" __global__ void rmsnorm_bwd_f32(float *dx, float *dw_partial, const float *dout, const float *x, const float *w, const float *rstd, int n, int d, int rows_per_block) { rmsnorm_bwd(dx, dw_partial, dout, x, w, rstd, n, d, rows_per_block); }
extern "C" __global__ void layernorm_fwd_f32(float *out, float *mean, float *rstd, float *sum, const float *x, const float *x2, const float *w, const float *b, int n, int d, float eps) { layernorm_fwd(out, mean, rstd, sum, x, x2, w, b, n, d, eps); }
extern "C" __global__ void layernorm_bwd_f32(float *dx, float *dw_partial, float *db_partial, const float *dout, const float *x, const float *w, const float *mean, const float *rstd, int n, int d, int rows_per_block) { layernorm_bwd(dx, dw_partial, db_partial, dout, x, w, mean, rstd, n, d, rows_per_block); }
extern "C" __global__ void rope_f32(float *out, const float *x, const float *cosT, const float *sinT, const int *pos, int n, int heads, int d, int rot, float sign, int accumulate) { rope(out, x, cosT, sinT, pos, n, heads, d, rot, sign, accumulate); }
extern "C" __global__ void embedding_fwd_f32(float *out, const float *w, const int *ids, int n, int d, int vocab) { embedding_fwd(out, w, ids, n, d, vocab); }
extern "C" __global__ void embedding_bwd_f32(float *dw, const float *dout, const int *order, const int *seg_start, const int *seg_id, int nseg, int d) { embedding_bwd(dw, dout, order, seg_start, seg_id, nseg, d); }

extern "C" __global__ void rmsnorm_fwd_bf16(bf16_t *out, float *rstd, bf16_t *sum, const bf16_t *x, const bf16_t *x2, const float *w, int n, int d, float eps) { rmsnorm_fwd(out, rstd, sum, x, x2, w, n, d, eps); }
extern "C" __global__ void rmsnorm_bwd_bf16(bf16_t *dx, float *dw_partial, const bf16_t *dout, const bf16_t *x, const float *w, const float *rstd, int n, int d, int rows_per_block) { rmsnorm_bwd(dx, dw_partial, dout, x, w, rstd, n, d, rows_per_block); }
extern "C" __global__ void layernorm_fwd_bf16(bf16_t *out, float *mean, float *rstd, bf16_t *sum, const bf16_t *x, const bf16_t *x2, const float *w, const float *b, int n, int d, float eps) { layernorm_fwd(out, mean, rstd, sum, x, x2, w, b, n, d, eps); }
extern "C" __global__ void layernorm_bwd_bf16(bf16_t *dx, float *dw_partial, float *db_partial, const bf16_t *dout, const bf16_t *x, const float *w, const float *mean, const float *rstd, int n, int d, int rows_per_block) { layernorm_bwd(dx, dw_partial, db_partial, dout, x, w, mean, rstd, n, d, rows_per_block); }
extern "C" __global__ void rope_bf16(bf16_t *out, const bf16_t *x, const float *cosT, const float *sinT, const int *pos, int n, int heads, int d, int rot, float sign, int accumulate) { rope(out, x, cosT, sinT, pos, n, heads, d, rot, sign, accumulate); }
extern "C" __global__ void embedding_fwd_bf16(bf16_t *out, const float *w, const int *ids, int n, int d, int vocab) { embedding_fwd(out, w, ids, n, d, vocab); }
extern "C" __global__ void embedding_bwd_bf16(float *dw, const bf16_t *dout, const int *order, const int *seg_start, const int *seg_id, int nseg, int d) { embedding_bwd(dw, dout, order, seg_start, seg_id, nseg, d); }
