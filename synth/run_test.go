package synth

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testConfig is a small run of every generator against url.
func testConfig(t *testing.T, url string) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Output = filepath.Join(dir, "out.jsonl")
	cfg.Teacher = TeacherConfig{BaseURL: url, Model: "fake-teacher"}
	cfg.Concurrency = 8
	cfg.Retry = RetryConfig{MaxAttempts: 8, BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond, Timeout: 500 * time.Millisecond}
	cfg.ProgressEvery = time.Hour
	cfg.Generators["instruct"].Count = 12
	cfg.Generators["chat"].Count = 6
	cfg.Generators["textbook"].Count = 8
	cfg.Generators["code"].Count = 8
	rw := cfg.Generators["rewrite"]
	rw.Inputs = []string{"testdata/docs.jsonl"}
	rw.MaxChars = 1500
	return cfg
}

// readRecords reads an output file.
func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v in %q", path, err, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

// checkRecords checks the chat JSONL shape of every record.
func checkRecords(t *testing.T, recs []Record) {
	t.Helper()
	for _, r := range recs {
		if r.ID == "" || len(r.Messages) < 2 || r.Meta["kind"] == nil {
			t.Fatalf("record %+v: missing id, messages or meta.kind", r)
		}
		last := r.Messages[len(r.Messages)-1]
		if last.Role != "assistant" || strings.TrimSpace(last.Content) == "" {
			t.Fatalf("record %s: last message %+v is not a non-empty assistant message", r.ID, last)
		}
		for i, m := range r.Messages {
			if !slices.Contains([]string{"system", "user", "assistant"}, m.Role) {
				t.Fatalf("record %s: role %q", r.ID, m.Role)
			}
			if i > 0 && m.Role == r.Messages[i-1].Role {
				t.Fatalf("record %s: two %s messages in a row", r.ID, m.Role)
			}
		}
	}
}

func expectedIDs(t *testing.T, cfg *Config) []string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for it, err := range cfg.items() {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, it.id)
	}
	return ids
}

