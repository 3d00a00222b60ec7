package data

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Shard file layout (all integers little-endian):
//
//	offset size  field
//	0      8     magic "MAISHARD"
//	8      4     version (1)
//	12     4     token width in bytes: 2 (uint16) or 4 (uint32)
//	16     4     vocabulary size
//	20     4     end-of-text token id (int32, -1 when none)
//	24     8     number of tokens N
//	32     8     number of documents D
//	40     4     CRC-32C (Castagnoli) of everything after the header
//	44     20    reserved, zero
//	64     N*w   tokens
//	...    (D+1)*8  document start offsets in tokens (uint64); the last is N
//
// Document i is tokens[off[i]:off[i+1]]; when the shard was written with an
// end-of-text token, it is the last token of every document.
const (
	shardMagic      = "MAISHARD"
	shardVersion    = 1
	shardHeaderSize = 64
	manifestName    = "manifest.json"
	manifestFormat  = "mai-shards"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ShardHeader is the fixed 64-byte header at the start of every shard file.
type ShardHeader struct {
	Version    uint32
	TokenBytes uint32 // 2 or 4
	VocabSize  uint32
	EOT        int32 // -1 when the shard has no end-of-text token
	Tokens     uint64
	Docs       uint64
	CRC        uint32 // CRC-32C of the body (tokens and offsets)
}

func (h ShardHeader) marshal() []byte {
	b := make([]byte, shardHeaderSize)
	copy(b, shardMagic)
	binary.LittleEndian.PutUint32(b[8:], h.Version)
	binary.LittleEndian.PutUint32(b[12:], h.TokenBytes)
	binary.LittleEndian.PutUint32(b[16:], h.VocabSize)
	binary.LittleEndian.PutUint32(b[20:], uint32(h.EOT))
	binary.LittleEndian.PutUint64(b[24:], h.Tokens)
	binary.LittleEndian.PutUint64(b[32:], h.Docs)
	binary.LittleEndian.PutUint32(b[40:], h.CRC)
	return b
}

// ParseShardHeader decodes and validates a shard header.
func ParseShardHeader(b []byte) (ShardHeader, error) {
	var h ShardHeader
	if len(b) < shardHeaderSize {
		return h, fmt.Errorf("shard header: %d bytes, want %d", len(b), shardHeaderSize)
	}
	if string(b[:8]) != shardMagic {
		return h, fmt.Errorf("shard header: bad magic %q, want %q", b[:8], shardMagic)
	}
	h.Version = binary.LittleEndian.Uint32(b[8:])
	h.TokenBytes = binary.LittleEndian.Uint32(b[12:])
	h.VocabSize = binary.LittleEndian.Uint32(b[16:])
	h.EOT = int32(binary.LittleEndian.Uint32(b[20:]))
	h.Tokens = binary.LittleEndian.Uint64(b[24:])
	h.Docs = binary.LittleEndian.Uint64(b[32:])
	h.CRC = binary.LittleEndian.Uint32(b[40:])
	if h.Version != shardVersion {
		return h, fmt.Errorf("shard header: version %d, this build reads %d", h.Version, shardVersion)
	}
	if h.TokenBytes != 2 && h.TokenBytes != 4 {
		return h, fmt.Errorf("shard header: token width %d bytes, want 2 or 4", h.TokenBytes)
	}
	if h.TokenBytes == 2 && h.VocabSize > 1<<16 {
		return h, fmt.Errorf("shard header: vocabulary %d does not fit uint16 tokens", h.VocabSize)
	}
	if h.EOT < -1 || (h.EOT >= 0 && uint32(h.EOT) >= h.VocabSize) {
		return h, fmt.Errorf("shard header: end-of-text id %d outside vocabulary %d", h.EOT, h.VocabSize)
	}
	if h.Tokens > 1<<56 || h.Docs > 1<<56 {
		return h, fmt.Errorf("shard header: implausible counts (%d tokens, %d docs)", h.Tokens, h.Docs)
	}
	return h, nil
}

// fileSize is the exact size a shard with this header has.
func (h ShardHeader) fileSize() int64 {
	return shardHeaderSize + int64(h.Tokens)*int64(h.TokenBytes) + int64(h.Docs+1)*8
}

// Manifest describes a shard directory; it is written last, so a directory with a
// manifest is complete.
type Manifest struct {
	Format    string                    `json:"format"`
	Version   int                       `json:"version"`
	Tokenizer string                    `json:"tokenizer"`
	VocabSize int                       `json:"vocab_size"`
	EOT       int                       `json:"eot"`
	DType     string                    `json:"dtype"`
	Splits    map[string][]ShardSummary `json:"splits"`
}

// ShardSummary is one shard's entry in the manifest.
type ShardSummary struct {
	File   string `json:"file"`
	Tokens int64  `json:"tokens"`
	Docs   int64  `json:"docs"`
	CRC32C uint32 `json:"crc32c"`
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("read shard manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, manifestName), err)
	}
	if m.Format != manifestFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", filepath.Join(dir, manifestName), m.Format, manifestFormat)
	}
	return &m, nil
}

