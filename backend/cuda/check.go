package cuda

import (
	"fmt"
	"slices"
)

// argCheck validates an op's arguments on the caller's goroutine, before
// anything is queued, keeping the first problem. Activation buffers (act)
// must all share one dtype, f32 or bf16, which picks the kernel variant.
type argCheck struct {
	d      *Device
	op     string
	err    error
	act    DType
	actSet bool
}

func (d *Device) check(op string) *argCheck { return &argCheck{d: d, op: op} }

func (c *argCheck) fail(format string, a ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("cuda: %s: %s", c.op, fmt.Sprintf(format, a...))
	}
}

// buf requires b to be a live buffer of the device with at least n elements
// (n < 0: any) of one of dts.
func (c *argCheck) buf(name string, b *Buffer, n int, dts ...DType) {
	if c.err != nil {
		return
	}
	if b == nil {
		c.fail("%s is nil", name)
		return
	}
	c.opt(name, b, n, dts...)
}

// opt is buf for an optional argument: nil passes.
func (c *argCheck) opt(name string, b *Buffer, n int, dts ...DType) {
	if c.err != nil || b == nil {
		return
	}
	switch {
	case b.dev != c.d:
		c.fail("%s belongs to another device", name)
	case b.freed:
		c.fail("%s used after Free", name)
	case len(dts) > 0 && !slices.Contains(dts, b.dtype):
		c.fail("%s is %v, want %v", name, b.dtype, dtypeList(dts))
	case n >= 0 && b.n < n:
		c.fail("%s has %d elements, needs %d", name, b.n, n)
	}
}

// actBuf is buf for an activation: f32 or bf16, the same as the op's other
// activations.
func (c *argCheck) actBuf(name string, b *Buffer, n int) {
	c.buf(name, b, n, F32, BF16)
	c.sameAct(name, b)
}

// actOpt is actBuf for an optional activation.
func (c *argCheck) actOpt(name string, b *Buffer, n int) {
	c.opt(name, b, n, F32, BF16)
	c.sameAct(name, b)
}

func (c *argCheck) sameAct(name string, b *Buffer) {
	if c.err != nil || b == nil {
		return
	}
	if !c.actSet {
		c.act, c.actSet = b.dtype, true
	} else if b.dtype != c.act {
		c.fail("%s is %v but the other activations are %v", name, b.dtype, c.act)
	}
}

// positive requires v > 0.
func (c *argCheck) positive(name string, v int) {
	if c.err == nil && v <= 0 {
		c.fail("%s = %d, must be positive", name, v)
	}
}

// variant returns the kernel name for the activation dtype.
func (c *argCheck) variant(base string) string {
	if c.act == BF16 {
		return base + "_bf16"
	}
	return base + "_f32"
}

func dtypeList(dts []DType) string {
	s := ""
	for i, t := range dts {
		if i > 0 {
			s += " or "
		}
		s += t.String()
	}
	return s
}