// TestRunFaults runs every generator against a server that rate limits (429 with
// Retry-After), fails (500), answers too slowly, drops connections before and in
// the middle of answers, under a client-side request rate limit. Every item must
// come out exactly once, no request may be answered twice, Retry-After must be
// honoured, the rate limit must hold at the server, and a rerun must send nothing.
func TestRunFaults(t *testing.T) {
	ft := newFakeTeacher(t)
	faults := map[string]fault{}
	ft.policy = func(key string, attempt int) fault {
		// Most requests fail at first, some twice; the fault depends on the key.
		h := hashString(key)
		var f fault
		switch {
		case attempt == 1:
			f = []fault{ok, rateLimit, serverErr, slow, slowOK, dropConn, dropMidway, ok, serverErr, ok}[h%10]
		case attempt == 2 && h%10 == 8:
			f = dropConn
		}
		if attempt == 1 {
			faults[key] = f // only the handler goroutines write, under ft.mu
		}
		return f
	}
	ft.retryAfter = "1"
	cfg := testConfig(t, ft.url())
	const rpm = 2400 // 40 requests per second
	cfg.Limits.RequestsPerMinute = rpm
	want := expectedIDs(t, &cfg)

	start := time.Now()
	rep, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	elapsed := time.Since(start)
	recs := readRecords(t, cfg.Output)
	checkRecords(t, recs)
	var got []string
	for _, r := range recs {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records %v\nwant every item once, in order: %v", got, want)
	}
	arr, attempts, successes, items := ft.snapshot()
	if len(successes) != len(attempts) {
		t.Errorf("%d requests answered, %d requested", len(successes), len(attempts))
	}
	for k, n := range successes {
		if n != 1 {
			t.Errorf("request %s answered %d times", k[:8], n)
		}
	}
	for _, id := range want {
		if items[id] == 0 {
			t.Errorf("item %s: no request carried its X-Synth-Item header", id)
		}
	}
	ft.mu.Lock()
	gaps := slices.Clone(ft.retryGaps)
	ft.mu.Unlock()
	var fcount [7]int
	ft.mu.Lock()
	for _, f := range faults {
		fcount[f]++
	}
	ft.mu.Unlock()
	for _, f := range []fault{rateLimit, serverErr, slow, dropConn, dropMidway} {
		if fcount[f] == 0 {
			t.Errorf("fault %d was never injected: the test proves nothing about it", f)
		}
	}
	if len(gaps) != fcount[rateLimit] {
		t.Errorf("%d retries after 429, want %d", len(gaps), fcount[rateLimit])
	}
	for _, g := range gaps {
		if g < time.Second {
			t.Errorf("retry %v after a 429 with Retry-After: 1", g)
		}
	}
	// The request rate the server saw: over any window, at most rate*window plus
	// the burst (one second's worth); and over the whole run, the rate.
	rate := rpm / 60.0
	for i := range arr {
		for j := i + 1; j < len(arr); j++ {
			w := arr[j].at.Sub(arr[i].at).Seconds()
			if n := float64(j - i + 1); n > rate*w+rate+1 {
				t.Fatalf("%v requests in %.3fs: limit is %v/s with a burst of %v", n, w, rate, rate)
			}
		}
	}
	span := arr[len(arr)-1].at.Sub(arr[0].at).Seconds()
	seen := float64(len(arr)-int(rate)) / span
	t.Logf("%d items, %d requests (%d distinct) in %v: %.1f req/s after the burst (limit %.0f); faults ok/429/500/slow/slowok/drop/midway %v; retry gaps after 429 %v",
		len(want), len(arr), len(attempts), elapsed.Round(time.Millisecond), seen, rate, fcount, gaps)
	if seen > rate*1.05 {
		t.Errorf("server saw %.1f requests/s, limit %v", seen, rate)
	}
	st := rep.Requests
	if st.Attempts != int64(len(arr)) || st.Succeeded != int64(len(attempts)) || st.Failed != 0 {
		t.Errorf("report: %d attempts, %d answers, %d failed; server saw %d attempts, %d requests",
			st.Attempts, st.Succeeded, st.Failed, len(arr), len(attempts))
	}
	if st.RetryAfterHonoured != int64(fcount[rateLimit]) || st.Errors["rate_limited"] != int64(fcount[rateLimit]) ||
		st.Errors["timeout"] != int64(fcount[slow]) {
		t.Errorf("report errors %v, Retry-After honoured %d; injected %v", st.Errors, st.RetryAfterHonoured, fcount)
	}
	var sb strings.Builder
	rep.WriteTable(&sb)
	t.Logf("report:\n%s", sb.String())
	if !rep.Complete || rep.Kept != len(want) {
		t.Errorf("report: complete %v, kept %d of %d", rep.Complete, rep.Kept, len(want))
	}

	// A rerun sends nothing and writes the same file.
	first, _ := os.ReadFile(cfg.Output)
	ft.reset()
	rep2, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	arr2, _, _, _ := ft.snapshot()
	second, _ := os.ReadFile(cfg.Output)
	if len(arr2) != 0 || rep2.Requests.Attempts != 0 || rep2.Requests.Cached != st.Succeeded {
		t.Errorf("rerun: server saw %d requests, report %d attempts, %d cached (want 0, 0, %d)",
			len(arr2), rep2.Requests.Attempts, rep2.Requests.Cached, st.Succeeded)
	}
	if string(first) != string(second) {
		t.Error("rerun from the cache wrote a different file")
	}
}

// TestRunRateLimit checks that the request limit binds and holds at the server.
func TestRunRateLimit(t *testing.T) {
	ft := newFakeTeacher(t)
	cfg := testConfig(t, ft.url())
	for _, g := range cfg.Generators {
		g.Count = 0
	}
	cfg.Generators["rewrite"].Inputs = nil
	cfg.Generators["textbook"].Count = 75
	const rpm = 1800 // 30 per second
	cfg.Limits.RequestsPerMinute = rpm
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	arr, _, _, _ := ft.snapshot()
	rate := rpm / 60.0
	span := arr[len(arr)-1].at.Sub(arr[0].at).Seconds()
	seen := float64(len(arr)-int(rate)) / span
	t.Logf("%d requests in %.2fs: %.1f/s after the burst of %v (limit %v/s)", len(arr), span, seen, rate, rate)
	if seen > rate*1.05 || seen < rate*0.7 {
		t.Errorf("server saw %.1f requests/s after the burst, want about the limit %v", seen, rate)
	}
}

