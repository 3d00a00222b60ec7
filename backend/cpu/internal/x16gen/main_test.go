package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGenerated checks that the checked-in kernels are the generator's
// output: edit the generator and run go generate, not the .s file.
func TestGenerated(t *testing.T) {
	have, err := os.ReadFile("../../x16avx2_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, generate()) {
		t.Fatal("backend/cpu/x16avx2_amd64.s differs from what x16gen writes: run go generate ./backend/cpu")
	}
}
