package cuda

import (
	"fmt"
	"math"
	"slices"
)

// Launch shapes. Grid-stride kernels run blocks of blockThreads threads,
// at most maxGrid blocks; row kernels run one block per row.
const blockThreads = 256

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// grid1 is the grid for a grid-stride kernel over n elements.
func (d *Device) grid1(n int) dim3 {
	return dim3{uint32(max(1, min(ceilDiv(n, blockThreads), d.maxGrid))), 1, 1}
}

var block1 = dim3{blockThreads, 1, 1}

// rowBlock is the block for a kernel with one block per row of d
// elements: a whole number of warps, at most 512 threads (a 1024-thread
// block cannot launch if its kernel needs more than 64 registers a thread;
// 512 leaves 128).
func rowBlock(d int) dim3 {
	return dim3{uint32(min(512, max(32, ceilDiv(d, 32)*32))), 1, 1}
}

// colBlock is the block for kernels with one thread per column.
func colBlock(d int) dim3 {
	return dim3{uint32(min(blockThreads, max(32, ceilDiv(d, 32)*32))), 1, 1}
}

// --- activations ---

// SwiGLUForward computes out = silu(g) * u elementwise.
func (d *Device) SwiGLUForward(out, g, u *Buffer) error {
	c := d.check("swiglu forward")
	c.actBuf("out", out, -1)
	if c.err != nil {
		return c.err
	}
	n := out.n
	c.actBuf("g", g, n)
	c.actBuf("u", u, n)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("swiglu_fwd"), d.grid1(n), block1, 0, argBuf(out), argBuf(g), argBuf(u), argI64(int64(n)))
	})
}

// SwiGLUBackward accumulates dg and du from dout.
func (d *Device) SwiGLUBackward(dg, du, dout, g, u *Buffer) error {
	c := d.check("swiglu backward")
	c.actBuf("dout", dout, -1)
	if c.err != nil {
		return c.err
	}
	n := dout.n
	for _, b := range []struct {
		name string
		b    *Buffer
	}{{"dg", dg}, {"du", du}, {"g", g}, {"u", u}} {
		c.actBuf(b.name, b.b, n)
	}
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("swiglu_bwd"), d.grid1(n), block1, 0, argBuf(dg), argBuf(du), argBuf(dout), argBuf(g), argBuf(u), argI64(int64(n)))
	})
}

func boolInt(b bool) arg {
	if b {
		return argI32(1)
	}
	return argI32(0)
}

// GELUForward applies GELU: the tanh approximation when approx, else erf.
func (d *Device) GELUForward(out, x *Buffer, approx bool) error {
	c := d.check("gelu forward")
	c.actBuf("out", out, -1)
	if c.err != nil {
		return c.err
	}
	n := out.n
	c.actBuf("x", x, n)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("gelu_fwd"), d.grid1(n), block1, 0, argBuf(out), argBuf(x), argI64(int64(n)), boolInt(approx))
	})
}

// GELUBackward accumulates dx from dout.
func (d *Device) GELUBackward(dx, dout, x *Buffer, approx bool) error {
	c := d.check("gelu backward")
	c.actBuf("dx", dx, -1)
	if c.err != nil {
		return c.err
	}
	n := dx.n
	c.actBuf("dout", dout, n)
	c.actBuf("x", x, n)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("gelu_bwd"), d.grid1(n), block1, 0, argBuf(dx), argBuf(dout), argBuf(x), argI64(int64(n)), boolInt(approx))
	})
}

// Add computes y = a + b elementwise (y may be a or b).
func (d *Device) Add(y, a, b *Buffer) error {
	c := d.check("add")
	c.actBuf("y", y, -1)
	if c.err != nil {
		return c.err
	}
	n := y.n
	c.actBuf("a", a, n)
	c.actBuf("b", b, n)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("add"), d.grid1(n), block1, 0, argBuf(y), argBuf(a), argBuf(b), argI64(int64(n)))
	})
}

// Axpy computes y += alpha*x elementwise.
func (d *Device) Axpy(y, x *Buffer, alpha float32) error {
	c := d.check("axpy")
	c.actBuf("y", y, -1)
	if c.err != nil {
		return c.err
	}
	n := y.n
	c.actBuf("x", x, n)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("axpy"), d.grid1(n), block1, 0, argBuf(y), argBuf(x), argF32(alpha), argI64(int64(n)))
	})
}

// Scale computes x *= s elementwise.
func (d *Device) Scale(x *Buffer, s float32) error {
	c := d.check("scale")
	c.actBuf("x", x, -1)
	if c.err != nil {
		return c.err
	}
	n := x.n
	return d.run(func() error {
		return d.launch(c.variant("scale"), d.grid1(n), block1, 0, argBuf(x), argF32(s), argI64(int64(n)))
	})
}

