package cuda

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeEnv is a search environment with the given variables, existing
// folders and glob results.
func fakeEnv(vars map[string]string, dirs []string, globs map[string][]string) searchEnv {
	return searchEnv{
		getenv: func(k string) string { return vars[k] },
		glob:   func(p string) ([]string, error) { return globs[p], nil },
		isDir:  func(p string) bool { return slices.Contains(dirs, p) },
		goarch: "amd64",
	}
}

func TestCandidatesOrder(t *testing.T) {
	site := "/opt/torch/.venv/lib/python3.12/site-packages"
	env := fakeEnv(
		map[string]string{"CUDA_HOME": "/opt/cuda", LibPathEnv: "/first:/second", "HOME": "/home/u"},
		nil,
		map[string][]string{
			"/opt/torch/.venv/lib/python3*/site-packages": {site},
			site + "/nvidia/*/lib":                        {site + "/nvidia/nccl/lib", site + "/nvidia/cu13/lib"},
		},
	)
	got := candidates(libNVRTC, env, "")
	want := []string{
		"/first/libnvrtc.so.13", "/first/libnvrtc.so.12", "/first/libnvrtc.so",
		"/second/libnvrtc.so.13", "/second/libnvrtc.so.12", "/second/libnvrtc.so",
		"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
		"/opt/cuda/lib64/libnvrtc.so.13",
	}
	if !slices.Equal(got[:len(want)], want) {
		t.Fatalf("first candidates:\n got %q\nwant %q", got[:len(want)], want)
	}
	idx := func(p string) int {
		i := slices.Index(got, p)
		if i < 0 {
			t.Fatalf("%s not among the candidates %q", p, got)
		}
		return i
	}
	// GPU.md's order: $CUDA_HOME, /usr/local/nvidia/lib64, the toolkit's
	// targets folder, then the Python wheels (cu13 first, then nvidia/*/lib).
	order := []string{
		"/opt/cuda/lib64/libnvrtc.so.13",
		"/usr/local/nvidia/lib64/libnvrtc.so.13",
		"/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
		site + "/nvidia/cu13/lib/libnvrtc.so.13",
		site + "/nvidia/cuda_nvrtc/lib/libnvrtc.so.13",
		site + "/nvidia/nccl/lib/libnvrtc.so.13",
	}
	for i := 1; i < len(order); i++ {
		if idx(order[i-1]) >= idx(order[i]) {
			t.Errorf("%s should come before %s", order[i-1], order[i])
		}
	}
	for _, c := range got {
		if strings.Contains(c, "stubs") {
			t.Errorf("stub library %s among the candidates", c)
		}
	}
	if n := len(got); n != len(dedupe(slices.Clone(got))) {
		t.Errorf("duplicate candidates in %q", got)
	}
}

func TestCandidatesDriverNotInToolkit(t *testing.T) {
	env := fakeEnv(map[string]string{"CUDA_HOME": "/opt/cuda"}, nil, nil)
	got := candidates(libCUDA, env, "")
	for _, c := range got {
		if strings.HasPrefix(c, "/opt/cuda") || strings.Contains(c, "site-packages") {
			t.Errorf("libcuda looked for in a toolkit or wheel folder: %s", c)
		}
	}
	if got[0] != "libcuda.so.1" || !slices.Contains(got, "/usr/local/nvidia/lib64/libcuda.so.1") {
		t.Errorf("libcuda candidates %q", got)
	}
}

func TestCandidatesOverride(t *testing.T) {
	for _, tc := range []struct {
		name string
		val  string
		dirs []string
		want []string
	}{
		{"file", "/x/libnvrtc.so.13.1", nil, []string{"/x/libnvrtc.so.13.1"}},
		{"folder", "/x", []string{"/x"}, []string{"/x/libnvrtc.so.13", "/x/libnvrtc.so.12", "/x/libnvrtc.so"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := fakeEnv(map[string]string{"MAI_LIBNVRTC": tc.val, "CUDA_HOME": "/opt/cuda"}, tc.dirs, nil)
			if got := candidates(libNVRTC, env, "/pref"); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q (an override is the only place looked at)", got, tc.want)
			}
		})
	}
}

func TestCandidatesPreferDirFirst(t *testing.T) {
	got := candidates(libCUBLAS, fakeEnv(nil, nil, nil), "/wheel/nvidia/cu13/lib")
	if got[0] != "/wheel/nvidia/cu13/lib/libcublas.so.13" {
		t.Errorf("cuBLAS should be looked for next to cuBLASLt first; got %q", got[:3])
	}
}

func TestCandidatesArm64(t *testing.T) {
	env := fakeEnv(nil, nil, nil)
	env.goarch = "arm64"
	got := candidates(libNVRTC, env, "")
	if !slices.Contains(got, "/usr/local/cuda/targets/sbsa-linux/lib/libnvrtc.so.13") {
		t.Errorf("arm64 should search the sbsa-linux target folder: %q", got)
	}
}

