package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mai-llm/mai/format/quant"
)

// The x16 layout of Q4_K: 16 rows of the kernels' Q4_K layout (q4KBytes
// per super-block of 256 values) interleaved as x16.go does for Q4_0, with
// each 32-value sub-block's nibbles paired as Q4_0 pairs them (value i and
// i+16 in one byte), so that a sub-block meets one Q8_0 activation block:
//
//	panel p, super-block b, at (p·nsb + b)·16·q4KBytes:
//	  [0, 64)     the 16 rows' f32 d;  [64, 128) their f32 dmin
//	  sub-block s (0..7) at 128 + 288·s:
//	    [0, 16) the rows' u8 scales, [16, 32) their u8 mins,
//	    [32, 288) groups g of 64 bytes: row r's byte 4g+j at 32+64g+4r+j
//	              holds values 4g+j (low nibble) and 16+4g+j (high)
//
// A row's sub-block contributes d·sc·d_x·Σ(v·q) − dmin·m·(d_x·Σq): the
// integer dot is exact, and every product on x16 weights runs the same
// float sequence, so a row's bits do not depend on the batch.

// x16KSub is the bytes of one sub-block of a Q4_K x16 panel.
const x16KSub = 32 + 256

// x16KValue returns value i (0..31) of sub-block s of a row's Q4_K block
// blk in the kernels' layout.
func x16KValue(blk []byte, s, i int) byte {
	v := blk[24+32*(s/2)+i]
	if s%2 == 1 {
		return v >> 4
	}
	return v & 0xf
}

// x16PackK writes rows of Q4_K in the kernels' layout (src) as x16 panels.
func x16PackK(dst, src []byte, rows, nsb int) {
	rb := nsb * q4KBytes
	for p := range rows / x16Rows {
		for b := range nsb {
			sb := dst[(p*nsb+b)*x16Rows*q4KBytes:][:x16Rows*q4KBytes]
			for r := range x16Rows {
				blk := src[(p*x16Rows+r)*rb+b*q4KBytes:][:q4KBytes]
				copy(sb[4*r:4*r+4], blk[0:4])
				copy(sb[64+4*r:64+4*r+4], blk[4:8])
				for s := range 8 {
					sub := sb[128+x16KSub*s:][:x16KSub]
					sub[r], sub[16+r] = blk[8+s], blk[16+s]
					for g := range 4 {
						for j := range 4 {
							sub[32+64*g+4*r+j] = x16KValue(blk, s, 4*g+j) | x16KValue(blk, s, 16+4*g+j)<<4
						}
					}
				}
			}
		}
	}
}

// x16UnpackK is x16PackK's inverse for rows lo..hi-1.
func x16UnpackK(dst, src []byte, lo, hi, nsb int) {
	rb := nsb * q4KBytes
	for row := lo; row < hi; row++ {
		p, r := row/x16Rows, row%x16Rows
		for b := range nsb {
			sb := src[(p*nsb+b)*x16Rows*q4KBytes:][:x16Rows*q4KBytes]
			blk := dst[(row-lo)*rb+b*q4KBytes:][:q4KBytes]
			copy(blk[0:4], sb[4*r:4*r+4])
			copy(blk[4:8], sb[64+4*r:64+4*r+4])
			clear(blk[24:])
			for s := range 8 {
				sub := sb[128+x16KSub*s:][:x16KSub]
				blk[8+s], blk[16+s] = sub[r], sub[16+r]
				for g := range 4 {
					for j := range 4 {
						v := sub[32+64*g+4*r+j]
						for k, val := range [2]byte{v & 0xf, v >> 4} {
							i := 4*g + j + 16*k
							shift := 4 * uint(s%2)
							blk[24+32*(s/2)+i] |= val << shift
						}
					}
				}
			}
		}
	}
}

// x16KBlockGo adds super-block sb of a Q4_K x16 panel, dotted with one
// activation row's 8 Q8_0 blocks there (values q, scales dx, d_x·Σq dxs), to
// acc in the kernels' order.
func x16KBlockGo(acc *[x16Rows]float32, sb []byte, q *[8][]int8, dx, dxs *[8]float32) {
	for s := range 8 {
		sub := sb[128+x16KSub*s:][:x16KSub]
		for r := range x16Rows {
			var i int32
			for g := range 4 {
				for j := range 4 {
					v := sub[32+64*g+4*r+j]
					i += int32(v&0xf)*int32(q[s][4*g+j]) + int32(v>>4)*int32(q[s][16+4*g+j])
				}
			}
			d := math.Float32frombits(binary.LittleEndian.Uint32(sb[4*r:]))
			dmin := math.Float32frombits(binary.LittleEndian.Uint32(sb[64+4*r:]))
			a, bm := d*float32(sub[r]), dmin*float32(sub[16+r])
			acc[r] += float32(i) * (a * dx[s])
			acc[r] -= bm * dxs[s]
		}
	}
}

// x16KGemmGo is the portable Q4_K x16 kernel: y[t·ldy + r] for the 8 rows t
// of tile xt (whose third column holds d_x·Σq as float32) and the 16 rows r
// of panel w (nsb super-blocks).
func x16KGemmGo(nsb int, w, xt []byte, y []float32, ldy int) {
	for t := range x16Tile {
		var acc [x16Rows]float32
		for b := range nsb {
			var q [8][]int8
			var dx, dxs [8]float32
			for s := range 8 {
				xb := xt[(8*b+s)*x16TileBytes:]
				q[s] = int8s(xb[t*quant.QK:][:quant.QK])
				dx[s] = math.Float32frombits(binary.LittleEndian.Uint32(xb[256+4*t:]))
				dxs[s] = math.Float32frombits(binary.LittleEndian.Uint32(xb[288+4*t:]))
			}
			x16KBlockGo(&acc, w[b*x16Rows*q4KBytes:], &q, &dx, &dxs)
		}
		copy(y[t*ldy:][:x16Rows], acc[:])
	}
}

// x16KRowsGo is the portable Q4_K x16 decode kernel: y[16p + r] for the
// panels of w and one activation row a (Q8_0 blocks, a.dxs).
func x16KRowsGo(w []byte, panels int, a *qAct, y []float32) {
	nsb := len(a.d) / 8
	for p := range panels {
		var acc [x16Rows]float32
		for b := range nsb {
			var q [8][]int8
			for s := range 8 {
				q[s] = a.q[(8*b+s)*quant.QK:][:quant.QK]
			}
			dx, dxs := (*[8]float32)(a.d[8*b:]), (*[8]float32)(a.dxs[8*b:])
			x16KBlockGo(&acc, w[(p*nsb+b)*x16Rows*q4KBytes:], &q, dx, dxs)
		}
		copy(y[p*x16Rows:][:x16Rows], acc[:])
	}
}

// setDxSums fills a.dxs with d·Σq of every block of 32 (Q4_K x16 decode).
func (a *qAct) setDxSums() {
	a.dxs = grow(a.dxs, len(a.d))
	for b, d := range a.d {
		a.dxs[b] = d * float32(sumI8(a.q[b*quant.QK:(b+1)*quant.QK]))
	}
}
