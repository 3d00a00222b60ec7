//go:build !unix

package gguf

import "os"

// mapFile reads the whole file where memory mapping is not implemented.
func mapFile(path string) ([]byte, func() error, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	return readFile(fh, path)
}
