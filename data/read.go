package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
)

// Document is the unit every stage works on.
type Document struct {
	ID     string            `json:"id"`             // stable identifier: path, path:line, URL or record id
	Text   string            `json:"text"`           // UTF-8 text
	Source string            `json:"source"`         // the pipeline source it came from (for mixing)
	Kind   string            `json:"kind"`           // "text", "code" or "web"
	Lang   string            `json:"lang,omitempty"` // programming language (code) or detected language
	Meta   map[string]string `json:"meta,omitempty"` // url, path and the like
}

// Input file types.
const (
	typeText    = "text"
	typeCode    = "code"
	typeJSONL   = "jsonl"
	typeParquet = "parquet"
	typeWARC    = "warc"
)

// codeExtensions maps source-file extensions to a language name.
var codeExtensions = map[string]string{
	".go": "go", ".s": "asm", ".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
	".tsx": "typescript", ".jsx": "javascript", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp",
	".hpp": "cpp", ".hh": "cpp", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".scala": "scala", ".rb": "ruby",
	".php": "php", ".cs": "csharp", ".swift": "swift", ".m": "objective-c", ".sh": "shell", ".bash": "shell",
	".pl": "perl", ".lua": "lua", ".r": "r", ".jl": "julia", ".hs": "haskell", ".ml": "ocaml", ".ex": "elixir",
	".erl": "erlang", ".clj": "clojure", ".sql": "sql", ".proto": "protobuf", ".cu": "cuda", ".zig": "zig",
	".dart": "dart", ".vim": "vim", ".el": "elisp", ".lisp": "lisp", ".scm": "scheme", ".f90": "fortran",
	".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".mk": "make", ".cmake": "cmake",
}

// textExtensions are plain prose files.
var textExtensions = map[string]bool{".txt": true, ".text": true, ".md": true, ".markdown": true, ".rst": true, ".tex": true, ".adoc": true, ".org": true}

// ReadConfig controls how input files are found and read.
type ReadConfig struct {
	// MaxFileBytes skips text and code files larger than this (0: no limit).
	MaxFileBytes int64 `yaml:"max_file_bytes" json:"max_file_bytes"`
	// MinFileBytes skips text and code files smaller than this.
	MinFileBytes int64 `yaml:"min_file_bytes" json:"min_file_bytes"`
	// Extensions, when set, replaces the built-in list of text and code extensions
	// read from directory trees (e.g. [".go", ".md"]).
	Extensions []string `yaml:"extensions" json:"extensions,omitempty"`
	// NoExtension reads files without an extension in trees as text (e.g. fortunes).
	NoExtension bool `yaml:"no_extension" json:"no_extension"`
	// TextKey and IDKey name the JSONL/Parquet fields ("text" and "id" by default).
	TextKey string `yaml:"text_key" json:"text_key"`
	IDKey   string `yaml:"id_key" json:"id_key"`
	// TaskBytes groups small tree files into tasks of about this many bytes.
	TaskBytes int64 `yaml:"task_bytes" json:"task_bytes"`
	// ChunkBytes splits uncompressed JSONL files larger than this into several tasks.
	ChunkBytes int64 `yaml:"chunk_bytes" json:"chunk_bytes"`
	// SkipDirs are directory names not descended into.
	SkipDirs []string `yaml:"skip_dirs" json:"skip_dirs"`
}

func (c *ReadConfig) defaults() {
	if c.TextKey == "" {
		c.TextKey = "text"
	}
	if c.IDKey == "" {
		c.IDKey = "id"
	}
	if c.TaskBytes <= 0 {
		c.TaskBytes = 8 << 20
	}
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = 64 << 20
	}
	if c.SkipDirs == nil {
		c.SkipDirs = []string{".git", ".hg", ".svn", "node_modules", "__pycache__"}
	}
}

// fileType classifies a path by its name: "", or one of the type constants, plus the
// programming language for code.
func (c *ReadConfig) fileType(path string, explicit bool) (typ, lang string) {
	name := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(name, ".jsonl"), strings.HasSuffix(name, ".jsonl.gz"), strings.HasSuffix(name, ".jsonl.zst"),
		strings.HasSuffix(name, ".ndjson"):
		return typeJSONL, ""
	case strings.HasSuffix(name, ".parquet"):
		return typeParquet, ""
	case strings.HasSuffix(name, ".warc"), strings.HasSuffix(name, ".warc.gz"):
		return typeWARC, ""
	}
	ext := filepath.Ext(name)
	if len(c.Extensions) > 0 {
		for _, e := range c.Extensions {
			if strings.EqualFold(e, ext) {
				if l, ok := codeExtensions[ext]; ok {
					return typeCode, l
				}
				return typeText, ""
			}
		}
		return "", ""
	}
	if l, ok := codeExtensions[ext]; ok {
		return typeCode, l
	}
	if textExtensions[ext] || (ext == "" && c.NoExtension) || explicit {
		return typeText, ""
	}
	return "", ""
}

