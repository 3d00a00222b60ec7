package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/mai-llm/mai/format/quant"
)

// driver is what a Device needs from the layer below it: the CUDA driver
// with NVRTC and cuBLAS (driver_linux.go), or, in tests, a CPU emulation.
// Every method is called on the executor's thread. Copies to and from the
// host wait for the stream; the rest is queued on it.
type driver interface {
	alloc(bytes int) (uintptr, error)
	free(ptr uintptr) error
	hostAlloc(bytes int) (unsafe.Pointer, error) // page-locked host memory
	hostFree(p unsafe.Pointer) error
	htod(dst uintptr, src unsafe.Pointer, bytes int) error
	dtoh(dst unsafe.Pointer, src uintptr, bytes int) error
	dtod(dst, src uintptr, bytes int) error
	memsetD32(dst uintptr, v uint32, n int) error
	function(name string) (uintptr, error)
	setMaxDynamicSmem(fn uintptr, bytes int) error
	launch(fn uintptr, grid, block [3]uint32, smem int, params unsafe.Pointer) error
	gemm(g *gemmArgs) error
	sync() error
	eventRecord(i int) error        // record event i (0 or 1) on the stream
	eventElapsed() (float32, error) // ms from event 0 to event 1, waiting for 1
	close() error
}

// gemmArgs is one GEMM in cuBLAS's column-major meaning:
// C = alpha*op(A)*op(B) + beta*C with op(A) m×k, op(B) k×n.
type gemmArgs struct {
	transA, transB      bool
	m, n, k             int
	alpha, beta         float32
	a, b, c             uintptr
	aType, bType, cType DType
	lda, ldb, ldc       int
}

// Options configure Open.
type Options struct {
	// Ordinal is the device index (as nvidia-smi numbers them, subject to
	// CUDA_VISIBLE_DEVICES).
	Ordinal int
	// CacheDir is where compiled kernels are cached; empty means
	// $MAI_CUDA_CACHE or the user cache folder, "off" disables the cache.
	CacheDir string
	// LineInfo compiles kernels with line information (for profilers).
	LineInfo bool
	// Workspace is cuBLASLt's workspace in bytes (default 32 MiB).
	Workspace int
	// Logger receives what Open found and did (default slog.Default()).
	Logger *slog.Logger
}

// Library is one native library opened, and where from.
type Library struct {
	Name    string `json:"name"`              // e.g. nvrtc
	Path    string `json:"path"`              // the file loaded
	Version string `json:"version,omitempty"` // as the library reports it, when it does
}

// DeviceInfo describes an opened device.
type DeviceInfo struct {
	Ordinal       int           `json:"ordinal"`
	Name          string        `json:"name"`
	SM            int           `json:"sm"`              // compute capability as major*10+minor, e.g. 90
	SMs           int           `json:"multiprocessors"` // multiprocessors
	Memory        int64         `json:"memory_bytes"`    // total device memory in bytes
	FreeMemory    int64         `json:"free_bytes"`      // free when opened
	MaxSmemOptin  int           `json:"max_smem_optin"`  // the most dynamic shared memory a block may opt in to
	DriverVersion int           `json:"driver_version"`  // e.g. 13000 for CUDA 13.0
	Arch          int           `json:"arch,omitempty"`  // the architecture the kernels were compiled for
	NVRTCVersion  string        `json:"nvrtc_version,omitempty"`
	BLAS          string        `json:"blas,omitempty"` // "cublasLt" or "cublas"
	Libraries     []Library     `json:"libraries,omitempty"`
	CompileTime   time.Duration `json:"compile_ns,omitempty"` // zero when the kernels came from the cache
	CacheFile     string        `json:"cache_file,omitempty"`
}

// Device is one GPU: its context, stream, memory pool and kernels.
type Device struct {
	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
	exec   *executor
	drv    driver
	pool   *memPool
	params *paramBlock
	pin    runtime.Pinner
	info   DeviceInfo
	kerns  map[string]*kernel
	// maxGrid caps grid-stride kernels' grids (a few waves of the SMs).
	maxGrid int
}

// kernel is a loaded kernel: its signature and function handle.
type kernel struct {
	sig     *kernelSig
	fn      uintptr
	smemSet int // the dynamic shared memory limit set so far (above 48 KiB)
}

