package cuda

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CacheEnv names the folder compiled kernels are cached in (default: the
// user cache folder's mai/cuda). Set it to "off" to compile every time.
const CacheEnv = "MAI_CUDA_CACHE"

// cacheKey identifies one compiled module: the same source compiled for the
// same architecture by the same NVRTC with the same options gives the same
// CUBIN.
type cacheKey struct {
	source       string
	arch         int // e.g. 90 for sm_90
	nvrtcVersion [2]int
	options      []string
}

// sum is a SHA-256 over every field of the key.
func (k cacheKey) sum() string {
	h := sha256.New()
	fmt.Fprintf(h, "mai-cubin-v1\x00sm_%d\x00nvrtc %d.%d\x00", k.arch, k.nvrtcVersion[0], k.nvrtcVersion[1])
	for _, o := range k.options {
		fmt.Fprintf(h, "%s\x00", o)
	}
	src := sha256.Sum256([]byte(k.source))
	h.Write(src[:])
	return hex.EncodeToString(h.Sum(nil))
}

// fileName is the cache file's name: readable parts, then the hash.
func (k cacheKey) fileName() string {
	return fmt.Sprintf("mai-kernels-sm%d-nvrtc%d.%d-%s.cubin", k.arch, k.nvrtcVersion[0], k.nvrtcVersion[1], k.sum()[:24])
}

// cacheDir returns the folder to cache CUBINs in, or "" when caching is off.
func cacheDir(getenv func(string) string, userCache func() (string, error)) string {
	switch v := getenv(CacheEnv); {
	case strings.EqualFold(v, "off"):
		return ""
	case v != "":
		return v
	}
	d, err := userCache()
	if err != nil || d == "" {
		return ""
	}
	return filepath.Join(d, "mai", "cuda")
}

const cacheMagic = "MAICUBIN1\n"

// encodeCached frames a CUBIN with its key and checksum so that a truncated
// or foreign file is never loaded.
func encodeCached(k cacheKey, cubin []byte) []byte {
	sum := sha256.Sum256(cubin)
	var b bytes.Buffer
	b.WriteString(cacheMagic)
	fmt.Fprintf(&b, "%s\n%s\n%d\n", k.sum(), hex.EncodeToString(sum[:]), len(cubin))
	b.Write(cubin)
	return b.Bytes()
}

// decodeCached returns the CUBIN in data if it is intact and was stored
// under k.
func decodeCached(k cacheKey, data []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(data, []byte(cacheMagic))
	if !ok {
		return nil, fmt.Errorf("not a MAI kernel cache file")
	}
	var fields [3]string
	for i := range fields {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, fmt.Errorf("truncated header")
		}
		fields[i], rest = string(line), after
	}
	if fields[0] != k.sum() {
		return nil, fmt.Errorf("stored under another key")
	}
	var n int
	if _, err := fmt.Sscanf(fields[2], "%d", &n); err != nil || n != len(rest) {
		return nil, fmt.Errorf("length %q does not match the %d bytes present", fields[2], len(rest))
	}
	sum := sha256.Sum256(rest)
	if hex.EncodeToString(sum[:]) != fields[1] {
		return nil, fmt.Errorf("checksum mismatch")
	}
	return slices.Clip(rest), nil
}

// loadCached reads k's CUBIN from dir; ok is false when absent or damaged.
func loadCached(dir string, k cacheKey) ([]byte, bool) {
	if dir == "" {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(dir, k.fileName()))
	if err != nil {
		return nil, false
	}
	cubin, err := decodeCached(k, data)
	return cubin, err == nil
}

// storeCached writes k's CUBIN to dir atomically (temporary file, rename).
func storeCached(dir string, k cacheKey, cubin []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cuda: kernel cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*.cubin")
	if err != nil {
		return fmt.Errorf("cuda: kernel cache: %w", err)
	}
	_, werr := f.Write(encodeCached(k, cubin))
	cerr := f.Close()
	if err := cmpErr(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cuda: kernel cache: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, k.fileName())); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cuda: kernel cache: %w", err)
	}
	return nil
}

func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// nvrtcOptions returns the NVRTC options for compiling MAI's kernels to a
// CUBIN for sm_<arch>. Fast math stays off: the kernels are tested against
// the CPU backend at 1e-5 relative.
func nvrtcOptions(arch int, lineInfo bool) []string {
	o := []string{
		fmt.Sprintf("--gpu-architecture=sm_%d", arch),
		"--std=c++17",
		"-DMAI_NVRTC=1",
	}
	if lineInfo {
		o = append(o, "--generate-line-info")
	}
	return o
}

// pickArch chooses the architecture to compile for: the device's own when
// NVRTC supports it, else the newest supported one of the same major
// version not above it (a CUBIN runs on later minor versions of its major).
func pickArch(device int, supported []int) (int, error) {
	if len(supported) == 0 || slices.Contains(supported, device) {
		return device, nil
	}
	best := -1
	for _, s := range supported {
		if s/10 == device/10 && s <= device && s > best {
			best = s
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("cuda: this NVRTC cannot compile for sm_%d (it supports sm_%v); install an NVRTC as new as the driver", device, supported)
	}
	return best, nil
}
