package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/mai-llm/mai/format/quant"
)

// The two shapes of a quantized matmul, beside the row-at-a-time loop of
// qmatmul:
//
//   - decode (one activation row): the activation is quantized once and the
//     threads split the weight rows; each thread runs one multi-row kernel
//     call over its rows (rowsQ8_0, rowsQ4_0, rowsF16), so the per-row cost
//     is a few instructions, not a Go call;
//   - prefill (qGemmMinRows or more activation rows): each thread expands a
//     panel of weight rows to float32 at a time (it stays in L2) and runs the
//     packed float32 GEMM on it with float32 activations. The expansion is
//     paid once per weight for all activation rows, so the product runs at
//     GEMM speed whatever the storage type.

// decodeSplit is the number of chunks per thread of a decode product: the
// products are memory-bound and short (tens of µs), and with one chunk per
// thread the whole product waits for the thread that started last (m134
// f16 decode 128-134 -> 147-154 tokens/s with 4, on 2 threads).
const decodeSplit = 4

// qGemmMinRows is the fewest activation rows that take the dequantize-and-
// GEMM path. Below it each weight row is dotted with each activation row.
const qGemmMinRows = 32

// qPanelFloats bounds one dequantized weight panel (512 KiB of float32:
// with the GEMM's own packed copy it stays in a 1 MiB L2; 256 KiB panels
// repacked the activations twice as often, 1 MiB ones left too few panels
// to share out; m134 f16 pp128 +8-10 % over 256 KiB).
const qPanelFloats = 1 << 17

// qPanels recycles the per-thread dequantized panels.
var qPanels = sync.Pool{New: func() any { s := make([]float32, 0, qPanelFloats); return &s }}

// qmmArgs are the arguments of one parallel quantized matmul.
type qmmArgs struct {
	k     *dotSet
	w     *QWeight
	a     *qAct
	x, y  []float32
	n     int
	chunk int // weight rows per panel (prefill)
}

var qmvJobs, qgemmJobs jobs[qmmArgs]

// hasRowsKernel reports whether decode of w runs a multi-row kernel.
func hasRowsKernel(w *QWeight) bool {
	switch w.Type {
	case QQ8_0, QQ4_0:
		return true
	case QQ4K:
		return w.X16
	case QF16:
		return w.Cols%32 == 0
	}
	return false
}

// qmatvec is decode: y [w.Rows] = w · x for one activation row x.
func qmatvec(k *dotSet, p *Pool, y, x []float32, w *QWeight) {
	a := decodeAct(k, x, w)
	if a != nil {
		defer qActPool.Put(a)
	}
	// About 32 KiB of weights per chunk at least: several µs of work. An
	// x16 weight is split in panels.
	u := rowUnit(w)
	grain := max(1, (1<<15)/max(1, u*w.RowBytes()))
	parallelSplit(p, &qmvJobs, w.Rows/u, grain, decodeSplit, qmmArgs{k: k, w: w, a: a, x: x, y: y, n: 1}, qmatvecUnits)
}

// rowUnit is the number of rows decode splits w's rows in: a panel for
// x16 weights, else one row.
func rowUnit(w *QWeight) int {
	if w.X16 {
		return x16Rows
	}
	return 1
}

func qmatvecUnits(g *qmmArgs, lo, hi int) {
	u := rowUnit(g.w)
	qmatvecRows(g, lo*u, hi*u)
}

// qmatvecRows runs rows [lo, hi) of a decode product (whole panels of x16
// weights).
func qmatvecRows(g *qmmArgs, lo, hi int) {
	w := g.w
	rb := w.RowBytes()
	data := w.Data[lo*rb : hi*rb]
	if w.X16 {
		_, rows := g.k.x16For(w.Type)
		rows(data, (hi-lo)/x16Rows, g.a, g.y[lo:hi])
		return
	}
	switch w.Type {
	case QQ6K:
		g.k.rowsQ6K(data, hi-lo, g.a, g.y[lo:hi])
	case QQ8_0:
		g.k.rowsQ8_0(data, hi-lo, g.a, g.y[lo:hi])
	case QQ4_0:
		g.k.rowsQ4_0(data, hi-lo, g.a, g.y[lo:hi])
	case QF16:
		g.k.rowsF16(data, hi-lo, g.x, g.y[lo:hi])
	}
}

