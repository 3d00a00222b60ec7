package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/mai-llm/mai/format/quant"
)

// QType is a weight storage type that the quantized kernels multiply by
// directly, without expanding the weights to float32 first.
type QType uint8

// Weight types of the quantized kernels.
const (
	QF16  QType = iota + 1 // IEEE half, dotted with float32 activations
	QBF16                  // bfloat16, dotted with float32 activations
	QQ8_0                  // ggml Q8_0 (blocks of 32), dotted with 8-bit activations
	QQ4_0                  // ggml Q4_0 (blocks of 32), dotted with 8-bit activations
	QQ4K                   // ggml Q4_K (super-blocks of 256), dotted with 8-bit activations
	QQ6K                   // ggml Q6_K (super-blocks of 256), expanded to float32 in cache-sized panels
)

// QTypeOf returns the kernel type for a ggml type, if there is a kernel for it.
func QTypeOf(t quant.Type) (QType, bool) {
	switch t {
	case quant.F16:
		return QF16, true
	case quant.BF16:
		return QBF16, true
	case quant.Q8_0:
		return QQ8_0, true
	case quant.Q4_0:
		return QQ4_0, true
	case quant.Q4_K:
		return QQ4K, true
	case quant.Q6_K:
		return QQ6K, true
	}
	return 0, false
}

// GGML returns the ggml type that t stores.
func (t QType) GGML() quant.Type {
	switch t {
	case QF16:
		return quant.F16
	case QBF16:
		return quant.BF16
	case QQ8_0:
		return quant.Q8_0
	case QQ4_0:
		return quant.Q4_0
	case QQ4K:
		return quant.Q4_K
	case QQ6K:
		return quant.Q6_K
	}
	return quant.Type(1 << 30)
}

// String returns the lower-case name (q8_0, q4_K, f16...).
func (t QType) String() string {
	switch t {
	case QF16:
		return "f16"
	case QBF16:
		return "bf16"
	case QQ8_0:
		return "q8_0"
	case QQ4_0:
		return "q4_0"
	case QQ4K:
		return "q4_K"
	case QQ6K:
		return "q6_K"
	}
	return fmt.Sprintf("qtype(%d)", uint8(t))
}

// q4KBytes is the size of one Q4_K super-block as the kernels keep it: the
// ggml block with its scales unpacked, so that the inner loop reads them
// directly: f32 d, f32 dmin, 8 u8 scales, 8 u8 mins, 128 bytes of nibbles
// (in ggml's order).
const q4KBytes = 4 + 4 + 8 + 8 + quant.QKK/2

// blockOf returns the elements per block and bytes per block of t as stored
// in a QWeight.
func blockOf(t QType) (elems, bytes int) {
	switch t {
	case QF16, QBF16:
		return 1, 2
	case QQ8_0:
		return quant.QK, quant.Q8_0Bytes
	case QQ4_0:
		return quant.QK, quant.Q4_0Bytes
	case QQ4K:
		return quant.QKK, q4KBytes
	case QQ6K:
		return quant.QKK, quant.Q6_KBytes
	}
	return 0, 0
}

// QWeight is a weight matrix [Rows, Cols] (Hugging Face's [out, in]) stored
// row by row in a quantized or 16-bit type.
type QWeight struct {
	Type       QType
	Rows, Cols int
	// Data holds Rows rows of RowBytes bytes each. Q8_0, Q4_0, F16 and BF16
	// rows are ggml's bytes; Q4_K rows use the unpacked layout of q4KBytes.
	// With X16 the Q4_0 or Q8_0 rows are interleaved in panels of 16
	// (x16.go).
	Data []byte
	// X16: Data is in the x16 layout, chosen at construction on CPUs whose
	// kernels run it fastest (AVX-512 VNNI).
	X16 bool
}

// RowBytes is the size of one stored row.
func (w *QWeight) RowBytes() int {
	e, b := blockOf(w.Type)
	return w.Cols / e * b
}

// NewQWeight wraps rows×cols values stored as ggml type t (the bytes of a
// GGUF tensor) for the kernels. The bytes are copied (Q4_K is repacked).
func NewQWeight(t quant.Type, rows, cols int, ggml []byte) (*QWeight, error) {
	qt, _ := QTypeOf(t)
	return newQWeight(t, rows, cols, ggml, dotKernels().x16.has(qt))
}

