// A CPU emulation of the small part of CUDA C that MAI's kernels use, for
// tests on machines without a GPU. Included before kernels/prelude.cuh with
// MAI_EMU defined; the kernels then compile with g++ into a shared library
// that the Go tests open through purego. Each block runs its threads as
// fibers (ucontext) on one OS thread, switching at __syncthreads and warp
// shuffles, so __shared__ variables become function statics. It is strict
// where the hardware is lenient: a barrier or shuffle with threads that
// have exited, or lanes of one warp at different barriers, is an error.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

typedef unsigned short bf16_t;
typedef long long i64;

struct emu_dim3 {
	unsigned x, y, z;
};

extern "C" {
const emu_dim3 *emu_thread_idx();
extern emu_dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
void emu_syncthreads();
void *emu_dyn_smem();
unsigned long long emu_shfl(unsigned long long bits, int src_lane, int xor_mode);
}

#define threadIdx (*emu_thread_idx())
#define blockIdx emu_block_idx
#define blockDim emu_block_dim
#define gridDim emu_grid_dim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() emu_syncthreads()
#define MAI_DEV static inline
#define MAI_DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(emu_dyn_smem())

static inline float mai_bits_f32(unsigned u) {
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline unsigned mai_f32_bits(float f) {
	unsigned u;
	memcpy(&u, &f, 4);
	return u;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

template <typename T>
static inline T emu_shfl_t(T v, int lane, int xor_mode) {
	static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
	unsigned long long bits = 0;
	memcpy(&bits, &v, sizeof(T));
	bits = emu_shfl(bits, lane, xor_mode);
	T out;
	memcpy(&out, &bits, sizeof(T));
	return out;
}

template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
	(void)mask;
	return emu_shfl_t(v, lane_mask, 1);
}

template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src_lane) {
	(void)mask;
	return emu_shfl_t(v, src_lane, 0);
}
