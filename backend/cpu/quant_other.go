//go:build !amd64

package cpu

// dotKernels returns the row-dot kernels for this CPU: the portable ones.
func dotKernels() *dotSet { return &goDots }

// availableDots lists every kernel set this CPU can run.
func availableDots() []*dotSet { return []*dotSet{&goDots} }

// quantQ8_0Blocks reports that no vector kernel rounds activations here.
func quantQ8_0Blocks(x []float32, q []int8, d []float32) bool { return false }

// q8ToF32Blocks reports that no vector kernel expands activations here.
func q8ToF32Blocks(q []int8, d []float32, dst []float32) bool { return false }
