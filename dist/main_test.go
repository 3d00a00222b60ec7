package dist

import (
	"fmt"
	"os"
	"testing"
)

// childEnv marks a test binary re-executed under mpirun; its value names
// the scenario the child runs instead of the tests.
const childEnv = "MAI_DIST_TEST_CHILD"

// childModes maps a scenario to its body; filled by platform test files.
var childModes = map[string]func() error{}

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		run, ok := childModes[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, mode)
			os.Exit(2)
		}
		if err := run(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