// newQWeight is NewQWeight with the x16 layout taken (where eligible) or
// not.
func newQWeight(t quant.Type, rows, cols int, ggml []byte, x16 bool) (*QWeight, error) {
	qt, ok := QTypeOf(t)
	if !ok {
		return nil, fmt.Errorf("quantized weight: no kernel for %v", t)
	}
	e, _ := blockOf(qt)
	if rows <= 0 || cols <= 0 || cols%e != 0 {
		return nil, fmt.Errorf("quantized weight: %d×%d matrix does not split into %v rows of blocks of %d", rows, cols, t, e)
	}
	want, err := t.RowBytes(int64(rows) * int64(cols))
	if err != nil {
		return nil, err
	}
	if int64(len(ggml)) != want {
		return nil, fmt.Errorf("quantized weight: %d×%d %v needs %d bytes, have %d", rows, cols, t, want, len(ggml))
	}
	w := &QWeight{Type: qt, Rows: rows, Cols: cols}
	if qt != QQ4K {
		if x16 && x16Eligible(qt, rows) {
			w.Data = make([]byte, len(ggml))
			x16Pack(qt, w.Data, ggml, rows, cols/quant.QK)
			w.X16 = true
			return w, nil
		}
		w.Data = append([]byte(nil), ggml...)
		return w, nil
	}
	nb := len(ggml) / quant.Q4_KBytes
	w.Data = make([]byte, nb*q4KBytes)
	for b := range nb {
		src := ggml[b*quant.Q4_KBytes : (b+1)*quant.Q4_KBytes]
		dst := w.Data[b*q4KBytes : (b+1)*q4KBytes]
		binary.LittleEndian.PutUint32(dst[0:], math.Float32bits(quant.F16ToF32(binary.LittleEndian.Uint16(src[0:]))))
		binary.LittleEndian.PutUint32(dst[4:], math.Float32bits(quant.F16ToF32(binary.LittleEndian.Uint16(src[2:]))))
		for j := range 8 {
			dst[8+j], dst[16+j] = scaleMinK4(j, src[4:16])
		}
		copy(dst[24:], src[16:])
	}
	if x16 {
		w.interleave()
	}
	return w, nil
}

// QuantizeWeight encodes a float32 matrix w [rows, cols] as t, with ggml's
// reference quantizers.
func QuantizeWeight(t quant.Type, rows, cols int, w []float32) (*QWeight, error) {
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quantize weight: %d values for a %d×%d matrix", len(w), rows, cols)
	}
	if _, ok := QTypeOf(t); !ok {
		return nil, fmt.Errorf("quantize weight: no kernel for %v", t)
	}
	if cols%t.BlockSize() != 0 {
		return nil, fmt.Errorf("quantize weight: rows of %d values do not split into %v blocks of %d", cols, t, t.BlockSize())
	}
	n, err := t.RowBytes(int64(len(w)))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := quant.Quantize(t, buf, w); err != nil {
		return nil, err
	}
	return NewQWeight(t, rows, cols, buf)
}

// GGML returns the weight as ggml bytes of type Type.GGML(), as a GGUF
// file stores it.
func (w *QWeight) GGML() []byte {
	data := w.Data
	if w.X16 {
		data = make([]byte, len(w.Data))
		w.unpackX16(data, 0, w.Rows)
		if w.Type != QQ4K {
			return data
		}
	}
	if w.Type != QQ4K {
		return append([]byte(nil), w.Data...)
	}
	nb := len(data) / q4KBytes
	out := make([]byte, nb*quant.Q4_KBytes)
	for b := range nb {
		src := data[b*q4KBytes : (b+1)*q4KBytes]
		dst := out[b*quant.Q4_KBytes : (b+1)*quant.Q4_KBytes]
		binary.LittleEndian.PutUint16(dst[0:], quant.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(src[0:]))))
		binary.LittleEndian.PutUint16(dst[2:], quant.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(src[4:]))))
		for j := range 8 {
			packScaleMinK4(j, dst[4:16], src[8+j], src[16+j])
		}
		copy(dst[16:], src[24:])
	}
	return out
}

// Dequantize expands the weight into dst [Rows*Cols].
func (w *QWeight) Dequantize(dst []float32) error {
	if len(dst) != w.Rows*w.Cols {
		return fmt.Errorf("dequantize: %d values for a %d×%d matrix", len(dst), w.Rows, w.Cols)
	}
	return quant.Dequantize(w.Type.GGML(), dst, w.GGML())
}

