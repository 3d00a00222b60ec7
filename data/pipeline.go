package data

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStopped is returned when Config.StopAfterTasks ends a run early.
var ErrStopped = errors.New("pipeline stopped early (StopAfterTasks)")

// StageReport counts what one stage received and passed on.
type StageReport struct {
	Name     string           `json:"name"`
	DocsIn   int64            `json:"docs_in"`
	DocsOut  int64            `json:"docs_out"`
	BytesIn  int64            `json:"bytes_in"`
	BytesOut int64            `json:"bytes_out"`
	Tokens   int64            `json:"tokens,omitempty"`
	Dropped  map[string]int64 `json:"dropped,omitempty"`
	Counts   map[string]int64 `json:"counts,omitempty"` // e.g. PII replacements by type
	// Seconds is the CPU time of the worker threads in this stage, summed (on Linux;
	// wall time elsewhere, and for "shard", which runs on one thread); MBps is BytesIn
	// over it: throughput per core. Stage times of tasks done by an earlier,
	// interrupted run are included.
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"`
}

func (s *StageReport) add(o *StageReport) {
	s.DocsIn += o.DocsIn
	s.DocsOut += o.DocsOut
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Tokens += o.Tokens
	s.Seconds += o.Seconds
	for k, v := range o.Dropped {
		if s.Dropped == nil {
			s.Dropped = map[string]int64{}
		}
		s.Dropped[k] += v
	}
	for k, v := range o.Counts {
		if s.Counts == nil {
			s.Counts = map[string]int64{}
		}
		s.Counts[k] += v
	}
}

func (s *StageReport) drop(reason string, bytes int64) {
	if s.Dropped == nil {
		s.Dropped = map[string]int64{}
	}
	s.Dropped[reason]++
	_ = bytes
}

// Report is the result of a run: per stage counts, bad input, dedup, mix and splits.
type Report struct {
	Stages       []*StageReport         `json:"stages"`
	BadInput     errorLog               `json:"bad_input"`
	SkippedFiles map[string]int64       `json:"skipped_files"`
	Dedup        *DedupReport           `json:"dedup,omitempty"`
	Mix          []MixReport            `json:"mix"`
	Splits       map[string]SplitReport `json:"splits"`
	Tasks        int                    `json:"tasks"`
	TasksResumed int                    `json:"tasks_resumed"`
	Workers      int                    `json:"workers"`
	InputBytes   int64                  `json:"input_bytes"`
	Seconds      float64                `json:"seconds"`
	CPUSeconds   float64                `json:"cpu_seconds"` // process CPU time (Linux), this run only
	Phases       map[string]float64     `json:"phase_seconds"`
	Tokenizer    string                 `json:"tokenizer"`
}

// SplitReport sums one output split.
type SplitReport struct {
	Docs   int64 `json:"docs"`
	Tokens int64 `json:"tokens"`
	Shards int   `json:"shards"`
}

// MixReport is one source's share of the training split.
type MixReport struct {
	Source        string  `json:"source"`
	Tokens        int64   `json:"tokens"`         // clean training tokens available
	Epochs        float64 `json:"epochs"`         // repeats taken
	TargetTokens  int64   `json:"target_tokens"`  // expected tokens in the mix
	EmittedTokens int64   `json:"emitted_tokens"` // tokens actually written
	EmittedDocs   int64   `json:"emitted_docs"`
}

// taskStats is what one task of phase 1 or 3 reports; its file marks the task done.
type taskStats struct {
	Stages  []*StageReport `json:"stages"`
	Errors  errorLog       `json:"errors"`
	Docs    int64          `json:"docs"`
	Train   int64          `json:"train_tokens"`
	ValToks int64          `json:"val_tokens"`
	ValDocs int64          `json:"val_docs"`
}

func (t *taskStats) stage(name string) *StageReport {
	for _, s := range t.Stages {
		if s.Name == name {
			return s
		}
	}
	s := &StageReport{Name: name}
	t.Stages = append(t.Stages, s)
	return s
}

type plan struct {
	Fingerprint string   `json:"fingerprint"`
	Tasks       []Task   `json:"tasks"`
	Skipped     Skipped  `json:"skipped"`
	ListErrors  errorLog `json:"list_errors"`
}

