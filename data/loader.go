package data

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
)

// Dataset is one split of a shard directory, read as a single token stream.
// It is safe for concurrent reads.
type Dataset struct {
	dir, split string
	shards     []*shardFile
	tokens     int64
	docs       int64
	vocab, eot int
	tokenizer  string
}

// OpenShards opens the shards of split ("train" or "val") in dir. It reads the
// manifest when there is one, and otherwise every split-NNNNNN.bin file in name order.
// All shards must agree on vocabulary, end-of-text token and token width.
func OpenShards(dir string, split string) (*Dataset, error) {
	var files []string
	d := &Dataset{dir: dir, split: split, eot: -1}
	m, err := ReadManifest(dir)
	switch {
	case err == nil:
		for _, s := range m.Splits[split] {
			files = append(files, filepath.Join(dir, s.File))
		}
		d.tokenizer = m.Tokenizer
	case errors.Is(err, os.ErrNotExist):
		files, _ = filepath.Glob(filepath.Join(dir, split+"-[0-9][0-9][0-9][0-9][0-9][0-9].bin"))
		sort.Strings(files)
	default:
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("open shards: no %q shards in %s", split, dir)
	}
	for i, p := range files {
		sf, err := openShardFile(p)
		if err != nil {
			d.Close()
			return nil, err
		}
		if i == 0 {
			d.vocab, d.eot = int(sf.h.VocabSize), int(sf.h.EOT)
		} else if int(sf.h.VocabSize) != d.vocab || int(sf.h.EOT) != d.eot {
			sf.f.Close()
			d.Close()
			return nil, fmt.Errorf("open shards: %s has vocabulary %d / end-of-text %d, first shard has %d / %d", p, sf.h.VocabSize, sf.h.EOT, d.vocab, d.eot)
		}
		sf.start = d.tokens
		d.tokens += int64(sf.h.Tokens)
		d.docs += int64(sf.h.Docs)
		d.shards = append(d.shards, sf)
	}
	return d, nil
}

