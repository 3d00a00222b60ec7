#include "textflag.h"

// Vector kernels of the fused elementwise ops, AVX2 + FMA, 8 floats per step.
// Every routine processes n elements where n is a multiple of 8 (the Go
// wrappers in vec_amd64.go run the tails with the scalar code of vec.go).
// Operand order is Go's: the destination is last.

#define CONST8(name, bits) \
	DATA name<>+0(SB)/4, $bits; \
	DATA name<>+4(SB)/4, $bits; \
	DATA name<>+8(SB)/4, $bits; \
	DATA name<>+12(SB)/4, $bits; \
	DATA name<>+16(SB)/4, $bits; \
	DATA name<>+20(SB)/4, $bits; \
	DATA name<>+24(SB)/4, $bits; \
	DATA name<>+28(SB)/4, $bits; \
	GLOBL name<>(SB), RODATA|NOPTR, $32

CONST8(expHi, 0x42b0c0a5)    // 88.3762626647949
CONST8(expLo, 0xc2aeac4f)    // -87.33654
CONST8(expLog2e, 0x3fb8aa3b) // log2(e)
CONST8(expC1, 0x3f318000)    // 0.693359375 (high part of ln 2)
CONST8(expC2, 0xb95e8083)    // -2.12194440e-4 (ln 2 - expC1)
CONST8(expP0, 0x39506967)    // 1.9875691500e-4
CONST8(expP1, 0x3ab743ce)    // 1.3981999507e-3
CONST8(expP2, 0x3c088908)    // 8.3334519073e-3
CONST8(expP3, 0x3d2aa9c1)    // 4.1665795894e-2
CONST8(expP4, 0x3e2aaaaa)    // 1.6666665459e-1
CONST8(expP5, 0x3f000000)    // 5.0000001201e-1
CONST8(exp127, 0x0000007f)   // exponent bias (int32)
CONST8(vOne, 0x3f800000)     // 1
CONST8(vSign, 0x80000000)    // sign bit
CONST8(geluK1, 0x3fcc422a)   // 2*sqrt(2/pi)
CONST8(geluK2, 0x3d922279)   // 2*sqrt(2/pi)*0.044715
CONST8(geluK3, 0x3e5b33b6)   // 3*2*sqrt(2/pi)*0.044715

// EXP8 sets X = exp(X) for 8 floats (Cephes expf: x = n ln2 + r, a degree-7
// polynomial in r, times 2^n), clobbering T1 and T2. Inputs are clamped to
// [-87.34, 88.38]; NaN stays NaN.
#define EXP8(X, T1, T2) \
	VMOVUPS      expHi<>(SB), T1; \
	VMINPS       X, T1, X; \
	VMOVUPS      expLo<>(SB), T1; \
	VMAXPS       X, T1, X; \
	VMULPS       expLog2e<>(SB), X, T1; \
	VROUNDPS     $0, T1, T1; \
	VFNMADD231PS expC1<>(SB), T1, X; \
	VFNMADD231PS expC2<>(SB), T1, X; \
	VMOVUPS      expP0<>(SB), T2; \
	VFMADD213PS  expP1<>(SB), X, T2; \
	VFMADD213PS  expP2<>(SB), X, T2; \
	VFMADD213PS  expP3<>(SB), X, T2; \
	VFMADD213PS  expP4<>(SB), X, T2; \
	VFMADD213PS  expP5<>(SB), X, T2; \
	VFMADD213PS  vOne<>(SB), X, T2; \
	VFMADD213PS  vOne<>(SB), X, T2; \
	VCVTPS2DQ    T1, T1; \
	VPADDD       exp127<>(SB), T1, T1; \
	VPSLLD       $23, T1, T1; \
	VMULPS       T1, T2, X

// SIGMOID8 sets X = 1/(1+exp(-X)), clobbering T1, T2, T3.
#define SIGMOID8(X, T1, T2, T3) \
	VXORPS  vSign<>(SB), X, X; \
	EXP8(X, T1, T2); \
	VADDPS  vOne<>(SB), X, X; \
	VMOVUPS vOne<>(SB), T3; \
	VDIVPS  X, T3, X

// HSUM sets the low float of X (the XMM view of Y) to the sum of Y's lanes,
// clobbering XT.
#define HSUM(Y, X, XT) \
	VEXTRACTF128 $1, Y, XT; \
	VADDPS       XT, X, X; \
	VHADDPS      X, X, X; \
	VHADDPS      X, X, X

