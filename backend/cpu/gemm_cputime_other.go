//go:build !linux

package cpu

import "time"

// threadCPUTime is not measured on this system.
func threadCPUTime() (time.Duration, bool) { return 0, false }

// processCPUTime is not measured on this system.
func processCPUTime() (time.Duration, bool) { return 0, false }
