// Package cuda is MAI's NVIDIA GPU backend, in pure Go (CGO_ENABLED=0): the
// CUDA driver API, NVRTC, cuBLASLt and cuBLAS are opened at run time with
// purego; the kernels are CUDA C embedded in the binary (kernels/*.cu),
// compiled once by NVRTC to a CUBIN for the device's architecture and cached
// on disk.
//
// A [Device] owns one GPU's primary context, a stream, a caching memory pool
// and the loaded kernels. Its methods mirror backend/cpu's kernels, with the
// same argument meaning, on device [Buffer]s: activations may be f32 or bf16
// (math in f32), weights and statistics f32. Every driver call runs on one
// goroutine locked to its OS thread (the CUDA context is per thread); the
// methods may be called from any goroutine and are serialized.
//
// Work is stream-ordered: a method returns once its kernels are queued;
// Download and Sync wait for them. Errors of queued kernels surface at the
// next call that waits.
package cuda

import (
	"errors"
	"fmt"
)

// DType is the element type of a device buffer.
type DType uint8

// Element types of device buffers.
const (
	F32  DType = iota // float32
	BF16              // bfloat16, stored as uint16 bits
	I32               // int32 (token ids, targets, positions)
	F64               // float64 (reduction results)
	I64               // int64 (offsets)
)

var dtypeNames = [...]string{F32: "f32", BF16: "bf16", I32: "i32", F64: "f64", I64: "i64"}
var dtypeSizes = [...]int{F32: 4, BF16: 2, I32: 4, F64: 8, I64: 8}

// String returns the lower-case name (f32, bf16, i32, f64).
func (t DType) String() string {
	if int(t) < len(dtypeNames) {
		return dtypeNames[t]
	}
	return fmt.Sprintf("dtype(%d)", t)
}

// Size returns the size of one element in bytes.
func (t DType) Size() int {
	if int(t) < len(dtypeSizes) {
		return dtypeSizes[t]
	}
	return 0
}

// cudaDataType is the cudaDataType_t enum value cuBLAS uses.
func (t DType) cudaDataType() int {
	switch t {
	case F32:
		return 0 // CUDA_R_32F
	case BF16:
		return 14 // CUDA_R_16BF
	case F64:
		return 1 // CUDA_R_64F
	case I32:
		return 10 // CUDA_R_32I
	case I64:
		return 24 // CUDA_R_64I
	}
	return -1
}

// Buffer is a range of device memory holding Len elements of one DType.
// A Buffer from Alloc is returned to the device's pool by Free; a view
// (View) shares its parent's memory and is never freed itself.
type Buffer struct {
	ptr   uintptr
	n     int
	dtype DType
	dev   *Device
	class int  // pool size class; 0 for views
	freed bool // set by Free
}

// Len returns the number of elements.
func (b *Buffer) Len() int { return b.n }

// DType returns the element type.
func (b *Buffer) DType() DType { return b.dtype }

// Bytes returns the size in bytes.
func (b *Buffer) Bytes() int { return b.n * b.dtype.Size() }

// Ptr returns the device address (a CUdeviceptr).
func (b *Buffer) Ptr() uintptr { return b.ptr }

// View returns elements [off, off+n) of b, sharing its memory.
func (b *Buffer) View(off, n int) (*Buffer, error) {
	if off < 0 || n < 0 || off+n > b.n {
		return nil, fmt.Errorf("cuda: view [%d, %d) out of a buffer of %d elements", off, off+n, b.n)
	}
	return &Buffer{ptr: b.ptr + uintptr(off*b.dtype.Size()), n: n, dtype: b.dtype, dev: b.dev}, nil
}

// ptrOf is the address of b, or 0 for a nil buffer (an optional argument).
func ptrOf(b *Buffer) uintptr {
	if b == nil {
		return 0
	}
	return b.ptr
}

// ErrClosed is returned by the methods of a closed Device.
var ErrClosed = errors.New("cuda: device is closed")

// ErrUnsupported is returned where this platform cannot run CUDA through
// purego (anything but linux on amd64 or arm64).
var ErrUnsupported = errors.New("cuda: not supported on this platform")

// DriverError is a failed CUDA driver, NVRTC or cuBLAS call.
type DriverError struct {
	Op   string // the function called, e.g. cuMemAlloc_v2
	Code int    // its status code
	Name string // the status's name, e.g. CUDA_ERROR_OUT_OF_MEMORY
	Msg  string // the library's description, when it gives one
}

// Error formats the call, the status name and the description.
func (e *DriverError) Error() string {
	s := fmt.Sprintf("cuda: %s: %s (%d)", e.Op, e.Name, e.Code)
	if e.Msg != "" && e.Msg != e.Name {
		s += ": " + e.Msg
	}
	return s
}

// Is reports whether target is ErrOutOfMemory and this is an out-of-memory
// status.
func (e *DriverError) Is(target error) bool {
	return target == ErrOutOfMemory && (e.Name == "CUDA_ERROR_OUT_OF_MEMORY" || e.Name == "CUBLAS_STATUS_ALLOC_FAILED")
}

// ErrOutOfMemory matches (errors.Is) a device allocation that failed for
// lack of memory.
var ErrOutOfMemory = errors.New("cuda: out of device memory")