type pipeline struct {
	cfg     Config
	enc     Encoder
	eot     int
	work    string
	filters []Filter
	decon   *decontaminator
	mh      *minHasher
	plan    plan
	prog    *progress
	done    atomic.Int64
	resumed atomic.Int64
	removed map[uint64]byte
}

// Prepare runs the whole pipeline: it reads, cleans, deduplicates and tokenizes the
// sources into shards in cfg.Output, and returns (and writes as report.json) the
// report. A run interrupted at any point resumes from cfg.WorkDir.
func Prepare(ctx context.Context, cfg Config) (*Report, error) {
	start, cpu0 := time.Now(), processCPU()
	p := &pipeline{cfg: cfg}
	if err := p.setup(); err != nil {
		return nil, err
	}
	rep := &Report{Workers: p.cfg.Workers, Tasks: len(p.plan.Tasks), SkippedFiles: p.plan.Skipped, Phases: map[string]float64{}, Tokenizer: p.cfg.Tokenizer}
	rep.BadInput.merge(p.plan.ListErrors)
	for _, t := range p.plan.Tasks {
		rep.InputBytes += t.Bytes
	}
	phases := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"read_filter", p.phase1}, {"dedup", p.phase2}, {"tokenize", p.phase3}, {"shard", nil},
	}
	for _, ph := range phases {
		t0 := time.Now()
		var err error
		if ph.fn != nil {
			err = ph.fn(ctx)
		} else {
			err = p.phase4(rep)
		}
		if err != nil {
			return nil, err
		}
		rep.Phases[ph.name] = time.Since(t0).Seconds()
	}
	if err := p.collect(rep); err != nil {
		return nil, err
	}
	rep.TasksResumed = int(p.resumed.Load())
	rep.Seconds = time.Since(start).Seconds()
	rep.CPUSeconds = (processCPU() - cpu0).Seconds()
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := writeFileAtomic(filepath.Join(p.cfg.Output, "report.json"), append(b, '\n')); err != nil {
		return nil, err
	}
	return rep, nil
}

