package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Standard file names of a Hugging Face checkpoint directory.
const (
	// SingleFile is the name of an unsharded checkpoint.
	SingleFile = "model.safetensors"
	// IndexFile maps tensor names to shard files in a sharded checkpoint.
	IndexFile = "model.safetensors.index.json"
)

// shardPattern matches shard names written by WriteDir (and by transformers).
var shardPattern = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// Index is the content of model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// Set is a model's tensors across one or more safetensors files.
type Set struct {
	dir   string
	files map[string]*File // by base name
	where map[string]*File // tensor name to its file
	names []string
	meta  map[string]string
}

// OpenDir opens the checkpoint in dir: model.safetensors.index.json and the
// shards it names when the index exists, model.safetensors otherwise. When
// dir is a safetensors file rather than a directory, that file is opened.
func OpenDir(dir string) (*Set, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.IsDir() {
		return openSingle(filepath.Dir(dir), filepath.Base(dir))
	}
	idxPath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(idxPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, SingleFile)); err != nil {
			return nil, fmt.Errorf("safetensors: %s holds neither %s nor %s", dir, SingleFile, IndexFile)
		}
		return openSingle(dir, SingleFile)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: empty weight_map", idxPath)
	}
	s := &Set{dir: dir, files: map[string]*File{}, where: map[string]*File{}, meta: map[string]string{}}
	for _, file := range idx.WeightMap {
		if _, ok := s.files[file]; ok {
			continue
		}
		if file == "" || file != filepath.Base(file) || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: shard name %q is not a plain file name", idxPath, file)
		}
		f, err := Open(filepath.Join(dir, file))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files[file] = f
	}
	for name, file := range idx.WeightMap {
		f := s.files[file]
		if _, ok := f.infos[name]; !ok {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s maps %q to %s, which does not hold it", idxPath, name, file)
		}
		s.where[name] = f
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	for _, file := range slices.Sorted(maps.Keys(s.files)) {
		for k, v := range s.files[file].meta {
			s.meta[k] = v
		}
	}
	return s, nil
}

func openSingle(dir, name string) (*Set, error) {
	f, err := Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	s := &Set{dir: dir, files: map[string]*File{name: f}, where: map[string]*File{}, names: f.Names(), meta: f.meta}
	for _, n := range s.names {
		s.where[n] = f
	}
	return s, nil
}

// Files returns the base names of the files in the set, sorted.
func (s *Set) Files() []string { return slices.Sorted(maps.Keys(s.files)) }

// Names returns all tensor names, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Info returns the description of the named tensor; its offsets are
// relative to the data buffer of the file holding it.
func (s *Set) Info(name string) (Info, bool) {
	f, ok := s.where[name]
	if !ok {
		return Info{}, false
	}
	return f.Info(name)
}

// Metadata returns the __metadata__ of all files merged (a copy).
func (s *Set) Metadata() map[string]string {
	m := make(map[string]string, len(s.meta))
	for k, v := range s.meta {
		m[k] = v
	}
	return m
}

func (s *Set) file(name string) (*File, error) {
	if s.files == nil {
		return nil, errClosed
	}
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", s.dir, name)
	}
	return f, nil
}

// Bytes returns the raw bytes of the named tensor, valid until Close.
func (s *Set) Bytes(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Bytes(name)
}

// Float32 returns the named tensor converted to float32 and its shape.
func (s *Set) Float32(name string) ([]float32, []int, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Float32(name)
}

// Int32 returns the named integer tensor as int32 and its shape.
func (s *Set) Int32(name string) ([]int32, []int, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Int32(name)
}

// Close closes every file of the set.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	return errors.Join(errs...)
}

// ShardName returns the conventional name of shard i (1-based) of n.
func ShardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// WriteDir writes tensors as a checkpoint into dir (created if needed): a
// single model.safetensors when the data fits in maxShardBytes (or
// maxShardBytes <= 0), otherwise shards model-00001-of-0000N.safetensors,
// each at most maxShardBytes of tensor data unless one tensor alone is
// larger, plus model.safetensors.index.json. Every file is written
// atomically; files of an earlier checkpoint in a different layout are
// removed afterwards, so OpenDir never mixes the two.
func WriteDir(dir string, tensors []Tensor, meta map[string]string, maxShardBytes int64) error {
	ts, err := sortedTensors(tensors)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var total int64
	for _, t := range ts {
		total += t.Size()
	}
	var shards [][]Tensor
	if maxShardBytes <= 0 || total <= maxShardBytes {
		shards = [][]Tensor{ts}
	} else {
		var cur []Tensor
		var size int64
		for _, t := range ts {
			if len(cur) > 0 && size+t.Size() > maxShardBytes {
				shards = append(shards, cur)
				cur, size = nil, 0
			}
			cur = append(cur, t)
			size += t.Size()
		}
		shards = append(shards, cur)
	}
	keep := map[string]bool{}
	if len(shards) == 1 {
		if err := Write(filepath.Join(dir, SingleFile), ts, meta); err != nil {
			return err
		}
		keep[SingleFile] = true
	} else {
		idx := Index{Metadata: map[string]any{"total_size": total}, WeightMap: map[string]string{}}
		for i, sh := range shards {
			name := ShardName(i+1, len(shards))
			if err := Write(filepath.Join(dir, name), sh, meta); err != nil {
				return err
			}
			keep[name] = true
			for _, t := range sh {
				idx.WeightMap[t.Name] = name
			}
		}
		raw, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return fmt.Errorf("safetensors: encoding index: %w", err)
		}
		raw = append(raw, '\n')
		err = atomicWrite(filepath.Join(dir, IndexFile), func(w io.Writer) error {
			_, err := w.Write(raw)
			return err
		})
		if err != nil {
			return err
		}
		keep[IndexFile] = true
	}
	// Remove what an earlier checkpoint in another layout left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if keep[n] || !(n == SingleFile || n == IndexFile || shardPattern.MatchString(n)) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("safetensors: removing stale %s: %w", n, err)
		}
	}
	return nil
}
