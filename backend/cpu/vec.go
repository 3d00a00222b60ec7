package cpu

import (
	"math"

	"github.com/mai-llm/mai/format/quant"
)

// Vector primitives of the fused kernels. Each runs the AVX2/FMA routine of
// vec_amd64.s on the longest multiple of 8 elements when the CPU has it, and
// the scalar code below on the rest (and everywhere on other CPUs). The
// scalar code computes the same functions with the same approximations, so
// results agree to rounding between the two paths.

// Constants of expf, Cephes' single-precision exponential.
const (
	expHi    = 88.3762626647949
	expLo    = -87.33654
	expLog2e = 1.44269504088896341
	expC1    = 0.693359375
	expC2    = -2.12194440e-4
	expP0    = 1.9875691500e-4
	expP1    = 1.3981999507e-3
	expP2    = 8.3334519073e-3
	expP3    = 4.1665795894e-2
	expP4    = 1.6666665459e-1
	expP5    = 5.0000001201e-1

	geluK1 = 2 * 0.7978845608028654 // 2*sqrt(2/pi)
	geluK2 = geluK1 * 0.044715
	geluK3 = 3 * geluK2
)

// expf is exp(x) in float32 with about 1 ulp of error (tested against
// math.Exp): x = n·ln2 + r with |r| <= ln2/2, exp(r) by a degree-7
// polynomial, times 2^n. Inputs are clamped to [-87.34, 88.38], so the
// result is never 0 or +Inf; NaN gives NaN.
func expf(x float32) float32 {
	x = min(max(x, expLo), expHi)
	n := float32(math.RoundToEven(float64(x * expLog2e)))
	r := x - n*expC1
	r -= n * expC2
	y := ((((expP0*r+expP1)*r+expP2)*r+expP3)*r+expP4)*r + expP5
	y = (y*r+1)*r + 1
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// sigmoidf is 1/(1+exp(-x)) on expf.
func sigmoidf(x float32) float32 { return 1 / (1 + expf(-x)) }

// vec8 returns how many leading elements of an n-element loop the assembly
// routines run (a multiple of 8, or 0 without AVX2).
func vec8(n int) int {
	if !vecAVX2 {
		return 0
	}
	return n &^ 7
}

// vDot returns Σ a[i]*b[i] over len(a).
func vDot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s float32
	k := vec8(n)
	if k > 0 {
		s = vDotAVX(&a[0], &b[0], k)
	}
	for i := k; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// vAxpy sets y += a*x over len(y).
func vAxpy(y []float32, a float32, x []float32) {
	n := len(y)
	x = x[:n]
	k := vec8(n)
	if k > 0 {
		vAxpyAVX(&y[0], &x[0], k, a)
	}
	for i := k; i < n; i++ {
		y[i] += a * x[i]
	}
}

// vDotRows sets out[s] = scale·vDot(q, k[s·ld:][:len(q)]) for s < len(out),
// with its bits: the keys of one attention head, ld apart.
func vDotRows(q, k []float32, ld int, out []float32, scale float32) {
	n, d := len(out), len(q)
	if n == 0 {
		return
	}
	if vecAVX2 && d%32 == 0 && d > 0 {
		_ = k[(n-1)*ld+d-1]
		vDotsStrideAVX(&q[0], &k[0], d, 4*ld, n, &out[0], scale)
		return
	}
	for s := range out {
		out[s] = scale * vDot(q, k[s*ld:][:d])
	}
}

// vAxpyRows adds a[s]·x[s·ld:][:len(y)] to y for s < len(a) in order, with
// the bits of vAxpy called row by row: the values of one attention head.
func vAxpyRows(y, x []float32, ld int, a []float32) {
	n, d := len(a), len(y)
	if n == 0 {
		return
	}
	if vecAVX2 && d%32 == 0 && d > 0 {
		_ = x[(n-1)*ld+d-1]
		vAxpysStrideAVX(&y[0], &x[0], d, 4*ld, n, &a[0])
		return
	}
	for s, w := range a {
		vAxpy(y, w, x[s*ld:][:d])
	}
}

// vDotRowsF16 is vDotRows over half-precision keys.
func vDotRowsF16(q []float32, k []uint16, ld int, out []float32, scale float32) {
	n, d := len(out), len(q)
	if n == 0 {
		return
	}
	if vecF16() && d%32 == 0 && d > 0 {
		_ = k[(n-1)*ld+d-1]
		vDotsStrideF16AVX(&q[0], &k[0], d, 2*ld, n, &out[0], scale)
		return
	}
	for s := range out {
		var sum float32
		for i, h := range k[s*ld:][:d] {
			sum += q[i] * quant.F16ToF32(h)
		}
		out[s] = scale * sum
	}
}

// vAxpyRowsF16 is vAxpyRows over half-precision values.
func vAxpyRowsF16(y []float32, x []uint16, ld int, a []float32) {
	n, d := len(a), len(y)
	if n == 0 {
		return
	}
	if vecF16() && d%32 == 0 && d > 0 {
		_ = x[(n-1)*ld+d-1]
		vAxpysStrideF16AVX(&y[0], &x[0], d, 2*ld, n, &a[0])
		return
	}
	for s, w := range a {
		for i, h := range x[s*ld:][:d] {
			y[i] += w * quant.F16ToF32(h)
		}
	}
}

// vScale sets x *= a.
func vScale(x []float32, a float32) {
	n := len(x)
	k := vec8(n)
	if k > 0 {
		vScaleAVX(&x[0], k, a)
	}
	for i := k; i < n; i++ {
		x[i] *= a
	}
}

// vAdd sets dst = a + b over len(dst).
func vAdd(dst, a, b []float32) {
	n := len(dst)
	a, b = a[:n], b[:n]
	k := vec8(n)
	if k > 0 {
		vAddAVX(&dst[0], &a[0], &b[0], k)
	}
	for i := k; i < n; i++ {
		dst[i] = a[i] + b[i]
	}
}

// vMax returns the largest element of x (-Inf for an empty x).
func vMax(x []float32) float32 {
	m := float32(math.Inf(-1))
	k := vec8(len(x))
	if k > 0 {
		m = vMaxAVX(&x[0], k)
	}
	for _, v := range x[k:] {
		m = max(m, v)
	}
	return m
}

// vSum returns Σ x.
func vSum(x []float32) float32 {
	var s float32
	k := vec8(len(x))
	if k > 0 {
		s = vSumAVX(&x[0], k)
	}
	for _, v := range x[k:] {
		s += v
	}
	return s
}

// vSumSq returns Σ (x-m)².
func vSumSq(x []float32, m float32) float32 {
	var s float32
	k := vec8(len(x))
	if k > 0 {
		s = vSumSqAVX(&x[0], k, m)
	}
	for _, v := range x[k:] {
		s += (v - m) * (v - m)
	}
	return s
}

// vExpSub sets dst = exp(src - m) over len(dst) and returns Σ dst.
func vExpSub(dst, src []float32, m float32) float32 {
	n := len(dst)
	src = src[:n]
	var s float32
	k := vec8(n)
	if k > 0 {
		s = vExpSubAVX(&dst[0], &src[0], k, m)
	}
	for i := k; i < n; i++ {
		e := expf(src[i] - m)
		dst[i] = e
		s += e
	}
	return s
}

// vExpScale sets dst = scale*exp(src - sub) over len(dst); dst may be src.
func vExpScale(dst, src []float32, sub, scale float32) {
	n := len(dst)
	src = src[:n]
	k := vec8(n)
	if k > 0 {
		vExpScaleAVX(&dst[0], &src[0], k, sub, scale)
	}
	for i := k; i < n; i++ {
		dst[i] = scale * expf(src[i]-sub)
	}
}

// vSwiGLU sets out = silu(g)*u.
func vSwiGLU(out, g, u []float32) {
	n := len(out)
	g, u = g[:n], u[:n]
	k := vec8(n)
	if k > 0 {
		vSwiGLUAVX(&out[0], &g[0], &u[0], k)
	}
	for i := k; i < n; i++ {
		x := g[i]
		out[i] = x * sigmoidf(x) * u[i]
	}
}

// vSwiGLUBack accumulates dg and du from dout for out = silu(g)*u.
func vSwiGLUBack(dg, du, dout, g, u []float32) {
	n := len(dout)
	dg, du, g, u = dg[:n], du[:n], g[:n], u[:n]
	k := vec8(n)
	if k > 0 {
		vSwiGLUBackAVX(&dg[0], &du[0], &dout[0], &g[0], &u[0], k)
	}
	for i := k; i < n; i++ {
		x := g[i]
		s := sigmoidf(x)
		du[i] += dout[i] * (x * s)
		dg[i] += dout[i] * u[i] * s * (1 + x*(1-s))
	}
}

// vGELUTanh sets out = gelu_tanh(x) = x*sigmoid(x*(k1 + k2*x²)).
func vGELUTanh(out, x []float32) {
	n := len(out)
	x = x[:n]
	k := vec8(n)
	if k > 0 {
		vGELUTanhAVX(&out[0], &x[0], k)
	}
	for i := k; i < n; i++ {
		v := x[i]
		out[i] = v * sigmoidf(v*(geluK1+geluK2*v*v))
	}
}

// vGELUTanhBack accumulates dx += dout*gelu_tanh'(x).
func vGELUTanhBack(dx, dout, x []float32) {
	n := len(dx)
	dout, x = dout[:n], x[:n]
	k := vec8(n)
	if k > 0 {
		vGELUTanhBackAVX(&dx[0], &dout[0], &x[0], k)
	}
	for i := k; i < n; i++ {
		v := x[i]
		s := sigmoidf(v * (geluK1 + geluK2*v*v))
		dx[i] += dout[i] * (s + v*s*(1-s)*(geluK1+geluK3*v*v))
	}
}

// vMulScale sets out = x*r*w.
func vMulScale(out, x, w []float32, r float32) {
	n := len(out)
	x, w = x[:n], w[:n]
	k := vec8(n)
	if k > 0 {
		vMulScaleAVX(&out[0], &x[0], &w[0], k, r)
	}
	for i := k; i < n; i++ {
		out[i] = x[i] * r * w[i]
	}
}

// vDot3 returns Σ a*b*c over len(a).
func vDot3(a, b, c []float32) float32 {
	n := len(a)
	b, c = b[:n], c[:n]
	var s float32
	k := vec8(n)
	if k > 0 {
		s = vDot3AVX(&a[0], &b[0], &c[0], k)
	}
	for i := k; i < n; i++ {
		s += a[i] * b[i] * c[i]
	}
	return s
}

// vRMSBack accumulates dx += r*g*w - c*x and, when dw is not nil,
// dw += r*g*x (RMSNorm's backward for one row).
func vRMSBack(dx, dw, g, x, w []float32, r, c float32) {
	n := len(dx)
	g, x, w = g[:n], x[:n], w[:n]
	if dw != nil {
		dw = dw[:n]
	}
	k := vec8(n)
	if k > 0 {
		var pdw *float32
		if dw != nil {
			pdw = &dw[0]
		}
		vRMSBackAVX(&dx[0], pdw, &g[0], &x[0], &w[0], k, r, c)
	}
	for i := k; i < n; i++ {
		rg := r * g[i]
		dx[i] += rg*w[i] - c*x[i]
		if dw != nil {
			dw[i] += rg * x[i]
		}
	}
}

// vLNFwd sets out = (x-m)*r*w + b (b may be nil).
func vLNFwd(out, x, w, b []float32, m, r float32) {
	n := len(out)
	x, w = x[:n], w[:n]
	if b != nil {
		b = b[:n]
	}
	k := vec8(n)
	if k > 0 {
		var pb *float32
		if b != nil {
			pb = &b[0]
		}
		vLNFwdAVX(&out[0], &x[0], &w[0], pb, k, m, r)
	}
	for i := k; i < n; i++ {
		o := (x[i] - m) * r * w[i]
		if b != nil {
			o += b[i]
		}
		out[i] = o
	}
}

// vLNBackSums returns Σ g*w and Σ g*w*(x-m)*r over len(g).
func vLNBackSums(g, w, x []float32, m, r float32) (sg, sgx float32) {
	n := len(g)
	w, x = w[:n], x[:n]
	k := vec8(n)
	if k > 0 {
		sg, sgx = vLNBackSumsAVX(&g[0], &w[0], &x[0], k, m, r)
	}
	for i := k; i < n; i++ {
		gw := g[i] * w[i]
		sg += gw
		sgx += gw * ((x[i] - m) * r)
	}
	return sg, sgx
}

// vLNBack accumulates dx += r*(g*w - mg - xh*mgx), xh = (x-m)*r, and when
// not nil dw += g*xh and db += g (LayerNorm's backward for one row).
func vLNBack(dx, dw, db, g, w, x []float32, m, r, mg, mgx float32) {
	n := len(dx)
	g, w, x = g[:n], w[:n], x[:n]
	if dw != nil {
		dw = dw[:n]
	}
	if db != nil {
		db = db[:n]
	}
	k := vec8(n)
	if k > 0 {
		var pdw, pdb *float32
		if dw != nil {
			pdw = &dw[0]
		}
		if db != nil {
			pdb = &db[0]
		}
		vLNBackAVX(&dx[0], pdw, pdb, &g[0], &w[0], &x[0], k, m, r, mg, mgx)
	}
	for i := k; i < n; i++ {
		xh := (x[i] - m) * r
		dx[i] += r * (g[i]*w[i] - mg - xh*mgx)
		if dw != nil {
			dw[i] += g[i] * xh
		}
		if db != nil {
			db[i] += g[i]
		}
	}
}

// AdamHP are the per-step constants of an AdamW update, in the order the
// assembly reads them.
type AdamHP struct {
	B1, OneMinusB1, B2, OneMinusB2, Decay, StepSize, SqrtBC2, Eps float32
}

// AdamWUpdate runs one AdamW step over p, g, m, v (same lengths) on p's
// workers: m and v are updated in place, then
// p = p*Decay - StepSize*m/(sqrt(v)/SqrtBC2 + Eps).
func AdamWUpdate(pool *Pool, p, g, m, v []float32, hp *AdamHP) {
	parallel(pool, &adamJobs, len(p), 1<<14, adamArgs{p, g[:len(p)], m[:len(p)], v[:len(p)], *hp}, adamRange)
}

type adamArgs struct {
	p, g, m, v []float32
	hp         AdamHP
}

var adamJobs jobs[adamArgs]

func adamRange(a *adamArgs, lo, hi int) {
	p, g, m, v := a.p[lo:hi], a.g[lo:hi], a.m[lo:hi], a.v[lo:hi]
	hp := &a.hp
	n := len(p)
	k := vec8(n)
	if k > 0 {
		vAdamWAVX(&p[0], &g[0], &m[0], &v[0], k, hp)
	}
	for i := k; i < n; i++ {
		gi := g[i]
		mi := hp.B1*m[i] + hp.OneMinusB1*gi
		vi := hp.B2*v[i] + hp.OneMinusB2*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))/hp.SqrtBC2 + hp.Eps
		p[i] = p[i]*hp.Decay - hp.StepSize*mi/denom
	}
}

// vExpSum returns Σ exp(x - m).
func vExpSum(x []float32, m float32) float32 {
	var s float32
	k := vec8(len(x))
	if k > 0 {
		s = vExpSumAVX(&x[0], k, m)
	}
	for _, v := range x[k:] {
		s += expf(v - m)
	}
	return s
}

// vExpScaleAcc accumulates dst += scale*exp(src - sub) over len(dst).
func vExpScaleAcc(dst, src []float32, sub, scale float32) {
	n := len(dst)
	src = src[:n]
	k := vec8(n)
	if k > 0 {
		vExpScaleAccAVX(&dst[0], &src[0], k, sub, scale)
	}
	for i := k; i < n; i++ {
		dst[i] += scale * expf(src[i]-sub)
	}
}

// vSumSqF64 returns Σ x², accumulated in float64.
func vSumSqF64(x []float32) float64 {
	var s float64
	k := vec8(len(x))
	if k > 0 {
		s = vSumSqF64AVX(&x[0], k)
	}
	for _, v := range x[k:] {
		s += float64(v) * float64(v)
	}
	return s
}