// ScaleRows computes y[i, :] = x[i, :] * s[i] for rows of d (y may be x;
// s is f32 [n]): nn.ScaleRows.
func (d *Device) ScaleRows(y, x, s *Buffer, n, dim int) error {
	c := d.check("scale rows")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("y", y, n*dim)
	c.actBuf("x", x, n*dim)
	c.buf("s", s, n, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("scale_rows"), d.grid1(n*dim), block1, 0, argBuf(y), argBuf(x), argBuf(s), argI64(int64(n)), argI32(int32(dim)))
	})
}

// RowDot writes out[i] = Σ_j a[i, j]·b[i, j] (out f32 [n]): the gate
// gradient of nn.ScaleRows.
func (d *Device) RowDot(out, a, b *Buffer, n, dim int) error {
	c := d.check("row dot")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("a", a, n*dim)
	c.actBuf("b", b, n*dim)
	c.buf("out", out, n, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("row_dot"), dim3{uint32(n), 1, 1}, rowBlock(dim), 0, argBuf(out), argBuf(a), argBuf(b), argI32(int32(n)), argI32(int32(dim)))
	})
}

// BiasAdd adds b [d] to every row of y [n, d].
func (d *Device) BiasAdd(y, b *Buffer, n, dim int) error {
	c := d.check("bias add")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("y", y, n*dim)
	c.buf("b", b, dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("bias_add"), d.grid1(n*dim), block1, 0, argBuf(y), argBuf(b), argI64(int64(n)), argI32(int32(dim)))
	})
}

// BiasGrad accumulates into db [d] the column sums of dy [n, d], in a
// fixed order (deterministic).
func (d *Device) BiasGrad(db, dy *Buffer, n, dim int) error {
	c := d.check("bias grad")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("dy", dy, n*dim)
	c.buf("db", db, dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		chunks, rpb := d.rowChunks(n)
		part, err := d.alloc(F32, chunks*dim)
		if err != nil {
			return err
		}
		defer d.free(part)
		cb := colBlock(dim)
		grid := dim3{uint32(chunks), uint32(ceilDiv(dim, int(cb[0]))), 1}
		if err := d.launch(c.variant("colsum_partial"), grid, cb, 0, argBuf(part), argBuf(dy), argI32(int32(n)), argI32(int32(dim)), argI32(int32(rpb))); err != nil {
			return err
		}
		return d.colsumAdd(db, part, chunks, dim)
	})
}

// rowChunks splits n rows into chunks for the deterministic two-pass
// column reductions: a few chunks per SM, each of rpb rows.
func (d *Device) rowChunks(n int) (chunks, rpb int) {
	want := max(1, min(n, 4*max(1, d.info.SMs)))
	rpb = ceilDiv(n, want)
	return ceilDiv(n, rpb), rpb
}

// colsumAdd adds the chunk rows of part [chunks, d] to dst, in order.
func (d *Device) colsumAdd(dst, part *Buffer, chunks, dim int) error {
	cb := colBlock(dim)
	return d.launch("colsum_add", dim3{uint32(ceilDiv(dim, int(cb[0]))), 1, 1}, cb, 0, argBuf(dst), argBuf(part), argI32(int32(chunks)), argI32(int32(dim)))
}

// SoftmaxForward computes a row-wise softmax over n rows of width d.
func (d *Device) SoftmaxForward(out, x *Buffer, n, dim int) error {
	c := d.check("softmax forward")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("out", out, n*dim)
	c.actBuf("x", x, n*dim)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("softmax_fwd"), dim3{uint32(n), 1, 1}, rowBlock(dim), 0, argBuf(out), argBuf(x), argI32(int32(n)), argI32(int32(dim)))
	})
}

// SoftmaxBackward accumulates dx = y*(dy - sum(dy*y)).
func (d *Device) SoftmaxBackward(dx, dout, y *Buffer, n, dim int) error {
	c := d.check("softmax backward")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("dx", dx, n*dim)
	c.actBuf("dout", dout, n*dim)
	c.actBuf("y", y, n*dim)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("softmax_bwd"), dim3{uint32(n), 1, 1}, rowBlock(dim), 0, argBuf(dx), argBuf(dout), argBuf(y), argI32(int32(n)), argI32(int32(dim)))
	})
}

// CrossEntropyForward computes per-row losses -log softmax(logits)[target]
// over rows of v logits and keeps each row's log-sum-exp. A negative target
// ignores its row (loss 0); a target >= v gives a NaN loss. Unlike the CPU
// kernel it does not return the count of counted rows: targets live on the
// device (count them on the host, where they come from).
func (d *Device) CrossEntropyForward(losses, lse, logits, targets *Buffer, n, v int) error {
	c := d.check("cross-entropy forward")
	c.positive("n", n)
	c.positive("v", v)
	c.actBuf("logits", logits, n*v)
	c.buf("losses", losses, n, F32)
	c.buf("lse", lse, n, F32)
	c.buf("targets", targets, n, I32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("xent_fwd"), dim3{uint32(n), 1, 1}, rowBlock(v), 0, argBuf(losses), argBuf(lse), argBuf(logits), argBuf(targets), argI32(int32(n)), argI32(int32(v)))
	})
}