// TestRunTokenLimit checks the tokens-per-minute limit at the server.
func TestRunTokenLimit(t *testing.T) {
	ft := newFakeTeacher(t)
	cfg := testConfig(t, ft.url())
	for _, g := range cfg.Generators {
		g.Count = 0
	}
	cfg.Generators["rewrite"].Inputs = nil
	cfg.Generators["textbook"].Count = 30
	cfg.Sampling.MaxTokens = 150
	const tpm = 120_000 // 2000 tokens/s, about 8 requests/s here
	cfg.Limits.TokensPerMinute = tpm
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	arr, _, _, _ := ft.snapshot()
	rate := tpm / 60.0
	maxReq := int64(0)
	for _, a := range arr {
		maxReq = max(maxReq, a.tokens)
	}
	for i := range arr {
		sum := int64(0)
		for j := i; j < len(arr); j++ {
			sum += arr[j].tokens
			w := arr[j].at.Sub(arr[i].at).Seconds()
			// A request reserves its estimate plus max_tokens, so the bound is the
			// rate over the window plus the burst plus the largest reservation.
			if float64(sum) > rate*w+rate+float64(maxReq+int64(cfg.Sampling.MaxTokens)) {
				t.Fatalf("%d tokens in %.3fs: limit %v/s", sum, w, rate)
			}
		}
	}
	total := int64(0)
	for _, a := range arr[1:] {
		total += a.tokens
	}
	span := arr[len(arr)-1].at.Sub(arr[0].at).Seconds()
	t.Logf("%d requests, %.0f tokens/s over %.2fs (limit %.0f/s)", len(arr), float64(total)/span, span, rate)
	if float64(total-int64(rate))/span > rate*1.1 {
		t.Errorf("server saw %.0f tokens/s, limit %v", float64(total)/span, rate)
	}
}

// TestRunLogprobs checks that top-K logprobs are requested for assistant turns only
// and stored, aligned with the content, on every assistant message.
func TestRunLogprobs(t *testing.T) {
	ft := newFakeTeacher(t)
	cfg := testConfig(t, ft.url())
	cfg.Logprobs = 3
	cfg.EmitText = true
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, cfg.Output)
	checkRecords(t, recs)
	kinds := map[string]bool{}
	for _, r := range recs {
		kinds[r.Meta["kind"].(string)] = true
		if r.Meta["logprobs_aligned"] != true {
			t.Errorf("%s: logprobs not aligned", r.ID)
		}
		if r.Text == "" {
			t.Errorf("%s: no text with EmitText", r.ID)
		}
		for _, m := range r.Messages {
			if m.Role != "assistant" {
				if m.Logprobs != nil {
					t.Errorf("%s: logprobs on a %s message", r.ID, m.Role)
				}
				continue
			}
			if m.Logprobs == nil || len(m.Logprobs.Content) == 0 {
				t.Fatalf("%s: assistant message without logprobs", r.ID)
			}
			var b strings.Builder
			for _, tl := range m.Logprobs.Content {
				b.WriteString(tl.Token)
				if len(tl.TopLogprobs) != 3 || tl.Logprob > 0 {
					t.Fatalf("%s: token %+v: want 3 alternatives and a log probability", r.ID, tl)
				}
			}
			if b.String() != m.Content {
				t.Fatalf("%s: tokens %q do not spell the content %q", r.ID, b.String(), m.Content)
			}
		}
	}
	if len(kinds) != len(Kinds) {
		t.Errorf("kinds in output %v, want all of %v", kinds, Kinds)
	}
}

