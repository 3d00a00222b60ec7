//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// nvrtcLib is NVRTC's entry points.
type nvrtcLib struct {
	path         string
	major, minor int
	builtins     string // the builtins library pre-opened, if any

	version, createProgram, compileProgram, destroyProgram uintptr
	getLogSize, getLog, getCUBINSize, getCUBIN             uintptr
	numSupportedArchs, supportedArchs                      uintptr
	errorString                                            func(int32) string
}

func loadNVRTC() (*nvrtcLib, error) {
	r, err := openLibrary(libNVRTC, "")
	if err != nil {
		return nil, err
	}
	l := &nvrtcLib{path: r.path}
	var errStr uintptr
	err = bindSymbols("libnvrtc", r.handle, []symbol{
		{dst: &l.version, names: []string{"nvrtcVersion"}},
		{dst: &l.createProgram, names: []string{"nvrtcCreateProgram"}},
		{dst: &l.compileProgram, names: []string{"nvrtcCompileProgram"}},
		{dst: &l.destroyProgram, names: []string{"nvrtcDestroyProgram"}},
		{dst: &l.getLogSize, names: []string{"nvrtcGetProgramLogSize"}},
		{dst: &l.getLog, names: []string{"nvrtcGetProgramLog"}},
		{dst: &l.getCUBINSize, names: []string{"nvrtcGetCUBINSize"}},
		{dst: &l.getCUBIN, names: []string{"nvrtcGetCUBIN"}},
		{dst: &l.numSupportedArchs, names: []string{"nvrtcGetNumSupportedArchs"}, optional: true},
		{dst: &l.supportedArchs, names: []string{"nvrtcGetSupportedArchs"}, optional: true},
		{dst: &errStr, names: []string{"nvrtcGetErrorString"}},
	})
	if err != nil {
		return nil, err
	}
	purego.RegisterFunc(&l.errorString, errStr)
	var major, minor int32
	if err := l.check("nvrtcVersion", ccall(l.version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))); err != nil {
		return nil, err
	}
	l.major, l.minor = int(major), int(minor)
	l.builtins = preopenBuiltins(filepath.Dir(l.path), l.major, l.minor)
	return l, nil
}

// preopenBuiltins opens libnvrtc-builtins from the folder libnvrtc came
// from, so that NVRTC's own dlopen of it by name finds it loaded (pip
// wheels are not on the loader's path). It returns the file opened, or "".
func preopenBuiltins(dir string, major, minor int) string {
	present, _ := filepath.Glob(filepath.Join(dir, "libnvrtc-builtins.so*"))
	for _, p := range builtinsCandidates(dir, major, minor, present) {
		if _, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL); err == nil {
			return p
		} else {
			slog.Debug("cuda: pre-opening NVRTC builtins failed", "file", p, "err", err)
		}
	}
	return ""
}

func (l *nvrtcLib) check(op string, code int32) error {
	if code == 0 {
		return nil
	}
	name := l.errorString(code)
	if name == "" {
		name = fmt.Sprintf("nvrtcResult %d", code)
	}
	return &DriverError{Op: op, Code: int(code), Name: name}
}

// archs lists the sm_XY NVRTC can compile for (nil when it cannot say).
func (l *nvrtcLib) archs() []int {
	if l.numSupportedArchs == 0 || l.supportedArchs == 0 {
		return nil
	}
	var n int32
	if ccall(l.numSupportedArchs, uintptr(unsafe.Pointer(&n))) != 0 || n <= 0 || n > 256 {
		return nil
	}
	a := make([]int32, n)
	if ccall(l.supportedArchs, uintptr(unsafe.Pointer(&a[0]))) != 0 {
		return nil
	}
	out := make([]int, n)
	for i, v := range a {
		out[i] = int(v)
	}
	return out
}

// compile compiles src with opts to a CUBIN. A failed compile returns the
// compiler's log in the error.
func (l *nvrtcLib) compile(src, name string, opts []string) ([]byte, error) {
	csrc, cname := cString(src), cString(name)
	var prog uintptr
	if err := l.check("nvrtcCreateProgram", ccall(l.createProgram, uintptr(unsafe.Pointer(&prog)),
		uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0)); err != nil {
		return nil, err
	}
	defer func() { ccall(l.destroyProgram, uintptr(unsafe.Pointer(&prog))) }()

	// const char** options: an array of pointers to NUL-terminated strings,
	// all pinned while NVRTC reads them.
	var pin runtime.Pinner
	defer pin.Unpin()
	copts := make([]*byte, len(opts))
	for i, o := range opts {
		b := cString(o)
		pin.Pin(&b[0])
		copts[i] = &b[0]
	}
	var optp uintptr
	if len(copts) > 0 {
		pin.Pin(&copts[0])
		optp = uintptr(unsafe.Pointer(&copts[0]))
	}
	code := ccall(l.compileProgram, prog, uintptr(len(copts)), optp)
	runtime.KeepAlive(copts)
	log := l.log(prog)
	if err := l.check("nvrtcCompileProgram", code); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, trimLog(log, 8000))
	}
	if strings.TrimSpace(log) != "" {
		slog.Debug("cuda: NVRTC log", "log", log)
	}
	var size uintptr
	if err := l.check("nvrtcGetCUBINSize", ccall(l.getCUBINSize, prog, uintptr(unsafe.Pointer(&size)))); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("cuda: NVRTC produced an empty CUBIN")
	}
	cubin := make([]byte, size)
	if err := l.check("nvrtcGetCUBIN", ccall(l.getCUBIN, prog, uintptr(unsafe.Pointer(&cubin[0])))); err != nil {
		return nil, err
	}
	return cubin, nil
}

func (l *nvrtcLib) log(prog uintptr) string {
	var size uintptr
	if ccall(l.getLogSize, prog, uintptr(unsafe.Pointer(&size))) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if ccall(l.getLog, prog, uintptr(unsafe.Pointer(&buf[0]))) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00")
}

func trimLog(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n... (log truncated)"
}
