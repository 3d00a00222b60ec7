// The emulator's runtime: fibers, barriers, shuffles, memory and a
// column-major GEMM with cuBLAS's argument meaning. See emu.h.
#include "emu.h"

#include <cstdio>
#include <cstdlib>
#include <ucontext.h>
#include <vector>

namespace {

enum State { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

// Context switching. On x86-64 a fiber switch saves the callee-saved
// registers on the current stack and swaps stack pointers (no system call;
// glibc's swapcontext also saves the signal mask with one, which made the
// emulator spend most of its time in the kernel). Elsewhere, ucontext.
#if defined(__x86_64__)
extern "C" void emu_switch(void **save_sp, void *to_sp);
asm(R"(
	.text
	.globl emu_switch
	.type emu_switch, @function
emu_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size emu_switch, .-emu_switch
)");
struct Ctx {
	void *sp;
};
#else
struct Ctx {
	ucontext_t uc;
};
#endif

struct Fiber {
	Ctx ctx;
	emu_dim3 tid;
	int linear;
	State state;
	char *stack;
};

const size_t kStack = 256 << 10;
std::vector<Fiber> fibers;
Ctx sched;
Fiber *cur;
void (*cur_fn)(void **);
void **cur_params;
std::vector<unsigned char> dyn;
std::vector<unsigned long long> slots;
char errbuf[512];

void fail(const char *msg) { snprintf(errbuf, sizeof errbuf, "%s", msg); }

// to_sched leaves the current fiber for the scheduler; to_fiber enters f.
void to_sched() {
#if defined(__x86_64__)
	emu_switch(&cur->ctx.sp, sched.sp);
#else
	swapcontext(&cur->ctx.uc, &sched.uc);
#endif
}

void to_fiber(Fiber &f) {
	cur = &f;
#if defined(__x86_64__)
	emu_switch(&sched.sp, f.ctx.sp);
#else
	swapcontext(&sched.uc, &f.ctx.uc);
#endif
}

void entry() {
	cur_fn(cur_params);
	cur->state = DONE;
#if defined(__x86_64__)
	to_sched(); // never resumed
	abort();
#endif
}

void start(Fiber &f) {
#if defined(__x86_64__)
	// The stack as emu_switch leaves it: six saved registers, then the
	// return address (entry); entry then starts with rsp = 8 mod 16, as
	// after a call.
	uintptr_t top = ((uintptr_t)(f.stack + kStack)) & ~(uintptr_t)15;
	void **sp = (void **)(top - 64);
	for (int i = 0; i < 6; i++) {
		sp[i] = 0;
	}
	sp[6] = (void *)entry;
	sp[7] = 0;
	f.ctx.sp = sp;
#else
	getcontext(&f.ctx.uc);
	f.ctx.uc.uc_stack.ss_sp = f.stack;
	f.ctx.uc.uc_stack.ss_size = kStack;
	f.ctx.uc.uc_link = &sched.uc;
	makecontext(&f.ctx.uc, entry, 0);
#endif
}

void block_wait(State s) {
	cur->state = s;
	to_sched();
}

// run_block runs every fiber of the current block to completion; it
// returns false (with errbuf set) on a barrier that can never be released.
bool run_block(int n) {
	for (int i = 0; i < n; i++) {
		start(fibers[i]);
		fibers[i].state = RUNNABLE;
	}
	for (;;) {
		for (int i = 0; i < n; i++) {
			if (fibers[i].state == RUNNABLE) {
				to_fiber(fibers[i]);
			}
		}
		int done = 0, at_block = 0;
		for (int i = 0; i < n; i++) {
			done += fibers[i].state == DONE;
			at_block += fibers[i].state == AT_BLOCK;
		}
		if (done == n) {
			return true;
		}
		bool released = false;
		for (int w = 0; w * 32 < n; w++) {
			int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
			int at_warp = 0, live = 0;
			for (int i = lo; i < hi; i++) {
				at_warp += fibers[i].state == AT_WARP;
				live += fibers[i].state != DONE;
			}
			if (at_warp == 0) {
				continue;
			}
			if (at_warp != hi - lo) {
				snprintf(errbuf, sizeof errbuf, "warp %d: shuffle reached by %d of %d lanes (%d live); the others exited or wait at __syncthreads", w, at_warp, hi - lo, live);
				return false;
			}
			for (int i = lo; i < hi; i++) {
				fibers[i].state = RUNNABLE;
			}
			released = true;
		}
		if (released) {
			continue;
		}
		if (at_block == n) {
			for (int i = 0; i < n; i++) {
				fibers[i].state = RUNNABLE;
			}
			continue;
		}
		snprintf(errbuf, sizeof errbuf, "__syncthreads reached by %d of %d threads (%d exited)", at_block, n, done);
		return false;
	}
}

} // namespace

extern "C" {

emu_dim3 emu_block_idx, emu_block_dim, emu_grid_dim;

const emu_dim3 *emu_thread_idx() { return &cur->tid; }

void emu_syncthreads() { block_wait(AT_BLOCK); }

void *emu_dyn_smem() { return dyn.data(); }

unsigned long long emu_shfl(unsigned long long bits, int lane, int xor_mode) {
	int me = cur->linear;
	slots[me] = bits;
	block_wait(AT_WARP);
	int base = me - me % 32;
	int src = xor_mode ? base + ((me % 32) ^ lane) : base + lane;
	unsigned long long v = slots[src];
	block_wait(AT_WARP); // every lane has read before the slots are reused
	return v;
}

// emu_launch runs fn(params) for every thread of the grid. It returns 0,
// or -1 with a message for emu_error.
int emu_launch(void (*fn)(void **), void **params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem) {
	int n = (int)(bx * by * bz);
	if (n <= 0 || n > 1024) {
		fail("block size out of range (1..1024)");
		return -1;
	}
	if (n % 32 != 0) {
		fail("block size not a multiple of 32 (MAI's kernels assume whole warps)");
		return -1;
	}
	while ((int)fibers.size() < n) {
		Fiber f;
		memset(&f, 0, sizeof f);
		f.stack = (char *)malloc(kStack);
		fibers.push_back(f);
	}
	slots.assign(n, 0);
	dyn.assign(smem + 16, 0xff); // NaN bytes: reading unwritten shared memory shows
	for (int i = 0; i < n; i++) {
		fibers[i].linear = i;
		fibers[i].tid.x = i % bx;
		fibers[i].tid.y = (i / bx) % by;
		fibers[i].tid.z = i / (bx * by);
	}
	emu_grid_dim = {gx, gy, gz};
	emu_block_dim = {bx, by, bz};
	cur_fn = fn;
	cur_params = params;
	for (unsigned z = 0; z < gz; z++) {
		for (unsigned y = 0; y < gy; y++) {
			for (unsigned x = 0; x < gx; x++) {
				emu_block_idx = {x, y, z};
				if (!run_block(n)) {
					return -1;
				}
			}
		}
	}
	return 0;
}

int emu_error(char *buf, int n) {
	snprintf(buf, n, "%s", errbuf);
	return (int)strlen(errbuf);
}

// Memory: "device" memory is host memory filled with 0xff (NaN in f32 and
// bf16) so that reads of unwritten memory show in results.
void *emu_malloc(size_t n) {
	void *p = aligned_alloc(256, (n + 255) / 256 * 256);
	if (p) {
		memset(p, 0xff, n);
	}
	return p;
}
void emu_free(void *p) { free(p); }
void emu_memcpy(void *dst, const void *src, size_t n) { memmove(dst, src, n); }
void emu_memset32(unsigned *dst, unsigned v, size_t n) {
	for (size_t i = 0; i < n; i++) {
		dst[i] = v;
	}
}

static float emu_ld(const void *p, int type, long long i) {
	if (type == 14) {
		unsigned u = ((const unsigned short *)p)[i];
		return mai_bits_f32(u << 16);
	}
	return ((const float *)p)[i];
}

static void emu_st(void *p, int type, long long i, float v) {
	if (type == 14) {
		unsigned u = mai_f32_bits(v);
		if ((u & 0x7fffffffu) > 0x7f800000u) {
			((unsigned short *)p)[i] = (unsigned short)((u >> 16) | 0x40u);
			return;
		}
		u += 0x7fffu + ((u >> 16) & 1u);
		((unsigned short *)p)[i] = (unsigned short)(u >> 16);
		return;
	}
	((float *)p)[i] = v;
}

// emu_gemm is cublasGemmEx's meaning: column-major,
// C = alpha*op(A)*op(B) + beta*C with op(A) m×k, op(B) k×n, types 0 (f32)
// or 14 (bf16), accumulation in float. With beta == 0, C is not read.
int emu_gemm(int transa, int transb, int m, int n, int k, const float *alpha, const void *A, int atype, int lda, const void *B, int btype, int ldb, const float *beta, void *C, int ctype, int ldc) {
	for (int j = 0; j < n; j++) {
		for (int i = 0; i < m; i++) {
			float s = 0.0f;
			for (int p = 0; p < k; p++) {
				float a = transa ? emu_ld(A, atype, p + (long long)i * lda) : emu_ld(A, atype, i + (long long)p * lda);
				float b = transb ? emu_ld(B, btype, j + (long long)p * ldb) : emu_ld(B, btype, p + (long long)j * ldb);
				s += a * b;
			}
			float r = *alpha * s;
			if (*beta != 0.0f) {
				r += *beta * emu_ld(C, ctype, i + (long long)j * ldc);
			}
			emu_st(C, ctype, i + (long long)j * ldc, r);
		}
	}
	return 0;
}

} // extern "C"
