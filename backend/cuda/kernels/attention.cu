// Causal attention with grouped-query heads, mirroring backend/cpu's
// attention.go: q, out, dout are [B, Tq, H, D]; k, v are [B, Tk, KV, D]
// with kstride elements between batch entries (a KV cache larger than Tk is
// used in place, slots past Tk never read); query t sits at position
// offset+t and sees keys at positions <= its own, within window positions
// when window > 0, and from start[b*Tq+t] on when start is not null
// (packed documents). lse [B, H, Tq] is the log-sum-exp of every score row.
//
// This is the correct tiled version (no tensor cores yet): a block holds
// ATTN_ROWS warps; keys (or queries, in the dk/dv pass) stream through
// shared memory in tiles of 32, one per lane, so that scores need no
// shuffle reduction; the online softmax keeps one running max and sum per
// row. D <= ATTN_MAXD, each lane holding D/32 output dimensions.
//
// Shared memory (dynamic, floats; the host computes the same sizes):
//   attn_fwd:     2*32*(D+1) + ATTN_ROWS*D
//   attn_bwd_dq:  2*32*(D+1) + 2*ATTN_ROWS*D
//   attn_bwd_dkv: 2*32*(D+1) + 2*ATTN_ROWS*D

#define ATTN_ROWS 4
#define ATTN_BK 32
#define ATTN_MAXD 256
#define ATTN_SLOTS (ATTN_MAXD / 32)

struct AttnDims {
	int B, Tq, Tk, H, KV, D;
	i64 kstride;
	int offset, window;
	float scale;
	const int *start;
};

MAI_DEV AttnDims attn_dims(const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) {
	AttnDims a;
	a.B = B;
	a.Tq = Tq;
	a.Tk = Tk;
	a.H = H;
	a.KV = KV;
	a.D = D;
	a.kstride = kstride;
	a.offset = offset;
	a.window = window;
	a.scale = scale;
	a.start = start;
	return a;
}

// attn_span sets [lo, hi): the keys query t of batch entry b attends to.
MAI_DEV void attn_span(const AttnDims &a, int b, int t, int &lo, int &hi) {
	int pos = a.offset + t;
	hi = mai_imin(pos + 1, a.Tk);
	lo = 0;
	if (a.window > 0) {
		lo = mai_imax(0, pos - a.window + 1);
	}
	if (a.start) {
		lo = mai_imax(lo, a.start[b * a.Tq + t]);
	}
}

// attn_block_keys loads this block's rows' spans and returns the union
// [klo, khi) of the keys any of them attends to. Every thread calls it.
MAI_DEV void attn_block_keys(int *slo, int *shi, bool has, int lo, int hi, int &klo, int &khi) {
	int lane = threadIdx.x % 32, w = threadIdx.x / 32;
	if (lane == 0) {
		slo[w] = has ? lo : 0x7fffffff;
		shi[w] = has ? hi : 0;
	}
	__syncthreads();
	klo = 0x7fffffff;
	khi = 0;
	for (int r = 0; r < ATTN_ROWS; r++) {
		klo = mai_imin(klo, slo[r]);
		khi = mai_imax(khi, shi[r]);
	}
}

// attn_load_kv copies keys [s0, s0+32) (those below khi) of KV head kh into
// the padded tiles sk and sv; rows past khi are zero.
template <typename T>
MAI_DEV void attn_load_kv(float *sk, float *sv, const T *k, const T *v, const AttnDims &a, int b, int kh, int s0, int khi) {
	int D = a.D, DP = a.D + 1;
	for (int idx = threadIdx.x; idx < ATTN_BK * D; idx += blockDim.x) {
		int r = idx / D, c = idx % D;
		int s = s0 + r;
		float kk = 0.0f, vv = 0.0f;
		if (s < khi) {
			i64 o = (i64)b * a.kstride + ((i64)s * a.KV + kh) * D + c;
			kk = ld(k, o);
			vv = ld(v, o);
		}
		sk[r * DP + c] = kk;
		sv[r * DP + c] = vv;
	}
}

