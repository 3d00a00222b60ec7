// Package cputime reads the CPU time this process has used, so benchmarks
// on shared machines can report it beside wall time.
package cputime

import "time"

// Process returns the user+system CPU time of the process, and false where
// the platform does not say.
func Process() (time.Duration, bool) { return process() }
