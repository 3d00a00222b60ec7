//go:build !unix

package mmap

import "os"

// Map reads the whole file where memory mapping is not implemented; the
// returned function is nil.
func Map(path string) ([]byte, func() error, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	return readFile(fh, path)
}
