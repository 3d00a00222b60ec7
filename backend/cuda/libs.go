package cuda

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// LibPathEnv names a colon-separated list of folders searched before any
// other place for every CUDA library.
const LibPathEnv = "MAI_CUDA_LIB_PATH"

// libSpec describes one native library: how it is named, where it is looked
// for and what to tell the user when it is missing.
type libSpec struct {
	key     string   // short name: "cuda", "nvrtc", "cublasLt", "cublas"
	what    string   // one line on what it is for
	env     string   // override: a file, or a folder holding one of sonames
	sonames []string // file names, newest first
	// toolkit is true for the CUDA toolkit's libraries (searched in
	// $CUDA_HOME and the toolkit folders); the driver (libcuda) is only
	// looked for where drivers live, never in a toolkit's stubs folder.
	toolkit bool
	// wheels are folders under a Python site-packages that NVIDIA's pip
	// wheels install the library into, most specific first.
	wheels []string
	hint   string // how to install it
}

// The libraries MAI opens, in load order (cuBLASLt before cuBLAS: cuBLAS
// needs cuBLASLt by soname, which then resolves to the copy already open).
var (
	libCUDA = libSpec{
		key:     "cuda",
		what:    "the NVIDIA driver's CUDA library",
		env:     "MAI_LIBCUDA",
		sonames: []string{"libcuda.so.1", "libcuda.so"},
		hint: "install the NVIDIA driver (it ships libcuda.so.1); in a container, run it with the NVIDIA " +
			"Container Toolkit (--gpus all) so the driver's libraries are mounted",
	}
	libNVRTC = libSpec{
		key:     "nvrtc",
		what:    "NVRTC, the runtime compiler for MAI's kernels",
		env:     "MAI_LIBNVRTC",
		sonames: []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"},
		toolkit: true,
		wheels:  []string{"nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"},
		hint: "install the CUDA toolkit's NVRTC (apt-get install cuda-nvrtc-13-0, or cuda-nvrtc-12-x) or " +
			"the pip wheel nvidia-cuda-nvrtc",
	}
	libCUBLASLt = libSpec{
		key:     "cublasLt",
		what:    "cuBLASLt, the matrix multiply library",
		env:     "MAI_LIBCUBLASLT",
		sonames: []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"},
		toolkit: true,
		wheels:  []string{"nvidia/cu13/lib", "nvidia/cublas/lib"},
		hint: "install cuBLAS (apt-get install libcublas-13-0, or libcublas-12-x) or the pip wheel " +
			"nvidia-cublas",
	}
	libCUBLAS = libSpec{
		key:     "cublas",
		what:    "cuBLAS, the fallback matrix multiply",
		env:     "MAI_LIBCUBLAS",
		sonames: []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"},
		toolkit: true,
		wheels:  []string{"nvidia/cu13/lib", "nvidia/cublas/lib"},
		hint: "install cuBLAS (apt-get install libcublas-13-0, or libcublas-12-x) or the pip wheel " +
			"nvidia-cublas",
	}
)

// searchEnv is what discovery reads from the environment and file system;
// tests replace it.
type searchEnv struct {
	getenv func(string) string
	glob   func(pattern string) ([]string, error)
	isDir  func(path string) bool
	goarch string
}

// toolkitDirs returns the CUDA toolkit folders searched after the loader's
// own search, in order.
func toolkitDirs(e searchEnv) []string {
	var dirs []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if h := e.getenv(v); h != "" {
			dirs = append(dirs, filepath.Join(h, "lib64"))
		}
	}
	target := "x86_64-linux"
	if e.goarch == "arm64" {
		target = "sbsa-linux"
	}
	return append(dirs,
		"/usr/local/nvidia/lib64",
		"/usr/local/cuda/targets/"+target+"/lib",
		"/usr/local/cuda/lib64",
	)
}

// driverDirs returns the folders where a driver's libcuda lives.
func driverDirs(e searchEnv) []string {
	multiarch := "x86_64-linux-gnu"
	if e.goarch == "arm64" {
		multiarch = "aarch64-linux-gnu"
	}
	return []string{"/usr/local/nvidia/lib64", "/usr/lib/" + multiarch, "/usr/lib64", "/usr/lib/wsl/lib"}
}

// sitePackages lists Python site-packages folders that may hold NVIDIA's
// pip wheels: the active virtual or conda environment, the lent GPU
// machines' /opt/torch/.venv, then system and user installs.
func sitePackages(e searchEnv) []string {
	var roots []string
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := e.getenv(v); p != "" {
			roots = append(roots, p)
		}
	}
	roots = append(roots, "/opt/torch/.venv", "/usr/local", "/usr")
	if h := e.getenv("HOME"); h != "" {
		roots = append(roots, filepath.Join(h, ".local"))
	}
	var dirs []string
	for _, r := range roots {
		for _, sub := range []string{"site-packages", "dist-packages"} {
			m, _ := e.glob(filepath.Join(r, "lib", "python3*", sub))
			slices.Sort(m)
			slices.Reverse(m) // newest Python first
			dirs = append(dirs, m...)
		}
	}
	if e.isDir("/usr/lib/python3/dist-packages") {
		dirs = append(dirs, "/usr/lib/python3/dist-packages")
	}
	return dirs
}