// RowStable reports whether QMatMul gives a row of y the same bits
// whatever the number of rows n it multiplies at once (x16 weights).
func (w *QWeight) RowStable() bool { return w.X16 }

// Bytes is the memory the weight takes.
func (w *QWeight) Bytes() int { return len(w.Data) }

func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func packScaleMinK4(j int, q []byte, ls, lm uint8) {
	if j < 4 {
		q[j] |= ls
		q[j+4] |= lm
		return
	}
	q[j+4] |= ls&0xf | (lm&0xf)<<4
	q[j-4] |= (ls >> 4) << 6
	q[j] |= (lm >> 4) << 6
}

// qAct is a matrix of activations quantized to 8 bits for the integer
// kernels: per block of blk values (32 for Q8_0/Q4_0, 256 for Q4_K) a
// float32 scale d and int8 values q with x ≈ d·q; for Q4_K also the sum of
// q over every 32 values.
type qAct struct {
	blk  int
	q    []int8
	d    []float32
	sums []int16
	nsum []int32   // -f·Σq per block of 32 (setNegSums)
	sum4 []int32   // 32·Σq of every 4 consecutive values (setSum4, Q6_K decode)
	dxs  []float32 // d·Σq per block of 32 (setDxSums, Q4_K x16 decode)
	xr   []float32 // q·d: the rounded activations (prefill, qgemm)
}

// setNegSums fills a.nsum with −f·Σq for activations quantized in blocks
// of 32. (The Q4_0 kernels fold the −8 offset of the weights in: the ggml
// layout's kernel adds −Σq to each of its 8 lanes, the x16 kernels −o·Σq
// to each row.)
func (a *qAct) setNegSums(f int32) {
	nb := len(a.q) / 32
	a.nsum = grow(a.nsum, nb)
	for b := range nb {
		a.nsum[b] = -f * sumI8(a.q[b*32:(b+1)*32])
	}
}

// setSum4 fills a.sum4: the Q6_K decode kernel multiplies unsigned 6-bit
// values and takes off 32 times the sum of the activations each 4 of them
// met.
func (a *qAct) setSum4() {
	a.sum4 = grow(a.sum4, len(a.q)/4)
	for i := range a.sum4 {
		q := a.q[4*i : 4*i+4]
		a.sum4[i] = 32 * (int32(q[0]) + int32(q[1]) + int32(q[2]) + int32(q[3]))
	}
}

var qActPool = sync.Pool{New: func() any { return new(qAct) }}

// sumI8 returns Σq.
func sumI8(q []int8) int32 {
	s := int32(0)
	for _, v := range q {
		s += int32(v)
	}
	return s
}

// quantizeAct quantizes n rows of x (each cols long) in blocks of blk, as
// ggml's quantize_row_q8_0/q8_K do: d = max|x|/127, q = round(x/d).
func quantizeAct(a *qAct, x []float32, blk int, withSums bool) {
	a.blk = blk
	a.q = grow(a.q, len(x))
	a.d = grow(a.d, len(x)/blk)
	if withSums {
		a.sums = grow(a.sums, len(x)/32)
	} else if blk == quant.QK && len(x)%blk == 0 && quantQ8_0Blocks(x, a.q, a.d) {
		return
	}
	quantizeActGo(a, x, blk, withSums)
}

