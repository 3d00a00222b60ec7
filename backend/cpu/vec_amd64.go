package cpu

// vecAVX2 selects the AVX2/FMA routines of vec_amd64.s.
var vecAVX2 = hostCPU.AVX2FMA

//go:noescape
func vDotAVX(a, b *float32, n int) float32

//go:noescape
func vAxpyAVX(y, x *float32, n int, a float32)

//go:noescape
func vScaleAVX(x *float32, n int, a float32)

//go:noescape
func vAddAVX(dst, a, b *float32, n int)

//go:noescape
func vMaxAVX(x *float32, n int) float32

//go:noescape
func vSumAVX(x *float32, n int) float32

//go:noescape
func vSumSqAVX(x *float32, n int, m float32) float32

//go:noescape
func vExpSubAVX(dst, src *float32, n int, m float32) float32

//go:noescape
func vExpScaleAVX(dst, src *float32, n int, sub, scale float32)

//go:noescape
func vSwiGLUAVX(out, gv, u *float32, n int)

//go:noescape
func vSwiGLUBackAVX(dg, du, dout, gv, u *float32, n int)

//go:noescape
func vGELUTanhAVX(out, x *float32, n int)

//go:noescape
func vGELUTanhBackAVX(dx, dout, x *float32, n int)

//go:noescape
func vMulScaleAVX(out, x, w *float32, n int, r float32)

//go:noescape
func vDot3AVX(a, b, c *float32, n int) float32

//go:noescape
func vRMSBackAVX(dx, dw, gv, x, w *float32, n int, r, c float32)

//go:noescape
func vLNFwdAVX(out, x, w, b *float32, n int, m, r float32)

//go:noescape
func vLNBackSumsAVX(gv, w, x *float32, n int, m, r float32) (sg, sgx float32)

//go:noescape
func vLNBackAVX(dx, dw, db, gv, w, x *float32, n int, m, r, mg, mgx float32)

//go:noescape
func vAdamWAVX(p, gv, m, v *float32, n int, hp *AdamHP)

//go:noescape
func vDotsStrideF16AVX(q *float32, k *uint16, d, stride, n int, out *float32, scale float32)

//go:noescape
func vAxpysStrideF16AVX(o *float32, v *uint16, d, stride, n int, w *float32)

//go:noescape
func f32ToF16AVX(n int, src *float32, dst *uint16)

// vecF16 reports whether the half-precision row kernels run (F16C).
func vecF16() bool { return vecAVX2 && hasF16C }

// setVecAVX2 turns the assembly routines on or off (tests compare both).
func setVecAVX2(on bool) { vecAVX2 = on && hostCPU.AVX2FMA }

//go:noescape
func vExpSumAVX(src *float32, n int, m float32) float32

//go:noescape
func vExpScaleAccAVX(dst, src *float32, n int, sub, scale float32)

//go:noescape
func vRopeAVX(out, x, cs, sn *float32, n, half int, sign float32, acc int)

//go:noescape
func vSumSqF64AVX(x *float32, n int) float64

//go:noescape
func vDotsStrideAVX(q, k *float32, d, stride, n int, out *float32, scale float32)

//go:noescape
func vAxpysStrideAVX(o, v *float32, d, stride, n int, w *float32)
