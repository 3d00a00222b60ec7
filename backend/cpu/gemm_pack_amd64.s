#include "textflag.h"

// func packPanelsAVX(dst, src *float32, width, panels, rows, srcStride, panelStride int, alpha float32)
//
// Deals rows of src into micro-panels: for r < rows, q < panels, i < width,
//
//	dst[q*panelStride + r*width + i] = alpha * src[r*srcStride + q*width + i]
//
// Each row of src is read from start to end, so hardware prefetchers stream it.
TEXT ·packPanelsAVX(SB), NOSPLIT, $0-60
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         width+16(FP), DX
	MOVQ         rows+32(FP), CX
	MOVQ         srcStride+40(FP), R8
	SHLQ         $2, R8
	MOVQ         panelStride+48(FP), R9
	SHLQ         $2, R9
	MOVQ         DX, R12
	SHLQ         $2, R12                  // width in bytes
	VBROADCASTSS alpha+56(FP), Y15

row:
	TESTQ CX, CX
	JLE   done
	MOVQ  SI, R10                         // src cursor along the row
	MOVQ  DI, R13                         // dst of panel 0, this row
	MOVQ  panels+24(FP), AX

panel:
	TESTQ AX, AX
	JLE   nextrow
	MOVQ  R13, R11
	MOVQ  DX, BX

c8:
	CMPQ    BX, $8
	JLT     c4
	VMULPS  (R10), Y15, Y0
	VMOVUPS Y0, (R11)
	ADDQ    $32, R10
	ADDQ    $32, R11
	SUBQ    $8, BX
	JMP     c8

c4:
	CMPQ    BX, $4
	JLT     c2
	VMULPS  (R10), X15, X0
	VMOVUPS X0, (R11)
	ADDQ    $16, R10
	ADDQ    $16, R11
	SUBQ    $4, BX

c2:
	CMPQ   BX, $2
	JLT    c1
	VMOVSD (R10), X0
	VMULPS X0, X15, X0
	VMOVSD X0, (R11)
	ADDQ   $8, R10
	ADDQ   $8, R11
	SUBQ   $2, BX

c1:
	CMPQ   BX, $1
	JLT    nextpanel
	VMOVSS (R10), X0
	VMULSS X0, X15, X0
	VMOVSS X0, (R11)
	ADDQ   $4, R10

nextpanel:
	ADDQ R9, R13
	DECQ AX
	JMP  panel

nextrow:
	ADDQ R8, SI
	ADDQ R12, DI
	DECQ CX
	JMP  row

done:
	VZEROUPPER
	RET

// func packTransAVX(dst, src *float32, rows, kc, stride int, alpha float32)
//
// Transposes rows rows of src (rows is even; row r at src[r*stride:], kc long)
// into one micro-panel: dst[p*rows + r] = alpha * src[r*stride + p].
// Four rows (then two) at a time, 8 columns per step through a register
// transpose.
TEXT ·packTransAVX(SB), NOSPLIT, $0-44
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         rows+16(FP), DX
	MOVQ         kc+24(FP), CX
	MOVQ         stride+32(FP), R8
	SHLQ         $2, R8                   // source row stride, bytes
	VBROADCASTSS alpha+40(FP), Y15
	MOVQ         DX, R9
	SHLQ         $2, R9                   // destination stride per column p, bytes
	LEAQ         (R9)(R9*2), R12          // 3 of them

group4:
	CMPQ DX, $4
	JLT  group2
	MOVQ SI, R10                          // rows 0-2 at R10, R10+R8, R10+2·R8
	LEAQ (SI)(R8*2), R11
	ADDQ R8, R11                          // row 3
	MOVQ DI, BX
	MOVQ CX, AX

p8x4:
	CMPQ         AX, $8
	JLT          tail4
	VMULPS       (R10), Y15, Y0           // a0..a7
	VMULPS       (R10)(R8*1), Y15, Y1     // b0..b7
	VMULPS       (R10)(R8*2), Y15, Y2     // c0..c7
	VMULPS       (R11), Y15, Y3           // d0..d7
	VUNPCKLPS    Y1, Y0, Y4               // a0 b0 a1 b1 | a4 b4 a5 b5
	VUNPCKHPS    Y1, Y0, Y5               // a2 b2 a3 b3 | a6 b6 a7 b7
	VUNPCKLPS    Y3, Y2, Y6               // c0 d0 c1 d1 | c4 d4 c5 d5
	VUNPCKHPS    Y3, Y2, Y7               // c2 d2 c3 d3 | c6 d6 c7 d7
	VUNPCKLPD    Y6, Y4, Y0               // p0 | p4
	VUNPCKHPD    Y6, Y4, Y1               // p1 | p5
	VUNPCKLPD    Y7, Y5, Y2               // p2 | p6
	VUNPCKHPD    Y7, Y5, Y3               // p3 | p7
	VMOVUPS      X0, (BX)
	VMOVUPS      X1, (BX)(R9*1)
	VMOVUPS      X2, (BX)(R9*2)
	VMOVUPS      X3, (BX)(R12*1)
	LEAQ         (BX)(R9*4), R13
	VEXTRACTF128 $1, Y0, (R13)
	VEXTRACTF128 $1, Y1, (R13)(R9*1)
	VEXTRACTF128 $1, Y2, (R13)(R9*2)
	VEXTRACTF128 $1, Y3, (R13)(R12*1)
	LEAQ         (BX)(R9*8), BX
	ADDQ         $32, R10
	ADDQ         $32, R11
	SUBQ         $8, AX
	JMP          p8x4

