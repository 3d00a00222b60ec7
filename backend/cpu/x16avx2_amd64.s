#include "textflag.h"

// Kernels for Q4_0 weights in the x16 layout (x16.go) on CPUs with AVX2 but
// no AVX-512 VNNI. A 256-bit register holds four weight bytes of 8 rows (half
// a panel); VPMADDUBSW multiplies their unsigned nibbles by four broadcast
// activation bytes into int16 pairs. The eight products of a block's 32
// values stay within int16 (8·2·15·128 < 2¹⁵), so they are summed as int16
// and widened once with VPMADDWD: the same exact integer dot as the VNNI
// kernels, then the same float32 steps, so the results are the same bits.

// x16ones holds the int16 ones VPMADDWD widens int16 pairs with.
DATA x16ones<>+0(SB)/8, $0x0001000100010001
DATA x16ones<>+8(SB)/8, $0x0001000100010001
DATA x16ones<>+16(SB)/8, $0x0001000100010001
DATA x16ones<>+24(SB)/8, $0x0001000100010001
GLOBL x16ones<>(SB), RODATA|NOPTR, $32

// func x16GemmAVX2(nb int, w *byte, xt *byte, y *float32, ldy int)
// y[t·ldy + r], r < 16, t < 8: Q4_0 panel w (nb blocks) times activation
// tile xt, in four passes over the blocks (rows 0–7 or 8–15 of the panel,
// times activation rows 0–3 or 4–7): Y0–Y3 accumulate, Y8–Y15 hold a half
// block's nibbles (low and high of groups 0–3), Y6 its 8 scales, Y7 the
// nibble mask. BX is the half's byte offset in a group, DX in the scales;
// R8 and R11 the activation rows' offsets in the tile's values and scales.
TEXT ·x16GemmAVX2(SB), NOSPLIT, $0-40
	MOVQ ldy+32(FP), R10
	SHLQ $2, R10
	XORQ BX, BX

x16gemmavx2h:
	XORQ R8, R8
	XORQ R11, R11
	XORQ R13, R13

x16gemmavx2a:
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ xt+16(FP), DI
	MOVQ BX, DX
	SHRQ $1, DX
	MOVL $0x0F0F0F0F, AX
	MOVQ AX, X7
	VPBROADCASTD X7, Y7
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

