package dist

import (
	"fmt"
	"sync/atomic"
)

// Local returns a communicator of one process: size 1, rank 0. Every
// collective is a copy or a no-op, so single-process code runs the same
// calls as a distributed job.
func Local() Comm { return &local{} }

type local struct{ closed atomic.Bool }

func (l *local) ready() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (l *local) Rank() int { return 0 }
func (l *local) Size() int { return 1 }

func (l *local) AllReduce(buf []float32, op Op) error {
	if err := checkOp("AllReduce", op); err != nil {
		return err
	}
	return l.ready()
}

func (l *local) AllReduceFloat64(buf []float64, op Op) error {
	if err := checkOp("AllReduceFloat64", op); err != nil {
		return err
	}
	return l.ready()
}

func (l *local) ReduceScatter(send, recv []float32, op Op) error {
	if err := checkOp("ReduceScatter", op); err != nil {
		return err
	}
	if err := checkReduceScatter(send, recv, 1); err != nil {
		return err
	}
	if err := l.ready(); err != nil {
		return err
	}
	copy(recv, send)
	return nil
}

func (l *local) AllGather(send, recv []float32) error {
	if _, err := checkAllGather(send, recv, 0, 1); err != nil {
		return err
	}
	if err := l.ready(); err != nil {
		return err
	}
	copy(recv, send)
	return nil
}

func (l *local) Broadcast(buf []byte, root int) error {
	if err := checkRoot("Broadcast", root, 1); err != nil {
		return err
	}
	return l.ready()
}

func (l *local) BroadcastFloat32(buf []float32, root int) error {
	if err := checkRoot("BroadcastFloat32", root, 1); err != nil {
		return err
	}
	return l.ready()
}

func (l *local) AllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int) error {
	sc, _, rc, _, err := checkAllToAllV(send, sendCounts, recv, recvCounts, 1)
	if err != nil {
		return err
	}
	if sc[0] != rc[0] {
		return fmt.Errorf("dist: AllToAllV: rank 0 sends %d elements to itself but expects %d", sc[0], rc[0])
	}
	if err := l.ready(); err != nil {
		return err
	}
	copy(recv[:rc[0]], send[:sc[0]])
	return nil
}

func (l *local) Barrier() error { return l.ready() }

func (l *local) Split(color, key int) (Comm, error) {
	if color < 0 {
		return nil, fmt.Errorf("dist: Split: color %d is negative", color)
	}
	if err := l.ready(); err != nil {
		return nil, err
	}
	return &local{}, nil
}

func (l *local) Close() error {
	l.closed.Store(true)
	return nil
}