// quantizeActGo is quantizeAct's portable loop (a.q, a.d, a.sums sized).
func quantizeActGo(a *qAct, x []float32, blk int, withSums bool) {
	for b := 0; b < len(x)/blk; b++ {
		xs := x[b*blk : (b+1)*blk]
		var amax float32
		for _, v := range xs {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		a.d[b] = d
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		q := a.q[b*blk : (b+1)*blk]
		for i, v := range xs {
			q[i] = roundI8(float32(v * id))
		}
		if withSums {
			for g := 0; g < blk/32; g++ {
				s := 0
				for _, v := range q[g*32 : (g+1)*32] {
					s += int(v)
				}
				a.sums[b*blk/32+g] = int16(s)
			}
		}
	}
}

// roundI8 rounds p (|p| ≤ 127.5) to the nearest integer, ties to even, as
// math.RoundToEven does, without leaving float32: adding 1.5·2²³ leaves the
// rounded value in the low bits of the mantissa.
func roundI8(p float32) int8 {
	return int8(int32(math.Float32bits(p+12582912)) - 0x4B400000)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// QMatMul computes y = x·wᵀ: x is [n, w.Cols] float32, y is [n, w.Rows].
// Q8_0, Q4_0 and Q4_K weights are dotted with activations quantized to 8
// bits per block (as llama.cpp does); F16 and BF16 weights with the float32
// activations. Work is split over the rows of w.
func QMatMul(p *Pool, y, x []float32, n int, w *QWeight) {
	if len(x) != n*w.Cols || len(y) != n*w.Rows {
		panic(fmt.Sprintf("cpu.QMatMul: x has %d values, y %d, for n=%d and a %d×%d weight", len(x), len(y), n, w.Rows, w.Cols))
	}
	if n == 0 {
		return
	}
	qmatmul(dotKernels(), p, y, x, n, w)
}

func qmatmul(k *dotSet, p *Pool, y, x []float32, n int, w *QWeight) {
	switch {
	case w.Type == QQ6K && n == 1 && k.rowsQ6K != nil:
		qmatvec(k, p, y, x, w)
		return
	case w.Type == QQ6K:
		// Without the integer decode kernel, and for prompt rows, products
		// expand panels to float32.
		qgemm(k, p, y, x, n, w)
		return
	case w.X16 && n == 1:
		qmatvec(k, p, y, x, w)
		return
	case w.X16:
		x16Gemm(k, p, y, x, n, w)
		return
	case n >= qGemmMinRows:
		qgemm(k, p, y, x, n, w)
		return
	case n == 1 && hasRowsKernel(w):
		qmatvec(k, p, y, x, w)
		return
	}
	rb := w.RowBytes()
	var a *qAct
	switch w.Type {
	case QQ8_0, QQ4_0:
		a = qActPool.Get().(*qAct)
		quantizeAct(a, x, quant.QK, false)
		defer qActPool.Put(a)
	case QQ4K:
		a = qActPool.Get().(*qAct)
		quantizeAct(a, x, quant.QKK, true)
		defer qActPool.Put(a)
	}
	cols := w.Cols
	// Each chunk of rows should carry enough work to be worth a thread.
	grain := max(1, (1<<15)/max(1, cols*n))
	p.For(w.Rows, grain, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := w.Data[r*rb : (r+1)*rb]
			for i := range n {
				var v float32
				switch w.Type {
				case QF16:
					v = k.f16(row, x[i*cols:(i+1)*cols])
				case QBF16:
					v = k.bf16(row, x[i*cols:(i+1)*cols])
				case QQ8_0:
					nb := cols / quant.QK
					v = k.q8_0(row, a.q[i*cols:(i+1)*cols], a.d[i*nb:(i+1)*nb])
				case QQ4_0:
					nb := cols / quant.QK
					v = k.q4_0(row, a.q[i*cols:(i+1)*cols], a.d[i*nb:(i+1)*nb])
				case QQ4K:
					nb := cols / quant.QKK
					v = k.q4K(row, a.q[i*cols:(i+1)*cols], a.d[i*nb:(i+1)*nb], a.sums[i*cols/32:(i+1)*cols/32])
				}
				y[i*w.Rows+r] = v
			}
		}
	})
}

// dotSet holds one implementation of each row-dot kernel. Each dots one
// stored weight row with one activation row.
type dotSet struct {
	name string
	f16  func(w []byte, x []float32) float32
	bf16 func(w []byte, x []float32) float32
	q8_0 func(w []byte, xq []int8, xd []float32) float32
	q4_0 func(w []byte, xq []int8, xd []float32) float32
	q4K  func(w []byte, xq []int8, xd []float32, xs []int16) float32

	// Multi-row kernels (decode): y[r] = row r of w · x for rows
	// consecutive stored rows.
	rowsQ8_0 func(w []byte, rows int, a *qAct, y []float32)
	rowsQ4_0 func(w []byte, rows int, a *qAct, y []float32)
	// negSums: rowsQ4_0 reads qAct.nsum (the negated block sums).
	negSums bool
	// rowsQ6K multiplies Q6_K rows by Q8_0 activations (with qAct.sum4);
	// nil where no integer Q6_K kernel runs (products then expand panels).
	rowsQ6K func(w []byte, rows int, a *qAct, y []float32)
	rowsF16 func(w []byte, rows int, x []float32, y []float32)
	// dequant expands whole stored rows of type t to float32 (prefill).
	dequant func(t QType, src []byte, dst []float32)

	// x16 holds the types (a bit each) whose new weights take the x16
	// layout: those whose x16 kernels are this set's fastest.
	x16 x16Set
	// x16Gemm4 and x16Gemm8 multiply one Q4_0 or Q8_0 x16 panel by one
	// tile of 8 activation rows.
	x16Gemm4, x16Gemm8 func(nb int, w, xt []byte, y []float32, ldy int)
	// x16Rows4 and x16Rows8 multiply Q4_0 or Q8_0 x16 panels by one
	// activation row.
	x16Rows4, x16Rows8 func(w []byte, panels int, a *qAct, y []float32)
	// x16GemmK and x16RowsK are the same for Q4_K panels (nsb super-blocks).
	x16GemmK func(nsb int, w, xt []byte, y []float32, ldy int)
	x16RowsK func(w []byte, panels int, a *qAct, y []float32)
}

