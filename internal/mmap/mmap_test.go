package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestMap(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"pages", bytes.Repeat([]byte{1, 2, 3}, 10000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, unmap, err := Map(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("Map = %d bytes, want %d", len(got), len(tt.data))
			}
			if unmap != nil {
				if err := unmap(); err != nil {
					t.Errorf("unmap: %v", err)
				}
			}
		})
	}
	if _, _, err := Map(filepath.Join(dir, "missing")); err == nil {
		t.Error("Map of a missing file succeeded")
	}
}