// shardWriter writes one shard file under a temporary name and renames it into place
// on Close, so that a shard file that exists is always complete.
type shardWriter struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	crc       uint32
	h         ShardHeader
	offsets   []uint64
	buf       []byte
}

func newShardWriter(path string, tokenBytes int, vocab, eot int) (*shardWriter, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("create shard: %w", err)
	}
	sw := &shardWriter{path: path, tmp: tmp, f: f, w: bufio.NewWriterSize(f, 1<<20),
		h: ShardHeader{Version: shardVersion, TokenBytes: uint32(tokenBytes), VocabSize: uint32(vocab), EOT: int32(eot)}}
	if _, err := sw.w.Write(make([]byte, shardHeaderSize)); err != nil {
		f.Close()
		return nil, fmt.Errorf("write shard %s: %w", tmp, err)
	}
	return sw, nil
}

// addDoc appends one document's tokens.
func (sw *shardWriter) addDoc(toks []int32) error {
	sw.offsets = append(sw.offsets, sw.h.Tokens)
	need := len(toks) * int(sw.h.TokenBytes)
	if cap(sw.buf) < need {
		sw.buf = make([]byte, need)
	}
	b := sw.buf[:need]
	if sw.h.TokenBytes == 2 {
		for i, t := range toks {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(t))
		}
	} else {
		for i, t := range toks {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(t))
		}
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
	if _, err := sw.w.Write(b); err != nil {
		return fmt.Errorf("write shard %s: %w", sw.tmp, err)
	}
	sw.h.Tokens += uint64(len(toks))
	sw.h.Docs++
	return nil
}

// close writes the document index and header, syncs and renames the file into place.
func (sw *shardWriter) close() (ShardSummary, error) {
	defer sw.f.Close()
	offs := make([]byte, 8*(len(sw.offsets)+1))
	for i, o := range sw.offsets {
		binary.LittleEndian.PutUint64(offs[8*i:], o)
	}
	binary.LittleEndian.PutUint64(offs[8*len(sw.offsets):], sw.h.Tokens)
	sw.crc = crc32.Update(sw.crc, castagnoli, offs)
	sw.h.CRC = sw.crc
	if _, err := sw.w.Write(offs); err != nil {
		return ShardSummary{}, fmt.Errorf("write shard %s: %w", sw.tmp, err)
	}
	if err := sw.w.Flush(); err != nil {
		return ShardSummary{}, fmt.Errorf("write shard %s: %w", sw.tmp, err)
	}
	if _, err := sw.f.WriteAt(sw.h.marshal(), 0); err != nil {
		return ShardSummary{}, fmt.Errorf("write shard header %s: %w", sw.tmp, err)
	}
	if err := sw.f.Sync(); err != nil {
		return ShardSummary{}, fmt.Errorf("sync shard %s: %w", sw.tmp, err)
	}
	if err := os.Rename(sw.tmp, sw.path); err != nil {
		return ShardSummary{}, fmt.Errorf("rename shard: %w", err)
	}
	return ShardSummary{File: filepath.Base(sw.path), Tokens: int64(sw.h.Tokens), Docs: int64(sw.h.Docs), CRC32C: sw.h.CRC}, nil
}

func (sw *shardWriter) abort() {
	sw.f.Close()
	os.Remove(sw.tmp)
}

// ShardSetWriter writes documents into rolling shard files per split
// (split-000000.bin, split-000001.bin, ...) and a manifest on Close.
type ShardSetWriter struct {
	dir        string
	tokenBytes int
	maxTokens  int64
	m          Manifest
	open       map[string]*shardWriter
	next       map[string]int
	tmp        []int32
}

// NewShardSetWriter prepares dir for a new set of shards: it removes the manifest and
// shard files of an earlier run there, so the directory never mixes two runs.
func NewShardSetWriter(dir, tokenizerName string, vocab, eot int, dtype string, shardTokens int64) (*ShardSetWriter, error) {
	tb, err := tokenWidth(dtype, vocab)
	if err != nil {
		return nil, err
	}
	if shardTokens <= 0 {
		shardTokens = DefaultShardTokens
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create shard dir: %w", err)
	}
	if err := removeShardSet(dir); err != nil {
		return nil, err
	}
	name := "uint16"
	if tb == 4 {
		name = "uint32"
	}
	return &ShardSetWriter{dir: dir, tokenBytes: tb, maxTokens: shardTokens,
		m:    Manifest{Format: manifestFormat, Version: shardVersion, Tokenizer: tokenizerName, VocabSize: vocab, EOT: eot, DType: name, Splits: map[string][]ShardSummary{}},
		open: map[string]*shardWriter{}, next: map[string]int{}}, nil
}