// qgemm is prefill: y [n, w.Rows] = x [n, w.Cols] · wᵀ through float32
// panels of w.
//
// For the 8-bit integer types the activations are first rounded as the
// integer kernels (and llama.cpp) see them: quantized per block to int8 and
// scaled back, so that a prompt gives what decoding it token by token gives,
// up to the order of float32 additions.
func qgemm(k *dotSet, p *Pool, y, x []float32, n int, w *QWeight) {
	if blk := actBlock(w.Type); blk > 0 {
		a := qActPool.Get().(*qAct)
		defer qActPool.Put(a)
		quantizeAct(a, x, blk, false)
		a.xr = grow(a.xr, len(x))
		if blk != quant.QK || !q8ToF32Blocks(a.q, a.d, a.xr) {
			for b, d := range a.d {
				xr := a.xr[b*blk : (b+1)*blk]
				for i, q := range a.q[b*blk : (b+1)*blk] {
					xr[i] = float32(q) * d
				}
			}
		}
		x = a.xr
	}
	// Panels of at most qPanelFloats, as many as a multiple of the threads
	// so that none waits at the end, in multiples of 32 rows.
	chunk := max(32, qPanelFloats/w.Cols) &^ 31
	panels := (w.Rows + chunk - 1) / chunk
	th := p.Threads()
	panels = (panels + th - 1) / th * th
	chunk = min(w.Rows, ((w.Rows+panels-1)/panels+31)&^31)
	panels = (w.Rows + chunk - 1) / chunk
	parallel(p, &qgemmJobs, panels, 1, qmmArgs{k: k, w: w, x: x, y: y, n: n, chunk: chunk}, qgemmPanels)
}

func qgemmPanels(g *qmmArgs, lo, hi int) {
	w, cols := g.w, g.w.Cols
	rb := w.RowBytes()
	bp := qPanels.Get().(*[]float32)
	buf := grow(*bp, g.chunk*cols)
	for c := lo; c < hi; c++ {
		r0 := c * g.chunk
		r1 := min(r0+g.chunk, w.Rows)
		panel := buf[:(r1-r0)*cols]
		g.k.dequant(w.Type, w.Data[r0*rb:r1*rb], panel)
		// serialPool (attention.go): the panels are already spread over the
		// caller's pool, so each panel's GEMM runs on its own thread.
		Gemm(serialPool, false, true, g.n, r1-r0, cols, 1, g.x, cols, panel, cols, 0, g.y[r0:], w.Rows)
	}
	*bp = buf
	qPanels.Put(bp)
}

// actBlock is the block size the activations of w's integer kernels are
// quantized in, or 0 for the types multiplied by float32 activations
// (F16, BF16, Q6_K).
func actBlock(t QType) int {
	switch t {
	case QQ8_0, QQ4_0:
		return quant.QK
	case QQ4K:
		return quant.QKK
	}
	return 0
}

// DequantizeRows expands rows [lo, hi) of w into dst [(hi-lo)·w.Cols] (an
// embedding lookup of a quantized table).
func (w *QWeight) DequantizeRows(dst []float32, lo, hi int) {
	if lo < 0 || hi > w.Rows || lo > hi || len(dst) != (hi-lo)*w.Cols {
		panic("cpu.QWeight.DequantizeRows: rows or destination out of range")
	}
	if w.X16 {
		w.dequantX16Rows(dotKernels(), dst, lo, hi)
		return
	}
	rb := w.RowBytes()
	dotKernels().dequant(w.Type, w.Data[lo*rb:hi*rb], dst)
}

