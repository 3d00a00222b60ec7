// Package nn records differentiable operations on a tape and runs their
// hand-written backward kernels in reverse; it also provides AdamW.
package nn

import (
	"fmt"
	"math"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/tensor"
)

// Var is a tensor with an optional gradient of the same size. A Var whose
// Grad is nil takes no part in the backward pass.
//
// The gradient of a Var made by an op on a recording tape is not zeroed when
// it is allocated: the first backward kernel that writes it overwrites it
// (or zeroes it just before accumulating, while it is in cache). So after
// Backward, the gradient of an intermediate Var that nothing depended on is
// undefined; parameters' gradients always accumulate.
type Var struct {
	tensor.Tensor
	Grad []float32

	root *Var // the Var whose gradient memory this one views (Reshape); nil: itself
	lazy bool // on the root: Grad has not been written yet and is logically zero
}

// owner returns the Var that holds v's gradient state.
func (v *Var) owner() *Var {
	if v.root != nil {
		return v.root
	}
	return v
}

// accGrad returns v's gradient ready to be accumulated into (zeroed first if
// nothing has written it yet), or nil when v has none.
func accGrad(v *Var) []float32 {
	if v.Grad == nil {
		return nil
	}
	if o := v.owner(); o.lazy {
		clear(o.Grad)
		o.lazy = false
	}
	return v.Grad
}

// freshGrad reports whether nothing has written v's gradient yet, and marks
// it written: when it returns true the caller must overwrite all of it.
func freshGrad(v *Var) bool {
	if o := v.owner(); o.lazy {
		o.lazy = false
		return true
	}
	return false
}

// dead reports whether y's gradient was never written: an op whose output
// gradient is (logically) zero contributes nothing to its inputs.
func dead(y *Var) bool { return y.Grad != nil && y.owner().lazy }

// NewParam wraps data and grad slices (views into a model's flat buffers).
func NewParam(data, grad []float32, shape ...int) *Var {
	v := &Var{Tensor: *tensor.From(data, shape...)}
	v.Grad = grad
	return v
}

// Const wraps data that needs no gradient.
func Const(data []float32, shape ...int) *Var {
	return &Var{Tensor: *tensor.From(data, shape...)}
}

// Tape records the ops run through it, one small record per op (no
// closures), and runs their backward kernels in reverse. A Tape with Grad
// false records nothing and allocates no gradients (inference).
//
// A recording tape (Grad true) takes every output, gradient and saved
// statistic from an arena that it keeps from step to step, and its Vars from
// a slab: after the first step of a given shape, a training step allocates
// nothing. The price is a lifetime rule: what ops return on a recording tape
// is valid until Reset, or until the first op run after Backward (which
// starts a new step by itself).
type Tape struct {
	P    *cpu.Pool
	Grad bool
	// Arena makes an inference tape (Grad false) take op outputs from its
	// arena too, so that repeated forward passes of one shape allocate
	// (and fault in, and zero) no memory: what ops return is then valid
	// until Reset, which the caller runs before each pass.
	Arena bool

	ops     []op
	mem     arena       // float32 memory of the current step
	ints    slab[int32] // int32 memory of the current step
	ptrs    slab[*Var]  // Var lists saved by ops
	vars    varSlab     // Vars of the current step
	spent   bool        // Backward ran: the next op starts a new step
	scratch map[any]any
}

// NewTape returns a tape that records gradients when grad is true.
func NewTape(p *cpu.Pool, grad bool) *Tape {
	if p == nil {
		p = cpu.Default()
	}
	return &Tape{P: p, Grad: grad}
}

// Reset forgets recorded ops and recycles the step's memory, so the tape can
// be reused for the next step. Vars returned before Reset must not be used
// after it.
func (tp *Tape) Reset() {
	clear(tp.ops)
	tp.ops = tp.ops[:0]
	tp.mem.reset()
	tp.ints.reset()
	tp.ptrs.reset()
	tp.vars.reset()
	tp.spent = false
}

// Backward seeds d(loss)=1 and runs every recorded backward in reverse order.
// loss must be a scalar produced on this tape.
func (tp *Tape) Backward(loss *Var) error {
	if loss.Len() != 1 {
		return fmt.Errorf("backward: loss must be a scalar, has shape %v", loss.Shape)
	}
	if loss.Grad == nil {
		return fmt.Errorf("backward: loss does not depend on any parameter")
	}
	accGrad(loss)[0] = 1
	tp.runBackward()
	tp.spent = true
	return nil
}

// runBackward runs the recorded ops' backward kernels in reverse and forgets
// them.
func (tp *Tape) runBackward() {
	for i := len(tp.ops) - 1; i >= 0; i-- {
		tp.backward(&tp.ops[i])
	}
	clear(tp.ops)
	tp.ops = tp.ops[:0]
}

// Int32s returns n int32s (not zeroed) that live as long as the step's Vars
// (heap memory on a tape that does not record). Models use it for per-step
// index buffers such as positions.
func (tp *Tape) Int32s(n int) []int32 {
	tp.begin()
	if !tp.Grad {
		return make([]int32, n)
	}
	return tp.ints.alloc(n)
}

// Scratch returns the value kept on the tape under key, made by newFn on
// first use. Models keep per-step bookkeeping there so that a training step
// allocates nothing after the first; the value is shared by every step run on
// this tape (it is not reset).
func (tp *Tape) Scratch(key any, newFn func() any) any {
	if v, ok := tp.scratch[key]; ok {
		return v
	}
	if tp.scratch == nil {
		tp.scratch = map[any]any{}
	}
	v := newFn()
	tp.scratch[key] = v
	return v
}