// resumeShardSetWriter continues a shard set whose closed shards are listed in done
// (from a checkpoint); other shard files in dir are removed.
func resumeShardSetWriter(dir, tokenizerName string, vocab, eot int, dtype string, shardTokens int64, done map[string][]ShardSummary, next map[string]int) (*ShardSetWriter, error) {
	tb, err := tokenWidth(dtype, vocab)
	if err != nil {
		return nil, err
	}
	if shardTokens <= 0 {
		shardTokens = DefaultShardTokens
	}
	keep := map[string]bool{}
	for _, ss := range done {
		for _, s := range ss {
			keep[s.File] = true
			if _, err := os.Stat(filepath.Join(dir, s.File)); err != nil {
				return nil, fmt.Errorf("resume shards: %w", err)
			}
		}
	}
	os.Remove(filepath.Join(dir, manifestName))
	old, _ := filepath.Glob(filepath.Join(dir, "*-[0-9][0-9][0-9][0-9][0-9][0-9].bin*"))
	for _, p := range old {
		if !keep[filepath.Base(p)] {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("remove partial shard: %w", err)
			}
		}
	}
	name := "uint16"
	if tb == 4 {
		name = "uint32"
	}
	w := &ShardSetWriter{dir: dir, tokenBytes: tb, maxTokens: shardTokens,
		m:    Manifest{Format: manifestFormat, Version: shardVersion, Tokenizer: tokenizerName, VocabSize: vocab, EOT: eot, DType: name, Splits: map[string][]ShardSummary{}},
		open: map[string]*shardWriter{}, next: map[string]int{}}
	for k, v := range done {
		w.m.Splits[k] = slices.Clone(v)
	}
	maps.Copy(w.next, next)
	return w, nil
}

// wouldRoll reports whether adding n tokens to split starts a new shard.
func (w *ShardSetWriter) wouldRoll(split string, n int) bool {
	sw := w.open[split]
	return sw != nil && sw.h.Tokens > 0 && int64(sw.h.Tokens)+int64(n) > w.maxTokens
}

// closedShards lists the shards finished so far.
func (w *ShardSetWriter) closedShards() map[string][]ShardSummary {
	out := map[string][]ShardSummary{}
	for k, v := range w.m.Splits {
		out[k] = slices.Clone(v)
	}
	return out
}

func removeShardSet(dir string) error {
	if err := os.Remove(filepath.Join(dir, manifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old manifest: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*-[0-9][0-9][0-9][0-9][0-9][0-9].bin*"))
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove old shard: %w", err)
		}
	}
	return nil
}

func tokenWidth(dtype string, vocab int) (int, error) {
	if vocab <= 0 {
		return 0, fmt.Errorf("vocabulary size %d must be positive", vocab)
	}
	switch dtype {
	case "", "auto":
		if vocab <= 1<<16 {
			return 2, nil
		}
		return 4, nil
	case "uint16":
		if vocab > 1<<16 {
			return 0, fmt.Errorf("dtype uint16 cannot hold a vocabulary of %d", vocab)
		}
		return 2, nil
	case "uint32":
		return 4, nil
	}
	return 0, fmt.Errorf("unknown token dtype %q (want uint16, uint32 or auto)", dtype)
}

// Add appends one document to split ("train" or "val"). Tokens must lie in the
// vocabulary. A document never spans two shards.
func (w *ShardSetWriter) Add(split string, toks []int32) error {
	if split == "" || strings.ContainsAny(split, "/\\-.") {
		return fmt.Errorf("bad split name %q", split)
	}
	for _, t := range toks {
		if t < 0 || int(t) >= w.m.VocabSize {
			return fmt.Errorf("token %d outside vocabulary of %d", t, w.m.VocabSize)
		}
	}
	sw := w.open[split]
	if sw != nil && sw.h.Tokens > 0 && int64(sw.h.Tokens)+int64(len(toks)) > w.maxTokens {
		if err := w.closeSplit(split); err != nil {
			return err
		}
		sw = nil
	}
	if sw == nil {
		path := filepath.Join(w.dir, fmt.Sprintf("%s-%06d.bin", split, w.next[split]))
		w.next[split]++
		var err error
		if sw, err = newShardWriter(path, w.tokenBytes, w.m.VocabSize, w.m.EOT); err != nil {
			return err
		}
		w.open[split] = sw
	}
	return sw.addDoc(toks)
}

