// Package tensor holds MAI's contiguous row-major tensors, their shapes and
// element types.
package tensor

import (
	"fmt"
	"strings"
)

// DType is an element type.
type DType uint8

// Element types. Compute is f32; the others are storage types for weights.
const (
	F32 DType = iota
	BF16
	F16
	Q8_0
	Q4_0
	Q4K
)

var dtypeNames = [...]string{F32: "f32", BF16: "bf16", F16: "f16", Q8_0: "q8_0", Q4_0: "q4_0", Q4K: "q4_K"}

// String returns the conventional lower-case name (f32, bf16, q8_0...).
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// ParseDType maps a name such as "f32" or "bf16" to its DType.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if strings.EqualFold(n, s) {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (known: %s)", s, strings.Join(dtypeNames[:], ", "))
}

// Tensor is a contiguous row-major float32 tensor. Views share Data.
type Tensor struct {
	Shape []int
	Data  []float32
}

// New returns a zeroed tensor of the given shape.
func New(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, Numel(shape))}
}

// From wraps data (not copied) with a shape; it panics if the sizes differ,
// which is a programming error, not bad input.
func From(data []float32, shape ...int) *Tensor {
	if Numel(shape) != len(data) {
		panic(fmt.Sprintf("tensor.From: shape %v needs %d elements, have %d", shape, Numel(shape), len(data)))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

// Numel is the number of elements of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Len returns the number of elements.
func (t *Tensor) Len() int { return len(t.Data) }

// Rows returns the product of all but the last dimension.
func (t *Tensor) Rows() int { return len(t.Data) / t.Cols() }

// Cols returns the last dimension.
func (t *Tensor) Cols() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[len(t.Shape)-1]
}

// Reshape returns a view with a new shape of the same size.
func (t *Tensor) Reshape(shape ...int) (*Tensor, error) {
	if Numel(shape) != len(t.Data) {
		return nil, fmt.Errorf("reshape %v to %v: sizes differ", t.Shape, shape)
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: t.Data}, nil
}

// Slice returns rows [i, j) of the leading axis as a view.
func (t *Tensor) Slice(i, j int) *Tensor {
	inner := len(t.Data) / t.Shape[0]
	shape := append([]int{j - i}, t.Shape[1:]...)
	return &Tensor{Shape: shape, Data: t.Data[i*inner : j*inner]}
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
