//go:build !unix

package synth

import "io"

type noLock struct{}

func (noLock) Close() error { return nil }

// lockDir does not lock where flock is missing: run one synth per cache there.
func lockDir(dir string) (io.Closer, error) { return noLock{}, nil }