// AddInts is Add for []int tokens, as encoders return them.
func (w *ShardSetWriter) AddInts(split string, toks []int) error {
	w.tmp = w.tmp[:0]
	for _, t := range toks {
		if t < 0 || t >= w.m.VocabSize {
			return fmt.Errorf("token %d outside vocabulary of %d", t, w.m.VocabSize)
		}
		w.tmp = append(w.tmp, int32(t))
	}
	return w.Add(split, w.tmp)
}

func (w *ShardSetWriter) closeSplit(split string) error {
	sw := w.open[split]
	delete(w.open, split)
	s, err := sw.close()
	if err != nil {
		return err
	}
	w.m.Splits[split] = append(w.m.Splits[split], s)
	return nil
}

// Close finishes open shards and writes the manifest.
func (w *ShardSetWriter) Close() (*Manifest, error) {
	splits := make([]string, 0, len(w.open))
	for s := range w.open {
		splits = append(splits, s)
	}
	sort.Strings(splits)
	for _, s := range splits {
		if err := w.closeSplit(s); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(&w.m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(w.dir, manifestName), append(b, '\n')); err != nil {
		return nil, err
	}
	return &w.m, nil
}

// Abort removes the temporary files of open shards.
func (w *ShardSetWriter) Abort() {
	for s, sw := range w.open {
		sw.abort()
		delete(w.open, s)
	}
}

// writeFileAtomic writes b to path through a synced temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// shardFile is one open shard of a Dataset.
type shardFile struct {
	path  string
	f     *os.File
	h     ShardHeader
	start int64 // first token's index in the split's token stream
}

func openShardFile(path string) (*shardFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open shard: %w", err)
	}
	hb := make([]byte, shardHeaderSize)
	if _, err := io.ReadFull(f, hb); err != nil {
		f.Close()
		return nil, fmt.Errorf("shard %s: read header: %w", path, err)
	}
	h, err := ParseShardHeader(hb)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	if st.Size() != h.fileSize() {
		f.Close()
		return nil, fmt.Errorf("shard %s: size %d bytes, header says %d (truncated or corrupt)", path, st.Size(), h.fileSize())
	}
	return &shardFile{path: path, f: f, h: h}, nil
}

// VerifyShard reads a whole shard file and checks its checksum and document index.
func VerifyShard(path string) (ShardHeader, error) {
	sf, err := openShardFile(path)
	if err != nil {
		return ShardHeader{}, err
	}
	defer sf.f.Close()
	if _, err := sf.f.Seek(shardHeaderSize, io.SeekStart); err != nil {
		return sf.h, fmt.Errorf("shard %s: %w", path, err)
	}
	c := crc32.New(castagnoli)
	if _, err := io.Copy(c, bufio.NewReaderSize(sf.f, 1<<20)); err != nil {
		return sf.h, fmt.Errorf("shard %s: %w", path, err)
	}
	if c.Sum32() != sf.h.CRC {
		return sf.h, fmt.Errorf("shard %s: checksum %08x, header says %08x", path, c.Sum32(), sf.h.CRC)
	}
	offs, err := sf.offsets()
	if err != nil {
		return sf.h, err
	}
	for i := 1; i < len(offs); i++ {
		if offs[i] < offs[i-1] {
			return sf.h, fmt.Errorf("shard %s: document offsets decrease at %d", path, i)
		}
	}
	if offs[0] != 0 || offs[len(offs)-1] != sf.h.Tokens {
		return sf.h, fmt.Errorf("shard %s: document offsets do not span the tokens", path)
	}
	return sf.h, nil
}

// offsets reads the shard's document index.
func (s *shardFile) offsets() ([]uint64, error) {
	n := int(s.h.Docs + 1)
	b := make([]byte, 8*n)
	if _, err := s.f.ReadAt(b, shardHeaderSize+int64(s.h.Tokens)*int64(s.h.TokenBytes)); err != nil {
		return nil, fmt.Errorf("shard %s: read document index: %w", s.path, err)
	}
	o := make([]uint64, n)
	for i := range o {
		o[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return o, nil
}

// readTokens reads tokens [off, off+len(dst)) of this shard into dst.
func (s *shardFile) readTokens(off int64, dst []int32, buf []byte) ([]byte, error) {
	w := int(s.h.TokenBytes)
	need := len(dst) * w
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	b := buf[:need]
	if _, err := s.f.ReadAt(b, shardHeaderSize+off*int64(w)); err != nil {
		return buf, fmt.Errorf("shard %s: read tokens at %d: %w", s.path, off, err)
	}
	if w == 2 {
		for i := range dst {
			dst[i] = int32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	} else {
		for i := range dst {
			dst[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	return buf, nil
}
