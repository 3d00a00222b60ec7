package nn

import (
	"fmt"

	"github.com/mai-llm/mai/tensor"
)

// Exchanger moves blocks of float32 values between the ranks of a group;
// dist.Comm implements it. AllToAllV sends sendCounts[i] consecutive values
// of send to rank i and receives recvCounts[j] values from rank j, in rank
// order.
type Exchanger interface {
	AllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int) error
}

// AllToAll sends consecutive blocks of the rows of x [Σ sendRows, D] to the
// ranks of c (sendRows[i] rows to rank i) and returns the rows received,
// [Σ recvRows, D], in rank order; recvRows[j] must equal rank j's
// sendRows[this rank]. The backward pass sends the gradients back the
// opposite way and accumulates them into x's gradient.
//
// It is a collective: every rank of c must call it at the same point, and,
// on a recording tape, run its backward at the same point. So that the
// backward is recorded on every rank even where x needs no gradient (a rank
// with no rows for an expert), the output of a recording tape always has a
// gradient. An error of the backward exchange, which cannot be returned from
// Backward, is passed to fail (it must not be nil on a recording tape).
func (tp *Tape) AllToAll(x *Var, c Exchanger, sendRows, recvRows []int, fail func(error)) (*Var, error) {
	d := x.Cols()
	if len(sendRows) != len(recvRows) {
		return nil, fmt.Errorf("all-to-all: %d send counts but %d receive counts", len(sendRows), len(recvRows))
	}
	ns, nr := 0, 0
	sc, rc := make([]int, len(sendRows)), make([]int, len(recvRows))
	for i := range sendRows {
		if sendRows[i] < 0 || recvRows[i] < 0 {
			return nil, fmt.Errorf("all-to-all: negative row count for rank %d", i)
		}
		ns += sendRows[i]
		nr += recvRows[i]
		sc[i], rc[i] = sendRows[i]*d, recvRows[i]*d
	}
	if ns != x.Rows() {
		return nil, fmt.Errorf("all-to-all: send counts add up to %d rows, input has %d", ns, x.Rows())
	}
	y := &Var{Tensor: *tensor.New(nr, d)}
	if err := c.AllToAllV(x.Data, sc, y.Data, rc); err != nil {
		return nil, fmt.Errorf("all-to-all: %w", err)
	}
	if !tp.Grad {
		return y, nil
	}
	y.Grad = make([]float32, len(y.Data))
	tp.recordFunc(y, func() {
		dx := make([]float32, len(x.Data))
		if err := c.AllToAllV(y.Grad, rc, dx, sc); err != nil {
			fail(fmt.Errorf("all-to-all backward: %w", err))
			return
		}
		if x.Grad != nil {
			axpy(accGrad(x), dx, 1)
		}
	})
	return y, nil
}

// OnBackward records f to run during Backward once every op recorded after
// this point has run its backward: gradients of parameters used only after
// this point are then final. Trainers use it to start reducing gradients
// while the rest of the backward pass runs. A tape that records no
// gradients ignores it.
func (tp *Tape) OnBackward(f func()) {
	if tp.Grad {
		tp.begin()
		tp.ops = append(tp.ops, op{kind: opFunc, fn: f})
	}
}

// LoadBalanceLossWith is LoadBalanceLoss with the fraction f[e] of routing
// slots sent to each expert given, typically counted over every rank that
// shares the batch: E · Σ_e f_e · P_e with P_e the mean router probability
// of expert e over the rows of probs. With f counted over the whole batch,
// the row-weighted mean of this loss over the ranks equals the loss of the
// whole batch.
func (tp *Tape) LoadBalanceLossWith(probs *Var, f []float32) *Var {
	n, e := probs.Rows(), probs.Cols()
	y := tp.out([]int{1}, true, probs)
	var s float64
	for i := 0; i < n; i++ {
		for ex := 0; ex < e; ex++ {
			s += float64(f[ex]) * float64(probs.Data[i*e+ex])
		}
	}
	if n > 0 {
		y.Data[0] = float32(float64(e) * s / float64(n))
	}
	tp.recordFunc(y, func() {
		if n == 0 {
			return
		}
		if dead(y) {
			return
		}
		c := y.Grad[0] * float32(e) / float32(n)
		dp := accGrad(probs)
		for i := 0; i < n; i++ {
			for ex := 0; ex < e; ex++ {
				dp[i*e+ex] += c * f[ex]
			}
		}
	})
	return y
}
