//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
	"unsafe"
)

// Open loads the CUDA libraries, makes device opts.Ordinal's primary
// context current on the device thread, creates a stream, loads (compiling
// on first use) the kernels and creates the cuBLAS(Lt) handles. Its error
// names what is missing and how to install it.
func Open(opts Options) (*Device, error) {
	exec := newExecutor()
	var d *Device
	err := exec.do(func() error {
		drv, info, err := openCUDA(opts)
		if err != nil {
			return err
		}
		d, err = newDevice(exec, drv, info)
		if err != nil {
			drv.close()
		}
		return err
	})
	if err != nil {
		exec.close()
		return nil, err
	}
	return d, nil
}

// initDriver loads libcuda and runs cuInit, with a clear error for the
// usual failures.
func initDriver() (*cuLib, error) {
	cu, err := loadCU()
	if err != nil {
		return nil, err
	}
	return cu, cu.initialize()
}

// initialize runs cuInit.
func (cu *cuLib) initialize() error {
	if err := cu.check("cuInit", ccall(cu.init, 0)); err != nil {
		hint := "is the NVIDIA kernel driver loaded (nvidia-smi works)?"
		if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
			hint = fmt.Sprintf("CUDA_VISIBLE_DEVICES=%q hides the devices not listed", v)
		}
		return fmt.Errorf("cuda: the driver (%s) found no usable GPU: %w; %s", cu.path, err, hint)
	}
	return nil
}

func openCUDA(opts Options) (drv *cudaDriver, info DeviceInfo, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cu, err := initDriver()
	if err != nil {
		return nil, info, err
	}
	var count int32
	if err := cu.check("cuDeviceGetCount", ccall(cu.deviceGetCount, uintptr(unsafe.Pointer(&count)))); err != nil {
		return nil, info, err
	}
	if opts.Ordinal < 0 || opts.Ordinal >= int(count) {
		return nil, info, fmt.Errorf("cuda: device %d requested, %d present", opts.Ordinal, count)
	}
	info, dev, err := cu.deviceInfo(opts.Ordinal)
	if err != nil {
		return nil, info, err
	}
	nv, err := loadNVRTC()
	if err != nil {
		return nil, info, err
	}
	lt, cb, ltErr, cbErr := loadBLAS()
	if lt == nil && cb == nil {
		return nil, info, fmt.Errorf("%w; and %w", ltErr, cbErr)
	}
	if ltErr != nil {
		log.Warn("cuda: cuBLASLt not usable; GEMMs run through cuBLAS", "err", ltErr)
	}
	c := &cudaDriver{cu: cu, dev: dev}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err = cu.check("cuDevicePrimaryCtxRetain", ccall(cu.primaryCtxRetain, uintptr(unsafe.Pointer(&c.ctx)), uintptr(dev))); err != nil {
		return nil, info, err
	}
	c.retains = true
	if err = cu.check("cuCtxSetCurrent", ccall(cu.ctxSetCurrent, c.ctx)); err != nil {
		return nil, info, err
	}
	var free, total uint64
	if err = cu.check("cuMemGetInfo_v2", ccall(cu.memGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))); err != nil {
		return nil, info, err
	}
	info.FreeMemory = int64(free)
	if err = cu.check("cuStreamCreate", ccall(cu.streamCreate, uintptr(unsafe.Pointer(&c.stream)), cuStreamNonBlocking)); err != nil {
		return nil, info, err
	}
	for i := range c.events {
		if err = cu.check("cuEventCreate", ccall(cu.eventCreate, uintptr(unsafe.Pointer(&c.events[i])), cuEventDefault)); err != nil {
			return nil, info, err
		}
	}
	if err = c.loadKernels(nv, &info, opts, log); err != nil {
		return nil, info, err
	}
	ws := opts.Workspace
	if ws <= 0 {
		ws = 32 << 20
	}
	if c.blas, err = newBLAS(lt, cb, c, ws); err != nil {
		return nil, info, err
	}
	info.BLAS = c.blas.name()
	info.NVRTCVersion = fmt.Sprintf("%d.%d", nv.major, nv.minor)
	info.Libraries = []Library{{Name: "cuda", Path: cu.path, Version: cudaVersion(info.DriverVersion)}, {Name: "nvrtc", Path: nv.path, Version: info.NVRTCVersion}}
	if nv.builtins != "" {
		info.Libraries = append(info.Libraries, Library{Name: "nvrtc-builtins", Path: nv.builtins})
	}
	if lt != nil {
		info.Libraries = append(info.Libraries, Library{Name: "cublasLt", Path: lt.path, Version: lt.version})
	}
	if cb != nil {
		info.Libraries = append(info.Libraries, Library{Name: "cublas", Path: cb.path, Version: cb.version})
	}
	log.Info("cuda: device open", "device", info.Name, "sm", info.SM, "arch", info.Arch, "memory_gib", fmt.Sprintf("%.1f", float64(info.Memory)/(1<<30)),
		"blas", info.BLAS, "compile", info.CompileTime.Round(time.Millisecond), "cache", info.CacheFile)
	return c, info, nil
}

