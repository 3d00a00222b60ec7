//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"unsafe"
)

// CUdevice_attribute values used here.
const (
	cuAttrMultiprocessorCount    = 16
	cuAttrComputeCapMajor        = 75
	cuAttrComputeCapMinor        = 76
	cuAttrMaxSharedPerBlockOptin = 97
	cuFuncAttrMaxDynamicSmem     = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
	cuStreamNonBlocking          = 1
	cuEventDefault               = 0
)

// cuLib is the CUDA driver library's entry points (versioned names first,
// as CUDA 13 requires).
type cuLib struct {
	path string

	init, driverGetVersion, deviceGetCount, deviceGet, deviceGetName  uintptr
	deviceGetAttribute, deviceTotalMem                                uintptr
	primaryCtxRetain, primaryCtxRelease, ctxSetCurrent                uintptr
	ctxSynchronize, memGetInfo                                        uintptr
	memAlloc, memFree, memHostAlloc, memFreeHost                      uintptr
	memcpyHtoDAsync, memcpyDtoHAsync, memcpyDtoDAsync, memsetD32Async uintptr
	streamCreate, streamDestroy, streamSynchronize                    uintptr
	eventCreate, eventRecord, eventSynchronize, eventElapsed          uintptr
	eventDestroy                                                      uintptr
	moduleLoadData, moduleUnload, moduleGetFunction, funcSetAttribute uintptr
	launchKernel, getErrorName, getErrorString                        uintptr
}

