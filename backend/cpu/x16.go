package cpu

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"

	"github.com/mai-llm/mai/format/quant"
)

// The x16 layout of Q4_0 and Q8_0 weights (Q4_K: x16k.go): rows interleaved in panels of
// 16, so that one 512-bit register holds four weight bytes of each of 16
// rows and an integer multiply-add (VPDPBUSD, unsigned bytes times signed
// bytes) with four broadcast activation bytes advances 16 dot products at
// once, with no horizontal sums. llama.cpp repacks Q4_0 at load for the
// same reason. A panel of 16 rows takes 16·RowBytes, as in ggml's layout:
//
//	panel p (rows 16p..16p+15), block b, at (p·nb + b)·16·bb (bb: the
//	type's block bytes, 18 or 34):
//	  [0, 32)    the 16 rows' f16 block scales, row 16p+r at 2r
//	  [32, 16bb) groups g of 64 bytes: bytes 4g..4g+3 of row 16p+r's
//	             block payload at 32+64g+4r (4 groups for Q4_0, 8 for Q8_0)
//
// Byte i of a ggml Q4_0 block holds value i in its low nibble and value
// i+16 in its high one, so group g's low nibbles are values 4g..4g+3 and
// its high nibbles values 16+4g..16+4g+3; they are the unsigned weight
// plus 8. Q8_0's signed values are stored plus 128 (bit 7 flipped), so
// that they are unsigned too; group g holds values 4g..4g+3.
//
// Every product on x16 weights — decode (one activation row) and batched
// rows alike — runs the same sequence per output and block: the exact
// integer dot of the unsigned weights with the Q8_0 activation, started
// from −o·Σq (o = 8 or 128: the offset of the weights), converted to
// float32, times s = d_w·d_x, added with one fused multiply-add. A row's
// result therefore does not depend on how many rows come with it (what
// batched serving needs), and a prompt's rows get the bits decoding them
// one at a time gets.

// x16Rows is the number of rows in a panel of the x16 layout.
const x16Rows = 16

// x16Tile is the number of activation rows one x16 GEMM kernel call covers.
const x16Tile = 8

// x16TileBytes is one block of an activation tile: 8 rows' 32 int8 values,
// their 8 float32 scales and their 8 offset sums (−o·Σq).
const x16TileBytes = x16Tile*quant.QK + x16Tile*4 + x16Tile*4

// x16Set is a set of weight types, a bit each.
type x16Set uint32

// x16Of returns the set of ts.
func x16Of(ts ...QType) x16Set {
	var s x16Set
	for _, t := range ts {
		s |= 1 << t
	}
	return s
}

func (s x16Set) has(t QType) bool { return s&(1<<t) != 0 }

// x16Eligible reports whether a weight of type t and rows rows can take
// the x16 layout.
func x16Eligible(t QType, rows int) bool {
	return (t == QQ4_0 || t == QQ8_0 || t == QQ4K) && rows%x16Rows == 0
}

// x16Offset is o, what the x16 layout adds to t's weights to make them
// unsigned.
func x16Offset(t QType) int32 {
	switch t {
	case QQ8_0:
		return 128
	case QQ4K:
		return 0 // the mins term takes d·Σq instead
	}
	return 8
}

// x16Groups is the number of 4-byte groups in a block of t's payload.
func x16Groups(t QType) int {
	if t == QQ8_0 {
		return 8
	}
	return 4
}

// interleave reorders w's ggml rows into the x16 layout.
func (w *QWeight) interleave() {
	if w.X16 || !x16Eligible(w.Type, w.Rows) {
		return
	}
	out := make([]byte, len(w.Data))
	if w.Type == QQ4K {
		x16PackK(out, w.Data, w.Rows, w.Cols/quant.QKK)
	} else {
		x16Pack(w.Type, out, w.Data, w.Rows, w.Cols/quant.QK)
	}
	w.Data, w.X16 = out, true
}

// unpackX16 writes rows lo..hi-1 of an x16 weight in the row layout (ggml's,
// or the kernels' Q4_K layout) into dst.
func (w *QWeight) unpackX16(dst []byte, lo, hi int) {
	if w.Type == QQ4K {
		x16UnpackK(dst, w.Data, lo, hi, w.Cols/quant.QKK)
		return
	}
	x16Unpack(w.Type, dst, w.Data, lo, hi, w.Cols/quant.QK)
}

