package quant

import "math"

// The K-quant super-block formats (256 elements). Q4_K and Q5_K hold eight
// 32-element sub-blocks, each with a 6-bit scale and a 6-bit min packed into
// 12 bytes, both scaled by the block's f16 d and dmin: x = d*sc*q - dmin*m.
// Q6_K holds sixteen 16-element sub-blocks with int8 scales: x = d*sc*(q-32).

// groupMaxEps is ggml's GROUP_MAX_EPS: below it a group counts as all zero.
const groupMaxEps = 1e-15

// nearestInt rounds to nearest, ties to even, with ggml's float trick
// (valid for |f| <= 4194303, like the original).
func nearestInt(f float32) int {
	v := float32(f + 12582912)
	return int(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j from the 12
// packed bytes q (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// packScaleMinK4 stores 6-bit scale ls and min lm of sub-block j into q,
// which must start zeroed.
func packScaleMinK4(j int, q []byte, ls, lm uint8) {
	if j < 4 {
		q[j] = ls
		q[j+4] = lm
		return
	}
	q[j+4] = ls&0xf | (lm&0xf)<<4
	q[j-4] |= (ls >> 4) << 6
	q[j] |= (lm >> 4) << 6
}

// makeQKX2 fits x ≈ scale*L + min (min <= 0) with L in [0, nmax] by
// weighted least squares over a small search of scales, as ggml's
// make_qkx2_quants. It returns scale and -min.
func makeQKX2(nmax int, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		for i := range n {
			L[i] = 0
		}
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale := 1 / iscale
	var bestErr float32
	for i := range n {
		l := nearestInt(float32(iscale * (x[i] - lo)))
		L[i] = uint8(max(0, min(nmax, l)))
		diff := float32(float32(scale*float32(L[i]))+lo) - x[i]
		bestErr += float32(weights[i] * float32(diff*diff))
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i := range n {
			l := nearestInt(float32(iscale * (x[i] - lo)))
			l = max(0, min(nmax, l))
			laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			wl := float32(w * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curErr float32
			for i := range n {
				diff := float32(float32(thisScale*float32(laux[i]))+thisMin) - x[i]
				curErr += float32(weights[i] * float32(diff*diff))
			}
			if curErr < bestErr {
				copy(L[:n], laux[:n])
				bestErr = curErr
				scale = thisScale
				lo = thisMin
			}
		}
	}
	return scale, -lo
}

// quantKScaleMin is the common first half of the Q4_K and Q5_K reference
// quantizers: per sub-block fits, then 6-bit scales and mins. It fills
// y's d, dmin and scales, and L with each element's level in [0, nmax].
func quantKScaleMin(x []float32, y []byte, L []uint8, nmax int, rmin float32, nstep int) {
	var (
		scales, mins [QKK / 32]float32
		weights      [32]float32
		laux         [32]uint8
	)
	var maxScale, maxMin float32
	for j := range QKK / 32 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := y[4:16]
	clear(sc)
	for j := range QKK / 32 {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		packScaleMinK4(j, sc, ls, lm)
	}
	putF16(y[0:], maxScale/63)
	putF16(y[2:], maxMin/63)
	d, dmin := getF16(y[0:]), getF16(y[2:])
	for j := range QKK / 32 {
		s, m := scaleMinK4(j, sc)
		dj := float32(d * float32(s))
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for ii := range 32 {
			l := nearestInt((x[32*j+ii] + dm) / dj)
			L[32*j+ii] = uint8(max(0, min(nmax, l)))
		}
	}
}

func quantQ4_K(dst []byte, src []float32) {
	var L [QKK]uint8
	for b := 0; b < len(src)/QKK; b++ {
		x := src[b*QKK : (b+1)*QKK]
		y := dst[b*Q4_KBytes : (b+1)*Q4_KBytes]
		quantKScaleMin(x, y, L[:], 15, -1, 20)
		q := y[16:]
		for j := 0; j < QKK; j += 64 {
			for l := range 32 {
				q[l] = L[j+l] | L[j+l+32]<<4
			}
			q = q[32:]
		}
	}
}

func dequantQ4_K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QKK; b++ {
		x := src[b*Q4_KBytes : (b+1)*Q4_KBytes]
		y := dst[b*QKK : (b+1)*QKK]
		d, dmin := getF16(x[0:]), getF16(x[2:])
		sc := x[4:16]
		q := x[16:]
		for j, is := 0, 0; j < QKK; j, is = j+64, is+2 {
			s, m := scaleMinK4(is, sc)
			d1, m1 := float32(d*float32(s)), float32(dmin*float32(m))
			s, m = scaleMinK4(is+1, sc)
			d2, m2 := float32(d*float32(s)), float32(dmin*float32(m))
			for l := range 32 {
				y[j+l] = float32(d1*float32(q[l]&0xf)) - m1
				y[j+32+l] = float32(d2*float32(q[l]>>4)) - m2
			}
			q = q[32:]
		}
	}
}

func quantQ5_K(dst []byte, src []float32) {
	var L [QKK]uint8
	for b := 0; b < len(src)/QKK; b++ {
		x := src[b*QKK : (b+1)*QKK]
		y := dst[b*Q5_KBytes : (b+1)*Q5_KBytes]
		quantKScaleMin(x, y, L[:], 31, -0.5, 15)
		qh := y[16:48]
		ql := y[48:]
		clear(qh)
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < QKK; n += 64 {
			for j := range 32 {
				l1, l2 := L[n+j], L[n+j+32]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
			ql = ql[32:]
		}
	}
}

func dequantQ5_K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QKK; b++ {
		x := src[b*Q5_KBytes : (b+1)*Q5_KBytes]
		y := dst[b*QKK : (b+1)*QKK]
		d, dmin := getF16(x[0:]), getF16(x[2:])
		sc := x[4:16]
		qh := x[16:48]
		ql := x[48:]
		u1, u2 := uint8(1), uint8(2)
		for j, is := 0, 0; j < QKK; j, is = j+64, is+2 {
			s, m := scaleMinK4(is, sc)
			d1, m1 := float32(d*float32(s)), float32(dmin*float32(m))
			s, m = scaleMinK4(is+1, sc)
			d2, m2 := float32(d*float32(s)), float32(dmin*float32(m))
			for l := range 32 {
				v1 := ql[l] & 0xf
				if qh[l]&u1 != 0 {
					v1 += 16
				}
				v2 := ql[l] >> 4
				if qh[l]&u2 != 0 {
					v2 += 16
				}
				y[j+l] = float32(d1*float32(v1)) - m1
				y[j+32+l] = float32(d2*float32(v2)) - m2
			}
			ql = ql[32:]
			u1 <<= 2
			u2 <<= 2
		}
	}
}

// makeQX fits x ≈ scale*(L-nmax) with L in [0, 2*nmax-1], weighting each
// element by x² (ggml's make_qx_quants with rmse_type 1 and no importance
// weights), searching 18 scales around the plain one.
func makeQX(nmax int, x []float32, L []int8) float32 {
	var amax, vmax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, vmax = a, v
		}
	}
	if amax < groupMaxEps {
		for i := range L[:len(x)] {
			L[i] = 0
		}
		return 0
	}
	fit := func(iscale float32) (sumLX, sumL2 float32) {
		for _, v := range x {
			l := max(-nmax, min(nmax-1, nearestInt(float32(iscale*v))))
			w := float32(v * v)
			fl := float32(l)
			sumLX += float32(float32(w*v) * fl)
			sumL2 += float32(float32(w*fl) * fl)
		}
		return sumLX, sumL2
	}
	levels := func(iscale float32) {
		for i, v := range x {
			l := nearestInt(float32(iscale * v))
			L[i] = int8(nmax + max(-nmax, min(nmax-1, l)))
		}
	}
	iscale := float32(-nmax) / vmax
	levels(iscale)
	sumLX, sumL2 := fit(iscale)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := float32(scale * sumLX)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / vmax
		sumLX, sumL2 = fit(iscale)
		if sumL2 > 0 && float32(sumLX*sumLX) > float32(best*sumL2) {
			levels(iscale)
			scale = sumLX / sumL2
			best = float32(scale * sumLX)
		}
	}
	return scale
}

