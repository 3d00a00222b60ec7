package cpu

import (
	"syscall"
	"time"
	"unsafe"
)

// Clocks of clock_gettime(2): nanosecond CPU time, unlike getrusage's.
const (
	clockProcessCPUTime = 2 // CLOCK_PROCESS_CPUTIME_ID
	clockThreadCPUTime  = 3 // CLOCK_THREAD_CPUTIME_ID
)

func clockGettime(clock uintptr) (time.Duration, bool) {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clock, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

// threadCPUTime returns the CPU time of the calling OS thread (the caller
// must hold runtime.LockOSThread).
func threadCPUTime() (time.Duration, bool) { return clockGettime(clockThreadCPUTime) }

// processCPUTime returns the CPU time used by all threads of this process.
func processCPUTime() (time.Duration, bool) { return clockGettime(clockProcessCPUTime) }
