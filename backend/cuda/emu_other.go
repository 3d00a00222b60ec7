//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"fmt"
	"runtime"
)

// OpenEmulator fails on this platform: the emulator is loaded with purego's
// dlopen on linux/amd64 and linux/arm64 only.
func OpenEmulator() (*Device, error) {
	return nil, fmt.Errorf("%w (%s/%s: the kernel emulator runs on linux/amd64 and linux/arm64)", ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}
