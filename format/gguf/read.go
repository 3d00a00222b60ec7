package gguf

import (
	"fmt"
	"io"
	"os"
)

// readFile reads an already open file into memory (the fallback when it
// cannot be mapped).
func readFile(fh *os.File, path string) ([]byte, func() error, error) {
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil, nil
}