// CrossEntropyBackward accumulates dlogits += scale*(softmax - onehot) for
// rows whose target is not negative.
func (d *Device) CrossEntropyBackward(dlogits, logits, lse, targets *Buffer, n, v int, scale float32) error {
	c := d.check("cross-entropy backward")
	c.positive("n", n)
	c.positive("v", v)
	c.actBuf("dlogits", dlogits, n*v)
	c.actBuf("logits", logits, n*v)
	c.buf("lse", lse, n, F32)
	c.buf("targets", targets, n, I32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("xent_bwd"), dim3{uint32(n), 1, 1}, rowBlock(v), 0, argBuf(dlogits), argBuf(logits), argBuf(lse), argBuf(targets), argI32(int32(n)), argI32(int32(v)), argF32(scale))
	})
}

// CountTargets returns how many targets are not negative: the divisor of
// the mean loss (nn.CrossEntropy's count).
func CountTargets(targets []int32) int {
	n := 0
	for _, t := range targets {
		if t >= 0 {
			n++
		}
	}
	return n
}

// --- norms ---

// RMSNormForward computes out = x / rms(x) * w over n rows of width d and
// keeps the reciprocal RMS per row in rstd (may be nil).
func (d *Device) RMSNormForward(out, rstd, x, w *Buffer, n, dim int, eps float32) error {
	return d.rmsNormForward("rmsnorm forward", out, rstd, nil, x, nil, w, n, dim, eps)
}

// AddRMSNormForward fuses the residual add: sum = x + x2 (stored), then
// out = RMSNorm(sum). The backward takes sum as its x.
func (d *Device) AddRMSNormForward(sum, out, rstd, x, x2, w *Buffer, n, dim int, eps float32) error {
	if sum == nil || x2 == nil {
		return fmt.Errorf("cuda: add+rmsnorm forward: sum and x2 are required")
	}
	return d.rmsNormForward("add+rmsnorm forward", out, rstd, sum, x, x2, w, n, dim, eps)
}

func (d *Device) rmsNormForward(op string, out, rstd, sum, x, x2, w *Buffer, n, dim int, eps float32) error {
	c := d.check(op)
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("out", out, n*dim)
	c.actBuf("x", x, n*dim)
	c.actOpt("x2", x2, n*dim)
	c.actOpt("sum", sum, n*dim)
	c.opt("rstd", rstd, n, F32)
	c.buf("w", w, dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("rmsnorm_fwd"), dim3{uint32(n), 1, 1}, rowBlock(dim), 0,
			argBuf(out), argBuf(rstd), argBuf(sum), argBuf(x), argBuf(x2), argBuf(w), argI32(int32(n)), argI32(int32(dim)), argF32(eps))
	})
}

// RMSNormBackward accumulates dx and dw (dw may be nil for a fixed weight).
// rstd comes from the forward.
func (d *Device) RMSNormBackward(dx, dw, dout, x, w, rstd *Buffer, n, dim int) error {
	c := d.check("rmsnorm backward")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("dx", dx, n*dim)
	c.actBuf("dout", dout, n*dim)
	c.actBuf("x", x, n*dim)
	c.buf("w", w, dim, F32)
	c.opt("dw", dw, dim, F32)
	c.buf("rstd", rstd, n, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		chunks, rpb := d.rowChunks(n)
		var part *Buffer
		if dw != nil {
			var err error
			if part, err = d.alloc(F32, chunks*dim); err != nil {
				return err
			}
			defer d.free(part)
		}
		err := d.launch(c.variant("rmsnorm_bwd"), dim3{uint32(chunks), 1, 1}, rowBlock(dim), dim*4,
			argBuf(dx), argBuf(part), argBuf(dout), argBuf(x), argBuf(w), argBuf(rstd), argI32(int32(n)), argI32(int32(dim)), argI32(int32(rpb)))
		if err != nil || dw == nil {
			return err
		}
		return d.colsumAdd(dw, part, chunks, dim)
	})
}

// LayerNormForward computes out = (x-mean)/std * w + b over n rows of width
// d, keeping mean and reciprocal std per row. b may be nil.
func (d *Device) LayerNormForward(out, mean, rstd, x, w, b *Buffer, n, dim int, eps float32) error {
	return d.layerNormForward("layernorm forward", out, mean, rstd, nil, x, nil, w, b, n, dim, eps)
}

// AddLayerNormForward fuses the residual add: sum = x + x2 (stored), then
// out = LayerNorm(sum). The backward takes sum as its x.
func (d *Device) AddLayerNormForward(sum, out, mean, rstd, x, x2, w, b *Buffer, n, dim int, eps float32) error {
	if sum == nil || x2 == nil {
		return fmt.Errorf("cuda: add+layernorm forward: sum and x2 are required")
	}
	return d.layerNormForward("add+layernorm forward", out, mean, rstd, sum, x, x2, w, b, n, dim, eps)
}

