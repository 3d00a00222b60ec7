//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"fmt"
	"runtime"
)

// Open fails on this platform: CUDA is reached through purego's dlopen on
// linux/amd64 and linux/arm64 only.
func Open(Options) (*Device, error) {
	return nil, fmt.Errorf("%w (%s/%s; MAI's CUDA backend runs on linux/amd64 and linux/arm64)", ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}

// Probe reports that CUDA is not supported on this platform.
func Probe() *Report {
	return &Report{Problems: []string{fmt.Sprintf("%s/%s is not supported: MAI's CUDA backend runs on linux/amd64 and linux/arm64", runtime.GOOS, runtime.GOARCH)}}
}
