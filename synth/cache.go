package synth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// cacheFile is the log inside a cache directory.
const cacheFile = "answers.jsonl"

// Cache stores teacher answers by request key in an append-only JSONL log
// (answers.jsonl in its directory), one {"key":...,"response":...} line per answer.
// A process killed mid-write leaves at most a torn last line, which the next Open
// cuts off. The index (key to offset) lives in memory; answers are read on demand.
// Safe for concurrent use; one process at a time holds a cache directory.
type Cache struct {
	mu    sync.Mutex
	f     *os.File
	index map[string]cacheEntry
	size  int64
	dirty bool
	lock  io.Closer
	done  chan struct{}
	wg    sync.WaitGroup
}

type cacheEntry struct{ off, n int64 }

type cacheLine struct {
	Key      string    `json:"key"`
	Response *Response `json:"response"`
}

// OpenCache opens (creating) the cache in dir and indexes what it holds. Answers
// are synced to disk at least every syncEvery (0: only on Close).
func OpenCache(dir string, syncEvery time.Duration) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("synth: cache: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, cacheFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("synth: cache: %w", err)
	}
	c := &Cache{f: f, index: map[string]cacheEntry{}, lock: lock, done: make(chan struct{})}
	if err := c.load(); err != nil {
		f.Close()
		lock.Close()
		return nil, fmt.Errorf("synth: cache %s: %w", path, err)
	}
	if syncEvery > 0 {
		c.wg.Add(1)
		go c.syncLoop(syncEvery)
	}
	return c, nil
}

// load indexes the log and cuts off a torn or unreadable tail.
func (c *Cache) load() error {
	r := bufio.NewReaderSize(c.f, 1<<20)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a last line without newline is torn: dropped below
		}
		if err != nil {
			return err
		}
		var cl struct {
			Key      string          `json:"key"`
			Response json.RawMessage `json:"response"`
		}
		if json.Unmarshal(line, &cl) != nil || len(cl.Key) != 64 || len(cl.Response) == 0 {
			break // torn write from a killed run: everything after it is dropped
		}
		c.index[cl.Key] = cacheEntry{off, int64(len(line))}
		off += int64(len(line))
	}
	st, err := c.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != off {
		if err := c.f.Truncate(off); err != nil {
			return err
		}
	}
	c.size = off
	return nil
}

func (c *Cache) syncLoop(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.Sync()
		case <-c.done:
			return
		}
	}
}

// Len is the number of answers held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}

// Keys lists the request keys held.
func (c *Cache) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.index))
	for k := range c.index {
		keys = append(keys, k)
	}
	return keys
}

// Get returns the answer stored for key, or nil.
func (c *Cache) Get(key string) (*Response, error) {
	c.mu.Lock()
	e, ok := c.index[key]
	c.mu.Unlock()
	if !ok {
		return nil, nil
	}
	buf := make([]byte, e.n)
	if _, err := c.f.ReadAt(buf, e.off); err != nil {
		return nil, fmt.Errorf("synth: cache read: %w", err)
	}
	var cl cacheLine
	if err := json.Unmarshal(buf, &cl); err != nil || cl.Response == nil {
		return nil, fmt.Errorf("synth: cache entry %s is corrupt", key)
	}
	return cl.Response, nil
}

// Put appends the answer for key (a key already held is kept as is).
func (c *Cache) Put(key string, r *Response) error {
	b, err := json.Marshal(cacheLine{Key: key, Response: r})
	if err != nil {
		return fmt.Errorf("synth: cache: %w", err)
	}
	if bytes.IndexByte(b, '\n') >= 0 {
		return errors.New("synth: cache: newline in encoded answer")
	}
	b = append(b, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[key]; ok {
		return nil
	}
	if _, err := c.f.WriteAt(b, c.size); err != nil {
		return fmt.Errorf("synth: cache write: %w", err)
	}
	c.index[key] = cacheEntry{c.size, int64(len(b))}
	c.size += int64(len(b))
	c.dirty = true
	return nil
}

// Sync flushes written answers to stable storage.
func (c *Cache) Sync() error {
	c.mu.Lock()
	dirty := c.dirty
	c.dirty = false
	c.mu.Unlock()
	if !dirty {
		return nil
	}
	return c.f.Sync()
}

// Close syncs and closes the cache.
func (c *Cache) Close() error {
	close(c.done)
	c.wg.Wait()
	err := c.Sync()
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	c.lock.Close()
	return err
}
