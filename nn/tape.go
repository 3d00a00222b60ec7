// Package nn records differentiable operations on a tape and runs their
// hand-written backward kernels in reverse; it also provides AdamW.
package nn

import (
	"fmt"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/tensor"
)

// Var is a tensor with an optional gradient of the same size. A Var whose
// Grad is nil takes no part in the backward pass.
type Var struct {
	tensor.Tensor
	Grad []float32
}

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

// Tape records the backward closures of the ops run through it. A Tape with
// Grad false records nothing and allocates no gradients (inference).
type Tape struct {
	P    *cpu.Pool
	Grad bool
	back []func()
}

// NewTape returns a tape that records gradients when grad is true.
func NewTape(p *cpu.Pool, grad bool) *Tape {
	if p == nil {
		p = cpu.Default()
	}
	return &Tape{P: p, Grad: grad}
}

// Reset forgets recorded ops so the tape can be reused for the next step.
func (tp *Tape) Reset() { tp.back = tp.back[:0] }

// Backward seeds d(loss)=1 and runs every recorded backward in reverse order.
// loss must be a scalar produced on this tape.
func (tp *Tape) Backward(loss *Var) error {
	if loss.Len() != 1 {
		return fmt.Errorf("backward: loss must be a scalar, has shape %v", loss.Shape)
	}
	if loss.Grad == nil {
		return fmt.Errorf("backward: loss does not depend on any parameter")
	}
	loss.Grad[0] = 1
	for i := len(tp.back) - 1; i >= 0; i-- {
		tp.back[i]()
	}
	tp.back = tp.back[:0]
	return nil
}

// out allocates an op's output; it gets a gradient when the tape records and
// any input has one.
func (tp *Tape) out(shape []int, inputs ...*Var) *Var {
	v := &Var{Tensor: *tensor.New(shape...)}
	if tp.Grad {
		for _, in := range inputs {
			if in != nil && in.Grad != nil {
				v.Grad = make([]float32, v.Len())
				break
			}
		}
	}
	return v
}

func (tp *Tape) record(v *Var, f func()) {
	if v.Grad != nil {
		tp.back = append(tp.back, f)
	}
}

func withLast(shape []int, last int) []int {
	s := append([]int(nil), shape...)
	s[len(s)-1] = last
	return s
}
