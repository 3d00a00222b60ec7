package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Corpus reads training or evaluation text from files and directory trees:
// plain text and source files (each file one text; binary and non-UTF-8
// files are skipped), and JSON Lines (.jsonl, .jsonl.gz, .json.gz) whose
// objects carry a "text" (or "content") field.
type Corpus struct {
	// Paths are files or directories, read in lexical order.
	Paths []string
	// HoldOut is the fraction of files kept out of training for
	// evaluation, chosen by a hash of the path below its root.
	HoldOut float64
	// Eval yields the held-out files instead of the others.
	Eval bool
	// MaxBytes stops reading after this much text (0: no limit).
	MaxBytes int64
	// MaxFileBytes skips larger files (0: 64 MiB).
	MaxFileBytes int64
	// Exts, if set, reads only files whose names end with one of these
	// suffixes (".go", ".jsonl.gz").
	Exts []string

	// Err is the first error met, set when iteration ends.
	Err error
	// Files and Bytes count what was read.
	Files int
	Bytes int64
}

// Texts yields the texts of the corpus. After the loop, c.Err tells whether
// reading failed.
func (c *Corpus) Texts() iter.Seq[string] {
	return func(yield func(string) bool) {
		c.Err, c.Files, c.Bytes = nil, 0, 0
		maxFile := c.MaxFileBytes
		if maxFile <= 0 {
			maxFile = 64 << 20
		}
		stop := false
		emit := func(s string) bool {
			if stop {
				return false
			}
			c.Bytes += int64(len(s))
			if !yield(s) || (c.MaxBytes > 0 && c.Bytes >= c.MaxBytes) {
				stop = true
			}
			return !stop
		}
		for _, root := range c.Paths {
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() {
					if path != root && strings.HasPrefix(d.Name(), ".") {
						return fs.SkipDir
					}
					return nil
				}
				if !d.Type().IsRegular() || !c.selected(root, path) || !c.wanted(path) {
					return nil
				}
				if info, err := d.Info(); err != nil || info.Size() > maxFile {
					return nil
				}
				if err := c.readFile(path, emit); err != nil {
					return err
				}
				if stop {
					return fs.SkipAll
				}
				return nil
			})
			if err != nil {
				c.Err = fmt.Errorf("tokenizer: corpus %s: %w", root, err)
				return
			}
			if stop {
				return
			}
		}
	}
}

// wanted applies the extension filter.
func (c *Corpus) wanted(path string) bool {
	if len(c.Exts) == 0 {
		return true
	}
	for _, e := range c.Exts {
		if strings.HasSuffix(path, e) {
			return true
		}
	}
	return false
}

// selected applies the hold-out split.
func (c *Corpus) selected(root, path string) bool {
	if c.HoldOut <= 0 {
		return !c.Eval
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." {
		rel = filepath.Base(path)
	}
	h := fnv.New64a()
	io.WriteString(h, filepath.ToSlash(rel))
	held := float64(h.Sum64()%10000) < c.HoldOut*10000
	return held == c.Eval
}

func (c *Corpus) readFile(path string, emit func(string) bool) error {
	name := strings.ToLower(path)
	jsonl := strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".jsonl.gz") || strings.HasSuffix(name, ".json.gz") || strings.HasSuffix(name, ".ndjson")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	if !jsonl {
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(data) == 0 || bytes.IndexByte(data[:min(len(data), 8192)], 0) >= 0 || !utf8.Valid(data) {
			return nil // binary
		}
		c.Files++
		emit(string(data))
		return nil
	}
	c.Files++
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var doc struct {
			Text    *string `json:"text"`
			Content *string `json:"content"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		text := doc.Text
		if text == nil {
			text = doc.Content
		}
		if text == nil {
			return fmt.Errorf("%s:%d: no \"text\" or \"content\" field", path, line)
		}
		if !emit(*text) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", path, line+1, err)
	}
	return nil
}

// BytesPerToken encodes texts and returns bytes per token, the number of
// bytes and the number of tokens: how well the tokenizer compresses them.
func (t *Tokenizer) BytesPerToken(texts iter.Seq[string]) (ratio float64, nbytes, ntokens int64) {
	const batchBytes = 8 << 20
	var batch []string
	size := 0
	flush := func() {
		ntokens += t.CountBatch(batch)
		batch, size = batch[:0], 0
	}
	for s := range texts {
		batch = append(batch, s)
		size += len(s)
		nbytes += int64(len(s))
		if size >= batchBytes {
			flush()
		}
	}
	flush()
	if ntokens > 0 {
		ratio = float64(nbytes) / float64(ntokens)
	}
	return ratio, nbytes, ntokens
}