// x16Pack writes ggml rows src of type t as x16 panels into dst.
func x16Pack(t QType, dst, src []byte, rows, nb int) {
	_, bb := blockOf(t)
	rb := nb * bb
	flip := byte(0)
	if t == QQ8_0 {
		flip = 0x80
	}
	for p := range rows / x16Rows {
		for b := range nb {
			blk := dst[(p*nb+b)*x16Rows*bb:][:x16Rows*bb]
			for r := range x16Rows {
				s := src[(p*x16Rows+r)*rb+b*bb:][:bb]
				blk[2*r], blk[2*r+1] = s[0], s[1]
				for g := range x16Groups(t) {
					for j := range 4 {
						blk[32+64*g+4*r+j] = s[2+4*g+j] ^ flip
					}
				}
			}
		}
	}
}

// x16Unpack is x16Pack's inverse: ggml rows lo..hi-1 of x16 data src into
// dst.
func x16Unpack(t QType, dst, src []byte, lo, hi, nb int) {
	_, bb := blockOf(t)
	rb := nb * bb
	flip := byte(0)
	if t == QQ8_0 {
		flip = 0x80
	}
	for row := lo; row < hi; row++ {
		p, r := row/x16Rows, row%x16Rows
		for b := range nb {
			blk := src[(p*nb+b)*x16Rows*bb:][:x16Rows*bb]
			d := dst[(row-lo)*rb+b*bb:][:bb]
			d[0], d[1] = blk[2*r], blk[2*r+1]
			for g := range x16Groups(t) {
				for j := range 4 {
					d[2+4*g+j] = blk[32+64*g+4*r+j] ^ flip
				}
			}
		}
	}
}

// x16For returns k's x16 kernels for weights of type t: the GEMM over an
// activation tile and the decode kernel over panels.
func (k *dotSet) x16For(t QType) (gemm func(nb int, w, xt []byte, y []float32, ldy int), rows func(w []byte, panels int, a *qAct, y []float32)) {
	switch t {
	case QQ8_0:
		return k.x16Gemm8, k.x16Rows8
	case QQ4K:
		return k.x16GemmK, k.x16RowsK
	}
	return k.x16Gemm4, k.x16Rows4
}

// x16Bufs recycles the ggml rows DequantizeRows unpacks x16 rows into.
var x16Bufs = sync.Pool{New: func() any { return new([]byte) }}

// dequantX16Rows expands rows [lo, hi) of an x16 weight into dst.
func (w *QWeight) dequantX16Rows(k *dotSet, dst []float32, lo, hi int) {
	bp := x16Bufs.Get().(*[]byte)
	buf := grow(*bp, (hi-lo)*w.RowBytes())
	w.unpackX16(buf, lo, hi)
	k.dequant(w.Type, buf, dst)
	*bp = buf
	x16Bufs.Put(bp)
}

// x16Act holds activation rows quantized to Q8_0 and packed in tiles of
// x16Tile rows (x16TileBytes per block), the last tile padded with zero
// rows.
type x16Act struct {
	qAct
	tiles []byte
}

var x16ActPool = sync.Pool{New: func() any { return new(x16Act) }}

// pack quantizes n rows of x and lays them out in tiles, with offset sums
// for weights offset by o, or (o = 0, Q4_K) d·Σq as float32.
func (a *x16Act) pack(x []float32, n, cols int, o int32) {
	quantizeAct(&a.qAct, x, quant.QK, false)
	nb := cols / quant.QK
	tiles := (n + x16Tile - 1) / x16Tile
	a.tiles = grow(a.tiles, tiles*nb*x16TileBytes)
	clear(a.tiles)
	for t := range n {
		tile := a.tiles[t/x16Tile*nb*x16TileBytes:]
		j := t % x16Tile
		for b := range nb {
			blk := tile[b*x16TileBytes:][:x16TileBytes]
			q := a.q[t*cols+b*quant.QK:][:quant.QK]
			for i, v := range q {
				blk[j*quant.QK+i] = byte(v)
			}
			s := sumI8(q)
			binary.LittleEndian.PutUint32(blk[256+4*j:], math.Float32bits(a.d[t*nb+b]))
			sum := uint32(-o * s)
			if o == 0 {
				sum = math.Float32bits(a.d[t*nb+b] * float32(s))
			}
			binary.LittleEndian.PutUint32(blk[288+4*j:], sum)
		}
	}
}

// x16Args are the arguments of one parallel x16 product.
type x16Args struct {
	k      *dotSet
	w      *QWeight
	a      *x16Act
	y      []float32
	n      int
	tiles  int
	panels int
}

var x16Jobs jobs[x16Args]