// func vDotAVX(a, b *float32, n int) float32
TEXT ·vDotAVX(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dot32:
	CMPQ        CX, $32
	JLT         dot8
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         dot32

dot8:
	CMPQ        CX, $8
	JLT         dotdone
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         dot8

dotdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM(Y0, X0, X1)
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func vAxpyAVX(y, x *float32, n int, a float32)
TEXT ·vAxpyAVX(SB), NOSPLIT, $0-28
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y15

axpy32:
	CMPQ        CX, $32
	JLT         axpy8
	VMOVUPS     (DI), Y0
	VMOVUPS     32(DI), Y1
	VMOVUPS     64(DI), Y2
	VMOVUPS     96(DI), Y3
	VFMADD231PS (SI), Y15, Y0
	VFMADD231PS 32(SI), Y15, Y1
	VFMADD231PS 64(SI), Y15, Y2
	VFMADD231PS 96(SI), Y15, Y3
	VMOVUPS     Y0, (DI)
	VMOVUPS     Y1, 32(DI)
	VMOVUPS     Y2, 64(DI)
	VMOVUPS     Y3, 96(DI)
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         axpy32

axpy8:
	CMPQ        CX, $8
	JLT         axpydone
	VMOVUPS     (DI), Y0
	VFMADD231PS (SI), Y15, Y0
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         axpy8

axpydone:
	VZEROUPPER
	RET

// func vScaleAVX(x *float32, n int, a float32)
TEXT ·vScaleAVX(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSS a+16(FP), Y15

scale8:
	CMPQ    CX, $8
	JLT     scaledone
	VMULPS  (DI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     scale8

scaledone:
	VZEROUPPER
	RET

// func vAddAVX(dst, a, b *float32, n int)
TEXT ·vAddAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX

add32:
	CMPQ    CX, $32
	JLT     add8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VADDPS  (DX), Y0, Y0
	VADDPS  32(DX), Y1, Y1
	VADDPS  64(DX), Y2, Y2
	VADDPS  96(DX), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DX
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     add32

add8:
	CMPQ    CX, $8
	JLT     adddone
	VMOVUPS (SI), Y0
	VADDPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     add8

adddone:
	VZEROUPPER
	RET

// func vMaxAVX(x *float32, n int) float32 (n >= 8)
TEXT ·vMaxAVX(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	VMOVUPS Y0, Y1
	ADDQ    $32, SI
	SUBQ    $8, CX

max16:
	CMPQ    CX, $16
	JLT     max8
	VMAXPS  (SI), Y0, Y0
	VMAXPS  32(SI), Y1, Y1
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     max16

max8:
	CMPQ    CX, $8
	JLT     maxdone
	VMAXPS  (SI), Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     max8

maxdone:
	VMAXPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VMOVSS       X0, ret+16(FP)
	VZEROUPPER
	RET

// func vSumSqAVX(x *float32, n int, m float32) float32 returns Σ (x-m)².
TEXT ·vSumSqAVX(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1

ss16:
	CMPQ        CX, $16
	JLT         ss8
	VMOVUPS     (SI), Y2
	VMOVUPS     32(SI), Y3
	VSUBPS      Y15, Y2, Y2
	VSUBPS      Y15, Y3, Y3
	VFMADD231PS Y2, Y2, Y0
	VFMADD231PS Y3, Y3, Y1
	ADDQ        $64, SI
	SUBQ        $16, CX
	JMP         ss16

ss8:
	CMPQ        CX, $8
	JLT         ssdone
	VMOVUPS     (SI), Y2
	VSUBPS      Y15, Y2, Y2
	VFMADD231PS Y2, Y2, Y0
	ADDQ        $32, SI
	SUBQ        $8, CX
	JMP         ss8

ssdone:
	VADDPS Y1, Y0, Y0
	HSUM(Y0, X0, X1)
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func vSumAVX(x *float32, n int) float32
TEXT ·vSumAVX(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

sum16:
	CMPQ   CX, $16
	JLT    sum8
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y1, Y1
	ADDQ   $64, SI
	SUBQ   $16, CX
	JMP    sum16

sum8:
	CMPQ   CX, $8
	JLT    sumdone
	VADDPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    sum8

sumdone:
	VADDPS Y1, Y0, Y0
	HSUM(Y0, X0, X1)
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func vExpSubAVX(dst, src *float32, n int, m float32) float32 sets
// dst = exp(src - m) and returns the sum of dst.
TEXT ·vExpSubAVX(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y15
	VXORPS       Y14, Y14, Y14
	VXORPS       Y13, Y13, Y13

es16:
	CMPQ    CX, $16
	JLT     es8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y3
	VSUBPS  Y15, Y0, Y0
	VSUBPS  Y15, Y3, Y3
	EXP8(Y0, Y1, Y2)
	EXP8(Y3, Y4, Y5)
	VMOVUPS Y0, (DI)
	VMOVUPS Y3, 32(DI)
	VADDPS  Y0, Y14, Y14
	VADDPS  Y3, Y13, Y13
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     es16

es8:
	CMPQ    CX, $8
	JLT     esdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP8(Y0, Y1, Y2)
	VMOVUPS Y0, (DI)
	VADDPS  Y0, Y14, Y14
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     es8

esdone:
	VADDPS Y13, Y14, Y14
	HSUM(Y14, X14, X1)
	VMOVSS X14, ret+32(FP)
	VZEROUPPER
	RET

// func vExpScaleAVX(dst, src *float32, n int, sub, scale float32) sets
// dst = scale*exp(src - sub).
TEXT ·vExpScaleAVX(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS sub+24(FP), Y15
	VBROADCASTSS scale+28(FP), Y14

xs16:
	CMPQ    CX, $16
	JLT     xs8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y3
	VSUBPS  Y15, Y0, Y0
	VSUBPS  Y15, Y3, Y3
	EXP8(Y0, Y1, Y2)
	EXP8(Y3, Y4, Y5)
	VMULPS  Y14, Y0, Y0
	VMULPS  Y14, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     xs16

xs8:
	CMPQ    CX, $8
	JLT     xsdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP8(Y0, Y1, Y2)
	VMULPS  Y14, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     xs8

xsdone:
	VZEROUPPER
	RET

// func vSwiGLUAVX(out, g, u *float32, n int) sets out = g*sigmoid(g)*u.
TEXT ·vSwiGLUAVX(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gv+8(FP), SI
	MOVQ u+16(FP), DX
	MOVQ n+24(FP), CX

sw8:
	CMPQ    CX, $8
	JLT     swdone
	VMOVUPS (SI), Y0
	VMOVUPS Y0, Y5
	SIGMOID8(Y0, Y1, Y2, Y3)
	VMULPS  Y5, Y0, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     sw8

swdone:
	VZEROUPPER
	RET

// func vSwiGLUBackAVX(dg, du, dout, g, u *float32, n int) accumulates
// du += dout*g*s and dg += dout*u*s*(1+g*(1-s)), s = sigmoid(g).
TEXT ·vSwiGLUBackAVX(SB), NOSPLIT, $0-48
	MOVQ dg+0(FP), R8
	MOVQ du+8(FP), R9
	MOVQ dout+16(FP), R10
	MOVQ gv+24(FP), SI
	MOVQ u+32(FP), DX
	MOVQ n+40(FP), CX

swb8:
	CMPQ        CX, $8
	JLT         swbdone
	VMOVUPS     (SI), Y0
	VMOVUPS     Y0, Y5              // g
	SIGMOID8(Y0, Y1, Y2, Y3)        // Y0 = s
	VMOVUPS     (R10), Y6           // dout
	VMULPS      Y5, Y0, Y7          // g*s
	VMOVUPS     (R9), Y8
	VFMADD231PS Y6, Y7, Y8          // du += dout*g*s
	VMOVUPS     Y8, (R9)
	VMOVUPS     vOne<>(SB), Y9
	VSUBPS      Y0, Y9, Y9          // 1-s
	VMOVUPS     vOne<>(SB), Y10
	VFMADD231PS Y9, Y5, Y10         // 1+g*(1-s)
	VMULPS      (DX), Y6, Y6        // dout*u
	VMULPS      Y0, Y6, Y6          // dout*u*s
	VMOVUPS     (R8), Y8
	VFMADD231PS Y10, Y6, Y8         // dg += dout*u*s*(1+g*(1-s))
	VMOVUPS     Y8, (R8)
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, R8
	ADDQ        $32, R9
	ADDQ        $32, R10
	SUBQ        $8, CX
	JMP         swb8

swbdone:
	VZEROUPPER
	RET

// func vGELUTanhAVX(out, x *float32, n int) sets out = x*sigmoid(z),
// z = x*(k1 + k2*x²): GPT-2's tanh-approximated GELU, since
// 0.5*(1+tanh(z/2)) = sigmoid(z).
TEXT ·vGELUTanhAVX(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX

ge8:
	CMPQ        CX, $8
	JLT         gedone
	VMOVUPS     (SI), Y5           // x
	VMULPS      Y5, Y5, Y0         // x²
	VMOVUPS     geluK1<>(SB), Y4
	VFMADD231PS geluK2<>(SB), Y0, Y4 // k1 + k2*x²
	VMULPS      Y5, Y4, Y0         // z
	SIGMOID8(Y0, Y1, Y2, Y3)
	VMULPS      Y5, Y0, Y0
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         ge8

gedone:
	VZEROUPPER
	RET

// func vGELUTanhBackAVX(dx, dout, x *float32, n int) accumulates
// dx += dout*(s + x*s*(1-s)*(k1 + k3*x²)).
TEXT ·vGELUTanhBackAVX(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX

gb8:
	CMPQ        CX, $8
	JLT         gbdone
	VMOVUPS     (SI), Y5             // x
	VMULPS      Y5, Y5, Y6           // x²
	VMOVUPS     geluK1<>(SB), Y4
	VFMADD231PS geluK2<>(SB), Y6, Y4 // k1 + k2*x²
	VMULPS      Y5, Y4, Y0           // z
	SIGMOID8(Y0, Y1, Y2, Y3)         // s
	VMOVUPS     geluK1<>(SB), Y7
	VFMADD231PS geluK3<>(SB), Y6, Y7 // z' = k1 + k3*x²
	VMOVUPS     vOne<>(SB), Y8
	VSUBPS      Y0, Y8, Y8           // 1-s
	VMULPS      Y0, Y8, Y8           // s(1-s)
	VMULPS      Y5, Y8, Y8           // x*s(1-s)
	VFMADD213PS Y0, Y7, Y8           // x*s(1-s)*z' + s
	VMOVUPS     (DI), Y9
	VFMADD231PS (DX), Y8, Y9         // dx += dout*d
	VMOVUPS     Y9, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         gb8

gbdone:
	VZEROUPPER
	RET

// func vMulScaleAVX(out, x, w *float32, n int, r float32) sets out = x*r*w.
TEXT ·vMulScaleAVX(SB), NOSPLIT, $0-36
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS r+32(FP), Y15

ms8:
	CMPQ    CX, $8
	JLT     msdone
	VMULPS  (SI), Y15, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     ms8

msdone:
	VZEROUPPER
	RET

// func vDot3AVX(a, b, c *float32, n int) float32 returns Σ a*b*c.
TEXT ·vDot3AVX(SB), NOSPLIT, $0-36
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DX
	MOVQ   c+16(FP), DI
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

d316:
	CMPQ        CX, $16
	JLT         d38
	VMOVUPS     (SI), Y2
	VMOVUPS     32(SI), Y3
	VMULPS      (DX), Y2, Y2
	VMULPS      32(DX), Y3, Y3
	VFMADD231PS (DI), Y2, Y0
	VFMADD231PS 32(DI), Y3, Y1
	ADDQ        $64, SI
	ADDQ        $64, DX
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         d316

d38:
	CMPQ        CX, $8
	JLT         d3done
	VMOVUPS     (SI), Y2
	VMULPS      (DX), Y2, Y2
	VFMADD231PS (DI), Y2, Y0
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         d38

d3done:
	VADDPS Y1, Y0, Y0
	HSUM(Y0, X0, X1)
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// func vRMSBackAVX(dx, dw, g, x, w *float32, n int, r, c float32)
// accumulates dx += r*g*w - c*x and, when dw is not nil, dw += r*g*x.
TEXT ·vRMSBackAVX(SB), NOSPLIT, $0-56
	MOVQ         dx+0(FP), DI
	MOVQ         dw+8(FP), R8
	MOVQ         gv+16(FP), SI
	MOVQ         x+24(FP), DX
	MOVQ         w+32(FP), R9
	MOVQ         n+40(FP), CX
	VBROADCASTSS r+48(FP), Y15
	VBROADCASTSS c+52(FP), Y14
	TESTQ        R8, R8
	JZ           rbnodw

rb8:
	CMPQ         CX, $8
	JLT          rbdone
	VMULPS       (SI), Y15, Y0 // r*g
	VMOVUPS      (DX), Y1      // x
	VMOVUPS      (DI), Y2
	VFMADD231PS  (R9), Y0, Y2  // dx += r*g*w
	VFNMADD231PS Y1, Y14, Y2   // dx -= c*x
	VMOVUPS      Y2, (DI)
	VMOVUPS      (R8), Y3
	VFMADD231PS  Y1, Y0, Y3    // dw += r*g*x
	VMOVUPS      Y3, (R8)
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, DI
	ADDQ         $32, R8
	ADDQ         $32, R9
	SUBQ         $8, CX
	JMP          rb8

rbnodw:
	CMPQ         CX, $8
	JLT          rbdone
	VMULPS       (SI), Y15, Y0
	VMOVUPS      (DI), Y2
	VFMADD231PS  (R9), Y0, Y2
	VFNMADD231PS (DX), Y14, Y2
	VMOVUPS      Y2, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, DI
	ADDQ         $32, R9
	SUBQ         $8, CX
	JMP          rbnodw

rbdone:
	VZEROUPPER
	RET

// func vLNFwdAVX(out, x, w, b *float32, n int, m, r float32) sets
// out = (x-m)*r*w + b (b may be nil).
TEXT ·vLNFwdAVX(SB), NOSPLIT, $0-48
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         b+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS m+40(FP), Y15
	VBROADCASTSS r+44(FP), Y14
	TESTQ        R8, R8
	JZ           lnfnob

lnf8:
	CMPQ        CX, $8
	JLT         lnfdone
	VMOVUPS     (SI), Y0
	VSUBPS      Y15, Y0, Y0
	VMULPS      Y14, Y0, Y0
	VMOVUPS     (R8), Y1
	VFMADD231PS (DX), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, DI
	ADDQ        $32, R8
	SUBQ        $8, CX
	JMP         lnf8

lnfnob:
	CMPQ    CX, $8
	JLT     lnfdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	VMULPS  Y14, Y0, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     lnfnob

lnfdone:
	VZEROUPPER
	RET

// func vLNBackSumsAVX(g, w, x *float32, n int, m, r float32) (sg, sgx float32)
// returns Σ g*w and Σ g*w*(x-m)*r.
TEXT ·vLNBackSumsAVX(SB), NOSPLIT, $0-48
	MOVQ         gv+0(FP), SI
	MOVQ         w+8(FP), DX
	MOVQ         x+16(FP), DI
	MOVQ         n+24(FP), CX
	VBROADCASTSS m+32(FP), Y15
	VBROADCASTSS r+36(FP), Y14
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1

lns8:
	CMPQ        CX, $8
	JLT         lnsdone
	VMOVUPS     (SI), Y2
	VMULPS      (DX), Y2, Y2 // g*w
	VMOVUPS     (DI), Y3
	VSUBPS      Y15, Y3, Y3
	VMULPS      Y14, Y3, Y3  // xh
	VADDPS      Y2, Y0, Y0
	VFMADD231PS Y3, Y2, Y1
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         lns8

lnsdone:
	HSUM(Y0, X0, X2)
	HSUM(Y1, X1, X3)
	VMOVSS X0, sg+40(FP)
	VMOVSS X1, sgx+44(FP)
	VZEROUPPER
	RET

// func vLNBackAVX(dx, dw, db, g, w, x *float32, n int, m, r, mg, mgx float32)
// accumulates dx += r*(g*w - mg - xh*mgx) with xh = (x-m)*r, and when not
// nil dw += g*xh and db += g.
TEXT ·vLNBackAVX(SB), NOSPLIT, $0-72
	MOVQ         dx+0(FP), DI
	MOVQ         dw+8(FP), R8
	MOVQ         db+16(FP), R9
	MOVQ         gv+24(FP), SI
	MOVQ         w+32(FP), DX
	MOVQ         x+40(FP), R10
	MOVQ         n+48(FP), CX
	VBROADCASTSS m+56(FP), Y15
	VBROADCASTSS r+60(FP), Y14
	VBROADCASTSS mg+64(FP), Y13
	VBROADCASTSS mgx+68(FP), Y12

lnb8:
	CMPQ         CX, $8
	JLT          lnbdone
	VMOVUPS      (SI), Y0       // g
	VMOVUPS      (R10), Y1
	VSUBPS       Y15, Y1, Y1
	VMULPS       Y14, Y1, Y1    // xh
	VMULPS       (DX), Y0, Y2   // g*w
	VSUBPS       Y13, Y2, Y2    // g*w - mg
	VFNMADD231PS Y12, Y1, Y2    // - xh*mgx
	VMOVUPS      (DI), Y3
	VFMADD231PS  Y14, Y2, Y3    // dx += r*(...)
	VMOVUPS      Y3, (DI)
	TESTQ        R8, R8
	JZ           lnbskipw
	VMOVUPS      (R8), Y4
	VFMADD231PS  Y1, Y0, Y4
	VMOVUPS      Y4, (R8)
	ADDQ         $32, R8

lnbskipw:
	TESTQ   R9, R9
	JZ      lnbskipb
	VADDPS  (R9), Y0, Y4
	VMOVUPS Y4, (R9)
	ADDQ    $32, R9

lnbskipb:
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	ADDQ $32, R10
	SUBQ $8, CX
	JMP  lnb8

lnbdone:
	VZEROUPPER
	RET

// func vAdamWAVX(p, g, m, v *float32, n int, hp *[8]float32) runs one AdamW
// step; hp holds b1, 1-b1, b2, 1-b2, decay, stepSize, sqrt(bc2), eps.
TEXT ·vAdamWAVX(SB), NOSPLIT, $0-48
	MOVQ         p+0(FP), DI
	MOVQ         gv+8(FP), SI
	MOVQ         m+16(FP), DX
	MOVQ         v+24(FP), R8
	MOVQ         n+32(FP), CX
	MOVQ         hp+40(FP), AX
	VBROADCASTSS 0(AX), Y15  // b1
	VBROADCASTSS 4(AX), Y14  // 1-b1
	VBROADCASTSS 8(AX), Y13  // b2
	VBROADCASTSS 12(AX), Y12 // 1-b2
	VBROADCASTSS 16(AX), Y11 // decay
	VBROADCASTSS 20(AX), Y10 // step size
	VBROADCASTSS 24(AX), Y9  // sqrt(bc2)
	VBROADCASTSS 28(AX), Y8  // eps

ad8:
	CMPQ        CX, $8
	JLT         addone
	VMOVUPS     (SI), Y0      // g
	VMULPS      (DX), Y15, Y1 // b1*m
	VFMADD231PS Y0, Y14, Y1   // + (1-b1)*g
	VMOVUPS     Y1, (DX)
	VMULPS      Y0, Y12, Y2   // (1-b2)*g
	VMULPS      (R8), Y13, Y3 // b2*v
	VFMADD231PS Y0, Y2, Y3    // + (1-b2)*g*g
	VMOVUPS     Y3, (R8)
	VSQRTPS     Y3, Y3
	VDIVPS      Y9, Y3, Y3    // sqrt(v)/sqrt(bc2)
	VADDPS      Y8, Y3, Y3    // + eps
	VMULPS      Y10, Y1, Y1   // step*m
	VDIVPS      Y3, Y1, Y1    // step*m/denom
	VMULPS      (DI), Y11, Y4 // p*decay
	VSUBPS      Y1, Y4, Y4
	VMOVUPS     Y4, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DX
	ADDQ        $32, R8
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         ad8

addone:
	VZEROUPPER
	RET

// func vExpSumAVX(src *float32, n int, m float32) float32 returns
// Σ exp(src - m).
TEXT ·vExpSumAVX(SB), NOSPLIT, $0-28
	MOVQ         src+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	VXORPS       Y14, Y14, Y14
	VXORPS       Y13, Y13, Y13

esm16:
	CMPQ    CX, $16
	JLT     esm8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y3
	VSUBPS  Y15, Y0, Y0
	VSUBPS  Y15, Y3, Y3
	EXP8(Y0, Y1, Y2)
	EXP8(Y3, Y4, Y5)
	VADDPS  Y0, Y14, Y14
	VADDPS  Y3, Y13, Y13
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     esm16

esm8:
	CMPQ    CX, $8
	JLT     esmdone
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP8(Y0, Y1, Y2)
	VADDPS  Y0, Y14, Y14
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     esm8

esmdone:
	VADDPS Y13, Y14, Y14
	HSUM(Y14, X14, X1)
	VMOVSS X14, ret+24(FP)
	VZEROUPPER
	RET

// func vExpScaleAccAVX(dst, src *float32, n int, sub, scale float32)
// accumulates dst += scale*exp(src - sub).
TEXT ·vExpScaleAccAVX(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS sub+24(FP), Y15
	VBROADCASTSS scale+28(FP), Y14

xa8:
	CMPQ        CX, $8
	JLT         xadone
	VMOVUPS     (SI), Y0
	VSUBPS      Y15, Y0, Y0
	EXP8(Y0, Y1, Y2)
	VMOVUPS     (DI), Y3
	VFMADD231PS Y14, Y0, Y3
	VMOVUPS     Y3, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         xa8

xadone:
	VZEROUPPER
	RET

// func vRopeAVX(out, x, cs, sn *float32, n, half int, sign float32, acc int)
// rotates one head: for i < n (a multiple of 8), with s = sign*sn[i],
// out[i] = x[i]*cs[i] - x[i+half]*s and out[i+half] = x[i+half]*cs[i] + x[i]*s,
// added to out when acc is not 0.
TEXT ·vRopeAVX(SB), NOSPLIT, $0-64
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         cs+16(FP), DX
	MOVQ         sn+24(FP), R9
	MOVQ         n+32(FP), CX
	MOVQ         half+40(FP), R8
	VBROADCASTSS sign+48(FP), Y15
	MOVQ         acc+56(FP), R10
	SHLQ         $2, R8             // byte offset of the second half

rope8:
	CMPQ         CX, $8
	JLT          ropedone
	VMOVUPS      (DX), Y0           // c
	VMULPS       (R9), Y15, Y1      // s
	VMOVUPS      (SI), Y2           // x1
	VMOVUPS      (SI)(R8*1), Y3     // x2
	VMULPS       Y0, Y2, Y4
	VFNMADD231PS Y1, Y3, Y4         // x1*c - x2*s
	VMULPS       Y0, Y3, Y5
	VFMADD231PS  Y1, Y2, Y5         // x2*c + x1*s
	TESTQ        R10, R10
	JZ           ropestore
	VADDPS       (DI), Y4, Y4
	VADDPS       (DI)(R8*1), Y5, Y5

ropestore:
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, (DI)(R8*1)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, DX
	ADDQ    $32, R9
	SUBQ    $8, CX
	JMP     rope8

ropedone:
	VZEROUPPER
	RET

// func vSumSqF64AVX(x *float32, n int) float64 returns Σ x² accumulated in
// float64 (n a multiple of 8).
TEXT ·vSumSqF64AVX(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3

sq16:
	CMPQ        CX, $16
	JLT         sq8
	VCVTPS2PD   (SI), Y4
	VCVTPS2PD   16(SI), Y5
	VCVTPS2PD   32(SI), Y6
	VCVTPS2PD   48(SI), Y7
	VFMADD231PD Y4, Y4, Y0
	VFMADD231PD Y5, Y5, Y1
	VFMADD231PD Y6, Y6, Y2
	VFMADD231PD Y7, Y7, Y3
	ADDQ        $64, SI
	SUBQ        $16, CX
	JMP         sq16

sq8:
	CMPQ        CX, $8
	JLT         sqdone
	VCVTPS2PD   (SI), Y4
	VCVTPS2PD   16(SI), Y5
	VFMADD231PD Y4, Y4, Y0
	VFMADD231PD Y5, Y5, Y1
	ADDQ        $32, SI
	SUBQ        $8, CX
	JMP         sq8

sqdone:
	VADDPD       Y1, Y0, Y0
	VADDPD       Y3, Y2, Y2
	VADDPD       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VHADDPD      X0, X0, X0
	VMOVSD       X0, ret+16(FP)
	VZEROUPPER
	RET

// func vDotsStrideAVX(q, k *float32, d, stride, n int, out *float32, scale float32)
// out[j] = scale·(q · k[j·stride bytes:][:d]) for j < n; d a positive
// multiple of 32 (one query head's scores over cached keys).
TEXT ·vDotsStrideAVX(SB), NOSPLIT, $0-52
	MOVQ         q+0(FP), R8
	MOVQ         k+8(FP), SI
	MOVQ         d+16(FP), R11
	MOVQ         stride+24(FP), R12
	MOVQ         n+32(FP), R10
	MOVQ         out+40(FP), R9
	VBROADCASTSS scale+48(FP), Y15
	MOVQ         R12, R13
	SHLQ         $3, R13

dsrow:
	// Rows 8 ahead: the stride defeats the hardware prefetchers.
	PREFETCHT0 (SI)(R13*1)
	PREFETCHT0 64(SI)(R13*1)
	PREFETCHT0 128(SI)(R13*1)
	PREFETCHT0 192(SI)(R13*1)
	MOVQ   R8, DI
	MOVQ   SI, BX
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dsin:
	VMOVUPS     (DI), Y4
	VMOVUPS     32(DI), Y5
	VMOVUPS     64(DI), Y6
	VMOVUPS     96(DI), Y7
	VFMADD231PS (BX), Y4, Y0
	VFMADD231PS 32(BX), Y5, Y1
	VFMADD231PS 64(BX), Y6, Y2
	VFMADD231PS 96(BX), Y7, Y3
	ADDQ        $128, DI
	ADDQ        $128, BX
	SUBQ        $32, CX
	JNZ         dsin

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMULSS       X15, X0, X0
	VMOVSS       X0, (R9)
	ADDQ         $4, R9
	ADDQ         R12, SI
	DECQ         R10
	JNZ          dsrow
	VZEROUPPER
	RET

// func vAxpysStrideAVX(o, v *float32, d, stride, n int, w *float32)
// o[:d] += Σ_{j<n} w[j]·v[j·stride bytes:][:d]; d a positive multiple of 32
// (one head's attention output over cached values).
TEXT ·vAxpysStrideAVX(SB), NOSPLIT, $0-48
	MOVQ o+0(FP), DI
	MOVQ v+8(FP), SI
	MOVQ d+16(FP), R11
	MOVQ stride+24(FP), R12
	MOVQ n+32(FP), R10
	MOVQ w+40(FP), R9
	MOVQ R12, R13
	SHLQ $3, R13

aschunk:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	MOVQ    SI, BX
	MOVQ    R9, DX
	MOVQ    R10, CX

asrow:
	PREFETCHT0   (BX)(R13*1)
	PREFETCHT0   64(BX)(R13*1)
	VBROADCASTSS (DX), Y4
	VFMADD231PS  (BX), Y4, Y0
	VFMADD231PS  32(BX), Y4, Y1
	VFMADD231PS  64(BX), Y4, Y2
	VFMADD231PS  96(BX), Y4, Y3
	ADDQ         $4, DX
	ADDQ         R12, BX
	DECQ         CX
	JNZ          asrow

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, R11
	JNZ     aschunk
	VZEROUPPER
	RET

// func vDotsStrideF16AVX(q *float32, k *uint16, d, stride, n int, out *float32, scale float32)
// vDotsStrideAVX with half-precision keys (F16C): out[j] = scale·Σ q[i]·
// k[j·stride bytes:][i] in the same order.
TEXT ·vDotsStrideF16AVX(SB), NOSPLIT, $0-52
	MOVQ         q+0(FP), R8
	MOVQ         k+8(FP), SI
	MOVQ         d+16(FP), R11
	MOVQ         stride+24(FP), R12
	MOVQ         n+32(FP), R10
	MOVQ         out+40(FP), R9
	VBROADCASTSS scale+48(FP), Y15
	MOVQ         R12, R13
	SHLQ         $3, R13

dhrow:
	// Rows 8 ahead, as vDotsStrideAVX.
	PREFETCHT0 (SI)(R13*1)
	PREFETCHT0 64(SI)(R13*1)
	MOVQ   R8, DI
	MOVQ   SI, BX
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dhin:
	VCVTPH2PS   (BX), Y8
	VCVTPH2PS   16(BX), Y9
	VCVTPH2PS   32(BX), Y10
	VCVTPH2PS   48(BX), Y11
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y9, Y1
	VFMADD231PS 64(DI), Y10, Y2
	VFMADD231PS 96(DI), Y11, Y3
	ADDQ        $128, DI
	ADDQ        $64, BX
	SUBQ        $32, CX
	JNZ         dhin

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMULSS       X15, X0, X0
	VMOVSS       X0, (R9)
	ADDQ         $4, R9
	ADDQ         R12, SI
	DECQ         R10
	JNZ          dhrow
	VZEROUPPER
	RET

// func vAxpysStrideF16AVX(o *float32, v *uint16, d, stride, n int, w *float32)
// vAxpysStrideAVX with half-precision values: o[:d] += Σ_{j<n} w[j]·
// v[j·stride bytes:][:d], in the same order.
TEXT ·vAxpysStrideF16AVX(SB), NOSPLIT, $0-48
	MOVQ o+0(FP), DI
	MOVQ v+8(FP), SI
	MOVQ d+16(FP), R11
	MOVQ stride+24(FP), R12
	MOVQ n+32(FP), R10
	MOVQ w+40(FP), R9
	MOVQ R12, R13
	SHLQ $3, R13

ahchunk:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	MOVQ    SI, BX
	MOVQ    R9, DX
	MOVQ    R10, CX

ahrow:
	PREFETCHT0   (BX)(R13*1)
	VBROADCASTSS (DX), Y4
	VCVTPH2PS    (BX), Y8
	VCVTPH2PS    16(BX), Y9
	VCVTPH2PS    32(BX), Y10
	VCVTPH2PS    48(BX), Y11
	VFMADD231PS  Y8, Y4, Y0
	VFMADD231PS  Y9, Y4, Y1
	VFMADD231PS  Y10, Y4, Y2
	VFMADD231PS  Y11, Y4, Y3
	ADDQ         $4, DX
	ADDQ         R12, BX
	DECQ         CX
	JNZ          ahrow

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $64, SI
	SUBQ    $32, R11
	JNZ     ahchunk
	VZEROUPPER
	RET

// func f32ToF16AVX(n int, src *float32, dst *uint16)
// dst[i] = src[i] as IEEE half, rounded to nearest even (F16C); n a
// multiple of 16.
TEXT ·f32ToF16AVX(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ dst+16(FP), DI

f2hloop:
	VMOVUPS   (SI), Y1
	VMOVUPS   32(SI), Y2
	VCVTPS2PH $0, Y1, (DI)
	VCVTPS2PH $0, Y2, 16(DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JNZ       f2hloop
	VZEROUPPER
	RET
