package train

import (
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/mai-llm/mai/data"
)

// GoRoot returns the Go installation's root, whose src tree is MAI's default
// corpus: it is present wherever Go is.
func GoRoot() string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if r := strings.TrimSpace(string(out)); r != "" {
			return r
		}
	}
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	return runtime.GOROOT() //nolint:staticcheck // last resort when no go command is on PATH
}

// textExts are the file types read from a corpus tree.
var textExts = map[string]bool{".go": true, ".txt": true, ".md": true, ".c": true, ".h": true, ".s": true,
	".py": true, ".js": true, ".ts": true, ".rs": true, ".java": true, ".html": true, ".json": true, ".yaml": true}

// CorpusFiles lists text and source files under root in sorted order, up to
// maxBytes in total (0: no limit).
func CorpusFiles(root string, maxBytes int64) ([]string, error) {
	var files []string
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !textExts[filepath.Ext(p)] {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > 1<<20 {
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("corpus %s: %w", root, err)
	}
	sort.Strings(files)
	if maxBytes > 0 {
		// Spread the budget over the whole tree rather than its first folders.
		var kept []string
		for _, f := range files {
			if info, err := os.Stat(f); err == nil {
				kept = append(kept, f)
				total += info.Size()
			}
		}
		if total > maxBytes {
			stride := float64(total) / float64(maxBytes)
			var pick []string
			for i := 0.0; int(i) < len(kept); i += stride {
				pick = append(pick, kept[int(i)])
			}
			kept = pick
		}
		files = kept
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("corpus %s: no text or source files found", root)
	}
	return files, nil
}

// EnsureShards returns a shard directory for path: path itself when it holds
// shards (a manifest.json), else a byte-level tokenization of the text tree at
// path written into cache (reused when already there).
func EnsureShards(path, cache string, maxBytes int64) (string, error) {
	if _, err := data.ReadManifest(path); err == nil {
		return path, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("data %s: %w", path, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("data %s: want a shard directory (mai data prepare) or a folder of text/source files", path)
	}
	if _, err := data.ReadManifest(cache); err == nil {
		return cache, nil
	}
	files, err := CorpusFiles(path, maxBytes)
	if err != nil {
		return "", err
	}
	slog.Info("tokenizing corpus (byte-level)", "files", len(files), "from", path, "to", cache)
	docs := func(yield func(string) bool) {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				slog.Warn("skipping unreadable file", "file", f, "err", err)
				continue
			}
			if !yield(string(b)) {
				return
			}
		}
	}
	if err := data.WriteShards(cache, iter.Seq[string](docs), data.ByteEncoder{}, data.ShardOptions{ValFraction: 0.02, Tokenizer: "byte"}); err != nil {
		return "", err
	}
	return cache, nil
}

// UnigramEntropy returns the entropy in nats of the token distribution of a
// split: the loss of the best model that ignores context.
func UnigramEntropy(d *data.Dataset) (float64, error) {
	n := d.Tokens()
	counts := make([]int64, d.VocabSize()+1)
	buf := make([]int32, 1<<16)
	for off := int64(0); off < n; off += int64(len(buf)) {
		m := min(int64(len(buf)), n-off)
		if err := d.ReadTokens(off, buf[:m]); err != nil {
			return 0, err
		}
		for _, id := range buf[:m] {
			if int(id) < len(counts) {
				counts[id]++
			}
		}
	}
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log(p)
		}
	}
	return h, nil
}