// begin starts a new step if Backward has run since the last op.
func (tp *Tape) begin() {
	if tp.spent {
		tp.Reset()
	}
}

// Floats returns n float32s for the current step whose contents are
// undefined: the caller writes every one (an op implemented outside nn).
// They follow the tape's lifetime rule (see Arena).
func (tp *Tape) Floats(n int) []float32 { return tp.floats(n, false) }

// floats returns n float32s for the current step, zeroed when zero is set.
func (tp *Tape) floats(n int, zero bool) []float32 {
	if !tp.Grad && !tp.Arena {
		return make([]float32, n)
	}
	s := tp.mem.alloc(n)
	if zero {
		clear(s)
	} else if arenaPoison {
		nan := float32(math.NaN())
		for i := range s {
			s[i] = nan
		}
	}
	return s
}

// arenaPoison fills memory handed out unzeroed with NaN, so that tests catch
// a kernel that reads what it has not written (a gradient accumulated before
// it was initialized, say). Only tests set it.
var arenaPoison bool

// newVar returns a Var of the given shape over data (and grad).
func (tp *Tape) newVar(data, grad []float32, shape []int) *Var {
	if !tp.Grad && !tp.Arena || len(shape) > len(varSlot{}.shape) {
		return &Var{Tensor: tensor.Tensor{Shape: append([]int(nil), shape...), Data: data}, Grad: grad}
	}
	s := tp.vars.get()
	n := copy(s.shape[:], shape)
	s.v = Var{Tensor: tensor.Tensor{Shape: s.shape[:n:n], Data: data}, Grad: grad}
	return &s.v
}

// out allocates an op's output, zeroed when zero is set; it gets a gradient
// (lazy: see Var) when the tape records and any input has one.
func (tp *Tape) out(shape []int, zero bool, inputs ...*Var) *Var {
	tp.begin()
	n := tensor.Numel(shape)
	var grad []float32
	if tp.Grad {
		for _, in := range inputs {
			if in != nil && in.Grad != nil {
				grad = tp.floats(n, false)
				break
			}
		}
	}
	v := tp.newVar(tp.floats(n, zero), grad, shape)
	v.lazy = grad != nil
	return v
}

// scratchFor returns v's gradient ready to accumulate into, or zeroed
// scratch memory of its size when v has none (some backward kernels always
// write an input gradient).
func (tp *Tape) scratchFor(v *Var) []float32 {
	if v.Grad != nil {
		return accGrad(v)
	}
	return tp.floats(v.Len(), true)
}

// record appends an op whose output is o.y, if o.y has a gradient.
func (tp *Tape) record(o op) {
	if o.y.Grad != nil {
		tp.ops = append(tp.ops, o)
	}
}

// recordFunc records an op whose backward is an arbitrary function (tests use
// it to tamper with gradients).
func (tp *Tape) recordFunc(y *Var, fn func()) {
	tp.begin()
	tp.record(op{kind: opFunc, y: y, fn: fn})
}

// arena hands out float32 memory for one step. After a step that did not fit
// (the first), the next Reset replaces it by one block as large as that step
// needed, so later steps of the same shape allocate nothing.
type arena struct {
	buf   []float32
	off   int
	need  int
	spill [][]float32
}

// arenaAlign keeps every allocation 64-byte aligned (the buffer's start is).
const arenaAlign = 16

func (a *arena) alloc(n int) []float32 {
	m := (n + arenaAlign - 1) &^ (arenaAlign - 1)
	a.need += m
	if a.off+m <= len(a.buf) {
		s := a.buf[a.off : a.off+n : a.off+n]
		a.off += m
		return s
	}
	s := make([]float32, m)
	a.spill = append(a.spill, s)
	return s[:n:n]
}

func (a *arena) reset() {
	if len(a.spill) > 0 {
		clear(a.spill)
		a.spill = a.spill[:0]
		a.buf = nil // let the old block go before the larger one is made
		a.buf = make([]float32, a.need)
	}
	a.off, a.need = 0, 0
}

// slab hands out memory for one step like arena, for other element types.
type slab[T any] struct {
	buf   []T
	off   int
	need  int
	spill bool
}

func (a *slab[T]) alloc(n int) []T {
	a.need += n
	if a.off+n <= len(a.buf) {
		s := a.buf[a.off : a.off+n : a.off+n]
		a.off += n
		return s
	}
	a.spill = true
	return make([]T, n)
}

func (a *slab[T]) reset() {
	clear(a.buf[:a.off]) // drop references held by pointer elements
	if a.spill {
		a.buf = make([]T, a.need)
		a.spill = false
	}
	a.off, a.need = 0, 0
}

// varSlot is a Var with room for its shape.
type varSlot struct {
	v     Var
	shape [4]int
}

// varSlab hands out Vars in blocks that never move.
type varSlab struct {
	blocks [][]varSlot
	n      int
}

const varBlock = 256

func (s *varSlab) get() *varSlot {
	b, i := s.n/varBlock, s.n%varBlock
	if b == len(s.blocks) {
		s.blocks = append(s.blocks, make([]varSlot, varBlock))
	}
	s.n++
	return &s.blocks[b][i]
}

func (s *varSlab) reset() {
	for b := 0; b*varBlock < s.n; b++ {
		clear(s.blocks[b][:min(varBlock, s.n-b*varBlock)])
	}
	s.n = 0
}