// Task is one unit of input work: a single JSONL/Parquet/WARC file, or a group of
// small text and code files. Tasks are numbered in a deterministic order.
type Task struct {
	Index  int      `json:"index"`
	Source string   `json:"source"`
	Type   string   `json:"type"`
	Files  []string `json:"files"`
	Bytes  int64    `json:"bytes"`
	// Start and End, when End > 0, restrict an uncompressed JSONL task to the lines
	// that start in [Start, End): large files are split so that workers share them.
	Start int64 `json:"start,omitempty"`
	End   int64 `json:"end,omitempty"`
}

// Skipped counts input files that were not read, by reason.
type Skipped map[string]int64

// listTasks walks the inputs of one source and groups them into tasks.
func listTasks(source string, inputs []string, rc *ReadConfig, skipped Skipped, errs *errorLog) ([]Task, error) {
	var tasks []Task
	var group *Task
	flush := func() {
		if group != nil && len(group.Files) > 0 {
			tasks = append(tasks, *group)
		}
		group = nil
	}
	add := func(path string, size int64, explicit bool) {
		typ, _ := rc.fileType(path, explicit)
		switch typ {
		case "":
			skipped["extension"]++
			return
		case typeText, typeCode:
			if rc.MaxFileBytes > 0 && size > rc.MaxFileBytes {
				skipped["too_large"]++
				return
			}
			if size < rc.MinFileBytes {
				skipped["too_small"]++
				return
			}
			if group == nil || group.Bytes+size > rc.TaskBytes && len(group.Files) > 0 {
				flush()
				group = &Task{Source: source, Type: "tree"}
			}
			group.Files = append(group.Files, path)
			group.Bytes += size
		case typeJSONL:
			flush()
			lower := strings.ToLower(path)
			if size > rc.ChunkBytes && !strings.HasSuffix(lower, ".gz") && !strings.HasSuffix(lower, ".zst") {
				for off := int64(0); off < size; off += rc.ChunkBytes {
					end := min(size, off+rc.ChunkBytes)
					tasks = append(tasks, Task{Source: source, Type: typ, Files: []string{path}, Bytes: end - off, Start: off, End: end})
				}
				return
			}
			tasks = append(tasks, Task{Source: source, Type: typ, Files: []string{path}, Bytes: size})
		default:
			flush()
			tasks = append(tasks, Task{Source: source, Type: typ, Files: []string{path}, Bytes: size})
		}
	}
	for _, in := range inputs {
		matches := []string{in}
		if strings.ContainsAny(in, "*?[") {
			m, err := filepath.Glob(in)
			if err != nil {
				return nil, fmt.Errorf("input %q: %w", in, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("input %q matches no file", in)
			}
			matches = m
		}
		for _, p := range matches {
			st, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("input: %w", err)
			}
			if !st.IsDir() {
				add(p, st.Size(), true)
				continue
			}
			err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					errs.add(path, err)
					skipped["unreadable"]++
					if d != nil && d.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					for _, s := range rc.SkipDirs {
						if d.Name() == s && path != p {
							return fs.SkipDir
						}
					}
					return nil
				}
				if !d.Type().IsRegular() {
					if d.Type()&fs.ModeSymlink == 0 {
						skipped["not_regular"]++
						return nil
					}
					st, err := os.Stat(path)
					if err != nil || !st.Mode().IsRegular() {
						skipped["not_regular"]++
						return nil
					}
				}
				info, err := d.Info()
				if err != nil {
					errs.add(path, err)
					skipped["unreadable"]++
					return nil
				}
				size := info.Size()
				if info.Mode()&fs.ModeSymlink != 0 {
					if st, err := os.Stat(path); err == nil {
						size = st.Size()
					}
				}
				add(path, size, false)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("walk %s: %w", p, err)
			}
		}
		flush()
	}
	flush()
	return tasks, nil
}