func (d *Device) layerNormForward(op string, out, mean, rstd, sum, x, x2, w, b *Buffer, n, dim int, eps float32) error {
	c := d.check(op)
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("out", out, n*dim)
	c.actBuf("x", x, n*dim)
	c.actOpt("x2", x2, n*dim)
	c.actOpt("sum", sum, n*dim)
	c.buf("mean", mean, n, F32)
	c.buf("rstd", rstd, n, F32)
	c.buf("w", w, dim, F32)
	c.opt("b", b, dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("layernorm_fwd"), dim3{uint32(n), 1, 1}, rowBlock(dim), 0,
			argBuf(out), argBuf(mean), argBuf(rstd), argBuf(sum), argBuf(x), argBuf(x2), argBuf(w), argBuf(b), argI32(int32(n)), argI32(int32(dim)), argF32(eps))
	})
}

// LayerNormBackward accumulates dx, dw and db (dw and db may be nil).
func (d *Device) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *Buffer, n, dim int) error {
	c := d.check("layernorm backward")
	c.positive("n", n)
	c.positive("d", dim)
	c.actBuf("dx", dx, n*dim)
	c.actBuf("dout", dout, n*dim)
	c.actBuf("x", x, n*dim)
	c.buf("w", w, dim, F32)
	c.opt("dw", dw, dim, F32)
	c.opt("db", db, dim, F32)
	c.buf("mean", mean, n, F32)
	c.buf("rstd", rstd, n, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		chunks, rpb := d.rowChunks(n)
		var pw, pb *Buffer
		var err error
		if dw != nil {
			if pw, err = d.alloc(F32, chunks*dim); err != nil {
				return err
			}
			defer d.free(pw)
		}
		if db != nil {
			if pb, err = d.alloc(F32, chunks*dim); err != nil {
				return err
			}
			defer d.free(pb)
		}
		err = d.launch(c.variant("layernorm_bwd"), dim3{uint32(chunks), 1, 1}, rowBlock(dim), 2*dim*4,
			argBuf(dx), argBuf(pw), argBuf(pb), argBuf(dout), argBuf(x), argBuf(w), argBuf(mean), argBuf(rstd), argI32(int32(n)), argI32(int32(dim)), argI32(int32(rpb)))
		if err != nil {
			return err
		}
		if dw != nil {
			if err := d.colsumAdd(dw, pw, chunks, dim); err != nil {
				return err
			}
		}
		if db != nil {
			return d.colsumAdd(db, pb, chunks, dim)
		}
		return nil
	})
}

// --- RoPE ---

// RoPE rotates the first Rot dimensions of every head of x [N, Heads, D] in
// the Hugging Face "rotate half" convention, as backend/cpu's RoPE. Cos and
// Sin are f32 tables [maxPos, Rot/2] on the device; positions (i32, one per
// row) must be below maxPos.
type RoPE struct {
	Heads, D, Rot int
	Cos, Sin      *Buffer
}

func (r *RoPE) check(c *argCheck, pos *Buffer) {
	c.positive("heads", r.Heads)
	c.positive("d", r.D)
	if c.err == nil && (r.Rot <= 0 || r.Rot%2 != 0 || r.Rot > r.D) {
		c.fail("rot = %d, must be even and in (0, d=%d]", r.Rot, r.D)
	}
	c.buf("cos", r.Cos, -1, F32)
	c.buf("sin", r.Sin, -1, F32)
	if c.err == nil && r.Cos.n != r.Sin.n {
		c.fail("cos has %d elements, sin %d", r.Cos.n, r.Sin.n)
	}
	if c.err == nil && r.Cos.n%(r.Rot/2) != 0 {
		c.fail("cos has %d elements, not a multiple of rot/2 = %d", r.Cos.n, r.Rot/2)
	}
	c.buf("pos", pos, -1, I32)
}

// RoPEForward writes out = rotate(x) for rows at the positions pos.
func (d *Device) RoPEForward(r *RoPE, out, x, pos *Buffer) error {
	return d.rope("rope forward", "out", "x", r, out, x, pos, 1, false)
}

// RoPEBackward accumulates dx += rotate⁻¹(dout).
func (d *Device) RoPEBackward(r *RoPE, dx, dout, pos *Buffer) error {
	return d.rope("rope backward", "dx", "dout", r, dx, dout, pos, -1, true)
}