// Portable multi-row kernels: one row-dot call per row.

func rowsQ8_0Go(w []byte, rows int, a *qAct, y []float32) {
	rb := len(w) / rows
	for r := range rows {
		y[r] = dotQ8_0Go(w[r*rb:(r+1)*rb], a.q, a.d)
	}
}

func rowsQ4_0Go(w []byte, rows int, a *qAct, y []float32) {
	rb := len(w) / rows
	for r := range rows {
		y[r] = dotQ4_0Go(w[r*rb:(r+1)*rb], a.q, a.d)
	}
}

func rowsF16Go(w []byte, rows int, x []float32, y []float32) {
	rb := len(w) / rows
	for r := range rows {
		y[r] = dotF16Go(w[r*rb:(r+1)*rb], x)
	}
}

// dequantGo expands whole rows of stored weights of type t into dst.
func dequantGo(t QType, src []byte, dst []float32) {
	switch t {
	case QQ4K:
		dequantQ4KGo(src, dst)
	case QBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	default:
		if err := quant.Dequantize(t.GGML(), dst, src); err != nil {
			panic("cpu: dequantize: " + err.Error())
		}
	}
}

// dequantQ4KGo expands Q4_K super-blocks in the kernels' unpacked layout
// (q4KBytes).
func dequantQ4KGo(src []byte, dst []float32) {
	for b := 0; b < len(src)/q4KBytes; b++ {
		blk := src[b*q4KBytes : (b+1)*q4KBytes]
		out := dst[b*quant.QKK : (b+1)*quant.QKK]
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk[0:]))
		dmin := math.Float32frombits(binary.LittleEndian.Uint32(blk[4:]))
		nib := blk[24:]
		for j := range 4 {
			d1, m1 := d*float32(blk[8+2*j]), dmin*float32(blk[16+2*j])
			d2, m2 := d*float32(blk[8+2*j+1]), dmin*float32(blk[16+2*j+1])
			for l := range 32 {
				out[64*j+l] = d1*float32(nib[32*j+l]&0xf) - m1
				out[64*j+32+l] = d2*float32(nib[32*j+l]>>4) - m2
			}
		}
	}
}

// qmvsArgs are the arguments of one fused decode product (QMatVecs,
// QMatVecSwiGLU).
type qmvsArgs struct {
	k      *dotSet
	a      *qAct
	x      []float32
	ws     [3]*QWeight
	ys     [3][]float32
	nw     int
	unit   int       // rows per unit of work (rowUnit)
	swiglu []float32 // QMatVecSwiGLU's output
}

var qmvsJobs jobs[qmvsArgs]

// fusable reports whether ws can share one decode product: one activation
// width and one type with a multi-row kernel.
func fusable(x []float32, ws []*QWeight) bool {
	if len(ws) == 0 || len(ws) > 3 {
		return false
	}
	for _, w := range ws {
		if w.Type != ws[0].Type || w.X16 != ws[0].X16 || w.Cols != len(x) || !hasRowsKernel(w) {
			return false
		}
	}
	return true
}

// QMatVecs computes ys[i] = ws[i] · x for one activation row x (decode) and
// up to three weights of one type and width (a layer's query, key and value
// projections) as one parallel product: the activation is quantized once and
// the threads split the rows of all the weights. The results are those of
// QMatMul on each weight.
func QMatVecs(p *Pool, ys [][]float32, x []float32, ws []*QWeight) {
	if len(ys) != len(ws) {
		panic("cpu.QMatVecs: as many outputs as weights needed")
	}
	total := 0
	for i, w := range ws {
		if len(ys[i]) != w.Rows {
			panic(fmt.Sprintf("cpu.QMatVecs: output %d has %d values for %d rows", i, len(ys[i]), w.Rows))
		}
		total += w.Rows
	}
	if !fusable(x, ws) {
		for i, w := range ws {
			QMatMul(p, ys[i], x, 1, w)
		}
		return
	}
	k := dotKernels()
	g := qmvsArgs{k: k, x: x, nw: len(ws), unit: rowUnit(ws[0])}
	copy(g.ws[:], ws)
	copy(g.ys[:], ys)
	g.a = decodeAct(k, x, ws[0])
	if g.a != nil {
		defer qActPool.Put(g.a)
	}
	grain := max(1, (1<<15)/max(1, g.unit*ws[0].RowBytes()))
	parallelSplit(p, &qmvsJobs, total/g.unit, grain, decodeSplit, g, qmatvecsRows)
}