// errorLog records bad input with its location. It keeps the first entries and
// counts all.
type errorLog struct {
	Count   int64      `json:"count"`
	Entries []BadInput `json:"entries,omitempty"`
}

// BadInput is one piece of input that could not be read.
type BadInput struct {
	Location string `json:"location"` // file, file:line or file@offset
	Error    string `json:"error"`
}

const maxErrorEntries = 100

func (e *errorLog) add(loc string, err error) {
	e.Count++
	if len(e.Entries) < maxErrorEntries {
		e.Entries = append(e.Entries, BadInput{Location: loc, Error: err.Error()})
	}
}

func (e *errorLog) merge(o errorLog) {
	e.Count += o.Count
	for _, x := range o.Entries {
		if len(e.Entries) < maxErrorEntries {
			e.Entries = append(e.Entries, x)
		}
	}
}

// readTask reads the documents of one task in order and calls emit for each.
// Bad input is recorded in errs and reading goes on with the next record or file.
func readTask(t *Task, rc *ReadConfig, errs *errorLog, emit func(Document) error) error {
	switch t.Type {
	case "tree":
		for _, p := range t.Files {
			if err := readPlainFile(p, t.Source, rc, errs, emit); err != nil {
				return err
			}
		}
		return nil
	case typeJSONL:
		if t.End > 0 {
			return readJSONLRange(t.Files[0], t.Start, t.End, t.Source, rc, errs, emit)
		}
		return readJSONL(t.Files[0], t.Source, rc, errs, emit)
	case typeParquet:
		return readParquet(t.Files[0], t.Source, rc, errs, emit)
	case typeWARC:
		return readWARC(t.Files[0], t.Source, errs, emit)
	}
	return fmt.Errorf("task %d: unknown type %q", t.Index, t.Type)
}

func readPlainFile(path, source string, rc *ReadConfig, errs *errorLog, emit func(Document) error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		errs.add(path, err)
		return nil
	}
	if bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 {
		errs.add(path, errors.New("binary file (NUL byte)"))
		return nil
	}
	if !utf8.Valid(b) {
		errs.add(path, errors.New("not valid UTF-8"))
		return nil
	}
	typ, lang := rc.fileType(path, true)
	kind := "text"
	if typ == typeCode {
		kind = "code"
	}
	return emit(Document{ID: path, Text: string(b), Source: source, Kind: kind, Lang: lang, Meta: map[string]string{"path": path}})
}

// openMaybeCompressed opens path and decompresses .gz and .zst.
func openMaybeCompressed(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	name := strings.ToLower(path)
	switch {
	case strings.HasSuffix(name, ".gz"):
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	}
	return f, func() { f.Close() }, nil
}

// readJSONL reads one JSON object per line with the text in rc.TextKey.
func readJSONL(path, source string, rc *ReadConfig, errs *errorLog, emit func(Document) error) error {
	r, closeFn, err := openMaybeCompressed(path)
	if err != nil {
		errs.add(path, err)
		return nil
	}
	defer closeFn()
	br := bufio.NewReaderSize(r, 1<<20)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			errs.add(fmt.Sprintf("%s:%d", path, line), fmt.Errorf("read: %w", err))
			return nil
		}
		if len(bytes.TrimSpace(b)) > 0 {
			loc := fmt.Sprintf("%s:%d", path, line)
			doc, perr := parseJSONLine(b, rc)
			if perr != nil {
				errs.add(loc, perr)
			} else {
				if doc.ID == "" {
					doc.ID = loc
				}
				doc.Source, doc.Kind = source, "text"
				if e := emit(doc); e != nil {
					return e
				}
			}
		}
		if err != nil {
			return nil
		}
	}
}