x16gemmavx2b:
	VMOVDQU      32(SI)(BX*1), Y4
	VPSRLW       $4, Y4, Y9
	VPAND        Y7, Y4, Y8
	VPAND        Y7, Y9, Y9
	VMOVDQU      96(SI)(BX*1), Y4
	VPSRLW       $4, Y4, Y11
	VPAND        Y7, Y4, Y10
	VPAND        Y7, Y11, Y11
	VMOVDQU      160(SI)(BX*1), Y4
	VPSRLW       $4, Y4, Y13
	VPAND        Y7, Y4, Y12
	VPAND        Y7, Y13, Y13
	VMOVDQU      224(SI)(BX*1), Y4
	VPSRLW       $4, Y4, Y15
	VPAND        Y7, Y4, Y14
	VPAND        Y7, Y15, Y15
	VCVTPH2PS    (SI)(DX*1), Y6
	VPBROADCASTD 0(DI)(R8*1), Y4
	VPMADDUBSW   Y4, Y8, Y4
	VPBROADCASTD 16(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y9, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 4(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y10, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 20(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y11, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 8(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y12, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 24(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y13, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 12(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y14, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 28(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y15, Y5
	VPADDW       Y5, Y4, Y4
	VPMADDWD     x16ones<>(SB), Y4, Y4
	VPBROADCASTD 288(DI)(R11*1), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VBROADCASTSS 256(DI)(R11*1), Y5
	VMULPS       Y5, Y6, Y5
	VFMADD231PS  Y5, Y4, Y0
	VPBROADCASTD 32(DI)(R8*1), Y4
	VPMADDUBSW   Y4, Y8, Y4
	VPBROADCASTD 48(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y9, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 36(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y10, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 52(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y11, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 40(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y12, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 56(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y13, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 44(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y14, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 60(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y15, Y5
	VPADDW       Y5, Y4, Y4
	VPMADDWD     x16ones<>(SB), Y4, Y4
	VPBROADCASTD 292(DI)(R11*1), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VBROADCASTSS 260(DI)(R11*1), Y5
	VMULPS       Y5, Y6, Y5
	VFMADD231PS  Y5, Y4, Y1
	VPBROADCASTD 64(DI)(R8*1), Y4
	VPMADDUBSW   Y4, Y8, Y4
	VPBROADCASTD 80(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y9, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 68(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y10, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 84(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y11, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 72(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y12, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 88(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y13, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 76(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y14, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 92(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y15, Y5
	VPADDW       Y5, Y4, Y4
	VPMADDWD     x16ones<>(SB), Y4, Y4
	VPBROADCASTD 296(DI)(R11*1), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VBROADCASTSS 264(DI)(R11*1), Y5
	VMULPS       Y5, Y6, Y5
	VFMADD231PS  Y5, Y4, Y2
	VPBROADCASTD 96(DI)(R8*1), Y4
	VPMADDUBSW   Y4, Y8, Y4
	VPBROADCASTD 112(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y9, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 100(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y10, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 116(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y11, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 104(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y12, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 120(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y13, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 108(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y14, Y5
	VPADDW       Y5, Y4, Y4
	VPBROADCASTD 124(DI)(R8*1), Y5
	VPMADDUBSW   Y5, Y15, Y5
	VPADDW       Y5, Y4, Y4
	VPMADDWD     x16ones<>(SB), Y4, Y4
	VPBROADCASTD 300(DI)(R11*1), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VBROADCASTSS 268(DI)(R11*1), Y5
	VMULPS       Y5, Y6, Y5
	VFMADD231PS  Y5, Y4, Y3
	ADDQ $288, SI
	ADDQ $320, DI
	DECQ CX
	JNZ  x16gemmavx2b
	MOVQ y+24(FP), R9
	ADDQ BX, R9
	MOVQ R13, AX
	SHLQ $2, AX
	IMULQ R10, AX
	ADDQ AX, R9
	VMOVUPS Y0, (R9)
	ADDQ    R10, R9
	VMOVUPS Y1, (R9)
	ADDQ    R10, R9
	VMOVUPS Y2, (R9)
	ADDQ    R10, R9
	VMOVUPS Y3, (R9)
	ADDQ $128, R8
	ADDQ $16, R11
	INCQ R13
	CMPQ R13, $2
	JLT  x16gemmavx2a
	ADDQ $32, BX
	CMPQ BX, $64
	JLT  x16gemmavx2h
	VZEROUPPER
	RET

// func x16RowsAVX2(panels, nb int, w *byte, xq *int8, xd *float32, nsum *int32, y *float32)
// y[16p + r] for the Q4_0 panels of w and one activation row (xq, xd, nsum:
// its Q8_0 values, block scales and offset sums). Y0 and Y1 accumulate rows
// 0–7 and 8–15, Y6–Y13 hold the block's broadcast activation groups, Y14
// the int16 ones, Y15 the nibble mask.
TEXT ·x16RowsAVX2(SB), NOSPLIT, $0-56
	MOVQ panels+0(FP), R10
	MOVQ w+16(FP), SI
	MOVQ y+48(FP), R9
	MOVL $0x0F0F0F0F, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	VMOVDQU x16ones<>(SB), Y14

x16rowsavx2p:
	MOVQ   nb+8(FP), CX
	MOVQ   xq+24(FP), R8
	MOVQ   xd+32(FP), R11
	MOVQ   nsum+40(FP), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

x16rowsavx2b:
	VPBROADCASTD 0(R8), Y6
	VPBROADCASTD 16(R8), Y7
	VPBROADCASTD 4(R8), Y8
	VPBROADCASTD 20(R8), Y9
	VPBROADCASTD 8(R8), Y10
	VPBROADCASTD 24(R8), Y11
	VPBROADCASTD 12(R8), Y12
	VPBROADCASTD 28(R8), Y13
	VMOVDQU      32(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y6, Y2, Y4
	VPMADDUBSW   Y7, Y3, Y5
	VPADDW       Y5, Y4, Y4
	VMOVDQU      96(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y8, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y9, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VMOVDQU      160(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y10, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y11, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VMOVDQU      224(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y12, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y13, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VPMADDWD     Y14, Y4, Y4
	VPBROADCASTD (R12), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VCVTPH2PS    0(SI), Y5
	VBROADCASTSS (R11), Y2
	VMULPS       Y2, Y5, Y5
	VFMADD231PS  Y5, Y4, Y0
	VMOVDQU      64(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y6, Y2, Y4
	VPMADDUBSW   Y7, Y3, Y5
	VPADDW       Y5, Y4, Y4
	VMOVDQU      128(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y8, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y9, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VMOVDQU      192(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y10, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y11, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VMOVDQU      256(SI), Y2
	VPSRLW       $4, Y2, Y3
	VPAND        Y15, Y2, Y2
	VPAND        Y15, Y3, Y3
	VPMADDUBSW   Y12, Y2, Y2
	VPADDW       Y2, Y4, Y4
	VPMADDUBSW   Y13, Y3, Y3
	VPADDW       Y3, Y4, Y4
	VPMADDWD     Y14, Y4, Y4
	VPBROADCASTD (R12), Y5
	VPADDD       Y5, Y4, Y4
	VCVTDQ2PS    Y4, Y4
	VCVTPH2PS    16(SI), Y5
	VBROADCASTSS (R11), Y2
	VMULPS       Y2, Y5, Y5
	VFMADD231PS  Y5, Y4, Y1
	ADDQ $288, SI
	ADDQ $32, R8
	ADDQ $4, R11
	ADDQ $4, R12
	DECQ CX
	JNZ  x16rowsavx2b
	VMOVUPS Y0, (R9)
	VMOVUPS Y1, 32(R9)
	ADDQ    $64, R9
	DECQ    R10
	JNZ     x16rowsavx2p
	VZEROUPPER
	RET