// rope launches the rotation of src into dst (by the angle's sign;
// accumulating when acc is set), checking the buffers under their names.
func (d *Device) rope(op, dstName, srcName string, r *RoPE, dst, src, pos *Buffer, sign float32, acc bool) error {
	c := d.check(op)
	r.check(c, pos)
	if c.err != nil {
		return c.err
	}
	n := pos.n
	w := n * r.Heads * r.D
	c.actBuf(dstName, dst, w)
	c.actBuf(srcName, src, w)
	if c.err == nil && dst.ptr == src.ptr {
		c.fail("%s and %s are the same memory (rotating in place is not supported)", dstName, srcName)
	}
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("rope"), d.grid1(w), block1, 0, argBuf(dst), argBuf(src), argBuf(r.Cos), argBuf(r.Sin), argBuf(pos),
			argI32(int32(n)), argI32(int32(r.Heads)), argI32(int32(r.D)), argI32(int32(r.Rot)), argF32(sign), boolInt(acc))
	})
}

// --- embedding ---

// EmbedIndex is one batch's token ids on the device, with the grouping the
// deterministic embedding backward needs (positions sorted by id). Build it
// once per batch with NewEmbedIndex; Free it after the step.
type EmbedIndex struct {
	N, Vocab int
	nseg     int
	ids      *Buffer // [N]
	order    *Buffer // [N] positions sorted by id, stably
	segStart *Buffer // [nseg+1]
	segID    *Buffer // [nseg]
	dev      *Device
}

// NewEmbedIndex uploads ids (each in [0, vocab)) and their grouping.
func (d *Device) NewEmbedIndex(ids []int32, vocab int) (*EmbedIndex, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("cuda: embedding index: no ids")
	}
	if vocab <= 0 {
		return nil, fmt.Errorf("cuda: embedding index: vocab = %d", vocab)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("cuda: embedding index: id %d at position %d is outside [0, %d)", id, i, vocab)
		}
	}
	order, segStart, segID := groupIDs(ids)
	x := &EmbedIndex{N: len(ids), Vocab: vocab, nseg: len(segID), dev: d}
	var err error
	for _, u := range []struct {
		dst **Buffer
		src []int32
	}{{&x.ids, ids}, {&x.order, order}, {&x.segStart, segStart}, {&x.segID, segID}} {
		if *u.dst, err = d.FromHost(I32, u.src); err != nil {
			x.Free()
			return nil, err
		}
	}
	return x, nil
}

// groupIDs returns the positions of ids sorted by id (stable), the start of
// each id's run in that order (with a final end), and each run's id.
func groupIDs(ids []int32) (order, segStart, segID []int32) {
	order = make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return int(ids[a]) - int(ids[b]) })
	for k, p := range order {
		if k == 0 || ids[p] != ids[order[k-1]] {
			segStart = append(segStart, int32(k))
			segID = append(segID, ids[p])
		}
	}
	segStart = append(segStart, int32(len(ids)))
	return order, segStart, segID
}

// Free releases the index's device buffers.
func (x *EmbedIndex) Free() error {
	err := x.dev.Free(x.ids, x.order, x.segStart, x.segID)
	x.ids, x.order, x.segStart, x.segID = nil, nil, nil, nil
	return err
}

// EmbeddingForward looks up rows of w [vocab, d] (f32) for the index's ids,
// giving out [N, d].
func (d *Device) EmbeddingForward(out, w *Buffer, x *EmbedIndex, dim int) error {
	c := d.check("embedding forward")
	c.positive("d", dim)
	if x == nil || x.ids == nil {
		c.fail("no index")
	}
	if c.err != nil {
		return c.err
	}
	c.actBuf("out", out, x.N*dim)
	c.buf("w", w, x.Vocab*dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		return d.launch(c.variant("embedding_fwd"), d.grid1(x.N*dim), block1, 0, argBuf(out), argBuf(w), argBuf(x.ids),
			argI32(int32(x.N)), argI32(int32(dim)), argI32(int32(x.Vocab)))
	})
}

// EmbeddingBackward accumulates dout's rows into dw (f32) at the index's
// ids, summing repeated ids in position order: no atomics, deterministic.
func (d *Device) EmbeddingBackward(dw, dout *Buffer, x *EmbedIndex, dim int) error {
	c := d.check("embedding backward")
	c.positive("d", dim)
	if x == nil || x.ids == nil {
		c.fail("no index")
	}
	if c.err != nil {
		return c.err
	}
	c.actBuf("dout", dout, x.N*dim)
	c.buf("dw", dw, x.Vocab*dim, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		cb := colBlock(dim)
		grid := dim3{uint32(x.nseg), uint32(ceilDiv(dim, int(cb[0]))), 1}
		return d.launch(c.variant("embedding_bwd"), grid, cb, 0, argBuf(dw), argBuf(dout), argBuf(x.order), argBuf(x.segStart), argBuf(x.segID),
			argI32(int32(x.nseg)), argI32(int32(dim)))
	})
}

// --- attention ---