func loadCU() (*cuLib, error) {
	r, err := openLibrary(libCUDA, "")
	if err != nil {
		return nil, err
	}
	l := &cuLib{path: r.path}
	err = bindSymbols("libcuda", r.handle, []symbol{
		{dst: &l.init, names: []string{"cuInit"}},
		{dst: &l.driverGetVersion, names: []string{"cuDriverGetVersion"}},
		{dst: &l.deviceGetCount, names: []string{"cuDeviceGetCount"}},
		{dst: &l.deviceGet, names: []string{"cuDeviceGet"}},
		{dst: &l.deviceGetName, names: []string{"cuDeviceGetName"}},
		{dst: &l.deviceGetAttribute, names: []string{"cuDeviceGetAttribute"}},
		{dst: &l.deviceTotalMem, names: []string{"cuDeviceTotalMem_v2"}},
		{dst: &l.primaryCtxRetain, names: []string{"cuDevicePrimaryCtxRetain"}},
		{dst: &l.primaryCtxRelease, names: []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
		{dst: &l.ctxSetCurrent, names: []string{"cuCtxSetCurrent"}},
		{dst: &l.ctxSynchronize, names: []string{"cuCtxSynchronize"}},
		{dst: &l.memGetInfo, names: []string{"cuMemGetInfo_v2"}},
		{dst: &l.memAlloc, names: []string{"cuMemAlloc_v2"}},
		{dst: &l.memFree, names: []string{"cuMemFree_v2"}},
		{dst: &l.memHostAlloc, names: []string{"cuMemHostAlloc"}},
		{dst: &l.memFreeHost, names: []string{"cuMemFreeHost"}},
		{dst: &l.memcpyHtoDAsync, names: []string{"cuMemcpyHtoDAsync_v2"}},
		{dst: &l.memcpyDtoHAsync, names: []string{"cuMemcpyDtoHAsync_v2"}},
		{dst: &l.memcpyDtoDAsync, names: []string{"cuMemcpyDtoDAsync_v2"}},
		{dst: &l.memsetD32Async, names: []string{"cuMemsetD32Async"}},
		{dst: &l.streamCreate, names: []string{"cuStreamCreate"}},
		{dst: &l.streamDestroy, names: []string{"cuStreamDestroy_v2"}},
		{dst: &l.streamSynchronize, names: []string{"cuStreamSynchronize"}},
		{dst: &l.eventCreate, names: []string{"cuEventCreate"}},
		{dst: &l.eventRecord, names: []string{"cuEventRecord"}},
		{dst: &l.eventSynchronize, names: []string{"cuEventSynchronize"}},
		{dst: &l.eventElapsed, names: []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}},
		{dst: &l.eventDestroy, names: []string{"cuEventDestroy_v2"}},
		{dst: &l.moduleLoadData, names: []string{"cuModuleLoadData"}},
		{dst: &l.moduleUnload, names: []string{"cuModuleUnload"}},
		{dst: &l.moduleGetFunction, names: []string{"cuModuleGetFunction"}},
		{dst: &l.funcSetAttribute, names: []string{"cuFuncSetAttribute"}},
		{dst: &l.launchKernel, names: []string{"cuLaunchKernel"}},
		{dst: &l.getErrorName, names: []string{"cuGetErrorName"}},
		{dst: &l.getErrorString, names: []string{"cuGetErrorString"}},
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// check turns a CUresult into an error naming the call.
func (l *cuLib) check(op string, code int32) error {
	if code == 0 {
		return nil
	}
	var name, msg *byte
	if l.getErrorName != 0 {
		ccall(l.getErrorName, uintptr(code), uintptr(unsafe.Pointer(&name)))
	}
	if l.getErrorString != 0 {
		ccall(l.getErrorString, uintptr(code), uintptr(unsafe.Pointer(&msg)))
	}
	e := &DriverError{Op: op, Code: int(code), Name: goString(name, 128), Msg: goString(msg, 512)}
	if e.Name == "" {
		e.Name = fmt.Sprintf("CUresult %d", code)
	}
	return e
}

// deviceInfo queries device ordinal (cuInit must have run).
func (l *cuLib) deviceInfo(ordinal int) (DeviceInfo, int32, error) {
	info := DeviceInfo{Ordinal: ordinal}
	var dev int32
	if err := l.check("cuDeviceGet", ccall(l.deviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(ordinal))); err != nil {
		return info, 0, err
	}
	name := make([]byte, 256)
	if err := l.check("cuDeviceGetName", ccall(l.deviceGetName, uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)), uintptr(dev))); err != nil {
		return info, 0, err
	}
	info.Name = goString(&name[0], len(name))
	attr := func(a int) (int, error) {
		var v int32
		err := l.check("cuDeviceGetAttribute", ccall(l.deviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(dev)))
		return int(v), err
	}
	major, err := attr(cuAttrComputeCapMajor)
	if err != nil {
		return info, 0, err
	}
	minor, err := attr(cuAttrComputeCapMinor)
	if err != nil {
		return info, 0, err
	}
	info.SM = major*10 + minor
	if info.SMs, err = attr(cuAttrMultiprocessorCount); err != nil {
		return info, 0, err
	}
	if info.MaxSmemOptin, err = attr(cuAttrMaxSharedPerBlockOptin); err != nil {
		return info, 0, err
	}
	var total uint64
	if err := l.check("cuDeviceTotalMem_v2", ccall(l.deviceTotalMem, uintptr(unsafe.Pointer(&total)), uintptr(dev))); err != nil {
		return info, 0, err
	}
	info.Memory = int64(total)
	var v int32
	if err := l.check("cuDriverGetVersion", ccall(l.driverGetVersion, uintptr(unsafe.Pointer(&v)))); err != nil {
		return info, 0, err
	}
	info.DriverVersion = int(v)
	return info, dev, nil
}

// cudaDriver is the driver implementation over the real CUDA libraries.
// All of its methods run on the executor's thread, where the device's
// primary context is current.
type cudaDriver struct {
	cu      *cuLib
	dev     int32
	ctx     uintptr
	stream  uintptr
	module  uintptr
	events  [2]uintptr
	blas    *blas
	retains bool // the primary context was retained (release on close)
}

func (c *cudaDriver) alloc(bytes int) (uintptr, error) {
	var p uintptr
	err := c.cu.check("cuMemAlloc_v2", ccall(c.cu.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes)))
	return p, err
}

func (c *cudaDriver) free(p uintptr) error {
	return c.cu.check("cuMemFree_v2", ccall(c.cu.memFree, p))
}

func (c *cudaDriver) hostAlloc(bytes int) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	err := c.cu.check("cuMemHostAlloc", ccall(c.cu.memHostAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes), 0))
	return p, err
}

