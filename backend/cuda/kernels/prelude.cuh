// MAI kernel prelude: put before every kernel file, compiled by NVRTC with
// no headers (MAI_NVRTC defined) or by the CPU emulator used in tests
// (MAI_EMU defined, after testdata/emu/emu.h). Only what both provide is
// used: threadIdx and friends, __syncthreads, __shfl_xor_sync, expf and the
// other float math functions.

#ifdef MAI_NVRTC
typedef unsigned short bf16_t;
typedef long long i64;
#define MAI_DYN_SMEM(T, name) \
	extern __shared__ __attribute__((aligned(16))) unsigned char mai_dyn_smem_[]; \
	T *name = reinterpret_cast<T *>(mai_dyn_smem_)
#define MAI_DEV __device__ __forceinline__
__device__ __forceinline__ float mai_bits_f32(unsigned u) { return __uint_as_float(u); }
__device__ __forceinline__ unsigned mai_f32_bits(float f) { return __float_as_uint(f); }
#endif

#define MAI_NEG_INF (mai_bits_f32(0xff800000u))
#define MAI_WARP 32

MAI_DEV int mai_imin(int a, int b) { return a < b ? a : b; }
MAI_DEV int mai_imax(int a, int b) { return a > b ? a : b; }

// bf16 <-> f32, matching format/quant: round to nearest even, NaN stays a
// quiet NaN.
MAI_DEV float bf16_to_f32(bf16_t h) { return mai_bits_f32(((unsigned)h) << 16); }
MAI_DEV bf16_t f32_to_bf16(float f) {
	unsigned u = mai_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		return (bf16_t)((u >> 16) | 0x40u);
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	return (bf16_t)(u >> 16);
}

// Loads and stores that convert between a storage type and float.
MAI_DEV float ld(const float *p, i64 i) { return p[i]; }
MAI_DEV float ld(const bf16_t *p, i64 i) { return bf16_to_f32(p[i]); }
MAI_DEV void st(float *p, i64 i, float v) { p[i] = v; }
MAI_DEV void st(bf16_t *p, i64 i, float v) { p[i] = f32_to_bf16(v); }

MAI_DEV float warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

MAI_DEV float warp_max(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		float w = __shfl_xor_sync(0xffffffffu, v, o);
		v = v > w ? v : w;
	}
	return v;
}

MAI_DEV double warp_sum_f64(double v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// block_sum returns the sum of v over the block (every thread gets it).
// scratch holds at least 32 floats; blockDim.x is a multiple of 32. It
// synchronizes, so every thread of the block must call it.
MAI_DEV float block_sum(float v, float *scratch) {
	int lane = threadIdx.x % MAI_WARP, warp = threadIdx.x / MAI_WARP;
	int nw = blockDim.x / MAI_WARP;
	v = warp_sum(v);
	__syncthreads(); // scratch may still be read by a previous call
	if (lane == 0) {
		scratch[warp] = v;
	}
	__syncthreads();
	float s = 0.0f;
	for (int w = 0; w < nw; w++) { // same order in every thread: deterministic
		s += scratch[w];
	}
	return s;
}

MAI_DEV float block_max(float v, float *scratch) {
	int lane = threadIdx.x % MAI_WARP, warp = threadIdx.x / MAI_WARP;
	int nw = blockDim.x / MAI_WARP;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0) {
		scratch[warp] = v;
	}
	__syncthreads();
	float m = scratch[0];
	for (int w = 1; w < nw; w++) {
		m = m > scratch[w] ? m : scratch[w];
	}
	return m;
}

MAI_DEV double block_sum_f64(double v, double *scratch) {
	int lane = threadIdx.x % MAI_WARP, warp = threadIdx.x / MAI_WARP;
	int nw = blockDim.x / MAI_WARP;
	v = warp_sum_f64(v);
	__syncthreads();
	if (lane == 0) {
		scratch[warp] = v;
	}
	__syncthreads();
	double s = 0.0;
	for (int w = 0; w < nw; w++) {
		s += scratch[w];
	}
	return s;
}

// The global linear thread index and the grid's total thread count, in
// 64 bits: element counts may exceed 2^31.
MAI_DEV i64 gtid() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
MAI_DEV i64 gstride() { return (i64)gridDim.x * blockDim.x; }