// TestRunFatal stops at once on a rejected key, with an error that says so.
func TestRunFatal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`))
	}))
	defer srv.Close()
	cfg := testConfig(t, srv.URL+"/v1")
	cfg.Concurrency = 2
	_, err := Run(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want a fatal 401", err)
	}
	if _, err := os.Stat(cfg.Output); !os.IsNotExist(err) {
		t.Errorf("output written after a fatal error: %v", err)
	}
}

// TestRunGivesUp fails items whose requests keep failing, and says so.
func TestRunGivesUp(t *testing.T) {
	ft := newFakeTeacher(t)
	ft.policy = func(key string, attempt int) fault {
		if hashString(key)%4 == 0 {
			return serverErr
		}
		return ok
	}
	cfg := testConfig(t, ft.url())
	cfg.Retry.MaxAttempts = 3
	rep, err := Run(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "items failed") {
		t.Fatalf("err = %v, want items failed", err)
	}
	if rep.Failed == 0 || rep.Kept+rep.Failed != rep.Items || len(rep.Errors) == 0 ||
		!strings.Contains(rep.Errors[0].Error, "gave up after 3 attempts") {
		t.Fatalf("report: %d kept, %d failed of %d, errors %v", rep.Kept, rep.Failed, rep.Items, rep.Errors)
	}
	if n := len(readRecords(t, cfg.Output)); n != rep.Kept {
		t.Errorf("%d records, report says %d kept", n, rep.Kept)
	}
	// The rerun retries only the failed items' requests.
	_, attempts, _, _ := ft.snapshot()
	ft.reset()
	ft.policy = nil
	rep2, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, attempts2, _, _ := ft.snapshot()
	for k := range attempts2 {
		if attempts[k] > 0 && hashString(k)%4 != 0 {
			t.Errorf("rerun resent an answered request %s", k[:8])
		}
	}
	if rep2.Kept != rep2.Items {
		t.Errorf("rerun kept %d of %d", rep2.Kept, rep2.Items)
	}
}

// TestRunDropsAndDedup checks the quality checks and dedup on bad teacher answers.
func TestRunDropsAndDedup(t *testing.T) {
	var calls int
	teacher := teacherFunc(func(ctx context.Context, req *Request) (*Response, error) {
		calls++
		last := req.Messages[len(req.Messages)-1].Content
		if strings.Contains(last, "Write one realistic request") {
			// Instructions: a few distinct ones, then repeats.
			return &Response{Content: fmt.Sprintf("Explain topic number %d in detail.", req.Seed%3), FinishReason: "stop"}, nil
		}
		switch {
		case strings.Contains(last, "number 0"):
			return &Response{Content: "As an AI language model, I cannot help with that request today.", FinishReason: "stop"}, nil
		case strings.Contains(last, "number 1"):
			return &Response{Content: "The answer starts well but then it was cut off by the token limit and", FinishReason: "length"}, nil
		}
		return &Response{Content: "This is a fine and complete answer about the requested topic, with enough words to pass.", FinishReason: "stop"}, nil
	})
	cfg := testConfig(t, "http://unused.invalid/v1")
	for _, g := range cfg.Generators {
		g.Count = 0
	}
	cfg.Generators["rewrite"].Inputs = nil
	cfg.Generators["instruct"].Count = 20
	cfg.Concurrency = 1
	rep, err := Run(context.Background(), cfg, Options{Teacher: teacher})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dropped["refusal"] == 0 || rep.Dropped["truncated"] == 0 || rep.Dropped["exact_duplicate"] == 0 {
		t.Fatalf("dropped %v: want refusals, truncations and exact duplicates", rep.Dropped)
	}
	recs := readRecords(t, cfg.Output)
	if len(recs) != 1 || rep.Kept != 1 {
		t.Fatalf("%d records, kept %d: want the one distinct good answer", len(recs), rep.Kept)
	}
}

type teacherFunc func(ctx context.Context, req *Request) (*Response, error)

func (f teacherFunc) Complete(ctx context.Context, req *Request) (*Response, error) {
	return f(ctx, req)
}

// TestRunInterrupted cancels a run (as Ctrl-C does): it says how to continue, keeps
// the report and the cache, writes no output, and the rerun completes.
func TestRunInterrupted(t *testing.T) {
	ft := newFakeTeacher(t)
	ft.delay = 20 * time.Millisecond
	cfg := testConfig(t, ft.url())
	cfg.Concurrency = 4
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			_, _, succ, _ := ft.snapshot()
			if len(succ) >= 20 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rep, err := Run(ctx, cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "rerun the same command") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(cfg.Output); !os.IsNotExist(err) {
		t.Fatal("output written by an interrupted run")
	}
	if _, err := os.Stat(cfg.Output + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("temporary output left behind")
	}
	if b, err := os.ReadFile(cfg.Output + ".report.json"); err != nil || !strings.Contains(string(b), `"complete": false`) {
		t.Fatalf("report of the interrupted run: %v %s", err, b)
	}
	_, _, succ, _ := ft.snapshot()
	ft.reset()
	rep2, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Requests.Cached < int64(len(succ))-int64(cfg.Concurrency) || rep2.Kept != rep2.Items {
		t.Errorf("rerun: %d cached of %d answered before, kept %d of %d", rep2.Requests.Cached, len(succ), rep2.Kept, rep2.Items)
	}
	t.Logf("interrupted after %d answers (report: %d done); rerun took %d from the cache, sent %d", len(succ), rep.Done, rep2.Requests.Cached, rep2.Requests.Attempts)
}