// x16Gemm computes y [n, w.Rows] = x [n, w.Cols] · wᵀ for an x16 weight:
// the threads split (panel, tile) pairs, panels varying fastest within a
// thread's run so that one tile's activations stay in L1 while weights
// stream.
func x16Gemm(k *dotSet, p *Pool, y, x []float32, n int, w *QWeight) {
	a := x16ActPool.Get().(*x16Act)
	defer x16ActPool.Put(a)
	a.pack(x, n, w.Cols, x16Offset(w.Type))
	g := x16Args{k: k, w: w, a: a, y: y, n: n, tiles: (n + x16Tile - 1) / x16Tile, panels: w.Rows / x16Rows}
	// About 32 KiB of weights per chunk at least.
	grain := max(1, (1<<15)/(x16Rows*w.RowBytes()))
	parallel(p, &x16Jobs, g.tiles*g.panels, grain, g, x16GemmChunk)
}

func x16GemmChunk(g *x16Args, lo, hi int) {
	w := g.w
	nb := w.Cols / quant.QK
	pb := x16Rows * w.RowBytes()
	tb := nb * x16TileBytes
	gemm, _ := g.k.x16For(w.Type)
	kb := nb // blocks the kernel walks: of 32 values, or Q4_K's of 256
	if w.Type == QQ4K {
		kb = w.Cols / quant.QKK
	}
	var tmp [x16Tile * x16Rows]float32
	for c := lo; c < hi; c++ {
		t, p := c/g.panels, c%g.panels
		wp := w.Data[p*pb : (p+1)*pb]
		xt := g.a.tiles[t*tb : (t+1)*tb]
		rows := min(x16Tile, g.n-t*x16Tile)
		if rows == x16Tile {
			gemm(kb, wp, xt, g.y[t*x16Tile*w.Rows+p*x16Rows:], w.Rows)
			continue
		}
		gemm(kb, wp, xt, tmp[:], x16Rows)
		for r := range rows {
			copy(g.y[(t*x16Tile+r)*w.Rows+p*x16Rows:][:x16Rows], tmp[r*x16Rows:][:x16Rows])
		}
	}
}

// x16GemmGo returns the portable x16 kernel of type t: y[t·ldy + r] for
// the 8 rows t of tile xt and the 16 rows r of panel w.
func x16GemmGo(t QType) func(nb int, w, xt []byte, y []float32, ldy int) {
	_, bb := blockOf(t)
	return func(nb int, w, xt []byte, y []float32, ldy int) {
		for i := range x16Tile {
			var acc [x16Rows]float32
			for b := range nb {
				xb := xt[b*x16TileBytes:]
				q := int8s(xb[i*quant.QK:][:quant.QK])
				dx := math.Float32frombits(binary.LittleEndian.Uint32(xb[256+4*i:]))
				ns := int32(binary.LittleEndian.Uint32(xb[288+4*i:]))
				x16BlockGo(t, &acc, w[b*x16Rows*bb:], q, dx, ns)
			}
			copy(y[i*ldy:][:x16Rows], acc[:])
		}
	}
}

// x16BlockGo adds one block of a panel of type t dotted with one
// activation block q (scale dx, offset sum ns = −o·Σq) to acc, in the
// kernels' order.
func x16BlockGo(t QType, acc *[x16Rows]float32, blk []byte, q []int8, dx float32, ns int32) {
	for r := range x16Rows {
		s := ns
		for g := range x16Groups(t) {
			for j := range 4 {
				v := blk[32+64*g+4*r+j]
				if t == QQ8_0 {
					s += int32(v) * int32(q[4*g+j])
					continue
				}
				s += int32(v&0xf)*int32(q[4*g+j]) + int32(v>>4)*int32(q[16+4*g+j])
			}
		}
		sc := quant.F16ToF32(binary.LittleEndian.Uint16(blk[2*r:])) * dx
		acc[r] += float32(s) * sc
	}
}

// x16RowsGo returns the portable decode kernel of type t: y[16p + r] for
// the panels of w and the single activation row a (a.nsum: −o·Σq).
func x16RowsGo(t QType) func(w []byte, panels int, a *qAct, y []float32) {
	_, bb := blockOf(t)
	return func(w []byte, panels int, a *qAct, y []float32) {
		nb := len(a.d)
		for p := range panels {
			var acc [x16Rows]float32
			for b := range nb {
				x16BlockGo(t, &acc, w[(p*nb+b)*x16Rows*bb:], a.q[b*quant.QK:][:quant.QK], a.d[b], a.nsum[b])
			}
			copy(y[p*x16Rows:][:x16Rows], acc[:])
		}
	}
}

// int8s views bytes as int8 values.
func int8s(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b))
}
