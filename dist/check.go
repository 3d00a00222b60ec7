package dist

import (
	"fmt"
	"math"
	"unsafe"
)

// maxCount is the largest element count one MPI call takes (a C int).
const maxCount = math.MaxInt32

func checkOp(fn string, op Op) error {
	if !op.valid() {
		return fmt.Errorf("dist: %s: unknown reduction %v", fn, op)
	}
	return nil
}

func checkRoot(fn string, root, size int) error {
	if root < 0 || root >= size {
		return fmt.Errorf("dist: %s: root %d out of range [0, %d)", fn, root, size)
	}
	return nil
}

func checkReduceScatter(send, recv []float32, size int) error {
	if len(send) != size*len(recv) {
		return fmt.Errorf("dist: ReduceScatter: len(send)=%d, want Size()*len(recv) = %d*%d", len(send), size, len(recv))
	}
	if overlap(send, recv) {
		return fmt.Errorf("dist: ReduceScatter: send and recv overlap")
	}
	if len(recv) > maxCount {
		return fmt.Errorf("dist: ReduceScatter: len(recv)=%d exceeds %d elements", len(recv), maxCount)
	}
	return nil
}

// checkAllGather validates the arguments and reports whether send is
// exactly recv's block for rank (an in-place gather).
func checkAllGather(send, recv []float32, rank, size int) (inPlace bool, err error) {
	if len(recv) != size*len(send) {
		return false, fmt.Errorf("dist: AllGather: len(recv)=%d, want Size()*len(send) = %d*%d", len(recv), size, len(send))
	}
	if len(send) > maxCount {
		return false, fmt.Errorf("dist: AllGather: len(send)=%d exceeds %d elements", len(send), maxCount)
	}
	if len(send) > 0 && &send[0] == &recv[rank*len(send)] {
		return true, nil
	}
	if overlap(send, recv) {
		return false, fmt.Errorf("dist: AllGather: send overlaps recv other than at this rank's block %d", rank)
	}
	return false, nil
}

// checkAllToAllV validates the counts and returns them with their
// displacements as C ints.
func checkAllToAllV(send []float32, sendCounts []int, recv []float32, recvCounts []int, size int) (sc, sd, rc, rd []int32, err error) {
	if len(sendCounts) != size || len(recvCounts) != size {
		return nil, nil, nil, nil, fmt.Errorf("dist: AllToAllV: len(sendCounts)=%d, len(recvCounts)=%d, want Size()=%d", len(sendCounts), len(recvCounts), size)
	}
	if overlap(send, recv) {
		return nil, nil, nil, nil, fmt.Errorf("dist: AllToAllV: send and recv overlap")
	}
	sc, sd, err = displacements("sendCounts", sendCounts, len(send))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	rc, rd, err = displacements("recvCounts", recvCounts, len(recv))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return sc, sd, rc, rd, nil
}

func displacements(name string, counts []int, capacity int) (c, d []int32, err error) {
	c = make([]int32, len(counts))
	d = make([]int32, len(counts))
	off := 0
	for i, n := range counts {
		if n < 0 {
			return nil, nil, fmt.Errorf("dist: AllToAllV: %s[%d]=%d is negative", name, i, n)
		}
		if off > maxCount-n {
			return nil, nil, fmt.Errorf("dist: AllToAllV: %s sum past %d elements", name, maxCount)
		}
		c[i], d[i] = int32(n), int32(off)
		off += n
	}
	if off > capacity {
		return nil, nil, fmt.Errorf("dist: AllToAllV: %s sum to %d, buffer holds %d", name, off, capacity)
	}
	return c, d, nil
}

// overlap reports whether two slices share memory.
func overlap[T any](a, b []T) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	sz := unsafe.Sizeof(a[0])
	a0 := uintptr(unsafe.Pointer(&a[0]))
	b0 := uintptr(unsafe.Pointer(&b[0]))
	a1 := a0 + uintptr(len(a))*sz
	b1 := b0 + uintptr(len(b))*sz
	return a0 < b1 && b0 < a1
}

func divide32(buf []float32, n int) {
	if n == 1 {
		return
	}
	d := float32(n)
	for i := range buf {
		buf[i] /= d
	}
}

func divide64(buf []float64, n int) {
	if n == 1 {
		return
	}
	d := float64(n)
	for i := range buf {
		buf[i] /= d
	}
}
