package cuda

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// mappedPath finds, in the text of /proc/self/maps, the file a library
// opened by soname was mapped from: the first mapped path whose base name
// starts with the soname's stem (libcuda.so.1 matches libcuda.so.580.95.05).
// It returns "" when none matches.
func mappedPath(maps, soname string) string {
	stem := soname
	if i := strings.Index(stem, ".so"); i >= 0 {
		stem = stem[:i+len(".so")]
	}
	for line := range strings.Lines(maps) {
		// address perms offset dev inode path
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		p := strings.Join(f[5:], " ")
		if !strings.HasPrefix(p, "/") {
			continue
		}
		base := filepath.Base(p)
		if base == stem || strings.HasPrefix(base, stem+".") {
			return p
		}
	}
	return ""
}

// builtinsCandidates lists the NVRTC builtins libraries to pre-open from the
// folder libnvrtc was loaded from: NVRTC dlopens
// libnvrtc-builtins.so.<major>.<minor> by name while compiling, which fails
// when that folder is not on the loader's path (pip wheels). Present files
// (from a glob of dir) are ordered: the exact version, then others.
func builtinsCandidates(dir string, major, minor int, present []string) []string {
	exact := filepath.Join(dir, fmt.Sprintf("libnvrtc-builtins.so.%d.%d", major, minor))
	var out []string
	if slices.Contains(present, exact) {
		out = append(out, exact)
	}
	rest := slices.Clone(present)
	slices.Sort(rest)
	slices.Reverse(rest)
	for _, p := range rest {
		if p != exact && strings.HasPrefix(filepath.Base(p), "libnvrtc-builtins.so") {
			out = append(out, p)
		}
	}
	return out
}
