package data

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// prose makes a deterministic English-like document of about n words.
func prose(seed, n int) string {
	words := strings.Fields(`the of and to in that have with be for on it as was his at by from they this which
		are an were had but not you all she her their there would one could what when more been has its so
		some them then into other time only new these people may first well very after made many now water
		river mountain village harbor winter summer captain garden letter morning evening market bridge`)
	var b strings.Builder
	s := uint64(seed)*0x9e3779b97f4a7c15 + 1
	for i := range n {
		s = splitmix64(s)
		b.WriteString(words[s%uint64(len(words))])
		if i%12 == 11 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String() + "."
}

func writeJSONL(t *testing.T, path string, docs []string) {
	t.Helper()
	var b bytes.Buffer
	for i, d := range docs {
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("doc%d", i), "text": d})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testConfig is a quick config without the prose filters (synthetic text fails them).
func testConfig(out string, inputs ...string) Config {
	cfg := DefaultConfig()
	cfg.Filters = FilterConfig{Length: LengthFilter{Enabled: true, MinChars: 10}}
	cfg.Sources = []SourceConfig{{Name: "s", Inputs: inputs}}
	cfg.Output = out
	cfg.Shards.ValFraction = 0.1
	cfg.Shards.ShardTokens = 20000
	cfg.Encoder = ByteEncoder{}
	cfg.Read.TaskBytes = 30000
	return cfg
}

// hashDir hashes the shard files and manifest of dir.
func hashDir(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.bin"))
	files = append(files, filepath.Join(dir, "manifest.json"))
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func makeCorpus(t *testing.T, dir string, files, docsPerFile int) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	for f := range files {
		var docs []string
		for d := range docsPerFile {
			docs = append(docs, prose(f*1000+d, 80+d%50))
		}
		if f == 1 {
			docs = append(docs, docs[0], docs[1]) // exact duplicates
		}
		writeJSONL(t, filepath.Join(dir, fmt.Sprintf("part%02d.jsonl", f)), docs)
	}
	for f := range 4 { // a small text tree grouped into tasks
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("note%02d.txt", f)), []byte(prose(9000+f, 300)), 0o644)
	}
}

func TestPrepareEndToEnd(t *testing.T) {
	in := t.TempDir()
	makeCorpus(t, in, 6, 40)
	out := t.TempDir()
	emit := t.TempDir()
	cfg := testConfig(out, in)
	cfg.EmitJSONL = emit
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dedup == nil || rep.Dedup.ExactRemoved != 2 {
		t.Errorf("dedup report %+v, want 2 exact duplicates removed", rep.Dedup)
	}
	tr, va := rep.Splits["train"], rep.Splits["val"]
	if tr.Docs+va.Docs != 6*40+4 || va.Docs == 0 {
		t.Errorf("splits %+v, want %d documents with some in val", rep.Splits, 6*40+4)
	}
	ds, err := OpenShards(out, "train")
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if ds.Tokens() != tr.Tokens || ds.VocabSize() != 257 {
		t.Errorf("dataset has %d tokens vocab %d, report %d", ds.Tokens(), ds.VocabSize(), tr.Tokens)
	}
	// The emitted JSONL holds every kept document once.
	parts, _ := filepath.Glob(filepath.Join(emit, "*.jsonl"))
	n := 0
	for _, p := range parts {
		b, _ := os.ReadFile(p)
		n += bytes.Count(b, []byte("\n"))
	}
	if n != 6*40+4 {
		t.Errorf("emitted %d documents, want %d", n, 6*40+4)
	}
	// Stage accounting: every stage's docs out feed the next stage's docs in.
	var prev *StageReport
	for _, s := range rep.Stages {
		if prev != nil && s.Name != "shard" && s.DocsIn != prev.DocsOut {
			t.Errorf("stage %s has %d docs in, %s gave %d out", s.Name, s.DocsIn, prev.Name, prev.DocsOut)
		}
		prev = s
	}
	var tab bytes.Buffer
	rep.WriteTable(&tab)
	if !strings.Contains(tab.String(), "tokenize") {
		t.Errorf("table lacks stages:\n%s", tab.String())
	}
	// A second run finds everything done and changes nothing.
	before := hashDir(t, out)
	rep2, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if hashDir(t, out) != before || rep2.TasksResumed == 0 {
		t.Error("rerun of a finished run changed the shards or redid work")
	}
	// Another config in the same work dir is refused.
	cfg.Shards.ValFraction = 0.2
	if _, err := Prepare(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "another configuration") {
		t.Errorf("changed config in old work dir: %v", err)
	}
}

