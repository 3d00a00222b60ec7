//go:build !linux

package data

import "time"

var processStart = time.Now()

// threadCPU falls back to wall time where per-thread CPU time is not available.
func threadCPU() time.Duration { return time.Since(processStart) }

// processCPU is not measured on this system.
func processCPU() time.Duration { return 0 }