// Attn describes a causal multi-head attention problem with grouped-query
// heads, as backend/cpu's Attn: queries [B, Tq, H, D], keys and values
// [B, Tk, KV, D] with KStride elements between batch entries, query t at
// position Offset+t attending to keys at positions <= its own (and within
// Window when Window > 0). Start, when not nil, is an i32 buffer [B*Tq]
// holding each query's first visible key (packed documents).
type Attn struct {
	B, Tq, Tk, H, KV, D int
	KStride             int
	Offset              int
	Window              int
	Scale               float32
	Start               *Buffer
}

// attnMaxD is the largest head dimension the kernels take (ATTN_MAXD).
const attnMaxD = 256

// attnRows is ATTN_ROWS: query (or key) rows per block, one per warp.
const attnRows = 4

func (a *Attn) check(c *argCheck) {
	for _, p := range []struct {
		name string
		v    int
	}{{"B", a.B}, {"Tq", a.Tq}, {"Tk", a.Tk}, {"H", a.H}, {"KV", a.KV}, {"D", a.D}} {
		c.positive(p.name, p.v)
	}
	switch {
	case c.err != nil:
	case a.H%a.KV != 0:
		c.fail("H = %d is not a multiple of KV = %d", a.H, a.KV)
	case a.D > attnMaxD:
		c.fail("head dimension %d is above the kernels' limit %d", a.D, attnMaxD)
	case a.KStride < a.Tk*a.KV*a.D:
		c.fail("KStride %d is below Tk*KV*D = %d", a.KStride, a.Tk*a.KV*a.D)
	case a.Offset < 0 || a.Window < 0:
		c.fail("Offset %d and Window %d must not be negative", a.Offset, a.Window)
	}
	c.opt("start", a.Start, a.B*a.Tq, I32)
}

func (a *Attn) sizes() (nq, nk int) {
	return a.B * a.Tq * a.H * a.D, (a.B-1)*a.KStride + a.Tk*a.KV*a.D
}

func (a *Attn) args() []arg {
	return []arg{argBuf(a.Start), argI32(int32(a.B)), argI32(int32(a.Tq)), argI32(int32(a.Tk)), argI32(int32(a.H)), argI32(int32(a.KV)),
		argI32(int32(a.D)), argI64(int64(a.KStride)), argI32(int32(a.Offset)), argI32(int32(a.Window)), argF32(a.Scale)}
}

// attnSmem returns the dynamic shared memory of the forward (fwd) or the
// backward kernels, as attention.cu lays it out.
func attnSmem(dim int, fwd bool) int {
	rows := 2 * attnRows
	if fwd {
		rows = attnRows
	}
	return (2*32*(dim+1) + rows*dim) * 4
}

// AttentionForward writes out [B,Tq,H,D] and the log-sum-exp of every score
// row, lse [B,H,Tq] (f32), which is all the backward keeps.
func (d *Device) AttentionForward(a *Attn, out, lse, q, k, v *Buffer) error {
	c := d.check("attention forward")
	a.check(c)
	if c.err != nil {
		return c.err
	}
	nq, nk := a.sizes()
	c.actBuf("q", q, nq)
	c.actBuf("out", out, nq)
	c.actBuf("k", k, nk)
	c.actBuf("v", v, nk)
	c.buf("lse", lse, a.B*a.H*a.Tq, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		grid := dim3{uint32(ceilDiv(a.Tq, attnRows)), uint32(a.H), uint32(a.B)}
		args := append([]arg{argBuf(out), argBuf(lse), argBuf(q), argBuf(k), argBuf(v)}, a.args()...)
		return d.launch(c.variant("attn_fwd"), grid, dim3{attnRows * 32, 1, 1}, attnSmem(a.D, true), args...)
	})
}

// AttentionBackward accumulates dq, dk and dv. Every gradient row has one
// writer (dk and dv are computed per key, dq per query): deterministic.
func (d *Device) AttentionBackward(a *Attn, dq, dk, dv, dout, out, lse, q, k, v *Buffer) error {
	c := d.check("attention backward")
	a.check(c)
	if c.err != nil {
		return c.err
	}
	nq, nk := a.sizes()
	for _, b := range []struct {
		name string
		b    *Buffer
		n    int
	}{{"dq", dq, nq}, {"dout", dout, nq}, {"out", out, nq}, {"q", q, nq}, {"dk", dk, nk}, {"dv", dv, nk}, {"k", k, nk}, {"v", v, nk}} {
		c.actBuf(b.name, b.b, b.n)
	}
	c.buf("lse", lse, a.B*a.H*a.Tq, F32)
	if c.err != nil {
		return c.err
	}
	return d.run(func() error {
		rows := a.B * a.H * a.Tq
		di, err := d.alloc(F32, rows)
		if err != nil {
			return err
		}
		defer d.free(di)
		pre := []arg{argBuf(di), argBuf(dout), argBuf(out), argI32(int32(a.B)), argI32(int32(a.Tq)), argI32(int32(a.H)), argI32(int32(a.D))}
		if err := d.launch(c.variant("attn_bwd_pre"), dim3{uint32(ceilDiv(rows*32, blockThreads)), 1, 1}, block1, 0, pre...); err != nil {
			return err
		}
		blk := dim3{attnRows * 32, 1, 1}
		smem := attnSmem(a.D, false)
		dqArgs := append([]arg{argBuf(dq), argBuf(dout), argBuf(lse), argBuf(di), argBuf(q), argBuf(k), argBuf(v)}, a.args()...)
		if err := d.launch(c.variant("attn_bwd_dq"), dim3{uint32(ceilDiv(a.Tq, attnRows)), uint32(a.H), uint32(a.B)}, blk, smem, dqArgs...); err != nil {
			return err
		}
		kvArgs := append([]arg{argBuf(dk), argBuf(dv), argBuf(dout), argBuf(lse), argBuf(di), argBuf(q), argBuf(k), argBuf(v)}, a.args()...)
		return d.launch(c.variant("attn_bwd_dkv"), dim3{uint32(ceilDiv(a.Tk, attnRows)), uint32(a.KV), uint32(a.B)}, blk, smem, kvArgs...)
	})
}