// goDots are the portable kernels.
var goDots = dotSet{name: "go", f16: dotF16Go, bf16: dotBF16Go, q8_0: dotQ8_0Go, q4_0: dotQ4_0Go, q4K: dotQ4KGo,
	rowsQ8_0: rowsQ8_0Go, rowsQ4_0: rowsQ4_0Go, rowsF16: rowsF16Go, dequant: dequantGo,
	x16Gemm4: x16GemmGo(QQ4_0), x16Gemm8: x16GemmGo(QQ8_0), x16Rows4: x16RowsGo(QQ4_0), x16Rows8: x16RowsGo(QQ8_0),
	x16GemmK: x16KGemmGo, x16RowsK: x16KRowsGo}

func f16at(b []byte) float32 { return quant.F16ToF32(binary.LittleEndian.Uint16(b)) }

func dotF16Go(w []byte, x []float32) float32 {
	var s float32
	for i := range x {
		s += quant.F16ToF32(binary.LittleEndian.Uint16(w[2*i:])) * x[i]
	}
	return s
}

func dotBF16Go(w []byte, x []float32) float32 {
	var s float32
	for i := range x {
		s += math.Float32frombits(uint32(binary.LittleEndian.Uint16(w[2*i:]))<<16) * x[i]
	}
	return s
}

func dotQ8_0Go(w []byte, xq []int8, xd []float32) float32 {
	var s float32
	for b := range xd {
		blk := w[b*quant.Q8_0Bytes : (b+1)*quant.Q8_0Bytes]
		q := xq[b*quant.QK : (b+1)*quant.QK]
		var si int32
		for i := range quant.QK {
			si += int32(int8(blk[2+i])) * int32(q[i])
		}
		s += float32(si) * (f16at(blk) * xd[b])
	}
	return s
}

func dotQ4_0Go(w []byte, xq []int8, xd []float32) float32 {
	var s float32
	for b := range xd {
		blk := w[b*quant.Q4_0Bytes : (b+1)*quant.Q4_0Bytes]
		q := xq[b*quant.QK : (b+1)*quant.QK]
		var si int32
		for i := range quant.QK / 2 {
			si += (int32(blk[2+i]&0xf) - 8) * int32(q[i])
			si += (int32(blk[2+i]>>4) - 8) * int32(q[i+16])
		}
		s += float32(si) * (f16at(blk) * xd[b])
	}
	return s
}

func dotQ4KGo(w []byte, xq []int8, xd []float32, xs []int16) float32 {
	var s, sm float32
	for b := range xd {
		blk := w[b*q4KBytes : (b+1)*q4KBytes]
		q := xq[b*quant.QKK : (b+1)*quant.QKK]
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk[0:]))
		dmin := math.Float32frombits(binary.LittleEndian.Uint32(blk[4:]))
		nib := blk[24:]
		var si, mi int32
		for j := range 4 {
			var lo, hi int32
			for l := range 32 {
				lo += int32(nib[32*j+l]&0xf) * int32(q[64*j+l])
				hi += int32(nib[32*j+l]>>4) * int32(q[64*j+32+l])
			}
			si += lo*int32(blk[8+2*j]) + hi*int32(blk[8+2*j+1])
		}
		for j := range 8 {
			mi += int32(blk[16+j]) * int32(xs[b*8+j])
		}
		s += float32(si) * (d * xd[b])
		sm += float32(mi) * (dmin * xd[b])
	}
	return s - sm
}
