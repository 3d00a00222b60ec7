package cuda

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
)

//go:embed kernels/prelude.cuh kernels/*.cu
var kernelFS embed.FS

// kernelFiles returns the kernel sources in compile order: the prelude,
// then the .cu files by name.
func kernelFiles() ([]string, error) {
	names, err := fs.Glob(kernelFS, "kernels/*.cu")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return append([]string{"kernels/prelude.cuh"}, names...), nil
}

// kernelSource is the one translation unit NVRTC compiles (and the
// emulator in tests): every file, each introduced by a #line directive so
// that compiler messages name the file and line they come from.
var kernelSource = sync.OnceValues(func() (string, error) {
	files, err := kernelFiles()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		data, err := kernelFS.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "#line 1 %q\n", f)
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String(), nil
})

// kernelTable is the parsed signature of every kernel, by name.
var kernelTable = sync.OnceValues(func() (map[string]*kernelSig, error) {
	src, err := kernelSource()
	if err != nil {
		return nil, err
	}
	sigs, err := parseKernels(src)
	if err != nil {
		return nil, err
	}
	t := make(map[string]*kernelSig, len(sigs))
	for i := range sigs {
		t[sigs[i].name] = &sigs[i]
	}
	return t, nil
})