// --- reductions, optimizer ---

// reduceParts is the number of partial sums of the reductions: fixed, so
// that results do not depend on the device.
func reduceParts(n int) int { return max(1, min(ceilDiv(n, blockThreads), 1024)) }

// reduce queues the float64 sum (or sum of squares) of x into out[0]
// (f64) and, when outf is not nil, sum*scale into outf[0] (f32).
func (d *Device) reduce(c *argCheck, out, outf, x *Buffer, square bool, scale float64) error {
	parts := reduceParts(x.n)
	part, err := d.alloc(F64, parts)
	if err != nil {
		return err
	}
	defer d.free(part)
	if err := d.launch(c.variant("reduce_partial"), dim3{uint32(parts), 1, 1}, block1, 0, argBuf(part), argBuf(x), argI64(int64(x.n)), boolInt(square)); err != nil {
		return err
	}
	return d.launch("reduce_final", dim3{1, 1, 1}, block1, 0, argBuf(out), argBuf(outf), argBuf(part), argI32(int32(parts)), argF64(scale))
}

// Sum returns the sum of x's elements, accumulated in float64 in a fixed
// order. It waits for the result.
func (d *Device) Sum(x *Buffer) (float64, error) { return d.sum("sum", x, false) }

// SumSquares returns the sum of the squares of x's elements (float64).
func (d *Device) SumSquares(x *Buffer) (float64, error) { return d.sum("sum of squares", x, true) }

func (d *Device) sum(op string, x *Buffer, square bool) (float64, error) {
	c := d.check(op)
	c.actBuf("x", x, -1)
	if c.err != nil {
		return 0, c.err
	}
	var host [1]float64
	err := d.run(func() error {
		out, err := d.alloc(F64, 1)
		if err != nil {
			return err
		}
		defer d.free(out)
		if err := d.reduce(c, out, nil, x, square, 1); err != nil {
			return err
		}
		return d.drv.dtoh(ptrOfSlice(host[:]), out.ptr, 8)
	})
	return host[0], err
}

// LossMean writes into out[0] (f32, on the device, nothing waits) the sum of
// losses[:n] divided by count (0 when count is 0): nn.CrossEntropy's value.
func (d *Device) LossMean(out, losses *Buffer, n, count int) error {
	c := d.check("loss mean")
	c.positive("n", n)
	c.buf("out", out, 1, F32)
	c.buf("losses", losses, n, F32)
	if c.err != nil {
		return c.err
	}
	c.act = F32
	scale := 0.0
	if count > 0 {
		scale = 1 / float64(count)
	}
	return d.run(func() error {
		acc, err := d.alloc(F64, 1)
		if err != nil {
			return err
		}
		defer d.free(acc)
		view := &Buffer{ptr: losses.ptr, n: n, dtype: F32, dev: d}
		return d.reduce(c, acc, out, view, false, scale)
	})
}

// GradNorm returns the global L2 norm of grads (f32), summed in float64.
func (d *Device) GradNorm(grads *Buffer) (float64, error) {
	s, err := d.SumSquares(grads)
	return math.Sqrt(s), err
}

// ClipGrads scales grads so that their global norm is at most maxNorm (as
// nn.ClipGrads) without a host round trip before the scaling, and returns
// the norm before clipping.
func (d *Device) ClipGrads(grads *Buffer, maxNorm float64) (float64, error) {
	c := d.check("clip grads")
	c.buf("grads", grads, -1, F32)
	if c.err != nil {
		return 0, c.err
	}
	c.act = F32
	var host [1]float64
	err := d.run(func() error {
		ss, err := d.alloc(F64, 1)
		if err != nil {
			return err
		}
		defer d.free(ss)
		if err := d.reduce(c, ss, nil, grads, true, 1); err != nil {
			return err
		}
		if err := d.launch("clip_scale", d.grid1(grads.n), block1, 0, argBuf(grads), argI64(int64(grads.n)), argBuf(ss), argF64(maxNorm)); err != nil {
			return err
		}
		return d.drv.dtoh(ptrOfSlice(host[:]), ss.ptr, 8)
	})
	return math.Sqrt(host[0]), err
}

