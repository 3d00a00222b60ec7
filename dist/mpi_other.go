//go:build !((darwin || freebsd || linux || netbsd) && !android)

package dist

import (
	"fmt"
	"runtime"
)

func openMPI(Options) (Comm, error) {
	return nil, fmt.Errorf("dist: kind \"mpi\" is not supported on %s/%s (libmpi is opened through purego's dlopen)", runtime.GOOS, runtime.GOARCH)
}
