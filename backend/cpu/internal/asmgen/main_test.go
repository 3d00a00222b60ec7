package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGenerated checks that the checked-in microkernels are the
// generator's output with its default knobs: edit the generator and run go
// generate, not the .s file.
func TestGenerated(t *testing.T) {
	have, err := os.ReadFile("../../gemm_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, generate()) {
		t.Fatal("backend/cpu/gemm_amd64.s differs from what asmgen writes: run go generate ./backend/cpu")
	}
}
