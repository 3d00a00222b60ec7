//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/ebitengine/purego"
)

// realEnv is discovery's view of this process and machine.
func realEnv() searchEnv {
	return searchEnv{
		getenv: os.Getenv,
		glob:   filepath.Glob,
		isDir: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.IsDir()
		},
		goarch: defaultGOARCH,
	}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// openLibrary finds and opens spec (see candidates for the order) and
// resolves the file it came from.
func openLibrary(spec libSpec, preferDir string) (loadResult, error) {
	cands := candidates(spec, realEnv(), preferDir)
	r, err := openFirst(spec, cands, fileExists, func(p string) (uintptr, error) {
		return purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	})
	if err != nil {
		return r, err
	}
	if !filepath.IsAbs(r.path) {
		if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
			if p := mappedPath(string(maps), r.path); p != "" {
				r.path = p
			}
		}
	}
	if p, err := filepath.EvalSymlinks(r.path); err == nil {
		r.path = p
	}
	return r, nil
}

// symbols resolves each of names into *dst, the first name found winning
// (versioned names before plain ones). Missing required symbols are an
// error naming the library.
type symbol struct {
	dst      *uintptr
	names    []string
	optional bool
}

func bindSymbols(lib string, h uintptr, syms []symbol) error {
	for _, s := range syms {
		for _, n := range s.names {
			if p, err := purego.Dlsym(h, n); err == nil && p != 0 {
				*s.dst = p
				break
			}
		}
		if *s.dst == 0 && !s.optional {
			return fmt.Errorf("cuda: %s has no symbol %s (too old a version?)", lib, s.names[0])
		}
	}
	return nil
}

// ccall calls a C function with integer and pointer arguments and returns
// its int result (CUresult, nvrtcResult, cublasStatus_t).
//
//go:uintptrescapes
func ccall(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r)
}

// ccallPtr is ccall for functions returning size_t or a pointer.
//
//go:uintptrescapes
func ccallPtr(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// cString returns s as NUL-terminated bytes.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// goString reads a NUL-terminated C string (at most max bytes).
func goString(p *byte, max int) string {
	if p == nil {
		return ""
	}
	var b []byte
	for i := 0; i < max; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}