// loadKernels compiles (or reads from the cache) the embedded kernels for
// this device and loads them as the driver's module.
func (c *cudaDriver) loadKernels(nv *nvrtcLib, info *DeviceInfo, opts Options, log *slog.Logger) error {
	src, err := kernelSource()
	if err != nil {
		return err
	}
	arch, err := pickArch(info.SM, nv.archs())
	if err != nil {
		return err
	}
	info.Arch = arch
	o := nvrtcOptions(arch, opts.LineInfo)
	key := cacheKey{source: src, arch: arch, nvrtcVersion: [2]int{nv.major, nv.minor}, options: o}
	dir := opts.CacheDir
	switch {
	case strings.EqualFold(dir, "off"):
		dir = ""
	case dir == "":
		dir = cacheDir(os.Getenv, os.UserCacheDir)
	}
	if cubin, ok := loadCached(dir, key); ok {
		if err := c.loadModule(cubin); err == nil {
			info.CacheFile = dir + "/" + key.fileName()
			return nil
		} else {
			log.Warn("cuda: cached kernels did not load; recompiling", "err", err)
		}
	}
	t0 := time.Now()
	cubin, err := nv.compile(src, "mai_kernels.cu", o)
	if err != nil {
		return fmt.Errorf("cuda: compiling the kernels for sm_%d with NVRTC %d.%d: %w", arch, nv.major, nv.minor, err)
	}
	info.CompileTime = time.Since(t0)
	if err := storeCached(dir, key, cubin); err != nil {
		log.Warn("cuda: kernels not cached", "err", err)
	} else if dir != "" {
		info.CacheFile = dir + "/" + key.fileName()
	}
	return c.loadModule(cubin)
}

func (c *cudaDriver) loadModule(cubin []byte) error {
	if c.module != 0 {
		ccall(c.cu.moduleUnload, c.module)
		c.module = 0
	}
	return c.cu.check("cuModuleLoadData", ccall(c.cu.moduleLoadData, uintptr(unsafe.Pointer(&c.module)), uintptr(unsafe.Pointer(&cubin[0]))))
}

func cudaVersion(v int) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("CUDA %d.%d", v/1000, v%1000/10)
}

// Probe looks for the CUDA libraries and devices without compiling
// anything, for `mai gpu info`.
func Probe() *Report {
	r := &Report{}
	exec := newExecutor()
	defer exec.close()
	exec.do(func() error {
		probe(r)
		return nil
	})
	return r
}

func probe(r *Report) {
	st := LibStatus{Name: "cuda", What: libCUDA.what}
	cu, err := loadCU()
	if err != nil {
		st.Error, st.err = err.Error(), err
		r.Problems = append(r.Problems, err.Error())
	} else {
		st.Path = cu.path
		var v int32
		if ccall(cu.driverGetVersion, uintptr(unsafe.Pointer(&v))) == 0 {
			r.DriverVersion = int(v)
			st.Version = cudaVersion(int(v))
		}
		if err := cu.initialize(); err != nil {
			r.Problems = append(r.Problems, err.Error())
			cu = nil
		}
	}
	r.Libraries = append(r.Libraries, st)

	nvst := LibStatus{Name: "nvrtc", What: libNVRTC.what}
	if nv, err := loadNVRTC(); err != nil {
		nvst.Error, nvst.err = err.Error(), err
		r.Problems = append(r.Problems, err.Error())
	} else {
		nvst.Path, nvst.Version = nv.path, fmt.Sprintf("%d.%d", nv.major, nv.minor)
		r.NVRTCArchs = nv.archs()
		if nv.builtins != "" {
			nvst.Extra = "builtins " + nv.builtins
		}
	}
	r.Libraries = append(r.Libraries, nvst)

	lt, cb, ltErr, cbErr := loadBLAS()
	ltst := LibStatus{Name: "cublasLt", What: libCUBLASLt.what}
	cbst := LibStatus{Name: "cublas", What: libCUBLAS.what}
	if lt != nil {
		ltst.Path, ltst.Version = lt.path, lt.version
	} else {
		ltst.Error, ltst.err = ltErr.Error(), ltErr
	}
	if cb != nil {
		cbst.Path = cb.path
	} else {
		cbst.Error, cbst.err = cbErr.Error(), cbErr
	}
	switch {
	case lt == nil && cb == nil:
		r.Problems = append(r.Problems, ltErr.Error())
	case lt == nil:
		r.Problems = append(r.Problems, "cuBLASLt not usable (GEMMs fall back to cuBLAS, slower): "+ltErr.Error())
	}
	r.Libraries = append(r.Libraries, ltst, cbst)

	if cu == nil {
		return
	}
	var count int32
	if err := cu.check("cuDeviceGetCount", ccall(cu.deviceGetCount, uintptr(unsafe.Pointer(&count)))); err != nil {
		r.Problems = append(r.Problems, err.Error())
		return
	}
	for i := 0; i < int(count); i++ {
		info, dev, err := cu.deviceInfo(i)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		var ctx uintptr
		if cu.check("cuDevicePrimaryCtxRetain", ccall(cu.primaryCtxRetain, uintptr(unsafe.Pointer(&ctx)), uintptr(dev))) == nil {
			if ccall(cu.ctxSetCurrent, ctx) == 0 {
				var free, total uint64
				if ccall(cu.memGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total))) == 0 {
					info.FreeMemory = int64(free)
				}
				ccall(cu.ctxSetCurrent, 0)
			}
			ccall(cu.primaryCtxRelease, uintptr(dev))
		}
		if len(r.NVRTCArchs) > 0 {
			if a, err := pickArch(info.SM, r.NVRTCArchs); err == nil {
				info.Arch = a
			} else {
				r.Problems = append(r.Problems, err.Error())
			}
		}
		r.Devices = append(r.Devices, info)
	}
	if count == 0 {
		r.Problems = append(r.Problems, "the driver reports no CUDA device")
	}
}