// Close closes the shard files.
func (d *Dataset) Close() error {
	var first error
	for _, s := range d.shards {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.shards = nil
	return first
}

// VocabSize is the vocabulary size recorded in the shards.
func (d *Dataset) VocabSize() int { return d.vocab }

// EOT is the end-of-text token id, or -1.
func (d *Dataset) EOT() int { return d.eot }

// Tokens is the number of tokens in the split.
func (d *Dataset) Tokens() int64 { return d.tokens }

// Docs is the number of documents in the split.
func (d *Dataset) Docs() int64 { return d.docs }

// Tokenizer is the tokenizer name recorded in the manifest, if any.
func (d *Dataset) Tokenizer() string { return d.tokenizer }

// Shards lists the shard files and their headers.
func (d *Dataset) Shards() []ShardSummary {
	out := make([]ShardSummary, len(d.shards))
	for i, s := range d.shards {
		out[i] = ShardSummary{File: filepath.Base(s.path), Tokens: int64(s.h.Tokens), Docs: int64(s.h.Docs), CRC32C: s.h.CRC}
	}
	return out
}

// ReadTokens fills dst with the split's tokens starting at stream position off.
func (d *Dataset) ReadTokens(off int64, dst []int32) error {
	_, err := d.readTokens(off, dst, nil)
	return err
}

func (d *Dataset) readTokens(off int64, dst []int32, buf []byte) ([]byte, error) {
	if off < 0 || off+int64(len(dst)) > d.tokens {
		return buf, fmt.Errorf("read tokens [%d,%d) outside split of %d tokens", off, off+int64(len(dst)), d.tokens)
	}
	i := sort.Search(len(d.shards), func(i int) bool { return d.shards[i].start+int64(d.shards[i].h.Tokens) > off })
	for len(dst) > 0 {
		s := d.shards[i]
		local := off - s.start
		n := min(int64(len(dst)), int64(s.h.Tokens)-local)
		var err error
		if buf, err = s.readTokens(local, dst[:n], buf); err != nil {
			return buf, err
		}
		dst, off = dst[n:], off+n
		i++
	}
	return buf, nil
}

// Document returns the tokens of document i of the split (in shard order).
func (d *Dataset) Document(i int64) ([]int32, error) {
	if i < 0 || i >= d.docs {
		return nil, fmt.Errorf("document %d outside split of %d documents", i, d.docs)
	}
	for _, s := range d.shards {
		if i >= int64(s.h.Docs) {
			i -= int64(s.h.Docs)
			continue
		}
		offs, err := s.offsets()
		if err != nil {
			return nil, err
		}
		out := make([]int32, offs[i+1]-offs[i])
		if _, err := s.readTokens(int64(offs[i]), out, nil); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("document %d not found", i)
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	Batch  int   // sequences per rank per step (B)
	SeqLen int   // tokens per sequence (T)
	Seed   int64 // fixes the order of sequences in every epoch
	Rank   int   // this process's rank in [0, World)
	World  int   // number of data-parallel ranks; 0 means 1
	// Sequential reads sequences in stream order without shuffling (for evaluation).
	Sequential bool
}

// LoaderState is a Loader's resume cursor. It is JSON-serializable and does not depend
// on the rank, so one saved state restores every rank.
type LoaderState struct {
	Version int   `json:"version"`
	Seed    int64 `json:"seed"`
	SeqLen  int   `json:"seq_len"`
	Tokens  int64 `json:"tokens"` // size of the split, to catch a changed dataset
	Epoch   int64 `json:"epoch"`
	// Consumed is the number of sequences of this epoch that all ranks together have
	// consumed: a multiple of the global batch (Batch*World).
	Consumed int64 `json:"consumed"`
}

// Loader yields batches of fixed-length sequences from a Dataset.
//
// The split's token stream is cut into N = (Tokens-1)/SeqLen sequences; sequence i
// is tokens[i*T : i*T+T+1] (inputs and next-token targets). Each epoch visits the
// sequences in the order of a seeded pseudo-random permutation of [0, N) that needs
// no memory (a Feistel network with cycle walking, keyed by seed and epoch). A step
// takes the next Batch*World sequences of that order; rank r takes the r-th block of
// Batch of them. An epoch ends when fewer than Batch*World sequences remain, and the
// next epoch reshuffles.
type Loader struct {
	d     *Dataset
	cfg   LoaderConfig
	n     int64 // sequences per epoch
	steps int64 // steps per epoch
	epoch int64
	step  int64
	perm  feistel
	row   []int32
	buf   []byte
}

// NewLoader makes a loader over d. The split must hold at least one global batch.
func NewLoader(d *Dataset, cfg LoaderConfig) (*Loader, error) {
	if cfg.World == 0 {
		cfg.World = 1
	}
	if cfg.Batch <= 0 || cfg.SeqLen <= 0 {
		return nil, fmt.Errorf("loader: batch %d and sequence length %d must be positive", cfg.Batch, cfg.SeqLen)
	}
	if cfg.World < 0 || cfg.Rank < 0 || cfg.Rank >= cfg.World {
		return nil, fmt.Errorf("loader: rank %d outside world of %d", cfg.Rank, cfg.World)
	}
	l := &Loader{d: d, cfg: cfg, row: make([]int32, cfg.SeqLen+1)}
	if d.tokens > 1 {
		l.n = (d.tokens - 1) / int64(cfg.SeqLen)
	}
	l.steps = l.n / int64(cfg.Batch*cfg.World)
	if l.steps == 0 {
		return nil, fmt.Errorf("loader: split %q has %d tokens, one step needs %d (batch %d x world %d x seq %d, plus 1)",
			d.split, d.tokens, int64(cfg.Batch*cfg.World*cfg.SeqLen)+1, cfg.Batch, cfg.World, cfg.SeqLen)
	}
	l.setEpoch(0)
	return l, nil
}

// StepsPerEpoch is the number of Next calls in one epoch.
func (l *Loader) StepsPerEpoch() int64 { return l.steps }

// Epoch is the current epoch (0-based).
func (l *Loader) Epoch() int64 { return l.epoch }

func (l *Loader) setEpoch(e int64) {
	l.epoch, l.step = e, 0
	l.perm = newFeistel(uint64(l.n), uint64(l.cfg.Seed), uint64(e))
}

// Next fills x with Batch*SeqLen input tokens and y with the next-token targets, and
// advances the cursor.
func (l *Loader) Next(x, y []int32) error {
	B, T := l.cfg.Batch, l.cfg.SeqLen
	if len(x) != B*T || len(y) != B*T {
		return fmt.Errorf("loader: x and y must hold batch*seq = %d tokens, have %d and %d", B*T, len(x), len(y))
	}
	if l.step >= l.steps {
		l.setEpoch(l.epoch + 1)
	}
	base := (l.step*int64(l.cfg.World) + int64(l.cfg.Rank)) * int64(B)
	for b := range B {
		seq := base + int64(b)
		if !l.cfg.Sequential {
			seq = int64(l.perm.at(uint64(seq)))
		}
		var err error
		if l.buf, err = l.d.readTokens(seq*int64(T), l.row, l.buf); err != nil {
			return fmt.Errorf("loader: %w", err)
		}
		copy(x[b*T:(b+1)*T], l.row[:T])
		copy(y[b*T:(b+1)*T], l.row[1:])
	}
	l.step++
	return nil
}

// State returns the cursor: restoring it continues with the batch Next would return next.
func (l *Loader) State() LoaderState {
	return LoaderState{Version: 1, Seed: l.cfg.Seed, SeqLen: l.cfg.SeqLen, Tokens: l.d.tokens,
		Epoch: l.epoch, Consumed: l.step * int64(l.cfg.Batch*l.cfg.World)}
}

// Restore moves the cursor to s. The seed, sequence length and dataset size must
// match; the world size may differ as long as Batch*World (the global batch) is the
// same, otherwise the cursor rounds down to a whole number of new global batches.
func (l *Loader) Restore(s LoaderState) error {
	if s.Version != 1 {
		return fmt.Errorf("loader restore: state version %d, want 1", s.Version)
	}
	if s.Seed != l.cfg.Seed || s.SeqLen != l.cfg.SeqLen || s.Tokens != l.d.tokens {
		return fmt.Errorf("loader restore: state is for seed %d, seq %d, %d tokens; loader has seed %d, seq %d, %d tokens",
			s.Seed, s.SeqLen, s.Tokens, l.cfg.Seed, l.cfg.SeqLen, l.d.tokens)
	}
	if s.Epoch < 0 || s.Consumed < 0 {
		return fmt.Errorf("loader restore: negative cursor (epoch %d, consumed %d)", s.Epoch, s.Consumed)
	}
	l.setEpoch(s.Epoch)
	l.step = s.Consumed / int64(l.cfg.Batch*l.cfg.World)
	return nil
}

// feistel is a keyed pseudo-random permutation of [0, n) that needs no memory: a
// balanced Feistel network over the smallest even power of two >= n, with cycle
// walking to stay inside [0, n).
type feistel struct {
	n    uint64
	half uint
	mask uint64
	keys [6]uint64
}

func newFeistel(n, seed, epoch uint64) feistel {
	f := feistel{n: n}
	b := uint(bits.Len64(n - 1))
	if n <= 1 {
		b = 0
	}
	if b%2 == 1 {
		b++
	}
	if b < 2 {
		b = 2
	}
	f.half = b / 2
	f.mask = 1<<f.half - 1
	s := seed ^ 0x9e3779b97f4a7c15*(epoch+1)
	for i := range f.keys {
		s = splitmix64(s + uint64(i))
		f.keys[i] = s
	}
	return f
}

func (f feistel) at(i uint64) uint64 {
	if f.n <= 1 {
		return 0
	}
	for {
		l, r := i>>f.half, i&f.mask
		for _, k := range f.keys {
			l, r = r, l^(splitmix64(r^k)&f.mask)
		}
		i = l<<f.half | r
		if i < f.n {
			return i
		}
	}
}

// splitmix64 is a strong 64-bit mixing function.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
