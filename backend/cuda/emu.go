//go:build linux && (amd64 || arm64)

package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The emulator runs the real kernel sources on the CPU (emu/), so that
// every Device op, its launch shape and arguments, and the kernels' indexing
// are checked against backend/cpu on machines without a GPU, here and in the
// packages that drive a Device (model/gpu). It needs g++; it is built once
// into the temporary folder, keyed by the sources' hash.

//go:embed emu/emu.cc
var emuRuntimeSrc []byte

//go:embed emu/emu.h
var emuHeader []byte

// emuLib opens the emulator library, building it if needed. The error says
// why it is unavailable.
var emuLib = sync.OnceValues(func() (*emuDriverLib, error) {
	gxx, err := exec.LookPath("g++")
	if err != nil {
		return nil, fmt.Errorf("g++ not found (the kernel emulator is compiled with it)")
	}
	src, err := kernelSource()
	if err != nil {
		return nil, err
	}
	table, err := kernelTable()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("#define MAI_EMU 1\n#include \"emu.h\"\n")
	b.WriteString(src)
	b.WriteString("\n// Wrappers: unpack kernelParams and call the kernel.\n")
	for name, s := range table {
		fmt.Fprintf(&b, "extern \"C\" void emu_wrap_%s(void **p) { %s(", name, name)
		for i, typ := range s.types {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*(%s *)p[%d]", typ, i)
		}
		b.WriteString("); }\n")
	}
	h := sha256.New()
	h.Write([]byte(b.String()))
	h.Write(emuRuntimeSrc)
	h.Write(emuHeader)
	dir := filepath.Join(os.TempDir(), "mai-cuda-emu-"+hex.EncodeToString(h.Sum(nil))[:16])
	lib := filepath.Join(dir, "emu.so")
	if _, err := os.Stat(lib); err != nil {
		// Test binaries of several packages may build it at once: each
		// works in its own folder and renames its result into place.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		work, err := os.MkdirTemp(dir, "build-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
		for name, data := range map[string][]byte{"kernels.cc": []byte(b.String()), "emu.cc": emuRuntimeSrc, "emu.h": emuHeader} {
			if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
				return nil, err
			}
		}
		tmp := filepath.Join(work, "emu.so")
		cmd := exec.Command(gxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-Wall", "-Wno-unused-function",
			"-I", work, "-o", tmp, filepath.Join(work, "kernels.cc"), filepath.Join(work, "emu.cc"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("compiling the emulator: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, lib); err != nil {
			return nil, err
		}
	}
	hnd, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	l := &emuDriverLib{h: hnd}
	err = bindSymbols("emulator", hnd, []symbol{
		{dst: &l.launch, names: []string{"emu_launch"}},
		{dst: &l.errorf, names: []string{"emu_error"}},
		{dst: &l.malloc, names: []string{"emu_malloc"}},
		{dst: &l.free, names: []string{"emu_free"}},
		{dst: &l.memcpy, names: []string{"emu_memcpy"}},
		{dst: &l.memset32, names: []string{"emu_memset32"}},
		{dst: &l.gemm, names: []string{"emu_gemm"}},
	})
	return l, err
})

type emuDriverLib struct {
	h                                                    uintptr
	launch, errorf, malloc, free, memcpy, memset32, gemm uintptr
}

// emuDriver implements driver on the emulator: device memory is host
// memory, launches run the kernels' threads as fibers.
type emuDriver struct {
	l      *emuDriverLib
	events [2]time.Time
}

func (e *emuDriver) alloc(n int) (uintptr, error) {
	p := ccallPtr(e.l.malloc, uintptr(n))
	if p == 0 {
		return 0, &DriverError{Op: "emu_malloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
	}
	return p, nil
}

func (e *emuDriver) free(p uintptr) error { ccall(e.l.free, p); return nil }

func (e *emuDriver) hostAlloc(n int) (unsafe.Pointer, error) {
	b := make([]byte, n) // emulated page-locked memory: ordinary memory
	return unsafe.Pointer(&b[0]), nil
}

func (e *emuDriver) hostFree(unsafe.Pointer) error { return nil }

func (e *emuDriver) htod(dst uintptr, src unsafe.Pointer, n int) error {
	ccall(e.l.memcpy, dst, uintptr(src), uintptr(n))
	return nil
}

func (e *emuDriver) dtoh(dst unsafe.Pointer, src uintptr, n int) error {
	ccall(e.l.memcpy, uintptr(dst), src, uintptr(n))
	return nil
}

func (e *emuDriver) dtod(dst, src uintptr, n int) error {
	ccall(e.l.memcpy, dst, src, uintptr(n))
	return nil
}

func (e *emuDriver) memsetD32(dst uintptr, v uint32, n int) error {
	ccall(e.l.memset32, dst, uintptr(v), uintptr(n))
	return nil
}

func (e *emuDriver) function(name string) (uintptr, error) {
	p, err := purego.Dlsym(e.l.h, "emu_wrap_"+name)
	if err != nil {
		return 0, fmt.Errorf("emulator has no kernel %s: %w", name, err)
	}
	return p, nil
}

func (e *emuDriver) setMaxDynamicSmem(uintptr, int) error { return nil }

func (e *emuDriver) launch(fn uintptr, grid, block [3]uint32, smem int, params unsafe.Pointer) error {
	if block[0]*block[1]*block[2] > 1024 {
		return fmt.Errorf("block of %v threads exceeds 1024", block)
	}
	if grid[1] > 65535 || grid[2] > 65535 {
		return fmt.Errorf("grid %v exceeds the y/z limit 65535", grid)
	}
	if smem > 227<<10 {
		return fmt.Errorf("%d bytes of shared memory exceed an H100's 227 KiB", smem)
	}
	if ccall(e.l.launch, fn, uintptr(params), uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]), uintptr(smem)) != 0 {
		buf := make([]byte, 512)
		ccall(e.l.errorf, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return fmt.Errorf("emulator: %s", strings.TrimRight(string(buf), "\x00"))
	}
	return nil
}

func (e *emuDriver) gemm(g *gemmArgs) error {
	alpha, beta := g.alpha, g.beta
	b2i := func(b bool) uintptr {
		if b {
			return 1
		}
		return 0
	}
	ccall(e.l.gemm, b2i(g.transA), b2i(g.transB), uintptr(g.m), uintptr(g.n), uintptr(g.k),
		uintptr(unsafe.Pointer(&alpha)), g.a, uintptr(g.aType.cudaDataType()), uintptr(g.lda),
		g.b, uintptr(g.bType.cudaDataType()), uintptr(g.ldb),
		uintptr(unsafe.Pointer(&beta)), g.c, uintptr(g.cType.cudaDataType()), uintptr(g.ldc))
	return nil
}

func (e *emuDriver) sync() error { return nil }

func (e *emuDriver) eventRecord(i int) error {
	e.events[i] = time.Now()
	return nil
}

func (e *emuDriver) eventElapsed() (float32, error) {
	return float32(e.events[1].Sub(e.events[0]).Seconds() * 1000), nil
}

func (e *emuDriver) close() error { return nil }

// OpenEmulator returns a Device that runs the embedded kernel sources on the
// CPU: a small CUDA emulation (emu/) in which each block's threads are
// fibers switching at barriers and warp shuffles, device memory starts as
// NaN bytes, and a barrier or shuffle not every thread reaches is an error.
// GEMMs are a plain loop. It is for tests on machines without a GPU: slow,
// meant for tiny shapes. It needs g++ (the error says so when missing) and
// compiles once per source version into the temporary folder.
func OpenEmulator() (*Device, error) { return openEmu() }

// openEmu returns a Device on the emulator, or why there is none.
func openEmu() (*Device, error) {
	l, err := emuLib()
	if err != nil {
		return nil, err
	}
	exec := newExecutor()
	var d *Device
	err = exec.do(func() error {
		var err error
		d, err = newDevice(exec, &emuDriver{l: l}, DeviceInfo{Name: "emulator", SMs: 2, MaxSmemOptin: 227 << 10})
		return err
	})
	if err != nil {
		exec.close()
	}
	return d, err
}