// Cast converts src into dst (f32 to bf16, rounding to nearest even as
// format/quant does, or bf16 to f32; same dtypes copy).
func (d *Device) Cast(dst, src *Buffer) error {
	c := d.check("cast")
	c.buf("src", src, -1, F32, BF16)
	if c.err != nil {
		return c.err
	}
	c.buf("dst", dst, src.n, F32, BF16)
	if c.err != nil {
		return c.err
	}
	n := src.n
	return d.run(func() error {
		switch {
		case dst.dtype == src.dtype:
			return d.drv.dtod(dst.ptr, src.ptr, src.Bytes())
		case dst.dtype == BF16:
			return d.launch("cast_f32_bf16", d.grid1(n), block1, 0, argBuf(dst), argBuf(src), argI64(int64(n)))
		default:
			return d.launch("cast_bf16_f32", d.grid1(n), block1, 0, argBuf(dst), argBuf(src), argI64(int64(n)))
		}
	})
}

// Segment is a run of the flat parameter buffer and whether weight decay
// applies to it (nn.Segment).
type Segment struct {
	Off, Len int
	Decay    bool
}

// AdamW is nn.AdamW on the device: the same arithmetic, one fused launch
// over all segments (multi-tensor), moments M and V in f32 on the device.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	M, V                           *Buffer
	Step                           int
	n                              int
	chunks                         *Buffer // i64 triples {offset, length, decay}
	nchunks                        int
	dev                            *Device
}

// adamChunk is the most elements one AdamW block updates.
const adamChunk = 1 << 14

// adamChunks cuts segments into chunks of at most adamChunk elements.
func adamChunks(segs []Segment) []int64 {
	var t []int64
	for _, s := range segs {
		decay := int64(0)
		if s.Decay {
			decay = 1
		}
		for off := 0; off < s.Len; off += adamChunk {
			t = append(t, int64(s.Off+off), int64(min(adamChunk, s.Len-off)), decay)
		}
	}
	return t
}

// NewAdamW returns an optimizer for n parameters whose segments say where
// weight decay applies; the moments start at zero.
func (d *Device) NewAdamW(n int, beta1, beta2, eps, wd float64, segs []Segment) (*AdamW, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cuda: adamw: %d parameters", n)
	}
	for i, s := range segs {
		if s.Off < 0 || s.Len < 0 || s.Off+s.Len > n {
			return nil, fmt.Errorf("cuda: adamw: segment %d [%d, %d) is outside the %d parameters", i, s.Off, s.Off+s.Len, n)
		}
	}
	table := adamChunks(segs)
	if len(table) == 0 {
		return nil, fmt.Errorf("cuda: adamw: no parameters in any segment")
	}
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: wd, n: n, nchunks: len(table) / 3, dev: d}
	var err error
	if o.M, err = d.Alloc(F32, n); err == nil {
		if o.V, err = d.Alloc(F32, n); err == nil {
			o.chunks, err = d.FromHost(I64, table)
		}
	}
	if err == nil {
		err = d.Zero(o.M)
	}
	if err == nil {
		err = d.Zero(o.V)
	}
	if err != nil {
		o.Free()
		return nil, err
	}
	return o, nil
}

// Update applies one step with learning rate lr to params using grads
// (both f32, n elements). When paramsBF16 is not nil it receives the
// updated parameters in bf16 in the same pass.
func (o *AdamW) Update(params, grads *Buffer, lr float64, paramsBF16 *Buffer) error {
	d := o.dev
	c := d.check("adamw")
	c.buf("params", params, o.n, F32)
	c.buf("grads", grads, o.n, F32)
	c.opt("paramsBF16", paramsBF16, o.n, BF16)
	if c.err != nil {
		return c.err
	}
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	return d.run(func() error {
		return d.launch("adamw_f32", dim3{uint32(o.nchunks), 1, 1}, block1, 0,
			argBuf(params), argBuf(paramsBF16), argBuf(grads), argBuf(o.M), argBuf(o.V), argBuf(o.chunks),
			argF32(float32(o.Beta1)), argF32(float32(o.Beta2)), argF32(float32(o.Eps)),
			argF32(float32(lr/bc1)), argF32(float32(math.Sqrt(bc2))), argF32(float32(1-lr*o.WeightDecay)))
	})
}

// Free releases the optimizer's device memory.
func (o *AdamW) Free() error {
	err := o.dev.Free(o.M, o.V, o.chunks)
	o.M, o.V, o.chunks = nil, nil, nil
	return err
}