// newDevice wraps an opened driver; it runs on the executor's thread.
func newDevice(exec *executor, drv driver, info DeviceInfo) (*Device, error) {
	d := &Device{exec: exec, drv: drv, info: info, pool: newMemPool(drv), params: new(paramBlock), kerns: map[string]*kernel{}}
	d.pin.Pin(d.params)
	d.maxGrid = max(1, info.SMs) * 16
	return d, nil
}

// Info describes the device.
func (d *Device) Info() DeviceInfo { return d.info }

// run executes fn on the device's thread unless the device is closed.
func (d *Device) run(fn func() error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return d.exec.do(fn)
}

// Close waits for queued work, frees all device memory and releases the
// context. Buffers of a closed device must not be used.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.exec.do(func() error {
		return errors.Join(d.drv.sync(), d.pool.releaseAll(), d.drv.close())
	})
	d.exec.close()
	d.pin.Unpin()
	return err
}

// Sync waits until all queued work has finished and returns the first
// error it hit.
func (d *Device) Sync() error { return d.run(d.drv.sync) }

// MemStats reports the pool: bytes handed out, bytes cached for reuse and
// the number of driver allocations made so far.
func (d *Device) MemStats() (inUse, cached int64, allocs int, err error) {
	err = d.run(func() error {
		inUse, cached, allocs = d.pool.inUse, d.pool.cached, d.pool.allocs
		return nil
	})
	return
}

// Trim gives the pool's cached blocks back to the driver.
func (d *Device) Trim() error { return d.run(d.pool.trim) }

// Alloc returns an uninitialized buffer of n elements from the pool.
func (d *Device) Alloc(t DType, n int) (*Buffer, error) {
	if t.Size() == 0 {
		return nil, fmt.Errorf("cuda: alloc: unknown dtype %v", t)
	}
	if n < 0 {
		return nil, fmt.Errorf("cuda: alloc: negative length %d", n)
	}
	var b *Buffer
	err := d.run(func() error {
		var err error
		b, err = d.alloc(t, n)
		return err
	})
	return b, err
}

// alloc is Alloc on the executor's thread.
func (d *Device) alloc(t DType, n int) (*Buffer, error) {
	ptr, class, err := d.pool.get(max(1, n*t.Size()))
	if err != nil {
		return nil, err
	}
	return &Buffer{ptr: ptr, n: n, dtype: t, dev: d, class: class}, nil
}

// free is Free on the executor's thread; nil is ignored.
func (d *Device) free(bufs ...*Buffer) error {
	var first error
	for _, b := range bufs {
		if b == nil {
			continue
		}
		if err := d.pool.put(b.ptr); err != nil && first == nil {
			first = err
		}
		b.freed = true
	}
	return first
}

// Free returns buffers to the pool (their memory may be reused by work
// queued after this call). Views and nil are not allowed and ignored
// respectively.
func (d *Device) Free(bufs ...*Buffer) error {
	for _, b := range bufs {
		if b == nil {
			continue
		}
		if b.dev != d {
			return fmt.Errorf("cuda: free: buffer belongs to another device")
		}
		if b.class == 0 {
			return fmt.Errorf("cuda: free: a view cannot be freed (free the buffer it views)")
		}
		if b.freed {
			return fmt.Errorf("cuda: free: buffer freed twice")
		}
	}
	return d.run(func() error { return d.free(bufs...) })
}

// Zero sets every element of b to zero (queued).
func (d *Device) Zero(b *Buffer) error {
	if err := d.own("zero", b); err != nil {
		return err
	}
	return d.run(func() error { return d.zero(b) })
}

func (d *Device) zero(b *Buffer) error {
	bytes := b.Bytes()
	if bytes == 0 {
		return nil
	}
	// Every dtype's size is a multiple of 2; the pool pads to 512 bytes, so
	// a whole number of 32-bit words is always writable.
	return d.drv.memsetD32(b.ptr, 0, (bytes+3)/4)
}

// Copy copies src into dst (same dtype and length; queued).
func (d *Device) Copy(dst, src *Buffer) error {
	if err := d.own("copy", dst, src); err != nil {
		return err
	}
	if dst.dtype != src.dtype || dst.n != src.n {
		return fmt.Errorf("cuda: copy: %d×%v into %d×%v", src.n, src.dtype, dst.n, dst.dtype)
	}
	return d.run(func() error { return d.drv.dtod(dst.ptr, src.ptr, src.Bytes()) })
}

