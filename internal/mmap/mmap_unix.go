//go:build unix

package mmap

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// Map maps the file at path read-only. The returned function, nil when the
// file was read rather than mapped (or is empty), unmaps it; the bytes must
// not be used after it is called.
func Map(path string) ([]byte, func() error, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return readFile(fh, path)
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, nil, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("%s: %d bytes is too large to map", path, size)
	}
	data, err := syscall.Mmap(int(fh.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		// Some file systems cannot be mapped: read instead.
		return readFile(fh, path)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
