package model

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ResolveDir turns a path a user gives into a model folder: a folder with
// config.json as is, or a training run directory through its "latest"
// checkpoint pointer.
func ResolveDir(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, "config.json")); err == nil {
		return path, nil
	}
	if b, err := os.ReadFile(filepath.Join(path, "latest")); err == nil {
		dir := filepath.Join(path, strings.TrimSpace(string(b)))
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
			return dir, nil
		}
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	return "", fmt.Errorf("model %s: no config.json here (want a Hugging Face model folder or a training run directory)", path)
}