// readJSONLRange reads the lines of an uncompressed JSONL file that start in
// [start, end). Locations are byte offsets (file@offset).
func readJSONLRange(path string, start, end int64, source string, rc *ReadConfig, errs *errorLog, emit func(Document) error) error {
	f, err := os.Open(path)
	if err != nil {
		errs.add(path, err)
		return nil
	}
	defer f.Close()
	off := start
	if start > 0 {
		// A line starts at start only if the byte before it is a newline.
		var b [1]byte
		if _, err := f.ReadAt(b[:], start-1); err != nil {
			errs.add(fmt.Sprintf("%s@%d", path, start), err)
			return nil
		}
		if b[0] != '\n' {
			off = -1
		}
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		errs.add(fmt.Sprintf("%s@%d", path, start), err)
		return nil
	}
	br := bufio.NewReaderSize(f, int(min(1<<20, max(4096, end-start))))
	pos := start
	if off < 0 { // skip the rest of the line that started in the previous range
		rest, err := br.ReadBytes('\n')
		pos += int64(len(rest))
		if err != nil {
			return nil
		}
	}
	for pos < end {
		b, err := br.ReadBytes('\n')
		lineStart := pos
		pos += int64(len(b))
		if err != nil && !errors.Is(err, io.EOF) {
			errs.add(fmt.Sprintf("%s@%d", path, lineStart), fmt.Errorf("read: %w", err))
			return nil
		}
		if len(bytes.TrimSpace(b)) > 0 {
			loc := fmt.Sprintf("%s@%d", path, lineStart)
			doc, perr := parseJSONLine(b, rc)
			if perr != nil {
				errs.add(loc, perr)
			} else {
				if doc.ID == "" {
					doc.ID = loc
				}
				doc.Source, doc.Kind = source, "text"
				if e := emit(doc); e != nil {
					return e
				}
			}
		}
		if err != nil {
			return nil
		}
	}
	return nil
}

func parseJSONLine(b []byte, rc *ReadConfig) (Document, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return Document{}, fmt.Errorf("invalid JSON: %w", err)
	}
	raw, ok := obj[rc.TextKey]
	if !ok {
		return Document{}, fmt.Errorf("no %q field", rc.TextKey)
	}
	var doc Document
	if err := json.Unmarshal(raw, &doc.Text); err != nil {
		return Document{}, fmt.Errorf("field %q is not a string", rc.TextKey)
	}
	if !utf8.ValidString(doc.Text) {
		doc.Text = strings.ToValidUTF8(doc.Text, "\uFFFD")
	}
	if raw, ok := obj[rc.IDKey]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			doc.ID = s
		} else {
			doc.ID = string(bytes.TrimSpace(raw))
		}
	}
	for _, k := range []string{"url", "lang", "language"} {
		if raw, ok := obj[k]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				if doc.Meta == nil {
					doc.Meta = map[string]string{}
				}
				doc.Meta[k] = s
			}
		}
	}
	return doc, nil
}

// readParquet reads the rc.TextKey (and rc.IDKey) columns of a Parquet file.
func readParquet(path, source string, rc *ReadConfig, errs *errorLog, emit func(Document) error) (err error) {
	defer func() {
		if r := recover(); r != nil { // the library panics on some corrupt files
			errs.add(path, fmt.Errorf("corrupt parquet file: %v", r))
			err = nil
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		errs.add(path, err)
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		errs.add(path, err)
		return nil
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		errs.add(path, fmt.Errorf("parquet: %w", err))
		return nil
	}
	textCol, ok := pf.Schema().Lookup(rc.TextKey)
	if !ok {
		errs.add(path, fmt.Errorf("parquet: no column %q", rc.TextKey))
		return nil
	}
	idCol, hasID := pf.Schema().Lookup(rc.IDKey)
	var row int64
	for gi, rg := range pf.RowGroups() {
		texts, err := readColumnStrings(rg.ColumnChunks()[textCol.ColumnIndex])
		if err != nil {
			errs.add(fmt.Sprintf("%s@rowgroup%d", path, gi), err)
			row += rg.NumRows()
			continue
		}
		var ids []string
		if hasID {
			ids, _ = readColumnStrings(rg.ColumnChunks()[idCol.ColumnIndex])
		}
		for i, t := range texts {
			id := fmt.Sprintf("%s#%d", path, row+int64(i))
			if i < len(ids) && ids[i] != "" {
				id = ids[i]
			}
			if !utf8.ValidString(t) {
				t = strings.ToValidUTF8(t, "\uFFFD")
			}
			if err := emit(Document{ID: id, Text: t, Source: source, Kind: "text"}); err != nil {
				return err
			}
		}
		row += rg.NumRows()
	}
	return nil
}

func readColumnStrings(cc parquet.ColumnChunk) ([]string, error) {
	pages := cc.Pages()
	defer pages.Close()
	var out []string
	buf := make([]parquet.Value, 256)
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("parquet page: %w", err)
		}
		vr := p.Values()
		for {
			n, err := vr.ReadValues(buf)
			for _, v := range buf[:n] {
				if v.IsNull() {
					out = append(out, "")
				} else {
					out = append(out, string(v.ByteArray()))
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				parquet.Release(p)
				return out, fmt.Errorf("parquet values: %w", err)
			}
		}
		parquet.Release(p)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