tail4:
	TESTQ  AX, AX
	JLE    next4
	VMOVSS (R10), X0
	VMULSS X0, X15, X0
	VMOVSS X0, (BX)
	VMOVSS (R10)(R8*1), X0
	VMULSS X0, X15, X0
	VMOVSS X0, 4(BX)
	VMOVSS (R10)(R8*2), X0
	VMULSS X0, X15, X0
	VMOVSS X0, 8(BX)
	VMOVSS (R11), X0
	VMULSS X0, X15, X0
	VMOVSS X0, 12(BX)
	ADDQ   $4, R10
	ADDQ   $4, R11
	ADDQ   R9, BX
	DECQ   AX
	JMP    tail4

next4:
	ADDQ $16, DI                          // the next four slots of each column
	LEAQ (SI)(R8*4), SI                   // the next four rows
	SUBQ $4, DX
	JMP  group4

group2:
	CMPQ DX, $2
	JLT  done
	MOVQ SI, R10
	MOVQ DI, BX
	MOVQ CX, AX

p8x2:
	CMPQ         AX, $8
	JLT          tail2
	VMULPS       (R10), Y15, Y0           // a0..a7
	VMULPS       (R10)(R8*1), Y15, Y1     // b0..b7
	VUNPCKLPS    Y1, Y0, Y4               // p0 p1 | p4 p5
	VUNPCKHPS    Y1, Y0, Y5               // p2 p3 | p6 p7
	VEXTRACTF128 $1, Y4, X6
	VEXTRACTF128 $1, Y5, X7
	VMOVLPS      X4, (BX)
	VMOVHPS      X4, (BX)(R9*1)
	VMOVLPS      X5, (BX)(R9*2)
	VMOVHPS      X5, (BX)(R12*1)
	LEAQ         (BX)(R9*4), R13
	VMOVLPS      X6, (R13)
	VMOVHPS      X6, (R13)(R9*1)
	VMOVLPS      X7, (R13)(R9*2)
	VMOVHPS      X7, (R13)(R12*1)
	LEAQ         (BX)(R9*8), BX
	ADDQ         $32, R10
	SUBQ         $8, AX
	JMP          p8x2

tail2:
	TESTQ  AX, AX
	JLE    done
	VMOVSS (R10), X0
	VMULSS X0, X15, X0
	VMOVSS X0, (BX)
	VMOVSS (R10)(R8*1), X0
	VMULSS X0, X15, X0
	VMOVSS X0, 4(BX)
	ADDQ   $4, R10
	ADDQ   R9, BX
	DECQ   AX
	JMP    tail2

done:
	VZEROUPPER
	RET

// func packRowsAVX(dst, src *float32, width, rows, srcStride, dstStride int, alpha float32)
//
// For r < rows: dst[r*dstStride : r*dstStride+width] = alpha * src[r*srcStride : r*srcStride+width].
TEXT ·packRowsAVX(SB), NOSPLIT, $0-52
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         width+16(FP), DX
	MOVQ         rows+24(FP), CX
	MOVQ         srcStride+32(FP), R8
	SHLQ         $2, R8
	MOVQ         dstStride+40(FP), R9
	SHLQ         $2, R9
	VBROADCASTSS alpha+48(FP), Y15

rrow:
	TESTQ CX, CX
	JLE   rdone
	MOVQ  SI, R10
	MOVQ  DI, R11
	MOVQ  DX, BX

r8:
	CMPQ    BX, $8
	JLT     r4
	VMULPS  (R10), Y15, Y0
	VMOVUPS Y0, (R11)
	ADDQ    $32, R10
	ADDQ    $32, R11
	SUBQ    $8, BX
	JMP     r8

r4:
	CMPQ    BX, $4
	JLT     r2
	VMULPS  (R10), X15, X0
	VMOVUPS X0, (R11)
	ADDQ    $16, R10
	ADDQ    $16, R11
	SUBQ    $4, BX

r2:
	CMPQ   BX, $2
	JLT    r1
	VMOVSD (R10), X0
	VMULPS X0, X15, X0
	VMOVSD X0, (R11)
	ADDQ   $8, R10
	ADDQ   $8, R11
	SUBQ   $2, BX

r1:
	CMPQ   BX, $1
	JLT    rnext
	VMOVSS (R10), X0
	VMULSS X0, X15, X0
	VMOVSS X0, (R11)

rnext:
	ADDQ R8, SI
	ADDQ R9, DI
	DECQ CX
	JMP  rrow

rdone:
	VZEROUPPER
	RET