// own checks that bufs (nil allowed) are live buffers of this device.
func (d *Device) own(op string, bufs ...*Buffer) error {
	for _, b := range bufs {
		if b == nil {
			continue
		}
		if b.dev != d {
			return fmt.Errorf("cuda: %s: buffer belongs to another device", op)
		}
		if b.freed {
			return fmt.Errorf("cuda: %s: buffer used after Free", op)
		}
	}
	return nil
}

// Upload copies host data into dst; src is []float32, []uint16 (bf16
// bits), []int32, []int64 or []float64 and has dst.Len() elements. A []float32 into
// a bf16 buffer is rounded to nearest even. It waits for the copy.
func (d *Device) Upload(dst *Buffer, src any) error {
	if err := d.own("upload", dst); err != nil {
		return err
	}
	if dst == nil {
		return fmt.Errorf("cuda: upload: nil buffer")
	}
	var p unsafe.Pointer
	var n int
	var keep any = src
	switch s := src.(type) {
	case []float32:
		n = len(s)
		switch dst.dtype {
		case F32:
			p = unsafe.Pointer(unsafe.SliceData(s))
		case BF16:
			h := make([]uint16, len(s))
			quant.F32ToBF16Slice(h, s)
			p, keep = unsafe.Pointer(unsafe.SliceData(h)), h
		default:
			return fmt.Errorf("cuda: upload: []float32 into a %v buffer", dst.dtype)
		}
	case []uint16:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if dst.dtype != BF16 {
			return fmt.Errorf("cuda: upload: []uint16 (bf16 bits) into a %v buffer", dst.dtype)
		}
	case []int32:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if dst.dtype != I32 {
			return fmt.Errorf("cuda: upload: []int32 into a %v buffer", dst.dtype)
		}
	case []float64:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if dst.dtype != F64 {
			return fmt.Errorf("cuda: upload: []float64 into a %v buffer", dst.dtype)
		}
	case []int64:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if dst.dtype != I64 {
			return fmt.Errorf("cuda: upload: []int64 into a %v buffer", dst.dtype)
		}
	default:
		return fmt.Errorf("cuda: upload: unsupported host type %T", src)
	}
	if n != dst.n {
		return fmt.Errorf("cuda: upload: %d host elements into a buffer of %d", n, dst.n)
	}
	if n == 0 {
		return nil
	}
	err := d.run(func() error { return d.drv.htod(dst.ptr, p, dst.Bytes()) })
	runtime.KeepAlive(keep)
	return err
}

// Download waits for queued work and copies src into dst: []float32 (from
// f32, or bf16 widened), []uint16 (bf16 bits), []int32, []int64 or []float64, with
// src.Len() elements.
func (d *Device) Download(dst any, src *Buffer) error {
	if err := d.own("download", src); err != nil {
		return err
	}
	if src == nil {
		return fmt.Errorf("cuda: download: nil buffer")
	}
	var p unsafe.Pointer
	var n int
	var widen []float32
	var bits []uint16
	switch s := dst.(type) {
	case []float32:
		n = len(s)
		switch src.dtype {
		case F32:
			p = unsafe.Pointer(unsafe.SliceData(s))
		case BF16:
			bits = make([]uint16, len(s))
			p, widen = unsafe.Pointer(unsafe.SliceData(bits)), s
		default:
			return fmt.Errorf("cuda: download: a %v buffer into []float32", src.dtype)
		}
	case []uint16:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if src.dtype != BF16 {
			return fmt.Errorf("cuda: download: a %v buffer into []uint16", src.dtype)
		}
	case []int32:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if src.dtype != I32 {
			return fmt.Errorf("cuda: download: a %v buffer into []int32", src.dtype)
		}
	case []float64:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if src.dtype != F64 {
			return fmt.Errorf("cuda: download: a %v buffer into []float64", src.dtype)
		}
	case []int64:
		n, p = len(s), unsafe.Pointer(unsafe.SliceData(s))
		if src.dtype != I64 {
			return fmt.Errorf("cuda: download: a %v buffer into []int64", src.dtype)
		}
	default:
		return fmt.Errorf("cuda: download: unsupported host type %T", dst)
	}
	if n != src.n {
		return fmt.Errorf("cuda: download: a buffer of %d into %d host elements", src.n, n)
	}
	if n == 0 {
		return nil
	}
	err := d.run(func() error { return d.drv.dtoh(p, src.ptr, src.Bytes()) })
	runtime.KeepAlive(dst)
	if err == nil && widen != nil {
		quant.BF16ToF32Slice(widen, bits)
	}
	return err
}