// Forward: grid (ceil(Tq/ATTN_ROWS), H, B), block ATTN_ROWS*32 threads;
// warp w of the block owns query row blockIdx.x*ATTN_ROWS + w.
template <typename T>
MAI_DEV void attn_fwd(T *out, float *lse, const T *q, const T *k, const T *v, AttnDims a) {
	MAI_DYN_SMEM(float, sm);
	__shared__ int slo[ATTN_ROWS], shi[ATTN_ROWS];
	int D = a.D, DP = a.D + 1;
	float *sk = sm;
	float *sv = sk + ATTN_BK * DP;
	float *sq = sv + ATTN_BK * DP;
	int lane = threadIdx.x % 32, w = threadIdx.x / 32;
	int b = blockIdx.z, h = blockIdx.y, kh = h / (a.H / a.KV);
	int t = blockIdx.x * ATTN_ROWS + w;
	bool valid = t < a.Tq;
	int lo = 0, hi = 0;
	i64 qoff = 0;
	if (valid) {
		attn_span(a, b, t, lo, hi);
		qoff = (((i64)b * a.Tq + t) * a.H + h) * D;
		for (int c = lane; c < D; c += 32) {
			sq[w * D + c] = ld(q, qoff + c);
		}
	}
	bool has = valid && lo < hi;
	int klo, khi;
	attn_block_keys(slo, shi, has, lo, hi, klo, khi);
	float m = MAI_NEG_INF, l = 0.0f;
	float acc[ATTN_SLOTS];
	for (int i = 0; i < ATTN_SLOTS; i++) {
		acc[i] = 0.0f;
	}
	for (int s0 = klo; s0 < khi; s0 += ATTN_BK) {
		__syncthreads(); // the previous tile is consumed
		attn_load_kv(sk, sv, k, v, a, b, kh, s0, khi);
		__syncthreads();
		if (!has) {
			continue;
		}
		int s = s0 + lane;
		float sc = MAI_NEG_INF;
		if (s >= lo && s < hi) {
			float dot = 0.0f;
			for (int c = 0; c < D; c++) {
				dot += sq[w * D + c] * sk[lane * DP + c];
			}
			sc = dot * a.scale;
		}
		float mt = warp_max(sc);
		if (mt == MAI_NEG_INF) {
			continue; // no key of this tile is in the row's span
		}
		float mn = m > mt ? m : mt;
		float corr = expf(m - mn);
		float p = (sc == MAI_NEG_INF) ? 0.0f : expf(sc - mn);
		l = l * corr + warp_sum(p);
		for (int i = 0; i < ATTN_SLOTS; i++) {
			acc[i] *= corr;
		}
		for (int j = 0; j < ATTN_BK; j++) {
			float pj = __shfl_sync(0xffffffffu, p, j);
			if (pj != 0.0f) {
				for (int i = 0; i < ATTN_SLOTS; i++) {
					int c = lane + 32 * i;
					if (c < D) {
						acc[i] += pj * sv[j * DP + c];
					}
				}
			}
		}
		m = mn;
	}
	if (valid) {
		float inv = l > 0.0f ? 1.0f / l : 0.0f;
		for (int i = 0; i < ATTN_SLOTS; i++) {
			int c = lane + 32 * i;
			if (c < D) {
				st(out, qoff + c, acc[i] * inv);
			}
		}
		if (lane == 0) {
			lse[((i64)b * a.H + h) * a.Tq + t] = l > 0.0f ? m + logf(l) : MAI_NEG_INF;
		}
	}
}

// Backward, first pass: di[b,h,t] = dot(dout, out) over the row, one warp
// per row, rows numbered as lse.
template <typename T>
MAI_DEV void attn_bwd_pre(float *di, const T *dout, const T *out, AttnDims a) {
	i64 r = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	int lane = threadIdx.x % 32;
	if (r >= (i64)a.B * a.H * a.Tq) {
		return; // whole warps only: blockDim is a multiple of 32
	}
	int t = (int)(r % a.Tq);
	int h = (int)((r / a.Tq) % a.H);
	int b = (int)(r / ((i64)a.Tq * a.H));
	i64 off = (((i64)b * a.Tq + t) * a.H + h) * a.D;
	float s = 0.0f;
	for (int c = lane; c < a.D; c += 32) {
		s += ld(dout, off + c) * ld(out, off + c);
	}
	s = warp_sum(s);
	if (lane == 0) {
		di[r] = s;
	}
}

