// Package mmap maps files read-only into memory, falling back to reading
// them where mapping is not possible (other systems, pipes, file systems
// that refuse it). The file formats (GGUF, safetensors) share it.
package mmap

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