func quantQ6_K(dst []byte, src []float32) {
	var (
		L      [QKK]int8
		scales [QKK / 16]float32
	)
	for b := 0; b < len(src)/QKK; b++ {
		x := src[b*QKK : (b+1)*QKK]
		y := dst[b*Q6_KBytes : (b+1)*Q6_KBytes]
		ql, qh, sc := y[0:128], y[128:192], y[192:208]
		var maxScale, maxAbsScale float32
		for ib := range QKK / 16 {
			s := makeQX(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
			scales[ib] = s
			if a := abs32(s); a > maxAbsScale {
				maxAbsScale, maxScale = a, s
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(y)
			continue
		}
		iscale := -128 / maxScale
		putF16(y[208:], 1/iscale)
		for ib := range QKK / 16 {
			sc[ib] = byte(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
		}
		d := getF16(y[208:])
		for j := range QKK / 16 {
			dj := float32(d * float32(int8(sc[j])))
			if dj == 0 {
				continue
			}
			for ii := range 16 {
				l := nearestInt(x[16*j+ii] / dj)
				L[16*j+ii] = int8(max(-32, min(31, l)) + 32)
			}
		}
		for j := 0; j < QKK; j += 128 {
			for l := range 32 {
				q1 := uint8(L[j+l]) & 0xf
				q2 := uint8(L[j+l+32]) & 0xf
				q3 := uint8(L[j+l+64]) & 0xf
				q4 := uint8(L[j+l+96]) & 0xf
				ql[l] = q1 | q3<<4
				ql[l+32] = q2 | q4<<4
				qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
			}
			ql = ql[64:]
			qh = qh[32:]
		}
	}
}

func dequantQ6_K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QKK; b++ {
		x := src[b*Q6_KBytes : (b+1)*Q6_KBytes]
		y := dst[b*QKK : (b+1)*QKK]
		d := getF16(x[208:])
		ql, qh, sc := x[0:128], x[128:192], x[192:208]
		for n := 0; n < QKK; n += 128 {
			for l := range 32 {
				is := l / 16
				q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
				q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
				q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				y[n+l] = float32(d*float32(int8(sc[is]))) * float32(q1)
				y[n+l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
				y[n+l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
				y[n+l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
			}
			ql, qh, sc = ql[64:], qh[32:], sc[8:]
		}
	}
}