// Backward, dq: laid out as the forward (a warp per query row, key tiles
// through shared memory). dq += sum_s ds_s k_s with
// ds = p*(dp - di)*scale, p = exp(q.k*scale - lse), dp = dout.v.
template <typename T>
MAI_DEV void attn_bwd_dq(T *dq, const T *dout, const float *lse, const float *di, const T *q, const T *k, const T *v, AttnDims a) {
	MAI_DYN_SMEM(float, sm);
	__shared__ int slo[ATTN_ROWS], shi[ATTN_ROWS];
	int D = a.D, DP = a.D + 1;
	float *sk = sm;
	float *sv = sk + ATTN_BK * DP;
	float *sq = sv + ATTN_BK * DP;
	float *sdo = sq + ATTN_ROWS * D;
	int lane = threadIdx.x % 32, w = threadIdx.x / 32;
	int b = blockIdx.z, h = blockIdx.y, kh = h / (a.H / a.KV);
	int t = blockIdx.x * ATTN_ROWS + w;
	bool valid = t < a.Tq;
	int lo = 0, hi = 0;
	i64 qoff = 0;
	float lrow = 0.0f, drow = 0.0f;
	if (valid) {
		attn_span(a, b, t, lo, hi);
		qoff = (((i64)b * a.Tq + t) * a.H + h) * D;
		for (int c = lane; c < D; c += 32) {
			sq[w * D + c] = ld(q, qoff + c);
			sdo[w * D + c] = ld(dout, qoff + c);
		}
		i64 ri = ((i64)b * a.H + h) * a.Tq + t;
		lrow = lse[ri];
		drow = di[ri];
	}
	bool has = valid && lo < hi;
	int klo, khi;
	attn_block_keys(slo, shi, has, lo, hi, klo, khi);
	float acc[ATTN_SLOTS];
	for (int i = 0; i < ATTN_SLOTS; i++) {
		acc[i] = 0.0f;
	}
	for (int s0 = klo; s0 < khi; s0 += ATTN_BK) {
		__syncthreads();
		attn_load_kv(sk, sv, k, v, a, b, kh, s0, khi);
		__syncthreads();
		if (!has) {
			continue;
		}
		int s = s0 + lane;
		float ds = 0.0f;
		if (s >= lo && s < hi) {
			float qk = 0.0f, dp = 0.0f;
			for (int c = 0; c < D; c++) {
				qk += sq[w * D + c] * sk[lane * DP + c];
				dp += sdo[w * D + c] * sv[lane * DP + c];
			}
			float p = expf(qk * a.scale - lrow);
			ds = p * (dp - drow) * a.scale;
		}
		for (int j = 0; j < ATTN_BK; j++) {
			float dsj = __shfl_sync(0xffffffffu, ds, j);
			if (dsj != 0.0f) {
				for (int i = 0; i < ATTN_SLOTS; i++) {
					int c = lane + 32 * i;
					if (c < D) {
						acc[i] += dsj * sk[j * DP + c];
					}
				}
			}
		}
	}
	if (valid) {
		for (int i = 0; i < ATTN_SLOTS; i++) {
			int c = lane + 32 * i;
			if (c < D) {
				st(dq, qoff + c, ld(dq, qoff + c) + acc[i]);
			}
		}
	}
}