// candidates returns the paths (or bare sonames, for the loader's own
// search) tried for spec, in order. An override variable, when set, is the
// only place looked at: a wrong override is an error, not a silent
// fallback. preferDir, when not empty, is searched first (cuBLAS next to
// the cuBLASLt already loaded).
func candidates(spec libSpec, e searchEnv, preferDir string) []string {
	inDir := func(dir string) []string {
		out := make([]string, len(spec.sonames))
		for i, s := range spec.sonames {
			out[i] = filepath.Join(dir, s)
		}
		return out
	}
	if o := e.getenv(spec.env); o != "" {
		if e.isDir(o) {
			return inDir(o)
		}
		return []string{o}
	}
	var c []string
	if preferDir != "" {
		c = append(c, inDir(preferDir)...)
	}
	for _, d := range filepath.SplitList(e.getenv(LibPathEnv)) {
		if d != "" {
			c = append(c, inDir(d)...)
		}
	}
	c = append(c, spec.sonames...) // ld.so.cache, LD_LIBRARY_PATH, RUNPATH
	if !spec.toolkit {
		for _, d := range driverDirs(e) {
			c = append(c, inDir(d)...)
		}
		return dedupe(c)
	}
	for _, d := range toolkitDirs(e) {
		c = append(c, inDir(d)...)
	}
	for _, sp := range sitePackages(e) {
		for _, w := range spec.wheels {
			c = append(c, inDir(filepath.Join(sp, w))...)
		}
		// Any other NVIDIA wheel folder (nvidia/*/lib) last.
		others, _ := e.glob(filepath.Join(sp, "nvidia", "*", "lib"))
		slices.Sort(others)
		for _, o := range others {
			c = append(c, inDir(o)...)
		}
	}
	return dedupe(c)
}

func dedupe(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// ErrLibraryNotFound is wrapped by every error that reports a missing
// native library.
var ErrLibraryNotFound = errors.New("library not found")

// attempt is one place a library was looked for and why it failed there.
type attempt struct {
	path string
	err  string // empty when the file does not exist (only listed by folder)
}

// LibraryError reports a native library that could not be opened: what it
// is, every place tried, and how to install it.
type LibraryError struct {
	Lib   string // the library's file name, e.g. libnvrtc.so.13
	What  string
	Env   string // the override variable
	Hint  string
	tried []attempt
}

// Error lists the folders searched (missing files are grouped by folder;
// files that exist but failed to load are shown with the loader's message).
func (e *LibraryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cuda: %s not found (%s)", e.Lib, e.What)
	var missing []string
	var failed []string
	for _, a := range e.tried {
		switch {
		case a.err != "":
			failed = append(failed, fmt.Sprintf("%s: %s", a.path, a.err))
		case strings.ContainsRune(a.path, '/'):
			if d := filepath.Dir(a.path); !slices.Contains(missing, d) {
				missing = append(missing, d)
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "; failed to load: %s", strings.Join(failed, "; "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; not in the loader's search path nor in %s", strings.Join(missing, ", "))
	}
	fmt.Fprintf(&b, ". To fix: %s (or set %s to the file or its folder, or %s to a list of folders)", e.Hint, e.Env, LibPathEnv)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrLibraryNotFound) true.
func (e *LibraryError) Unwrap() error { return ErrLibraryNotFound }

// loadResult is where a library was opened from.
type loadResult struct {
	handle uintptr
	path   string // the resolved file (from /proc/self/maps when opened by soname)
}

// openFirst tries the candidates in order with open, which returns a
// handle or an error (os.ErrNotExist-like failures are reported by
// exists returning false, and not tried).
func openFirst(spec libSpec, cands []string, exists func(string) bool, open func(string) (uintptr, error)) (loadResult, error) {
	le := &LibraryError{Lib: spec.sonames[0], What: spec.what, Env: spec.env, Hint: spec.hint}
	for _, c := range cands {
		if strings.ContainsRune(c, '/') && !exists(c) {
			le.tried = append(le.tried, attempt{path: c})
			continue
		}
		h, err := open(c)
		if err == nil {
			return loadResult{handle: h, path: c}, nil
		}
		msg := err.Error()
		if !strings.ContainsRune(c, '/') && strings.Contains(msg, "No such file") {
			// A soname the loader did not find: not worth a line.
			le.tried = append(le.tried, attempt{path: c})
			continue
		}
		le.tried = append(le.tried, attempt{path: c, err: msg})
	}
	return loadResult{}, le
}

// defaultGOARCH is runtime.GOARCH; a variable so that tests can show both.
var defaultGOARCH = runtime.GOARCH