func TestPrepareInterruptedIsIdentical(t *testing.T) {
	in := t.TempDir()
	makeCorpus(t, in, 6, 30)
	ref := t.TempDir()
	cfg := testConfig(ref, in)
	cfg.Workers = 2
	if _, err := Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := hashDir(t, ref)
	for _, stop := range []int{1, 3, 7, 9, 15, 17} {
		out := t.TempDir()
		c := testConfig(out, in)
		c.Workers = 2
		c.StopAfterTasks = stop
		if _, err := Prepare(context.Background(), c); err == nil {
			// Fewer tasks than stop: the run completed.
		} else if err != ErrStopped {
			t.Fatalf("stop after %d: %v", stop, err)
		}
		c.StopAfterTasks = 0
		rep, err := Prepare(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if got := hashDir(t, out); got != want {
			t.Errorf("stopped after %d tasks and resumed: shards differ from an uninterrupted run", stop)
		}
		if rep.TasksResumed == 0 {
			t.Errorf("stop after %d: resumed run redid everything", stop)
		}
	}
}

// TestPrepareKill9 runs the pipeline in a child process (this test binary), kills it
// with SIGKILL in the middle, reruns it, and compares with an uninterrupted run.
func TestPrepareKill9(t *testing.T) {
	if os.Getenv("MAI_DATA_CHILD_OUT") != "" {
		return // running as the child: see TestMain
	}
	in := t.TempDir()
	makeCorpus(t, in, 8, 40)
	ref := t.TempDir()
	cfg := testConfig(ref, in)
	cfg.Read.TaskBytes = 1
	cfg.Shards.ShardTokens = 2000
	if _, err := Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := hashDir(t, ref)
	// Kill at a point in each phase: once some reading tasks are done, once some
	// tokenizing tasks are done, and once the first shards are written.
	count := func(pat string) int { m, _ := filepath.Glob(pat); return len(m) }
	for _, point := range []struct {
		name string
		at   func(out string) bool
	}{
		{"reading", func(out string) bool { return count(filepath.Join(out, ".work", "p1", "*.json")) >= 3 }},
		{"tokenizing", func(out string) bool { return count(filepath.Join(out, ".work", "p3", "*.json")) >= 4 }},
		{"sharding", func(out string) bool { return count(filepath.Join(out, ".work", "mix-state.json")) == 1 }},
	} {
		out := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MAI_DATA_CHILD_OUT="+out, "MAI_DATA_CHILD_IN="+in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(60 * time.Second)
		var err error
	wait:
		for time.Now().Before(deadline) {
			select {
			case err = <-exited:
				break wait
			default:
			}
			if point.at(out) {
				cmd.Process.Signal(syscall.SIGKILL)
				err = <-exited
				break
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("kill while %s: child ended with %v; %d read tasks, %d tokenized tasks done, manifest %d", point.name, err,
			count(filepath.Join(out, ".work", "p1", "*.json")), count(filepath.Join(out, ".work", "p3", "*.json")), count(filepath.Join(out, "manifest.json")))
		c := testConfig(out, in)
		c.Read.TaskBytes = 1
		c.Shards.ShardTokens = 2000
		if _, err := Prepare(context.Background(), c); err != nil {
			t.Fatalf("rerun after kill: %v\nchild: %s", err, stderr.String())
		}
		if got := hashDir(t, out); got != want {
			t.Errorf("killed while %s and rerun: shards differ from an uninterrupted run", point.name)
		}
	}
}

func TestMain(m *testing.M) {
	if out := os.Getenv("MAI_DATA_CHILD_OUT"); out != "" {
		cfg := testConfig(out, os.Getenv("MAI_DATA_CHILD_IN"))
		cfg.Read.TaskBytes = 1
		cfg.Workers = 1
		// Slow the child down so the kill lands mid-run.
		cfg.Encoder = slowEncoder{}
		cfg.Shards.ShardTokens = 2000
		if _, err := Prepare(context.Background(), cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type slowEncoder struct{ ByteEncoder }

func (slowEncoder) Encode(s string) []int {
	time.Sleep(2 * time.Millisecond)
	return ByteEncoder{}.Encode(s)
}

func TestPrepareBadInput(t *testing.T) {
	in := t.TempDir()
	good := prose(1, 100)
	line := func(s string) string { b, _ := json.Marshal(map[string]string{"text": s}); return string(b) }
	os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(line(good)+"\n{not json\n"+`{"text": 5}`+"\n"+`{"body":"x"}`+"\n"+line(prose(2, 100))+"\n"), 0o644)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := range 200 {
		fmt.Fprintln(zw, line(prose(100+i, 60)))
	}
	zw.Close()
	os.WriteFile(filepath.Join(in, "b.jsonl.gz"), gz.Bytes()[:gz.Len()/2], 0o644) // truncated
	os.WriteFile(filepath.Join(in, "c.jsonl.zst"), []byte("this is not zstd"), 0o644)
	os.WriteFile(filepath.Join(in, "d.txt"), []byte("binary\x00data"), 0o644)
	os.WriteFile(filepath.Join(in, "e.txt"), []byte("bad utf8 \xff\xfe here"), 0o644)
	os.WriteFile(filepath.Join(in, "f.warc.gz"), gz.Bytes()[:100], 0o644)
	out := t.TempDir()
	rep, err := Prepare(context.Background(), testConfig(out, in))
	if err != nil {
		t.Fatal(err)
	}
	locs := map[string]bool{}
	for _, e := range rep.BadInput.Entries {
		locs[filepath.Base(e.Location)] = true
		t.Logf("%s: %s", e.Location, e.Error)
	}
	for _, want := range []string{"a.jsonl:2", "a.jsonl:3", "a.jsonl:4", "c.jsonl.zst:1", "d.txt", "e.txt"} {
		if !locs[want] {
			t.Errorf("bad input at %s not reported", want)
		}
	}
	var truncated, warc bool
	for l := range locs {
		truncated = truncated || strings.HasPrefix(l, "b.jsonl.gz:")
		warc = warc || strings.HasPrefix(l, "f.warc.gz")
	}
	if !truncated || !warc {
		t.Errorf("truncated gzip (%v) or WARC (%v) not reported", truncated, warc)
	}
	read := rep.Stages[0]
	if read.Name != "read" || read.DocsOut < 3 {
		t.Errorf("read stage %+v: the good documents around the bad ones must be read", read)
	}
}

func TestMixingWeights(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	var da, db []string
	for i := range 200 {
		da = append(da, prose(i, 100))
		db = append(db, prose(5000+i, 100))
	}
	writeJSONL(t, filepath.Join(a, "a.jsonl"), da)
	writeJSONL(t, filepath.Join(b, "b.jsonl"), db)
	for _, tc := range []struct {
		name   string
		src    []SourceConfig
		ratio  float64 // tokens of a / tokens of b
		totalA float64 // a's tokens relative to its clean tokens
	}{
		{"weights 3:1", []SourceConfig{{Name: "a", Inputs: []string{a}, Weight: 3}, {Name: "b", Inputs: []string{b}, Weight: 1}}, 3, 1},
		{"epochs", []SourceConfig{{Name: "a", Inputs: []string{a}, Epochs: 2}, {Name: "b", Inputs: []string{b}, Epochs: 0.5}}, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Sources = tc.src
			cfg.Shards.ValFraction = 0
			rep, err := Prepare(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			ma, mb := rep.Mix[0], rep.Mix[1]
			r := float64(ma.EmittedTokens) / float64(mb.EmittedTokens)
			if r < tc.ratio*0.85 || r > tc.ratio*1.15 {
				t.Errorf("token ratio a/b = %.2f, want about %.1f (%+v %+v)", r, tc.ratio, ma, mb)
			}
			if g := float64(ma.EmittedTokens) / float64(ma.Tokens); g < tc.totalA*0.9 || g > tc.totalA*1.1 {
				t.Errorf("source a emitted %.2f of its tokens, want %.1f", g, tc.totalA)
			}
		})
	}
}

func TestReadParquet(t *testing.T) {
	type row struct {
		ID   string `parquet:"id"`
		Text string `parquet:"text"`
	}
	path := filepath.Join(t.TempDir(), "x.parquet")
	f, _ := os.Create(path)
	w := parquet.NewGenericWriter[row](f, parquet.PageBufferSize(512))
	var rows []row
	for i := range 500 {
		rows = append(rows, row{ID: fmt.Sprintf("r%d", i), Text: prose(i, 20)})
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f.Close()
	var got []Document
	var errs errorLog
	rc := ReadConfig{}
	rc.defaults()
	if err := readParquet(path, "s", &rc, &errs, func(d Document) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if errs.Count != 0 || len(got) != 500 || got[7].ID != "r7" || got[7].Text != rows[7].Text {
		t.Fatalf("read %d docs, %d errors; doc 7 = %+v", len(got), errs.Count, got[min(7, len(got)-1)])
	}
	os.WriteFile(path, []byte("PAR1 garbage PAR1"), 0o644)
	readParquet(path, "s", &rc, &errs, func(Document) error { return nil })
	if errs.Count != 1 {
		t.Errorf("corrupt parquet: %d errors, want 1", errs.Count)
	}
}

func FuzzParseJSONLine(f *testing.F) {
	f.Add([]byte(`{"text":"hello","id":3,"url":"u"}`))
	f.Add([]byte(`{"text":null}`))
	f.Add([]byte(`[1,2]`))
	rc := ReadConfig{}
	rc.defaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		parseJSONLine(b, &rc)
	})
}

func TestSmallCorpusGetsValSplit(t *testing.T) {
	in := t.TempDir()
	writeJSONL(t, filepath.Join(in, "a.jsonl"), []string{prose(1, 100), prose(2, 100), prose(3, 100)})
	cfg := testConfig(t.TempDir(), in)
	cfg.Shards.ValFraction = 0.001
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Splits["val"].Docs != 1 || rep.Splits["train"].Docs != 2 {
		t.Errorf("splits %+v, want 2 train and 1 val document", rep.Splits)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "p.yaml")
	os.WriteFile(good, []byte(`
output: out
tokenizer: byte
sources:
  - {name: web, inputs: [a.warc.gz], weight: 2}
  - {name: code, inputs: [src], epochs: 1.5}
filters:
  language: {languages: [en, de]}
  c4: {enabled: false}
dedup: {threshold: 0.8}
shards: {val_fraction: 0.01}
`), 0o644)
	cfg, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != 2 || cfg.Sources[1].Epochs != 1.5 || cfg.Filters.C4.Enabled || !cfg.Filters.GopherQuality.Enabled ||
		len(cfg.Filters.Language.Languages) != 2 || !cfg.Filters.Language.Enabled || cfg.Dedup.Threshold != 0.8 ||
		cfg.Dedup.ShingleSize != 5 || cfg.Shards.ValFraction != 0.01 {
		t.Errorf("config not merged over the defaults: %+v", cfg)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("output: x\nfilterz: {}\n"), 0o644)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "filterz") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestJSONLChunksMatchWholeFile(t *testing.T) {
	in := t.TempDir()
	var docs []string
	for i := range 300 {
		docs = append(docs, prose(i, 20+i%70))
	}
	writeJSONL(t, filepath.Join(in, "big.jsonl"), docs)
	read := func(chunk int64) ([]string, int) {
		rc := ReadConfig{ChunkBytes: chunk}
		rc.defaults()
		var errs errorLog
		tasks, err := listTasks("s", []string{in}, &rc, Skipped{}, &errs)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := range tasks {
			readTask(&tasks[i], &rc, &errs, func(d Document) error { got = append(got, d.Text); return nil })
		}
		return got, len(tasks)
	}
	whole, n1 := read(1 << 30)
	for _, chunk := range []int64{100, 777, 4096} {
		parts, n := read(chunk)
		if n <= n1 || !slices.Equal(parts, whole) || len(whole) != 300 {
			t.Errorf("chunk %d: %d tasks, %d docs; want the %d docs of the whole file in order", chunk, n, len(parts), len(whole))
		}
	}
}