// QMatVecSwiGLU computes out = silu(gate · x) ⊙ (up · x) for one activation
// row x (a SwiGLU MLP's first half at decode) as one parallel product: each
// thread runs its share of the rows of both weights and applies SwiGLU to
// them, leaving gate · x and up · x in g and u. The results are those of two
// QMatMul calls and SwiGLUForward.
func QMatVecSwiGLU(p *Pool, out, g, u, x []float32, gate, up *QWeight) {
	if gate.Rows != up.Rows || len(out) != gate.Rows || len(g) != gate.Rows || len(u) != up.Rows {
		panic("cpu.QMatVecSwiGLU: gate, up and outputs disagree in size")
	}
	ws := []*QWeight{gate, up}
	if !fusable(x, ws) {
		QMatMul(p, g, x, 1, gate)
		QMatMul(p, u, x, 1, up)
		SwiGLUForward(p, out, g, u)
		return
	}
	k := dotKernels()
	a := qmvsArgs{k: k, x: x, nw: 2, swiglu: out, unit: rowUnit(gate)}
	a.ws[0], a.ws[1] = gate, up
	a.ys[0], a.ys[1] = g, u
	a.a = decodeAct(k, x, gate)
	if a.a != nil {
		defer qActPool.Put(a.a)
	}
	grain := max(1, (1<<14)/max(1, a.unit*gate.RowBytes()))
	parallelSplit(p, &qmvsJobs, gate.Rows/a.unit, grain, decodeSplit, a, qmatvecSwiGLURows)
}

// decodeAct quantizes the activation row x for w's decode kernel (nil for
// the 16-bit types, which take x as it is).
func decodeAct(k *dotSet, x []float32, w *QWeight) *qAct {
	if w.Type == QF16 {
		return nil
	}
	a := qActPool.Get().(*qAct)
	quantizeAct(a, x, quant.QK, false)
	switch {
	case w.Type == QQ6K:
		a.setSum4()
	case w.X16 && w.Type == QQ4K:
		a.setDxSums()
	case w.X16:
		a.setNegSums(x16Offset(w.Type))
	case k.negSums && w.Type == QQ4_0:
		a.setNegSums(1)
	}
	return a
}

func qmatvecsRows(g *qmvsArgs, lo, hi int) {
	lo, hi = lo*g.unit, hi*g.unit
	off := 0
	for i := range g.nw {
		w := g.ws[i]
		r0, r1 := max(lo, off), min(hi, off+w.Rows)
		if r0 < r1 {
			one := qmmArgs{k: g.k, w: w, a: g.a, x: g.x, y: g.ys[i]}
			qmatvecRows(&one, r0-off, r1-off)
		}
		off += w.Rows
	}
}

func qmatvecSwiGLURows(g *qmvsArgs, lo, hi int) {
	lo, hi = lo*g.unit, hi*g.unit
	for i := range 2 {
		one := qmmArgs{k: g.k, w: g.ws[i], a: g.a, x: g.x, y: g.ys[i]}
		qmatvecRows(&one, lo, hi)
	}
	vSwiGLU(g.swiglu[lo:hi], g.ys[0][lo:hi], g.ys[1][lo:hi])
}