func (p *pipeline) setup() error {
	c := &p.cfg
	if c.Output == "" {
		return errors.New("prepare: no output directory")
	}
	if len(c.Sources) == 0 {
		return errors.New("prepare: no sources")
	}
	names := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Name == "" {
			s.Name = fmt.Sprintf("source%d", i)
		}
		if names[s.Name] {
			return fmt.Errorf("prepare: source name %q used twice", s.Name)
		}
		names[s.Name] = true
		if len(s.Inputs) == 0 {
			return fmt.Errorf("prepare: source %q has no inputs", s.Name)
		}
		if s.Weight < 0 || s.Epochs < 0 || s.TargetTokens < 0 {
			return fmt.Errorf("prepare: source %q has a negative weight, epochs or target", s.Name)
		}
	}
	if c.Shards.ValFraction < 0 || c.Shards.ValFraction >= 1 {
		return fmt.Errorf("prepare: val_fraction %v outside [0,1)", c.Shards.ValFraction)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(c.Output, ".work")
	}
	c.Read.defaults()
	if err := c.Dedup.resolve(); err != nil {
		return err
	}
	p.enc = c.Encoder
	if p.enc == nil {
		var err error
		if p.enc, err = LoadEncoder(c.Tokenizer); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	p.eot = p.enc.EOT()
	var err error
	if p.filters, err = c.Filters.Build(); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if p.decon, err = newDecontaminator(&c.Decon); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	p.mh = newMinHasher(&c.Dedup)
	p.prog = &progress{w: c.Progress, tty: c.ProgressTTY}
	p.work = c.WorkDir
	if c.Fresh {
		if err := os.RemoveAll(p.work); err != nil {
			return fmt.Errorf("prepare: remove work dir: %w", err)
		}
	}
	for _, d := range []string{"p1", "p2", "p3"} {
		if err := os.MkdirAll(filepath.Join(p.work, d), 0o755); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	if c.EmitJSONL != "" {
		if err := os.MkdirAll(c.EmitJSONL, 0o755); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	return p.makePlan()
}

// makePlan lists the tasks, or reads the list of an earlier run of the same config.
func (p *pipeline) makePlan() error {
	fp := p.cfg.fingerprint(p.enc.VocabSize(), p.eot)
	path := filepath.Join(p.work, "plan.json")
	if b, err := os.ReadFile(path); err == nil {
		var old plan
		if err := json.Unmarshal(b, &old); err != nil {
			return fmt.Errorf("prepare: corrupt %s (remove the work dir): %w", path, err)
		}
		if old.Fingerprint != fp {
			return fmt.Errorf("prepare: work dir %s belongs to a run with another configuration; remove it or start fresh", p.work)
		}
		p.plan = old
		return nil
	}
	p.plan = plan{Fingerprint: fp, Skipped: Skipped{}}
	for _, s := range p.cfg.Sources {
		ts, err := listTasks(s.Name, s.Inputs, &p.cfg.Read, p.plan.Skipped, &p.plan.ListErrors)
		if err != nil {
			return fmt.Errorf("prepare: source %q: %w", s.Name, err)
		}
		p.plan.Tasks = append(p.plan.Tasks, ts...)
	}
	if len(p.plan.Tasks) == 0 {
		return errors.New("prepare: the inputs hold no readable files")
	}
	if len(p.plan.Tasks) >= 1<<31 {
		return errors.New("prepare: too many tasks")
	}
	for i := range p.plan.Tasks {
		p.plan.Tasks[i].Index = i
	}
	b, _ := json.Marshal(&p.plan)
	return writeFileAtomic(path, b)
}

func (p *pipeline) taskPath(phase string, i int, ext string) string {
	return filepath.Join(p.work, phase, fmt.Sprintf("task-%06d%s", i, ext))
}

// forTasks runs fn over the tasks not yet done (no marker file) with the workers.
func (p *pipeline) forTasks(ctx context.Context, stage, phase string, fn func(*Task) error) error {
	var todo []*Task
	var bytes int64
	for i := range p.plan.Tasks {
		t := &p.plan.Tasks[i]
		if _, err := os.Stat(p.taskPath(phase, t.Index, ".json")); err == nil {
			p.resumed.Add(1)
			continue
		}
		todo = append(todo, t)
		bytes += t.Bytes
	}
	p.prog.start(stage, len(p.plan.Tasks), len(p.plan.Tasks)-len(todo), bytes)
	defer p.prog.finish()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan *Task)
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		cancel()
	}
	for range min(p.cfg.Workers, max(1, len(todo))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // stage timings read this thread's CPU clock
			defer runtime.UnlockOSThread()
			for t := range ch {
				if err := fn(t); err != nil {
					fail(err)
					continue
				}
				p.prog.add(1, t.Bytes)
				if n := p.done.Add(1); p.cfg.StopAfterTasks > 0 && n >= int64(p.cfg.StopAfterTasks) {
					fail(ErrStopped)
				}
			}
		}()
	}