func TestOpenFirst(t *testing.T) {
	cands := []string{"libnvrtc.so.13", "/a/libnvrtc.so.13", "/b/libnvrtc.so.13", "/c/libnvrtc.so.13"}
	exists := func(p string) bool { return p == "/b/libnvrtc.so.13" || p == "/c/libnvrtc.so.13" }
	t.Run("found", func(t *testing.T) {
		var tried []string
		r, err := openFirst(libNVRTC, cands, exists, func(p string) (uintptr, error) {
			tried = append(tried, p)
			if p == "/c/libnvrtc.so.13" {
				return 42, nil
			}
			if p == "/b/libnvrtc.so.13" {
				return 0, errors.New("wrong ELF class: ELFCLASS32")
			}
			return 0, errors.New("libnvrtc.so.13: cannot open shared object file: No such file or directory")
		})
		if err != nil || r.handle != 42 || r.path != "/c/libnvrtc.so.13" {
			t.Fatalf("got %+v, %v", r, err)
		}
		if slices.Contains(tried, "/a/libnvrtc.so.13") {
			t.Errorf("a missing file was passed to dlopen: %q", tried)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := openFirst(libNVRTC, cands, exists, func(p string) (uintptr, error) {
			if p == "/b/libnvrtc.so.13" {
				return 0, errors.New("wrong ELF class: ELFCLASS32")
			}
			return 0, errors.New(p + ": cannot open shared object file: No such file or directory")
		})
		if !errors.Is(err, ErrLibraryNotFound) {
			t.Fatalf("error %v does not wrap ErrLibraryNotFound", err)
		}
		msg := err.Error()
		for _, want := range []string{
			"libnvrtc.so.13 not found", "NVRTC",
			"/b/libnvrtc.so.13: wrong ELF class", // a file that exists but failed: its reason
			"/a",                                 // folders searched
			"apt-get install cuda-nvrtc",         // how to install
			"MAI_LIBNVRTC", LibPathEnv,           // how to point at it
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q:\n%s", want, msg)
			}
		}
		if strings.Contains(msg, "load: libnvrtc.so.13:") || strings.Contains(msg, "; libnvrtc.so.13:") {
			t.Errorf("the loader's not-found for a bare soname should not be listed:\n%s", msg)
		}
	})
}

func TestMappedPath(t *testing.T) {
	maps := `7f00000000-7f00001000 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6
7f10000000-7f10100000 r-xp 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05
7f20000000-7f20100000 r-xp 00000000 08:01 789 /opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13
7f30000000-7f30100000 r-xp 00000000 08:01 790 /opt/my dir/libcublasLt.so.13
7f40000000-7f40001000 rw-p 00000000 00:00 0 [heap]
`
	for _, tc := range []struct{ soname, want string }{
		{"libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05"},
		{"libnvrtc.so.13", "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13"},
		{"libcublasLt.so.13", "/opt/my dir/libcublasLt.so.13"},
		{"libcublas.so.13", ""}, // libcublasLt must not match libcublas
		{"libnccl.so.2", ""},
	} {
		if got := mappedPath(maps, tc.soname); got != tc.want {
			t.Errorf("mappedPath(%s) = %q, want %q", tc.soname, got, tc.want)
		}
	}
}

func TestBuiltinsCandidates(t *testing.T) {
	dir := "/w/nvidia/cu13/lib"
	present := []string{filepath.Join(dir, "libnvrtc-builtins.so.13.1"), filepath.Join(dir, "libnvrtc-builtins.so.13.0"), filepath.Join(dir, "libnvrtc.so.13")}
	got := builtinsCandidates(dir, 13, 0, present)
	want := []string{filepath.Join(dir, "libnvrtc-builtins.so.13.0"), filepath.Join(dir, "libnvrtc-builtins.so.13.1")}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (exact version first, never libnvrtc itself)", got, want)
	}
	if got := builtinsCandidates(dir, 13, 0, nil); len(got) != 0 {
		t.Errorf("nothing present gives %q", got)
	}
}

func TestSitePackages(t *testing.T) {
	env := fakeEnv(map[string]string{"VIRTUAL_ENV": "/venv", "HOME": "/home/u"}, []string{"/usr/lib/python3/dist-packages"}, map[string][]string{
		"/venv/lib/python3*/site-packages":            {"/venv/lib/python3.11/site-packages", "/venv/lib/python3.12/site-packages"},
		"/opt/torch/.venv/lib/python3*/site-packages": {"/opt/torch/.venv/lib/python3.12/site-packages"},
		"/home/u/.local/lib/python3*/site-packages":   {"/home/u/.local/lib/python3.12/site-packages"},
	})
	got := sitePackages(env)
	want := []string{
		"/venv/lib/python3.12/site-packages", "/venv/lib/python3.11/site-packages",
		"/opt/torch/.venv/lib/python3.12/site-packages",
		"/home/u/.local/lib/python3.12/site-packages",
		"/usr/lib/python3/dist-packages",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestReportWrite(t *testing.T) {
	_, err := openFirst(libCUDA, []string{"libcuda.so.1"}, func(string) bool { return false }, func(p string) (uintptr, error) {
		return 0, fmt.Errorf("%s: cannot open shared object file: No such file or directory", p)
	})
	r := &Report{
		Libraries: []LibStatus{{Name: "cuda", Error: err.Error(), err: err}, {Name: "nvrtc", Path: "/x/libnvrtc.so.13", Version: "13.0"}},
		Problems:  []string{err.Error()},
	}
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"cuda          not found", "/x/libnvrtc.so.13 (13.0)", "problems:", "install the NVIDIA driver"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if r.OK() {
		t.Error("a report without devices is not OK")
	}
}