func (c *cudaDriver) hostFree(p unsafe.Pointer) error {
	return c.cu.check("cuMemFreeHost", ccall(c.cu.memFreeHost, uintptr(p)))
}

func (c *cudaDriver) htod(dst uintptr, src unsafe.Pointer, bytes int) error {
	if err := c.cu.check("cuMemcpyHtoDAsync_v2", ccall(c.cu.memcpyHtoDAsync, dst, uintptr(src), uintptr(bytes), c.stream)); err != nil {
		return err
	}
	return c.sync()
}

func (c *cudaDriver) dtoh(dst unsafe.Pointer, src uintptr, bytes int) error {
	if err := c.cu.check("cuMemcpyDtoHAsync_v2", ccall(c.cu.memcpyDtoHAsync, uintptr(dst), src, uintptr(bytes), c.stream)); err != nil {
		return err
	}
	return c.sync()
}

func (c *cudaDriver) dtod(dst, src uintptr, bytes int) error {
	return c.cu.check("cuMemcpyDtoDAsync_v2", ccall(c.cu.memcpyDtoDAsync, dst, src, uintptr(bytes), c.stream))
}

func (c *cudaDriver) memsetD32(dst uintptr, v uint32, n int) error {
	return c.cu.check("cuMemsetD32Async", ccall(c.cu.memsetD32Async, dst, uintptr(v), uintptr(n), c.stream))
}

func (c *cudaDriver) function(name string) (uintptr, error) {
	var fn uintptr
	cname := cString(name)
	err := c.cu.check("cuModuleGetFunction("+name+")", ccall(c.cu.moduleGetFunction, uintptr(unsafe.Pointer(&fn)), c.module, uintptr(unsafe.Pointer(&cname[0]))))
	return fn, err
}

func (c *cudaDriver) setMaxDynamicSmem(fn uintptr, bytes int) error {
	return c.cu.check("cuFuncSetAttribute", ccall(c.cu.funcSetAttribute, fn, cuFuncAttrMaxDynamicSmem, uintptr(bytes)))
}

func (c *cudaDriver) launch(fn uintptr, grid, block [3]uint32, smem int, params unsafe.Pointer) error {
	return c.cu.check("cuLaunchKernel", ccall(c.cu.launchKernel, fn,
		uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]),
		uintptr(smem), c.stream, uintptr(params), 0))
}

func (c *cudaDriver) gemm(g *gemmArgs) error { return c.blas.gemm(g, c.stream) }

func (c *cudaDriver) sync() error {
	return c.cu.check("cuStreamSynchronize", ccall(c.cu.streamSynchronize, c.stream))
}

func (c *cudaDriver) eventRecord(i int) error {
	return c.cu.check("cuEventRecord", ccall(c.cu.eventRecord, c.events[i], c.stream))
}

func (c *cudaDriver) eventElapsed() (float32, error) {
	if err := c.cu.check("cuEventSynchronize", ccall(c.cu.eventSynchronize, c.events[1])); err != nil {
		return 0, err
	}
	var ms float32
	err := c.cu.check("cuEventElapsedTime", ccall(c.cu.eventElapsed, uintptr(unsafe.Pointer(&ms)), c.events[0], c.events[1]))
	return ms, err
}

func (c *cudaDriver) close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if c.blas != nil {
		keep(c.blas.close(c))
	}
	for _, e := range c.events {
		if e != 0 {
			keep(c.cu.check("cuEventDestroy_v2", ccall(c.cu.eventDestroy, e)))
		}
	}
	if c.module != 0 {
		keep(c.cu.check("cuModuleUnload", ccall(c.cu.moduleUnload, c.module)))
	}
	if c.stream != 0 {
		keep(c.cu.check("cuStreamDestroy_v2", ccall(c.cu.streamDestroy, c.stream)))
	}
	if c.retains {
		keep(c.cu.check("cuDevicePrimaryCtxRelease_v2", ccall(c.cu.primaryCtxRelease, uintptr(c.dev))))
	}
	return first
}