feed:
	for _, t := range todo {
		select {
		case ch <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// sigSize is the bytes of one document's record in a .sig file.
func (p *pipeline) sigSize() int { return 16 + 4*p.cfg.Dedup.Permutations }

// phase1 reads, extracts, filters, redacts, decontaminates and signs documents.
func (p *pipeline) phase1(ctx context.Context) error {
	return p.forTasks(ctx, "read+filter", "p1", func(t *Task) error { return p.phase1Task(ctx, t) })
}

type tmpFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
}

func createTmp(path string) (*tmpFile, error) {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return nil, err
	}
	return &tmpFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (t *tmpFile) commit() error {
	if err := t.w.Flush(); err != nil {
		t.f.Close()
		return err
	}
	if err := t.f.Sync(); err != nil {
		t.f.Close()
		return err
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	return os.Rename(t.path+".tmp", t.path)
}

func (t *tmpFile) abort() {
	t.f.Close()
	os.Remove(t.path + ".tmp")
}

func (p *pipeline) phase1Task(ctx context.Context, t *Task) (err error) {
	var outs []*tmpFile
	for _, ext := range []string{".docs", ".sig", ".ids"} {
		o, cerr := createTmp(p.taskPath("p1", t.Index, ext))
		if cerr != nil {
			for _, o := range outs {
				o.abort()
			}
			return fmt.Errorf("task %d: %w", t.Index, cerr)
		}
		outs = append(outs, o)
	}
	defer func() {
		if err != nil {
			for _, o := range outs {
				o.abort()
			}
		}
	}()
	docsW, sigW, idsW := outs[0].w, outs[1].w, outs[2].w
	st := &taskStats{}
	read := st.stage("read")
	read.BytesIn = t.Bytes
	fstats := make([]*StageReport, len(p.filters))
	for i, f := range p.filters {
		fstats[i] = st.stage(f.Name())
	}
	pii := st.stage("pii")
	dec := st.stage("decontaminate")
	sign := st.stage("minhash")
	sig := make([]uint32, p.cfg.Dedup.Permutations)
	rec := make([]byte, p.sigSize())
	var inEmit time.Duration
	t0 := threadCPU()
	emit := func(d Document) error {
		e0 := threadCPU()
		defer func() { inEmit += threadCPU() - e0 }()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		read.DocsOut++
		read.BytesOut += int64(len(d.Text))
		for i, f := range p.filters {
			s := fstats[i]
			s.DocsIn++
			s.BytesIn += int64(len(d.Text))
			f0 := threadCPU()
			ok, why := f.Keep(&d)
			s.Seconds += (threadCPU() - f0).Seconds()
			if !ok {
				s.drop(why, int64(len(d.Text)))
				return nil
			}
			s.DocsOut++
			s.BytesOut += int64(len(d.Text))
		}
		f0 := threadCPU()
		pii.DocsIn++
		pii.BytesIn += int64(len(d.Text))
		if pii.Counts == nil {
			pii.Counts = map[string]int64{}
		}
		d.Text = p.cfg.PII.Redact(d.Text, pii.Counts)
		pii.DocsOut++
		pii.BytesOut += int64(len(d.Text))
		pii.Seconds += (threadCPU() - f0).Seconds()

		f0 = threadCPU()
		ws := normalizeWords(d.Text)
		dec.DocsIn++
		dec.BytesIn += int64(len(d.Text))
		if p.decon != nil && p.decon.contaminated(ws) {
			dec.drop("eval_ngram", int64(len(d.Text)))
			dec.Seconds += (threadCPU() - f0).Seconds()
			return nil
		}
		dec.DocsOut++
		dec.BytesOut += int64(len(d.Text))
		dec.Seconds += (threadCPU() - f0).Seconds()

		f0 = threadCPU()
		sign.DocsIn++
		sign.BytesIn += int64(len(d.Text))
		ek := exactKey(ws)
		binary.LittleEndian.PutUint64(rec[0:], ek[0])
		binary.LittleEndian.PutUint64(rec[8:], ek[1])
		if p.cfg.Dedup.Near {
			p.mh.signature(ws, sig)
			for i, v := range sig {
				binary.LittleEndian.PutUint32(rec[16+4*i:], v)
			}
		}
		sign.DocsOut++
		sign.BytesOut += int64(len(d.Text))
		sign.Seconds += (threadCPU() - f0).Seconds()

		line, jerr := json.Marshal(&d)
		if jerr != nil {
			return fmt.Errorf("encode document %s: %w", d.ID, jerr)
		}
		docsW.Write(line)
		docsW.WriteByte('\n')
		sigW.Write(rec)
		idj, _ := json.Marshal(d.ID)
		idsW.Write(idj)
		idsW.WriteByte('\n')
		st.Docs++
		return nil
	}
	if err := readTask(t, &p.cfg.Read, &st.Errors, emit); err != nil {
		return fmt.Errorf("task %d (%s): %w", t.Index, t.Files[0], err)
	}
	read.DocsIn = read.DocsOut
	read.Seconds = (threadCPU() - t0 - inEmit).Seconds()
	for _, o := range outs {
		if err := o.commit(); err != nil {
			return fmt.Errorf("task %d: %w", t.Index, err)
		}
	}
	outs = nil
	return writeJSONAtomic(p.taskPath("p1", t.Index, ".json"), st)
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// phase3 drops duplicates, assigns the split, tokenizes and writes .tok files.
func (p *pipeline) phase3(ctx context.Context) error {
	if err := p.loadRemoved(); err != nil {
		return err
	}
	return p.forTasks(ctx, "tokenize", "p3", func(t *Task) error { return p.phase3Task(ctx, t) })
}

func (p *pipeline) emitPath(i int) string {
	return filepath.Join(p.cfg.EmitJSONL, fmt.Sprintf("part-%06d.jsonl", i))
}

func (p *pipeline) phase3Task(ctx context.Context, t *Task) (err error) {
	tok, err := createTmp(p.taskPath("p3", t.Index, ".tok"))
	if err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	var emitF *tmpFile
	defer func() {
		if err != nil {
			tok.abort()
			if emitF != nil {
				emitF.abort()
			}
		}
	}()
	if p.cfg.EmitJSONL != "" {
		if emitF, err = createTmp(p.emitPath(t.Index)); err != nil {
			return fmt.Errorf("task %d: %w", t.Index, err)
		}
	}
	f, err := os.Open(p.taskPath("p1", t.Index, ".docs"))
	if err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	defer f.Close()
	st := &taskStats{}
	dd := st.stage("dedup")
	tk := st.stage("tokenize")
	br := bufio.NewReaderSize(f, 1<<20)
	var buf []byte
	for i := uint64(0); ; i++ {
		line, rerr := br.ReadBytes('\n')
		if len(line) > 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var d Document
			if err := json.Unmarshal(line, &d); err != nil {
				return fmt.Errorf("task %d: corrupt intermediate document %d: %w", t.Index, i, err)
			}
			n := int64(len(d.Text))
			dd.DocsIn++
			dd.BytesIn += n
			if why, gone := p.removed[uint64(t.Index)<<32|i]; gone {
				reason := "exact"
				if why == 'n' {
					reason = "near"
				}
				dd.drop(reason, n)
				continue
			}
			dd.DocsOut++
			dd.BytesOut += n
			t0 := threadCPU()
			toks := p.enc.Encode(d.Text)
			if p.eot >= 0 {
				toks = append(toks, p.eot)
			}
			split := byte(0)
			if p.cfg.Shards.ValFraction > 0 && unitFloat(hashString(d.ID)^p.cfg.Shards.Seed) < p.cfg.Shards.ValFraction {
				split = 1
				st.ValToks += int64(len(toks))
				st.ValDocs++
			} else {
				st.Train += int64(len(toks))
			}
			buf = buf[:0]
			buf = append(buf, split)
			buf = binary.AppendUvarint(buf, uint64(len(toks)))
			for _, v := range toks {
				if v < 0 || v >= p.enc.VocabSize() {
					return fmt.Errorf("task %d: tokenizer returned id %d outside vocabulary %d", t.Index, v, p.enc.VocabSize())
				}
				buf = binary.LittleEndian.AppendUint32(buf, uint32(v))
			}
			tok.w.Write(buf)
			tk.DocsIn++
			tk.DocsOut++
			tk.BytesIn += n
			tk.BytesOut += n
			tk.Tokens += int64(len(toks))
			tk.Seconds += (threadCPU() - t0).Seconds()
			if emitF != nil {
				emitF.w.Write(line)
			}
			st.Docs++
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("task %d: %w", t.Index, rerr)
		}
	}
	if err := tok.commit(); err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	if emitF != nil {
		if err := emitF.commit(); err != nil {
			return fmt.Errorf("task %d: %w", t.Index, err)
		}
	}
	return writeJSONAtomic(p.taskPath("p3", t.Index, ".json"), st)
}

// unitFloat maps a hash to [0,1).
func unitFloat(h uint64) float64 { return float64(splitmix64(h)>>11) / (1 << 53) }

// tokReader streams the documents of a source's .tok files in task order.
type tokReader struct {
	p     *pipeline
	tasks []int
	pos   tokPos
	f     *os.File
	br    *bufio.Reader
	toks  []int32
	buf   []byte
}

// tokPos is a tokReader's position: task (index into its task list), document number
// in that task's file, and byte offset in the file.
type tokPos struct {
	TI  int    `json:"ti"`
	Doc uint64 `json:"doc"`
	Off int64  `json:"off"`
}

// seek moves a reader to a saved position.
func (r *tokReader) seek(pos tokPos) error {
	r.close()
	r.pos = pos
	if pos.TI >= len(r.tasks) || pos.Off == 0 {
		return nil
	}
	f, err := os.Open(r.p.taskPath("p3", r.tasks[pos.TI], ".tok"))
	if err != nil {
		return err
	}
	if _, err := f.Seek(pos.Off, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	r.f, r.br = f, bufio.NewReaderSize(f, 1<<20)
	return nil
}

// next returns the next document of the given split; ok is false at the end.
func (r *tokReader) next(want byte) (id uint64, toks []int32, ok bool, err error) {
	for {
		if r.br == nil {
			if r.pos.TI >= len(r.tasks) {
				return 0, nil, false, nil
			}
			f, err := os.Open(r.p.taskPath("p3", r.tasks[r.pos.TI], ".tok"))
			if err != nil {
				return 0, nil, false, err
			}
			r.f, r.br = f, bufio.NewReaderSize(f, 1<<20)
			r.pos.Doc, r.pos.Off = 0, 0
		}
		split, err := r.br.ReadByte()
		if err == io.EOF {
			r.close()
			r.pos = tokPos{TI: r.pos.TI + 1}
			continue
		}
		if err != nil {
			return 0, nil, false, err
		}
		n, err := binary.ReadUvarint(r.br)
		if err != nil || n > 1<<40 {
			return 0, nil, false, fmt.Errorf("corrupt token file of task %d: %v", r.tasks[r.pos.TI], err)
		}
		id = uint64(r.tasks[r.pos.TI])<<32 | r.pos.Doc
		r.pos.Doc++
		r.pos.Off += 1 + int64(uvarintLen(n)) + 4*int64(n)
		if split != want {
			if _, err := r.br.Discard(int(n) * 4); err != nil {
				return 0, nil, false, fmt.Errorf("corrupt token file of task %d: %w", r.tasks[r.pos.TI], err)
			}
			continue
		}
		r.buf = slices.Grow(r.buf[:0], int(n)*4)[:n*4]
		if _, err := io.ReadFull(r.br, r.buf); err != nil {
			return 0, nil, false, fmt.Errorf("corrupt token file of task %d: %w", r.tasks[r.pos.TI], err)
		}
		r.toks = slices.Grow(r.toks[:0], int(n))[:n]
		for i := range r.toks {
			r.toks[i] = int32(binary.LittleEndian.Uint32(r.buf[4*i:]))
		}
		return id, r.toks, true, nil
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func (r *tokReader) close() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.br = nil, nil
}

// mixSource is one source's progress through the mix.
type mixSource struct {
	Pass int    `json:"pass"`
	Out  int64  `json:"out"`
	Docs int64  `json:"docs"`
	Seen int64  `json:"seen"`
	Done bool   `json:"done"`
	Pos  tokPos `json:"pos"`
}

// mixState is phase 4's checkpoint, saved each time a training shard is complete.
type mixState struct {
	TrainDone bool                      `json:"train_done"`
	Sources   []mixSource               `json:"sources"`
	Shards    map[string][]ShardSummary `json:"shards"`
	Next      map[string]int            `json:"next"`
}

// phase4 mixes the sources and writes the shards. It checkpoints after every training
// shard, so a resumed run continues from the last complete shard; the small validation
// split is rewritten whole.
func (p *pipeline) phase4(rep *Report) error {
	statePath := filepath.Join(p.work, "mix-state.json")
	if _, err := ReadManifest(p.cfg.Output); err == nil {
		if err := readJSON(filepath.Join(p.work, "mix.json"), &rep.Mix); err == nil {
			p.resumed.Add(1)
			return nil
		}
	}
	type src struct {
		cfg    SourceConfig
		tasks  []int
		tokens int64
		epochs float64
		target float64
		passes int
		st     mixSource
		prev   mixSource
		r      *tokReader
	}
	srcs := make([]*src, len(p.cfg.Sources))
	byName := map[string]*src{}
	for i, c := range p.cfg.Sources {
		srcs[i] = &src{cfg: c}
		byName[c.Name] = srcs[i]
	}
	var valDocs int64
	firstTrain := -1
	for _, t := range p.plan.Tasks {
		var st taskStats
		if err := readJSON(p.taskPath("p3", t.Index, ".json"), &st); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		s := byName[t.Source]
		s.tasks = append(s.tasks, t.Index)
		s.tokens += st.Train
		valDocs += st.ValDocs
		if firstTrain < 0 && st.Train > 0 {
			firstTrain = t.Index
		}
	}
	// A corpus too small for its validation fraction to pick any document still gets a
	// validation split: its first training document.
	holdout, holdoutToks := uint64(math.MaxUint64), []int32(nil)
	if p.cfg.Shards.ValFraction > 0 && valDocs == 0 && firstTrain >= 0 {
		r := &tokReader{p: p, tasks: []int{firstTrain}}
		id, toks, ok, err := r.next(0)
		r.close()
		if err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		if ok {
			holdout, holdoutToks = id, slices.Clone(toks)
			if s := byName[p.plan.Tasks[firstTrain].Source]; s != nil {
				s.tokens -= int64(len(toks))
			}
		}
	}
	// Epochs per source: explicit target, explicit epochs, or weights (the largest
	// weighted mix that needs no upsampling), else one pass.
	var wsum float64
	weighted := func(s *src) bool { return s.cfg.TargetTokens == 0 && s.cfg.Epochs == 0 && s.cfg.Weight > 0 }
	for _, s := range srcs {
		if weighted(s) {
			wsum += s.cfg.Weight
		}
	}
	total := math.Inf(1)
	for _, s := range srcs {
		if weighted(s) {
			total = min(total, float64(s.tokens)/(s.cfg.Weight/wsum))
		}
	}
	for _, s := range srcs {
		switch {
		case s.tokens == 0:
			s.epochs = 0
		case s.cfg.TargetTokens > 0:
			s.epochs = float64(s.cfg.TargetTokens) / float64(s.tokens)
		case s.cfg.Epochs > 0:
			s.epochs = s.cfg.Epochs
		case weighted(s):
			s.epochs = total * s.cfg.Weight / wsum / float64(s.tokens)
		default:
			s.epochs = 1
		}
		s.target = s.epochs * float64(s.tokens)
		s.passes = int(math.Ceil(s.epochs - 1e-9))
		s.st.Done = s.passes == 0
		s.r = &tokReader{p: p, tasks: s.tasks}
	}
	var resume mixState
	resumed := readJSON(statePath, &resume) == nil && len(resume.Sources) == len(srcs)
	var w *ShardSetWriter
	var err error
	if resumed {
		w, err = resumeShardSetWriter(p.cfg.Output, p.cfg.Tokenizer, p.enc.VocabSize(), p.eot, p.cfg.Shards.DType, p.cfg.Shards.ShardTokens, resume.Shards, resume.Next)
		for i, s := range srcs {
			s.st = resume.Sources[i]
			if err == nil {
				err = s.r.seek(s.st.Pos)
			}
		}
		p.resumed.Add(1)
	} else {
		w, err = NewShardSetWriter(p.cfg.Output, p.cfg.Tokenizer, p.enc.VocabSize(), p.eot, p.cfg.Shards.DType, p.cfg.Shards.ShardTokens)
	}
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer w.Abort()
	// checkpoint saves the state as it was before the document now being written,
	// which came from source cur (nil when none is pending).
	checkpoint := func(cur *src, trainDone bool) error {
		st := mixState{TrainDone: trainDone, Shards: w.closedShards(), Next: maps.Clone(w.next)}
		for _, s := range srcs {
			ss := s.st
			if s == cur {
				ss = s.prev
			}
			st.Sources = append(st.Sources, ss)
		}
		return writeJSONAtomic(statePath, &st)
	}
	var all int64
	for _, s := range srcs {
		all += int64(s.target)
	}
	p.prog.start("shard", int(all), 0, 0)
	for !(resumed && resume.TrainDone) {
		// The source furthest behind its share goes next.
		var pick *src
		best := math.Inf(1)
		for _, s := range srcs {
			if s.st.Done {
				continue
			}
			if r := float64(s.st.Out) / s.target; r < best {
				best, pick = r, s
			}
		}
		if pick == nil {
			break
		}
		pick.prev = pick.st
		pick.prev.Pos = pick.r.pos
		id, toks, ok, err := pick.r.next(0)
		if err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		pick.st.Pos = pick.r.pos
		if ok && id == holdout {
			continue
		}
		if !ok {
			pick.st.Pass++
			if pick.st.Pass >= pick.passes {
				pick.st.Done = true
			} else {
				pick.r.close()
				pick.r = &tokReader{p: p, tasks: pick.tasks}
				pick.st.Seen = 0
				pick.st.Pos = tokPos{}
			}
			continue
		}
		// The last, partial pass takes an evenly spread fraction of the documents:
		// document k of the pass is taken when floor((k+1)f) > floor(kf).
		frac := pick.epochs - float64(pick.st.Pass)
		k := float64(pick.st.Seen)
		pick.st.Seen++
		if frac < 1 && math.Floor((k+1)*frac) <= math.Floor(k*frac) {
			continue
		}
		if w.wouldRoll("train", len(toks)) {
			if err := w.closeSplit("train"); err != nil {
				return fmt.Errorf("shard: %w", err)
			}
			if err := checkpoint(pick, false); err != nil {
				return err
			}
			if err := p.stopCheck(); err != nil {
				return err
			}
		}
		if err := w.Add("train", toks); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		pick.st.Out += int64(len(toks))
		pick.st.Docs++
		p.prog.add(len(toks), 0)
	}
	if !(resumed && resume.TrainDone) {
		if w.open["train"] != nil {
			if err := w.closeSplit("train"); err != nil {
				return fmt.Errorf("shard: %w", err)
			}
		}
		if err := checkpoint(nil, true); err != nil {
			return err
		}
	}
	p.prog.finish()
	// Validation documents, each once, in source and task order.
	if holdoutToks != nil {
		if err := w.Add("val", holdoutToks); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
	}
	for _, s := range srcs {
		s.r.close()
		r := &tokReader{p: p, tasks: s.tasks}
		for {
			_, toks, ok, err := r.next(1)
			if err != nil {
				return fmt.Errorf("shard: %w", err)
			}
			if !ok {
				break
			}
			if err := w.Add("val", toks); err != nil {
				return fmt.Errorf("shard: %w", err)
			}
		}
		r.close()
	}
	rep.Mix = rep.Mix[:0]
	for _, s := range srcs {
		rep.Mix = append(rep.Mix, MixReport{Source: s.cfg.Name, Tokens: s.tokens, Epochs: s.epochs, TargetTokens: int64(s.target), EmittedTokens: s.st.Out, EmittedDocs: s.st.Docs})
	}
	if err := writeJSONAtomic(filepath.Join(p.work, "mix.json"), rep.Mix); err != nil {
		return err
	}
	if _, err := w.Close(); err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	return nil
}

// stopCheck counts a finished unit of phase 4 towards Config.StopAfterTasks.
func (p *pipeline) stopCheck() error {
	if n := p.done.Add(1); p.cfg.StopAfterTasks > 0 && n >= int64(p.cfg.StopAfterTasks) {
		return ErrStopped
	}
	return nil
}

// collect sums the task reports into rep.
func (p *pipeline) collect(rep *Report) error {
	var order []string
	byName := map[string]*StageReport{}
	add := func(s *StageReport) {
		a := byName[s.Name]
		if a == nil {
			a = &StageReport{Name: s.Name}
			byName[s.Name] = a
			order = append(order, s.Name)
		}
		a.add(s)
	}
	for _, phase := range []string{"p1", "p3"} {
		for _, t := range p.plan.Tasks {
			var st taskStats
			if err := readJSON(p.taskPath(phase, t.Index, ".json"), &st); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			for _, s := range st.Stages {
				add(s)
			}
			rep.BadInput.merge(st.Errors)
		}
	}
	for _, n := range order {
		s := byName[n]
		if s.Seconds > 0 {
			s.MBps = float64(s.BytesIn) / 1e6 / s.Seconds
		}
		rep.Stages = append(rep.Stages, s)
	}
	if p.cfg.Dedup.Exact || p.cfg.Dedup.Near {
		var d DedupReport
		if err := readJSON(filepath.Join(p.work, "p2", "dedup.json"), &d); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		rep.Dedup = &d
	}
	m, err := ReadManifest(p.cfg.Output)
	if err != nil {
		return err
	}
	rep.Splits = map[string]SplitReport{}
	for name, ss := range m.Splits {
		var sr SplitReport
		for _, s := range ss {
			sr.Docs += s.Docs
			sr.Tokens += s.Tokens
			sr.Shards++
		}
		rep.Splits[name] = sr
	}
	sh := &StageReport{Name: "shard"}
	for _, s := range rep.Stages {
		if s.Name == "tokenize" {
			sh.DocsIn, sh.BytesIn = s.DocsOut, s.BytesOut
		}
	}
	for _, sr := range rep.Splits {
		sh.DocsOut += sr.Docs
		sh.Tokens += sr.Tokens
	}
	sh.Seconds = rep.Phases["shard"]
	if sh.Seconds > 0 {
		sh.MBps = float64(sh.BytesIn) / 1e6 / sh.Seconds
	}
	rep.Stages = append(rep.Stages, sh)
	sort.SliceStable(rep.Stages, func(i, j int) bool { return stageRank(rep.Stages[i].Name) < stageRank(rep.Stages[j].Name) })
	return nil
}

func stageRank(name string) int {
	order := []string{"read", "length", "language", "gopher_quality", "gopher_repetition", "c4", "c4_badwords", "fineweb", "pii", "decontaminate", "minhash", "dedup", "tokenize", "shard"}
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}