// Backward, dk and dv: grid (ceil(Tk/ATTN_ROWS), KV, B); warp w owns key
// row blockIdx.x*ATTN_ROWS + w of KV head blockIdx.y and so is its
// gradients' only writer. Query tiles of every head of the group stream
// through shared memory, one query per lane:
// dv += p*dout, dk += ds*q.
template <typename T>
MAI_DEV void attn_bwd_dkv(T *dk, T *dv, const T *dout, const float *lse, const float *di, const T *q, const T *k, const T *v, AttnDims a) {
	MAI_DYN_SMEM(float, sm);
	__shared__ float slse[ATTN_BK], sdi[ATTN_BK];
	__shared__ int sqlo[ATTN_BK], sqhi[ATTN_BK];
	int D = a.D, DP = a.D + 1;
	float *sq = sm;
	float *sdo = sq + ATTN_BK * DP;
	float *sk = sdo + ATTN_BK * DP;
	float *sv = sk + ATTN_ROWS * D;
	int lane = threadIdx.x % 32, w = threadIdx.x / 32;
	int b = blockIdx.z, kh = blockIdx.y, grp = a.H / a.KV;
	int s = blockIdx.x * ATTN_ROWS + w;
	bool valid = s < a.Tk;
	i64 ko = (i64)b * a.kstride + ((i64)s * a.KV + kh) * D;
	if (valid) {
		for (int c = lane; c < D; c += 32) {
			sk[w * D + c] = ld(k, ko + c);
			sv[w * D + c] = ld(v, ko + c);
		}
	}
	// Queries that can see any key of this block: position >= smin and,
	// with a window, position - window + 1 <= smax.
	int smin = blockIdx.x * ATTN_ROWS;
	int smax = mai_imin(smin + ATTN_ROWS, a.Tk) - 1;
	int tlo = mai_imax(0, smin - a.offset);
	int thi = a.Tq;
	if (a.window > 0) {
		thi = mai_imin(thi, mai_imax(0, smax + a.window - a.offset));
	}
	float dka[ATTN_SLOTS], dva[ATTN_SLOTS];
	for (int i = 0; i < ATTN_SLOTS; i++) {
		dka[i] = 0.0f;
		dva[i] = 0.0f;
	}
	for (int hh = kh * grp; hh < (kh + 1) * grp; hh++) {
		for (int t0 = tlo; t0 < thi; t0 += ATTN_BK) {
			__syncthreads();
			for (int idx = threadIdx.x; idx < ATTN_BK * D; idx += blockDim.x) {
				int r = idx / D, c = idx % D;
				int t = t0 + r;
				float qq = 0.0f, gg = 0.0f;
				if (t < thi) {
					i64 o = (((i64)b * a.Tq + t) * a.H + hh) * D + c;
					qq = ld(q, o);
					gg = ld(dout, o);
				}
				sq[r * DP + c] = qq;
				sdo[r * DP + c] = gg;
			}
			if (threadIdx.x < ATTN_BK) {
				int t = t0 + threadIdx.x;
				int lo = 0, hi = 0;
				float L = 0.0f, Dd = 0.0f;
				if (t < thi) {
					attn_span(a, b, t, lo, hi);
					i64 ri = ((i64)b * a.H + hh) * a.Tq + t;
					L = lse[ri];
					Dd = di[ri];
				}
				sqlo[threadIdx.x] = lo;
				sqhi[threadIdx.x] = hi;
				slse[threadIdx.x] = L;
				sdi[threadIdx.x] = Dd;
			}
			__syncthreads();
			if (!valid) {
				continue;
			}
			float p = 0.0f, ds = 0.0f;
			if (s >= sqlo[lane] && s < sqhi[lane]) {
				float qk = 0.0f, dp = 0.0f;
				for (int c = 0; c < D; c++) {
					qk += sq[lane * DP + c] * sk[w * D + c];
					dp += sdo[lane * DP + c] * sv[w * D + c];
				}
				p = expf(qk * a.scale - slse[lane]);
				ds = p * (dp - sdi[lane]) * a.scale;
			}
			for (int j = 0; j < ATTN_BK; j++) {
				float pj = __shfl_sync(0xffffffffu, p, j);
				float dsj = __shfl_sync(0xffffffffu, ds, j);
				if (pj != 0.0f || dsj != 0.0f) {
					for (int i = 0; i < ATTN_SLOTS; i++) {
						int c = lane + 32 * i;
						if (c < D) {
							dva[i] += pj * sdo[j * DP + c];
							dka[i] += dsj * sq[j * DP + c];
						}
					}
				}
			}
		}
	}
	if (valid) {
		for (int i = 0; i < ATTN_SLOTS; i++) {
			int c = lane + 32 * i;
			if (c < D) {
				st(dk, ko + c, ld(dk, ko + c) + dka[i]);
				st(dv, ko + c, ld(dv, ko + c) + dva[i]);
			}
		}
	}
}

// The exported instantiations.

extern "C" __global__ void attn_fwd_f32(float *out, float *lse, const float *q, const float *k, const float *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_fwd(out, lse, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }
extern "C" __global__ void attn_bwd_pre_f32(float *di, const float *dout, const float *out, int B, int Tq, int H, int D) { attn_bwd_pre(di, dout, out, attn_dims(0, B, Tq, 0, H, 1, D, 0, 0, 0, 0.0f)); }
extern "C" __global__ void attn_bwd_dq_f32(float *dq, const float *dout, const float *lse, const float *di, const float *q, const float *k, const float *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_bwd_dq(dq, dout, lse, di, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }
extern "C" __global__ void attn_bwd_dkv_f32(float *dk, float *dv, const float *dout, const float *lse, const float *di, const float *q, const float *k, const float *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_bwd_dkv(dk, dv, dout, lse, di, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }

extern "C" __global__ void attn_fwd_bf16(bf16_t *out, float *lse, const bf16_t *q, const bf16_t *k, const bf16_t *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_fwd(out, lse, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }
extern "C" __global__ void attn_bwd_pre_bf16(float *di, const bf16_t *dout, const bf16_t *out, int B, int Tq, int H, int D) { attn_bwd_pre(di, dout, out, attn_dims(0, B, Tq, 0, H, 1, D, 0, 0, 0, 0.0f)); }
extern "C" __global__ void attn_bwd_dq_bf16(bf16_t *dq, const bf16_t *dout, const float *lse, const float *di, const bf16_t *q, const bf16_t *k, const bf16_t *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_bwd_dq(dq, dout, lse, di, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }
extern "C" __global__ void attn_bwd_dkv_bf16(bf16_t *dk, bf16_t *dv, const bf16_t *dout, const float *lse, const float *di, const bf16_t *q, const bf16_t *k, const bf16_t *v, const int *start, int B, int Tq, int Tk, int H, int KV, int D, i64 kstride, int offset, int window, float scale) { attn_bwd_dkv(dk, dv, dout, lse, di, q, k, v, attn_dims(start, B, Tq, Tk, H, KV, D, kstride, offset, window, scale)); }
