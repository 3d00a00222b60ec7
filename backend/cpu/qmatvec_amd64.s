#include "textflag.h"

// Multi-row kernels of the quantized matmul (qmatvec.go), AVX2 + FMA +
// F16C: one call dots a run of consecutive weight rows with one activation
// row (decode), keeping the loop, the constants and the activation pointer
// setup out of Go; two or four independent accumulators per row keep the
// FMA latency off the critical path. The dequantizers expand whole rows to
// float32 for the prefill GEMM.

#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VHADDPS      X0, X0, X0; \
	VHADDPS      X0, X0, X0

// One Q4_0 block at woff(SI) times 32 int8 at xoff(DI), scaled by the
// block's f16 scale and the activation scale at doff(R8), added to acc.
#define Q4BLK(woff, xoff, doff, acc) \
	VMOVDQU      woff+2(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VPSUBB       Y13, Y1, Y1; \
	VMOVDQU      xoff(DI), Y2; \
	VPSIGNB      Y1, Y1, Y3; \
	VPSIGNB      Y1, Y2, Y4; \
	VPMADDUBSW   Y4, Y3, Y5; \
	VPMADDWD     Y15, Y5, Y5; \
	VCVTDQ2PS    Y5, Y5; \
	MOVWLZX      woff(SI), AX; \
	VMOVD        AX, X6; \
	VCVTPH2PS    X6, X6; \
	VMULSS       doff(R8), X6, X6; \
	VBROADCASTSS X6, Y6; \
	VFMADD231PS  Y6, Y5, acc

// One Q8_0 block, as Q4BLK.
#define Q8BLK(woff, xoff, doff, acc) \
	VMOVDQU      woff+2(SI), Y1; \
	VMOVDQU      xoff(DI), Y2; \
	VPSIGNB      Y1, Y1, Y3; \
	VPSIGNB      Y1, Y2, Y4; \
	VPMADDUBSW   Y4, Y3, Y5; \
	VPMADDWD     Y15, Y5, Y5; \
	VCVTDQ2PS    Y5, Y5; \
	MOVWLZX      woff(SI), AX; \
	VMOVD        AX, X6; \
	VCVTPH2PS    X6, X6; \
	VMULSS       doff(R8), X6, X6; \
	VBROADCASTSS X6, Y6; \
	VFMADD231PS  Y6, Y5, acc

#define QCONSTS \
	MOVL $0x00010001, AX; \
	VMOVD AX, X15; \
	VPBROADCASTD X15, Y15; \
	MOVL $0x0F0F0F0F, AX; \
	VMOVD AX, X14; \
	VPBROADCASTD X14, Y14; \
	MOVL $0x08080808, AX; \
	VMOVD AX, X13; \
	VPBROADCASTD X13, Y13

// func q4_0RowsAVX2(rows, nb int, w *byte, xq *int8, xd *float32, y *float32)
// y[r] = row r of w (nb Q4_0 blocks, rows back to back) · (xq, xd).
TEXT ·q4_0RowsAVX2(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), R10
	MOVQ nb+8(FP), R11
	MOVQ w+16(FP), SI
	MOVQ xq+24(FP), R12
	MOVQ xd+32(FP), R13
	MOVQ y+40(FP), R9
	QCONSTS

q4row:
	MOVQ   R12, DI
	MOVQ   R13, R8
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y7, Y7, Y7
	CMPQ   CX, $2
	JLT    q4tail

q4pair:
	Q4BLK(0, 0, 0, Y0)
	Q4BLK(18, 32, 4, Y7)
	ADDQ $36, SI
	ADDQ $64, DI
	ADDQ $8, R8
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  q4pair

q4tail:
	TESTQ CX, CX
	JZ    q4done
	Q4BLK(0, 0, 0, Y0)
	ADDQ  $18, SI

q4done:
	VADDPS Y7, Y0, Y0
	HSUM
	VMOVSS X0, (R9)
	ADDQ   $4, R9
	DECQ   R10
	JNZ    q4row
	VZEROUPPER
	RET

// func q8_0RowsAVX2(rows, nb int, w *byte, xq *int8, xd *float32, y *float32)
TEXT ·q8_0RowsAVX2(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), R10
	MOVQ nb+8(FP), R11
	MOVQ w+16(FP), SI
	MOVQ xq+24(FP), R12
	MOVQ xd+32(FP), R13
	MOVQ y+40(FP), R9
	QCONSTS

q8row:
	MOVQ   R12, DI
	MOVQ   R13, R8
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y7, Y7, Y7
	CMPQ   CX, $2
	JLT    q8tail

q8pair:
	Q8BLK(0, 0, 0, Y0)
	Q8BLK(34, 32, 4, Y7)
	ADDQ $68, SI
	ADDQ $64, DI
	ADDQ $8, R8
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  q8pair

q8tail:
	TESTQ CX, CX
	JZ    q8done
	Q8BLK(0, 0, 0, Y0)
	ADDQ  $34, SI

q8done:
	VADDPS Y7, Y0, Y0
	HSUM
	VMOVSS X0, (R9)
	ADDQ   $4, R9
	DECQ   R10
	JNZ    q8row
	VZEROUPPER
	RET

// func f16RowsAVX2(rows, n int, w *byte, x *float32, y *float32)
// n is a positive multiple of 32; rows of n halves back to back.
TEXT ·f16RowsAVX2(SB), NOSPLIT, $0-40
	MOVQ rows+0(FP), R10
	MOVQ n+8(FP), R11
	MOVQ w+16(FP), SI
	MOVQ x+24(FP), R12
	MOVQ y+32(FP), R9

f16row:
	MOVQ   R12, DI
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

f16loop:
	VCVTPH2PS   (SI), Y1
	VCVTPH2PS   16(SI), Y2
	VCVTPH2PS   32(SI), Y3
	VCVTPH2PS   48(SI), Y4
	VFMADD231PS (DI), Y1, Y0
	VFMADD231PS 32(DI), Y2, Y5
	VFMADD231PS 64(DI), Y3, Y6
	VFMADD231PS 96(DI), Y4, Y7
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JNZ         f16loop

	VADDPS Y5, Y0, Y0
	VADDPS Y7, Y6, Y6
	VADDPS Y6, Y0, Y0
	HSUM
	VMOVSS X0, (R9)
	ADDQ   $4, R9
	DECQ   R10
	JNZ    f16row
	VZEROUPPER
	RET

// func dequantQ4_0AVX2(nb int, w *byte, dst *float32)
TEXT ·dequantQ4_0AVX2(SB), NOSPLIT, $0-24
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, X14
	MOVL $0x08080808, AX
	VMOVD AX, X13
	VPBROADCASTD X13, X13

dq4loop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X6
	VCVTPH2PS    X6, X6
	VBROADCASTSS X6, Y6
	VMOVDQU      2(SI), X1
	VPSRLW       $4, X1, X2
	VPAND        X14, X1, X1
	VPAND        X14, X2, X2
	VPSUBB       X13, X1, X1
	VPSUBB       X13, X2, X2
	VPMOVSXBD    X1, Y3
	VPSRLDQ      $8, X1, X1
	VPMOVSXBD    X1, Y4
	VPMOVSXBD    X2, Y5
	VPSRLDQ      $8, X2, X2
	VPMOVSXBD    X2, Y7
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VCVTDQ2PS    Y7, Y7
	VMULPS       Y6, Y3, Y3
	VMULPS       Y6, Y4, Y4
	VMULPS       Y6, Y5, Y5
	VMULPS       Y6, Y7, Y7
	VMOVUPS      Y3, (DI)
	VMOVUPS      Y4, 32(DI)
	VMOVUPS      Y5, 64(DI)
	VMOVUPS      Y7, 96(DI)
	ADDQ         $18, SI
	ADDQ         $128, DI
	DECQ         CX
	JNZ          dq4loop
	VZEROUPPER
	RET

// func dequantQ8_0AVX2(nb int, w *byte, dst *float32)
TEXT ·dequantQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI

dq8loop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X6
	VCVTPH2PS    X6, X6
	VBROADCASTSS X6, Y6
	VPMOVSXBD    2(SI), Y3
	VPMOVSXBD    10(SI), Y4
	VPMOVSXBD    18(SI), Y5
	VPMOVSXBD    26(SI), Y7
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VCVTDQ2PS    Y7, Y7
	VMULPS       Y6, Y3, Y3
	VMULPS       Y6, Y4, Y4
	VMULPS       Y6, Y5, Y5
	VMULPS       Y6, Y7, Y7
	VMOVUPS      Y3, (DI)
	VMOVUPS      Y4, 32(DI)
	VMOVUPS      Y5, 64(DI)
	VMOVUPS      Y7, 96(DI)
	ADDQ         $34, SI
	ADDQ         $128, DI
	DECQ         CX
	JNZ          dq8loop
	VZEROUPPER
	RET

// func f16ToF32AVX2(n int, w *byte, dst *float32)
// n is a positive multiple of 16.
TEXT ·f16ToF32AVX2(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI

cvtloop:
	VCVTPH2PS (SI), Y1
	VCVTPH2PS 16(SI), Y2
	VMOVUPS   Y1, (DI)
	VMOVUPS   Y2, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JNZ       cvtloop
	VZEROUPPER
	RET

// One Q4_0 block with AVX-512 VNNI (EVEX-encoded YMM): the unsigned
// nibbles times the int8 activations with VPDPBUSD, started from the
// block's -Σx in every dword lane (so that the lanes sum to Σ(q-8)·x).
#define Q4VNNI(woff, xoff, boff, acc) \
	VMOVDQU      woff+2(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VPBROADCASTD boff(BX), Y5; \
	VPDPBUSD     xoff(DI), Y1, Y5; \
	VCVTDQ2PS    Y5, Y5; \
	VPBROADCASTW woff(SI), X6; \
	VCVTPH2PS    X6, Y6; \
	VMULPS.BCST  boff(R8), Y6, Y6; \
	VFMADD231PS  Y6, Y5, acc

// func q4_0RowsVNNI(rows, nb int, w *byte, xq *int8, xd *float32, y *float32, nsum *int32)
TEXT ·q4_0RowsVNNI(SB), NOSPLIT, $0-56
	MOVQ rows+0(FP), R10
	MOVQ nb+8(FP), R11
	MOVQ w+16(FP), SI
	MOVQ xq+24(FP), R12
	MOVQ xd+32(FP), R13
	MOVQ y+40(FP), R9
	MOVQ nsum+48(FP), DX
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14

v4row:
	MOVQ   R12, DI
	MOVQ   R13, R8
	MOVQ   DX, BX
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y7, Y7, Y7
	CMPQ   CX, $2
	JLT    v4tail

v4pair:
	Q4VNNI(0, 0, 0, Y0)
	Q4VNNI(18, 32, 4, Y7)
	ADDQ $36, SI
	ADDQ $64, DI
	ADDQ $8, R8
	ADDQ $8, BX
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  v4pair

v4tail:
	TESTQ CX, CX
	JZ    v4done
	Q4VNNI(0, 0, 0, Y0)
	ADDQ  $18, SI

v4done:
	VADDPS Y7, Y0, Y0
	HSUM
	VMOVSS X0, (R9)
	ADDQ   $4, R9
	DECQ   R10
	JNZ    v4row
	VZEROUPPER
	RET

// func f16RowsAVX512(rows, n int, w *byte, x *float32, y *float32)
// f16RowsAVX2 with 512-bit conversions and multiply-adds: n is a positive
// multiple of 64.
TEXT ·f16RowsAVX512(SB), NOSPLIT, $0-40
	MOVQ rows+0(FP), R10
	MOVQ n+8(FP), R11
	MOVQ w+16(FP), SI
	MOVQ x+24(FP), R12
	MOVQ y+32(FP), R9

z16row:
	MOVQ   R12, DI
	MOVQ   R11, CX
	VXORPS Z0, Z0, Z0
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7

z16loop:
	VCVTPH2PS   (SI), Z1
	VCVTPH2PS   32(SI), Z2
	VCVTPH2PS   64(SI), Z3
	VCVTPH2PS   96(SI), Z4
	VFMADD231PS (DI), Z1, Z0
	VFMADD231PS 64(DI), Z2, Z5
	VFMADD231PS 128(DI), Z3, Z6
	VFMADD231PS 192(DI), Z4, Z7
	ADDQ        $128, SI
	ADDQ        $256, DI
	SUBQ        $64, CX
	JNZ         z16loop

	VADDPS        Z5, Z0, Z0
	VADDPS        Z7, Z6, Z6
	VADDPS        Z6, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS        Y1, Y0, Y0
	HSUM
	VMOVSS        X0, (R9)
	ADDQ          $4, R9
	DECQ          R10
	JNZ           z16row
	VZEROUPPER
	RET

// Q6OUT scales the 16 values q−32 of X4 (bytes, q in 0..63) by d·sc (sc:
// the int8 scale at sc(SI), d in X0) and stores them at out(DI), as
// float32(d·sc)·(q−32).
#define Q6OUT(sc, out) \
	VPSUBB       X11, X4, X4; \
	MOVBLSX      sc(SI), AX; \
	VCVTSI2SSL   AX, X7, X7; \
	VMULSS       X0, X7, X7; \
	VBROADCASTSS X7, Y7; \
	VPMOVSXBD    X4, Y8; \
	VPSRLDQ      $8, X4, X9; \
	VPMOVSXBD    X9, Y9; \
	VCVTDQ2PS    Y8, Y8; \
	VCVTDQ2PS    Y9, Y9; \
	VMULPS       Y7, Y8, Y8; \
	VMULPS       Y7, Y9, Y9; \
	VMOVUPS      Y8, out(DI); \
	VMOVUPS      Y9, (out+32)(DI)

// Q6MASKS sets the byte masks of the Q6_K expanders: X14 0x0F, X13 0x30,
// X12 0x03, X11 32 (the offset).
#define Q6MASKS \
	MOVL $0x0F0F0F0F, AX; \
	VMOVD AX, X14; \
	VPBROADCASTD X14, X14; \
	MOVL $0x30303030, AX; \
	VMOVD AX, X13; \
	VPBROADCASTD X13, X13; \
	MOVL $0x03030303, AX; \
	VMOVD AX, X12; \
	VPBROADCASTD X12, X12; \
	MOVL $0x20202020, AX; \
	VMOVD AX, X11; \
	VPBROADCASTD X11, X11

// Q6LOAD loads, for 16 consecutive l of one 128-value half of a Q6_K block,
// the low-nibble bytes of l and l+32 (X1, X2) and the 2-bit highs (X3).
#define Q6LOAD(ql, qh) \
	VMOVDQU ql(SI), X1; \
	VMOVDQU (ql+32)(SI), X2; \
	VMOVDQU qh(SI), X3

// Q6V0 to Q6V3 assemble into X4 the 6-bit values of l, l+32, l+64, l+96.
#define Q6V0 \
	VPAND  X14, X1, X4; \
	VPAND  X12, X3, X5; \
	VPSLLW $4, X5, X5; \
	VPOR   X5, X4, X4

#define Q6V1 \
	VPAND  X14, X2, X4; \
	VPSLLW $2, X3, X5; \
	VPAND  X13, X5, X5; \
	VPOR   X5, X4, X4

#define Q6V2 \
	VPSRLW $4, X1, X4; \
	VPAND  X14, X4, X4; \
	VPAND  X13, X3, X5; \
	VPOR   X5, X4, X4

#define Q6V3 \
	VPSRLW $4, X2, X4; \
	VPAND  X14, X4, X4; \
	VPSRLW $2, X3, X5; \
	VPAND  X13, X5, X5; \
	VPOR   X5, X4, X4

// Q6CHUNK expands 16 consecutive l of one 128-value half of a Q6_K block:
// ql (low nibbles of l and l+32), qh (2-bit highs), sc (the scale of l),
// out (byte offset of value l).
#define Q6CHUNK(ql, qh, sc, out) \
	Q6LOAD(ql, qh); \
	Q6V0; \
	Q6OUT(sc, out); \
	Q6V1; \
	Q6OUT((sc+2), (out+128)); \
	Q6V2; \
	Q6OUT((sc+4), (out+256)); \
	Q6V3; \
	Q6OUT((sc+6), (out+384))

// func dequantQ6KAVX2(nb int, w *byte, dst *float32)
// Expands nb ggml Q6_K blocks (210 bytes: ql[128], qh[64], int8 scales[16],
// f16 d) into 256 float32 each, bit for bit as the reference dequantizer.
TEXT ·dequantQ6KAVX2(SB), NOSPLIT, $0-24
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI
	Q6MASKS

dq6loop:
	MOVWLZX   208(SI), AX
	VMOVD     AX, X0
	VCVTPH2PS X0, X0
	Q6CHUNK(0, 128, 192, 0)
	Q6CHUNK(16, 144, 193, 64)
	Q6CHUNK(64, 160, 200, 512)
	Q6CHUNK(80, 176, 201, 576)
	ADDQ      $210, SI
	ADDQ      $1024, DI
	DECQ      CX
	JNZ       dq6loop
	VZEROUPPER
	RET

// Q6OUTZ is Q6OUT with 512-bit conversions; the 16 block scales d·sc are
// precomputed at sc(SP).
#define Q6OUTZ(sc, out) \
	VPSUBB       X11, X4, X4; \
	VBROADCASTSS sc(SP), Z7; \
	VPMOVSXBD    X4, Z8; \
	VCVTDQ2PS    Z8, Z8; \
	VMULPS       Z7, Z8, Z8; \
	VMOVUPS      Z8, out(DI)

#define Q6CHUNKZ(ql, qh, sc, out) \
	Q6LOAD(ql, qh); \
	Q6V0; \
	Q6OUTZ(sc, out); \
	Q6V1; \
	Q6OUTZ((sc+8), (out+128)); \
	Q6V2; \
	Q6OUTZ((sc+16), (out+256)); \
	Q6V3; \
	Q6OUTZ((sc+24), (out+384))

// func dequantQ6KAVX512(nb int, w *byte, dst *float32)
// dequantQ6KAVX2 with the block's 16 scales d·sc computed at once and
// 512-bit conversions (same bits).
TEXT ·dequantQ6KAVX512(SB), NOSPLIT, $64-24
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI
	Q6MASKS

dq6zloop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X0
	VCVTPH2PS    X0, X0
	VBROADCASTSS X0, Z0
	VPMOVSXBD    192(SI), Z6
	VCVTDQ2PS    Z6, Z6
	VMULPS       Z0, Z6, Z6
	VMOVUPS      Z6, (SP)
	Q6CHUNKZ(0, 128, 0, 0)
	Q6CHUNKZ(16, 144, 4, 64)
	Q6CHUNKZ(64, 160, 32, 512)
	Q6CHUNKZ(80, 176, 36, 576)
	ADDQ         $210, SI
	ADDQ         $1024, DI
	DECQ         CX
	JNZ          dq6zloop
	VZEROUPPER
	RET

// Q6VNNI multiplies block j (32 values, k-th of its half) of the Q6_K row at
// SI by the activation block j: Y6 holds its values (u8 0..63); the dot
// with the int8 activations at xq(DI), less 32·Σ of each 4 activations
// (off(R8)), converted and scaled per 16 values by d·sc (at 4·2j(SP)) and
// the activation scale (xd(R9)), is added to acc (Y0 or Y11: two chains).
#define Q6VNNI(j, acc) \
	VPXOR        Y7, Y7, Y7; \
	VPDPBUSD     (32*j)(DI), Y6, Y7; \
	VPSUBD       (32*j)(R8), Y7, Y7; \
	VCVTDQ2PS    Y7, Y7; \
	VBROADCASTSS (8*j)(SP), X8; \
	VBROADCASTSS (8*j+4)(SP), X9; \
	VINSERTF128  $1, X9, Y8, Y8; \
	VMULPS.BCST  (4*j)(R9), Y8, Y8; \
	VFMADD231PS  Y8, Y7, acc

// Q6AVX2 is Q6VNNI with VPMADDUBSW and VPMADDWD (Y15: int16 ones) for
// VPDPBUSD: the products of two 6-bit values and int8 activations fit int16
// (2·63·127), and the same 4-value sums reach the same float32 steps.
#define Q6AVX2(j, acc) \
	VPMADDUBSW   (32*j)(DI), Y6, Y7; \
	VPMADDWD     Y15, Y7, Y7; \
	VPSUBD       (32*j)(R8), Y7, Y7; \
	VCVTDQ2PS    Y7, Y7; \
	VBROADCASTSS (8*j)(SP), X8; \
	VBROADCASTSS (8*j+4)(SP), X9; \
	VINSERTF128  $1, X9, Y8, Y8; \
	VBROADCASTSS (4*j)(R9), Y9; \
	VMULPS       Y9, Y8, Y8; \
	VFMADD231PS  Y8, Y7, acc

// Q6HALF runs the four blocks of one 128-value half (ql at qlo(SI), qh at
// qho(SI)), the first being block j0, with the block macro BLK.
#define Q6HALF(BLK, qlo, qho, j0) \
	VMOVDQU qlo(SI), Y3; \
	VMOVDQU (qlo+32)(SI), Y4; \
	VMOVDQU qho(SI), Y5; \
	VPAND   Y14, Y3, Y6; \
	VPAND   Y12, Y5, Y10; \
	VPSLLW  $4, Y10, Y10; \
	VPOR    Y10, Y6, Y6; \
	BLK(j0, Y0); \
	VPAND   Y14, Y4, Y6; \
	VPSLLW  $2, Y5, Y10; \
	VPAND   Y13, Y10, Y10; \
	VPOR    Y10, Y6, Y6; \
	BLK((j0+1), Y11); \
	VPSRLW  $4, Y3, Y6; \
	VPAND   Y14, Y6, Y6; \
	VPAND   Y13, Y5, Y10; \
	VPOR    Y10, Y6, Y6; \
	BLK((j0+2), Y0); \
	VPSRLW  $4, Y4, Y6; \
	VPAND   Y14, Y6, Y6; \
	VPSRLW  $2, Y5, Y10; \
	VPAND   Y13, Y10, Y10; \
	VPOR    Y10, Y6, Y6; \
	BLK((j0+3), Y11)

// func q6KRowsVNNI(rows, nsb int, w *byte, xq *int8, xd *float32, off *int32, y *float32)
// y[r] = row r of w (ggml Q6_K, nsb blocks of 210 bytes) · x, x as Q8_0
// blocks of 32 (xq, xd) with off: 32·Σ of every 4 consecutive xq.
TEXT ·q6KRowsVNNI(SB), NOSPLIT, $64-56
	MOVQ rows+0(FP), R10
	MOVQ w+16(FP), SI
	MOVQ y+48(FP), R11
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $0x30303030, AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	MOVL $0x03030303, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12

q6vrow:
	MOVQ   nsb+8(FP), CX
	MOVQ   xq+24(FP), DI
	MOVQ   off+40(FP), R8
	MOVQ   xd+32(FP), R9
	VXORPS Y0, Y0, Y0
	VXORPS Y11, Y11, Y11

q6vblk:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X1
	VCVTPH2PS    X1, X1
	VBROADCASTSS X1, Z1
	VPMOVSXBD    192(SI), Z2
	VCVTDQ2PS    Z2, Z2
	VMULPS       Z1, Z2, Z2
	VMOVUPS      Z2, (SP)
	Q6HALF(Q6VNNI, 0, 128, 0)
	Q6HALF(Q6VNNI, 64, 160, 4)
	ADDQ         $210, SI
	ADDQ         $256, DI
	ADDQ         $256, R8
	ADDQ         $32, R9
	DECQ         CX
	JNZ          q6vblk

	VADDPS Y11, Y0, Y0
	HSUM
	VMOVSS X0, (R11)
	ADDQ   $4, R11
	DECQ   R10
	JNZ    q6vrow
	VZEROUPPER
	RET

// func q6KRowsAVX2(rows, nsb int, w *byte, xq *int8, xd *float32, off *int32, y *float32)
// q6KRowsVNNI for CPUs with AVX2 only, the same bits.
TEXT ·q6KRowsAVX2(SB), NOSPLIT, $64-56
	MOVQ rows+0(FP), R10
	MOVQ w+16(FP), SI
	MOVQ y+48(FP), R11
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $0x30303030, AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	MOVL $0x03030303, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0x00010001, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15

q6arow:
	MOVQ   nsb+8(FP), CX
	MOVQ   xq+24(FP), DI
	MOVQ   off+40(FP), R8
	MOVQ   xd+32(FP), R9
	VXORPS Y0, Y0, Y0
	VXORPS Y11, Y11, Y11

q6ablk:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X1
	VCVTPH2PS    X1, X1
	VBROADCASTSS X1, Y1
	VPMOVSXBD    192(SI), Y2
	VCVTDQ2PS    Y2, Y2
	VMULPS       Y1, Y2, Y2
	VMOVUPS      Y2, (SP)
	VPMOVSXBD    200(SI), Y2
	VCVTDQ2PS    Y2, Y2
	VMULPS       Y1, Y2, Y2
	VMOVUPS      Y2, 32(SP)
	Q6HALF(Q6AVX2, 0, 128, 0)
	Q6HALF(Q6AVX2, 64, 160, 4)
	ADDQ         $210, SI
	ADDQ         $256, DI
	ADDQ         $256, R8
	ADDQ         $32, R9
	DECQ         CX
	JNZ          q6ablk

	VADDPS Y11, Y0, Y0
	HSUM
	VMOVSS X0, (R11)
	ADDQ   $4, R11
	DECQ   R10
	JNZ    q6arow
	VZEROUPPER
	RET

// Q4KHALF expands 16 nibble bytes at nib(SI) (low nibbles: values with
// scale/min index 2j, high: 2j+1) into 16+16 float32 at lo(DI), hi(DI) as
// d·sc·q − dmin·m; the scales and mins are at (SP) and 32(SP).
#define Q4KHALF(nib, j, lo, hi) \
	VMOVDQU      nib(SI), X3; \
	VPAND        X14, X3, X4; \
	VPSRLW       $4, X3, X5; \
	VPAND        X14, X5, X5; \
	VPMOVZXBD    X4, Z4; \
	VPMOVZXBD    X5, Z5; \
	VCVTDQ2PS    Z4, Z4; \
	VCVTDQ2PS    Z5, Z5; \
	VBROADCASTSS (8*j)(SP), Z6; \
	VBROADCASTSS (8*j+4)(SP), Z7; \
	VMULPS       Z6, Z4, Z4; \
	VMULPS       Z7, Z5, Z5; \
	VBROADCASTSS (32+8*j)(SP), Z6; \
	VBROADCASTSS (32+8*j+4)(SP), Z7; \
	VSUBPS       Z6, Z4, Z4; \
	VSUBPS       Z7, Z5, Z5; \
	VMOVUPS      Z4, lo(DI); \
	VMOVUPS      Z5, hi(DI)

// func dequantQ4KAVX512(nb int, w *byte, dst *float32)
// Expands nb Q4_K blocks in the kernels' layout (q4KBytes: f32 d, f32 dmin,
// 8 u8 scales, 8 u8 mins, 128 nibble bytes) into 256 float32 each, bit for
// bit as dequantQ4KGo.
TEXT ·dequantQ4KAVX512(SB), NOSPLIT, $64-24
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X14
	VPBROADCASTD X14, X14

dq4kloop:
	VBROADCASTSS (SI), Y0
	VBROADCASTSS 4(SI), Y1
	VPMOVZXBD    8(SI), Y2
	VCVTDQ2PS    Y2, Y2
	VMULPS       Y0, Y2, Y2
	VMOVUPS      Y2, (SP)
	VPMOVZXBD    16(SI), Y2
	VCVTDQ2PS    Y2, Y2
	VMULPS       Y1, Y2, Y2
	VMOVUPS      Y2, 32(SP)
	Q4KHALF(24, 0, 0, 128)
	Q4KHALF(40, 0, 64, 192)
	Q4KHALF(56, 1, 256, 384)
	Q4KHALF(72, 1, 320, 448)
	Q4KHALF(88, 2, 512, 640)
	Q4KHALF(104, 2, 576, 704)
	Q4KHALF(120, 3, 768, 896)
	Q4KHALF(136, 3, 832, 960)
	ADDQ         $152, SI
	ADDQ         $1024, DI
	DECQ         CX
	JNZ          dq4kloop
	VZEROUPPER
	RET
