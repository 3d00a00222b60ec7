#include "textflag.h"

// Row-dot kernels of the quantized matmul (quant.go), AVX2 + FMA + F16C.
// Integer kernels follow llama.cpp's AVX2 scheme: |w| (unsigned) times
// x·sign(w) (signed) with VPMADDUBSW, pairs summed to int32 with VPMADDWD,
// converted to float and scaled per block.

// hsum reduces Y0 (8 floats) to X0's low lane.
#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VHADDPS      X0, X0, X0; \
	VHADDPS      X0, X0, X0

// func dotF16AVX2(n int, w *byte, x *float32) float32
// n is a positive multiple of 16.
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y3, Y3, Y3

f16loop:
	VCVTPH2PS   (SI), Y1
	VCVTPH2PS   16(SI), Y2
	VFMADD231PS (DI), Y1, Y0
	VFMADD231PS 32(DI), Y2, Y3
	ADDQ        $32, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JNZ         f16loop

	VADDPS Y3, Y0, Y0
	HSUM
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotBF16AVX2(n int, w *byte, x *float32) float32
// n is a positive multiple of 16.
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y3, Y3, Y3

bf16loop:
	VPMOVZXWD   (SI), Y1
	VPMOVZXWD   16(SI), Y2
	VPSLLD      $16, Y1, Y1
	VPSLLD      $16, Y2, Y2
	VFMADD231PS (DI), Y1, Y0
	VFMADD231PS 32(DI), Y2, Y3
	ADDQ        $32, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JNZ         bf16loop

	VADDPS Y3, Y0, Y0
	HSUM
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotQ8_0AVX2(nb int, w *byte, xq *int8, xd *float32) float32
// nb (blocks of 32) is positive; w holds nb ggml Q8_0 blocks of 34 bytes.
TEXT ·dotQ8_0AVX2(SB), NOSPLIT, $0-36
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ xq+16(FP), DI
	MOVQ xd+24(FP), R8
	VXORPS Y0, Y0, Y0
	MOVL $0x00010001, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15 // int16 ones

q8loop:
	VMOVDQU    2(SI), Y1
	VMOVDQU    (DI), Y2
	VPSIGNB    Y1, Y1, Y3 // |w|
	VPSIGNB    Y1, Y2, Y4 // x·sign(w)
	VPMADDUBSW Y4, Y3, Y5
	VPMADDWD   Y15, Y5, Y5
	VCVTDQ2PS  Y5, Y5
	MOVWLZX    (SI), AX
	VMOVD      AX, X6
	VCVTPH2PS  X6, X6
	VMULSS     (R8), X6, X6
	VBROADCASTSS X6, Y6
	VFMADD231PS Y6, Y5, Y0
	ADDQ       $34, SI
	ADDQ       $32, DI
	ADDQ       $4, R8
	DECQ       CX
	JNZ        q8loop

	HSUM
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// func dotQ4_0AVX2(nb int, w *byte, xq *int8, xd *float32) float32
// nb (blocks of 32) is positive; w holds nb ggml Q4_0 blocks of 18 bytes.
TEXT ·dotQ4_0AVX2(SB), NOSPLIT, $0-36
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ xq+16(FP), DI
	MOVQ xd+24(FP), R8
	VXORPS Y0, Y0, Y0
	MOVL $0x00010001, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15 // int16 ones
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14 // low-nibble mask
	MOVL $0x08080808, AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13 // 8s

q4loop:
	VMOVDQU    2(SI), X1
	VPSRLW     $4, X1, X2
	VINSERTI128 $1, X2, Y1, Y1
	VPAND      Y14, Y1, Y1 // elements 0..15 low lane, 16..31 high lane
	VPSUBB     Y13, Y1, Y1 // q - 8
	VMOVDQU    (DI), Y2
	VPSIGNB    Y1, Y1, Y3
	VPSIGNB    Y1, Y2, Y4
	VPMADDUBSW Y4, Y3, Y5
	VPMADDWD   Y15, Y5, Y5
	VCVTDQ2PS  Y5, Y5
	MOVWLZX    (SI), AX
	VMOVD      AX, X6
	VCVTPH2PS  X6, X6
	VMULSS     (R8), X6, X6
	VBROADCASTSS X6, Y6
	VFMADD231PS Y6, Y5, Y0
	ADDQ       $18, SI
	ADDQ       $32, DI
	ADDQ       $4, R8
	DECQ       CX
	JNZ        q4loop

	HSUM
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// One 64-value step of the Q4_K kernel: 32 bytes of nibbles at off(SI)
// (low nibbles: sub-block 2j, high: 2j+1) times 64 int8 at xoff(DI),
// scaled by the u8 scales at sc(SI) and sc+1(SI), added to Y7 (int32).
#define Q4KSTEP(off, xoff, sc) \
	VMOVDQU      off(SI), Y1; \
	VPAND        Y14, Y1, Y2; \
	VPSRLW       $4, Y1, Y3; \
	VPAND        Y14, Y3, Y3; \
	VPMADDUBSW   xoff(DI), Y2, Y4; \
	VPMADDUBSW   xoff+32(DI), Y3, Y5; \
	VPBROADCASTB sc(SI), Y8; \
	VPAND        Y12, Y8, Y8; \
	VPMADDWD     Y8, Y4, Y4; \
	VPBROADCASTB sc+1(SI), Y9; \
	VPAND        Y12, Y9, Y9; \
	VPMADDWD     Y9, Y5, Y5; \
	VPADDD       Y4, Y7, Y7; \
	VPADDD       Y5, Y7, Y7

