//go:build !amd64

package cpu

// peakLoopFor returns the FMA loop for a kernel's instruction set.
func peakLoopFor(string) peakLoop { return goPeakLoop }
