//go:build !amd64

package cpu

// vecAVX2 is false off amd64: the scalar code of vec.go runs everywhere.
const vecAVX2 = false

// The assembly routines do not exist here; vec8 never selects them.

func vecF16() bool { return false }

func f32ToF16AVX(n int, src *float32, dst *uint16) { panic("unreachable") }
func f16ToF32AVX2(n int, w *byte, dst *float32)    { panic("unreachable") }

func vDotsStrideF16AVX(q *float32, k *uint16, d, stride, n int, out *float32, scale float32) {
	panic("unreachable")
}
func vAxpysStrideF16AVX(o *float32, v *uint16, d, stride, n int, w *float32) { panic("unreachable") }

func vDotAVX(a, b *float32, n int) float32                                    { panic("unreachable") }
func vAxpyAVX(y, x *float32, n int, a float32)                                { panic("unreachable") }
func vScaleAVX(x *float32, n int, a float32)                                  { panic("unreachable") }
func vAddAVX(dst, a, b *float32, n int)                                       { panic("unreachable") }
func vMaxAVX(x *float32, n int) float32                                       { panic("unreachable") }
func vSumAVX(x *float32, n int) float32                                       { panic("unreachable") }
func vSumSqAVX(x *float32, n int, m float32) float32                          { panic("unreachable") }
func vExpSubAVX(dst, src *float32, n int, m float32) float32                  { panic("unreachable") }
func vExpScaleAVX(dst, src *float32, n int, sub, scale float32)               { panic("unreachable") }
func vSwiGLUAVX(out, gv, u *float32, n int)                                   { panic("unreachable") }
func vSwiGLUBackAVX(dg, du, dout, gv, u *float32, n int)                      { panic("unreachable") }
func vGELUTanhAVX(out, x *float32, n int)                                     { panic("unreachable") }
func vGELUTanhBackAVX(dx, dout, x *float32, n int)                            { panic("unreachable") }
func vMulScaleAVX(out, x, w *float32, n int, r float32)                       { panic("unreachable") }
func vDot3AVX(a, b, c *float32, n int) float32                                { panic("unreachable") }
func vRMSBackAVX(dx, dw, gv, x, w *float32, n int, r, c float32)              { panic("unreachable") }
func vLNFwdAVX(out, x, w, b *float32, n int, m, r float32)                    { panic("unreachable") }
func vLNBackSumsAVX(gv, w, x *float32, n int, m, r float32) (sg, sgx float32) { panic("unreachable") }
func vLNBackAVX(dx, dw, db, gv, w, x *float32, n int, m, r, mg, mgx float32)  { panic("unreachable") }
func vAdamWAVX(p, gv, m, v *float32, n int, hp *AdamHP)                       { panic("unreachable") }

// setVecAVX2 does nothing: there are no assembly routines here.
func setVecAVX2(on bool) {}

func vExpSumAVX(src *float32, n int, m float32) float32            { panic("unreachable") }
func vExpScaleAccAVX(dst, src *float32, n int, sub, scale float32) { panic("unreachable") }

func vRopeAVX(out, x, cs, sn *float32, n, half int, sign float32, acc int) { panic("unreachable") }

func vSumSqF64AVX(x *float32, n int) float64 { panic("unreachable") }

func vDotsStrideAVX(q, k *float32, d, stride, n int, out *float32, scale float32) {
	panic("unreachable")
}
func vAxpysStrideAVX(o, v *float32, d, stride, n int, w *float32) { panic("unreachable") }