// func dotQ4KAVX2(nb int, w *byte, xq *int8, xd *float32, xs *int16) float32
// nb (super-blocks of 256) is positive; w holds nb unpacked Q4_K blocks of
// 152 bytes (quant.go: q4KBytes); xs holds 8 sums of xq per super-block.
TEXT ·dotQ4KAVX2(SB), NOSPLIT, $0-44
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ xq+16(FP), DI
	MOVQ xd+24(FP), R8
	MOVQ xs+32(FP), R9
	VXORPS Y0, Y0, Y0 // sum of d·xd·Σ sc·q·x
	VXORPS X10, X10, X10 // sum of dmin·xd·Σ m·Σx
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14 // low-nibble mask
	MOVL $0x00FF00FF, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12 // low byte of each word

q4kloop:
	VPXOR Y7, Y7, Y7
	Q4KSTEP(24, 0, 8)
	Q4KSTEP(56, 64, 10)
	Q4KSTEP(88, 128, 12)
	Q4KSTEP(120, 192, 14)
	VCVTDQ2PS Y7, Y7
	VMOVSS    (SI), X8
	VMULSS    (R8), X8, X8
	VBROADCASTSS X8, Y8
	VFMADD231PS Y8, Y7, Y0

	VPMOVZXBW 16(SI), X9
	VPMADDWD  (R9), X9, X9
	VCVTDQ2PS X9, X9
	VMOVSS    4(SI), X11
	VMULSS    (R8), X11, X11
	VBROADCASTSS X11, X11
	VFMADD231PS X11, X9, X10

	ADDQ $152, SI
	ADDQ $256, DI
	ADDQ $4, R8
	ADDQ $16, R9
	DECQ CX
	JNZ  q4kloop

	HSUM
	VHADDPS X10, X10, X10
	VHADDPS X10, X10, X10
	VSUBSS  X10, X0, X0
	VMOVSS X0, ret+40(FP)
	VZEROUPPER
	RET

// func quantQ8_0AVX2(nb int, x *float32, q *int8, d *float32)
// Rounds nb blocks of 32 float32 to Q8_0 as quantizeAct's Go loop does:
// d = max|x|/127, q = round-to-even(x·(1/d)) (0 where d is 0).
TEXT ·quantQ8_0AVX2(SB), NOSPLIT, $0-32
	MOVQ nb+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ q+16(FP), DI
	MOVQ d+24(FP), DX
	MOVL $0x7FFFFFFF, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0x42FE0000, AX // 127
	VMOVD AX, X13
	MOVL $0x3F800000, AX // 1
	VMOVD AX, X11
	VXORPS X14, X14, X14
	MOVQ $0x0703060205010400, AX
	VMOVQ AX, X15
	VPMOVZXBD X15, Y15

q8aloop:
	VMOVUPS      (SI), Y0
	VMOVUPS      32(SI), Y1
	VMOVUPS      64(SI), Y2
	VMOVUPS      96(SI), Y3
	VANDPS       Y12, Y0, Y4
	VANDPS       Y12, Y1, Y5
	VANDPS       Y12, Y2, Y6
	VANDPS       Y12, Y3, Y7
	VMAXPS       Y5, Y4, Y4
	VMAXPS       Y7, Y6, Y6
	VMAXPS       Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0x4E, X4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0xB1, X4, X5
	VMAXPS       X5, X4, X4
	VDIVSS       X13, X4, X6
	VMOVSS       X6, (DX)
	VDIVSS       X6, X11, X7
	VCMPSS       $4, X14, X6, X8
	VANDPS       X8, X7, X7
	VBROADCASTSS X7, Y7
	VMULPS       Y7, Y0, Y0
	VMULPS       Y7, Y1, Y1
	VMULPS       Y7, Y2, Y2
	VMULPS       Y7, Y3, Y3
	VCVTPS2DQ    Y0, Y0
	VCVTPS2DQ    Y1, Y1
	VCVTPS2DQ    Y2, Y2
	VCVTPS2DQ    Y3, Y3
	VPACKSSDW    Y1, Y0, Y0
	VPACKSSDW    Y3, Y2, Y2
	VPACKSSWB    Y2, Y0, Y0
	VPERMD       Y0, Y15, Y0
	VMOVDQU      Y0, (DI)
	ADDQ         $128, SI
	ADDQ         $32, DI
	ADDQ         $4, DX
	DECQ         CX
	JNZ          q8aloop
	VZEROUPPER
	RET

// func q8ToF32AVX2(nb int, q *int8, d *float32, dst *float32)
// dst[i] = q[i]·d[i/32] over nb blocks of 32 (the rounded activations).
TEXT ·q8ToF32AVX2(SB), NOSPLIT, $0-32
	MOVQ nb+0(FP), CX
	MOVQ q+8(FP), SI
	MOVQ d+16(FP), DX
	MOVQ dst+24(FP), DI

q8floop:
	VBROADCASTSS (DX), Y6
	VPMOVSXBD    (SI), Y0
	VPMOVSXBD    8(SI), Y1
	VPMOVSXBD    16(SI), Y2
	VPMOVSXBD    24(SI), Y3
	VCVTDQ2PS    Y0, Y0
	VCVTDQ2PS    Y1, Y1
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y6, Y0, Y0
	VMULPS       Y6, Y1, Y1
	VMULPS       Y6, Y2, Y2
	VMULPS       Y6, Y3, Y3
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $128, DI
	DECQ         CX
	JNZ          q8floop
	VZEROUPPER
	RET
