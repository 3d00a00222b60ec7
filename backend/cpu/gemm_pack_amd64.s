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