// FromHost allocates a buffer of dtype t and uploads src into it.
func (d *Device) FromHost(t DType, src any) (*Buffer, error) {
	var n int
	switch s := src.(type) {
	case []float32:
		n = len(s)
	case []uint16:
		n = len(s)
	case []int32:
		n = len(s)
	case []float64:
		n = len(s)
	case []int64:
		n = len(s)
	default:
		return nil, fmt.Errorf("cuda: from host: unsupported host type %T", src)
	}
	b, err := d.Alloc(t, n)
	if err != nil {
		return nil, err
	}
	if err := d.Upload(b, src); err != nil {
		d.Free(b)
		return nil, err
	}
	return b, nil
}

// HostBuffer is page-locked host memory: copies from and to it run at full
// bus speed and may overlap kernels.
type HostBuffer struct {
	p     unsafe.Pointer
	n     int
	dev   *Device
	freed bool
}

// AllocHost returns n bytes of page-locked host memory.
func (d *Device) AllocHost(n int) (*HostBuffer, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cuda: alloc host: size %d", n)
	}
	var h *HostBuffer
	err := d.run(func() error {
		p, err := d.drv.hostAlloc(n)
		if err != nil {
			return err
		}
		h = &HostBuffer{p: p, n: n, dev: d}
		return nil
	})
	return h, err
}

// Bytes is the buffer's memory; it is valid until Free.
func (h *HostBuffer) Bytes() []byte { return unsafe.Slice((*byte)(h.p), h.n) }

// Float32 views the buffer as float32s (n/4 of them).
func (h *HostBuffer) Float32() []float32 { return unsafe.Slice((*float32)(h.p), h.n/4) }

// Free releases the page-locked memory.
func (h *HostBuffer) Free() error {
	if h.freed {
		return nil
	}
	h.freed = true
	return h.dev.run(func() error { return h.dev.drv.hostFree(h.p) })
}

// dim3 is a grid or block shape.
type dim3 = [3]uint32

// launch queues kernel name; it runs on the executor's thread.
func (d *Device) launch(name string, grid, block dim3, smem int, args ...arg) error {
	k, err := d.kernel(name)
	if err != nil {
		return err
	}
	if grid[0] == 0 || grid[1] == 0 || grid[2] == 0 {
		return nil // nothing to do
	}
	if smem > 48<<10 && smem > k.smemSet {
		if d.info.MaxSmemOptin > 0 && smem > d.info.MaxSmemOptin {
			return fmt.Errorf("cuda: kernel %s needs %d bytes of shared memory, the device allows %d", name, smem, d.info.MaxSmemOptin)
		}
		if err := d.drv.setMaxDynamicSmem(k.fn, smem); err != nil {
			return err
		}
		k.smemSet = smem
	}
	params, err := d.params.pack(k.sig, args)
	if err != nil {
		return err
	}
	if err := d.drv.launch(k.fn, grid, block, smem, params); err != nil {
		return fmt.Errorf("cuda: launching %s: %w", name, err)
	}
	return nil
}

// kernel returns the loaded kernel name, looking it up on first use.
func (d *Device) kernel(name string) (*kernel, error) {
	if k := d.kerns[name]; k != nil {
		return k, nil
	}
	table, err := kernelTable()
	if err != nil {
		return nil, err
	}
	sig := table[name]
	if sig == nil {
		return nil, fmt.Errorf("cuda: no kernel %q in the embedded sources", name)
	}
	fn, err := d.drv.function(name)
	if err != nil {
		return nil, err
	}
	k := &kernel{sig: sig, fn: fn}
	d.kerns[name] = k
	return k, nil
}

// ptrOfSlice is the address of s's first element, for copies to and from
// host memory.
func ptrOfSlice[T any](s []T) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }

// Time runs fn, which queues work on the device, and returns the device
// time between its first and last queued operations (CUDA events).
func (d *Device) Time(fn func() error) (time.Duration, error) {
	if err := d.run(func() error { return d.drv.eventRecord(0) }); err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	var ms float32
	err := d.run(func() error {
		if err := d.drv.eventRecord(1); err != nil {
			return err
		}
		var err error
		ms, err = d.drv.eventElapsed()
		return err
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}
