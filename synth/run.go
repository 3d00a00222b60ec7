package synth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/tokenizer"
)

// Options are what a run needs besides its Config.
type Options struct {
	// Teacher answers the requests; nil builds an OpenAITeacher from Config.Teacher.
	Teacher Teacher
	// Progress receives progress lines and nil is silent.
	Progress io.Writer
	// Log receives retries and dropped items at debug level (slog.Default()).
	Log *slog.Logger
}

// runner holds the parts of a run.
type runner struct {
	cfg       *Config
	client    *Client
	filters   []data.Filter
	log       *slog.Logger
	verifySem chan struct{}
	goBin     string
}

// result is the outcome of one item.
type result struct {
	it  *item
	rec *Record
	ir  *itemRun
	err error
}

// Run generates the configured data set: it completes every item through the
// teacher (answers already in the cache cost nothing), checks, filters and
// deduplicates the records in item order, and writes Output (atomically, at the end)
// and the JSON report. An interrupted run leaves the cache: rerunning the same
// configuration sends only the requests that had not been answered.
//
// Items that fail (a request that still fails after its retries, or one the
// teacher rejects) are counted in the report and left out; the error returned then
// says how many. A fatal error (authentication, unknown model) stops the run.
func Run(ctx context.Context, cfg Config, opts Options) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = cfg.Output + ".cache"
	}
	if cfg.Report == "" {
		cfg.Report = cfg.Output + ".report.json"
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	teacher := opts.Teacher
	if teacher == nil {
		if cfg.Teacher.Model == "" {
			return nil, errors.New("synth: no teacher model (set --model, teacher.model or MAI_TEACHER_MODEL)")
		}
		t, err := NewOpenAITeacher(cfg.Teacher, nil)
		if err != nil {
			return nil, err
		}
		teacher = t
	}
	r := &runner{cfg: &cfg, log: log, verifySem: make(chan struct{}, max(1, runtime.NumCPU()/2))}
	for _, name := range cfg.GeneratorNames() {
		if g := cfg.Generators[name]; g.Kind == "code" && g.Verify && g.Count > 0 {
			bin, err := exec.LookPath("go")
			if err != nil {
				return nil, fmt.Errorf("synth: generator %s verifies exercises with go test, but there is no go: %w", name, err)
			}
			r.goBin = bin
		}
	}
	filters, err := cfg.Filters.Build()
	if err != nil {
		return nil, fmt.Errorf("synth: filters: %w", err)
	}
	r.filters = filters
	var estimate func(string) int
	if cfg.Tokenizer != "" {
		tok, err := tokenizer.Load(cfg.Tokenizer)
		if err != nil {
			return nil, fmt.Errorf("synth: tokenizer: %w", err)
		}
		estimate = func(s string) int { return len(tok.Encode(s)) }
	}
	total, err := countItems(&cfg)
	if err != nil {
		return nil, err
	}
	if total == 0 {
		return nil, errors.New("synth: the configuration makes no items (rewrite inputs without usable documents?)")
	}
	if dir := filepath.Dir(cfg.Output); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("synth: output: %w", err)
		}
	}
	cache, err := OpenCache(cfg.CacheDir, time.Second)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	r.client = NewClient(teacher, cache, cfg.Limits, cfg.Retry, estimate, log)

	rep := newReport(&cfg, total, cache.Len())
	out, err := newOutput(cfg.Output)
	if err != nil {
		return nil, err
	}
	defer out.abort()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// The window bounds the items dispatched but not yet written, so that a slow
	// item holds back at most that many finished ones in memory.
	window := make(chan struct{}, 4*cfg.Concurrency+64)
	jobs := make(chan *item)
	results := make(chan result, cfg.Concurrency)
	var prodErr error
	go func() {
		defer close(jobs)
		for it, err := range cfg.items() {
			if err != nil {
				prodErr = err
				cancel(err)
				return
			}
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range jobs {
				rec, ir, err := r.runItem(ctx, it)
				if err != nil && isFatal(err) {
					cancel(err)
				}
				results <- result{it: it, rec: rec, ir: ir, err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	dd := newDeduper(cfg.Dedup)
	pending := map[int]result{}
	next := 0
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	var writeErr error
	emit := func(res result) {
		<-window
		rep.addItem(res, r.client)
		if res.err != nil || writeErr != nil {
			return
		}
		if why := dd.check(dedupText(res.rec, cfg.Dedup.On)); why != "" {
			rep.drop(res.it.name, why)
			return
		}
		if err := out.write(res.rec); err != nil {
			writeErr = err
			cancel(err)
			return
		}
		rep.keep(res.it.name)
	}
loop:
	for {
		select {
		case res, ok := <-results:
			if !ok {
				break loop
			}
			pending[res.it.idx] = res
			for {
				p, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				emit(p)
			}
		case <-tick.C:
			if opts.Progress != nil {
				rep.progress(opts.Progress, r.client.Stats())
			}
		}
	}
	rep.finish(r.client.Stats(), dd)
	if cause := context.Cause(ctx); cause != nil {
		rep.save(cfg.Report) // best effort: the account of an incomplete run
		switch {
		case writeErr != nil:
			return rep, writeErr
		case prodErr != nil:
			return rep, prodErr
		case isFatal(cause):
			return rep, fmt.Errorf("synth: %w", cause)
		default:
			return rep, fmt.Errorf("synth: interrupted after %d of %d items (rerun the same command to continue; answers so far are cached in %s): %w",
				rep.Done, total, cfg.CacheDir, cause)
		}
	}
	if next != total {
		return rep, fmt.Errorf("synth: internal error: %d of %d items written", next, total)
	}
	if err := out.commit(); err != nil {
		return rep, err
	}
	rep.Complete = true
	if err := rep.save(cfg.Report); err != nil {
		return rep, err
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("synth: %d of %d items failed (see %s); rerun to retry them, finished items come from the cache",
			rep.Failed, total, cfg.Report)
	}
	return rep, nil
}

// output writes records to a temporary file renamed into place on commit.
type output struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	enc       *json.Encoder
	done      bool
}

func newOutput(path string) (*output, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("synth: output: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &output{path: path, tmp: tmp, f: f, w: w, enc: enc}, nil
}

func (o *output) write(rec *Record) error {
	if err := o.enc.Encode(rec); err != nil {
		return fmt.Errorf("synth: output: %w", err)
	}
	return nil
}

func (o *output) commit() error {
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("synth: output: %w", err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("synth: output: %w", err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("synth: output: %w", err)
	}
	if err := os.Rename(o.tmp, o.path); err != nil {
		return fmt.Errorf("synth: output: %w", err)
	}
	o.done = true
	return nil
}

func (o *output) abort() {
	if !o.done {
		o.f.Close()
		os.Remove(o.tmp)
	}
}

// firstLine shortens an error for the report.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
