package synth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/mai-llm/mai/data"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	for _, k := range Kinds {
		if cfg.Generators[k] == nil || cfg.Generators[k].Kind != k {
			t.Fatalf("default generator %s missing", k)
		}
	}
	for _, name := range []string{"instruct", "chat", "textbook", "code"} {
		cfg.Generators[name].Count = 3
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Generators["textbook"].leaves); n < 50 {
		t.Errorf("default topic tree has %d leaves", n)
	}
	// Every default template renders with the variables its kind provides.
	r := &runner{cfg: &cfg}
	for it, err := range cfg.items() {
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]any{"Transcript": "User: hi", "Turn": 2, "Document": "doc"}
		for k, v := range it.vars {
			vars[k] = v
		}
		for _, name := range promptNames[it.gen.Kind] {
			s, err := r.render(it.gen, name, vars)
			if err != nil || strings.Contains(s, "<no value>") || strings.Contains(s, "{{") {
				t.Fatalf("%s %s: %q, %v", it.id, name, s, err)
			}
		}
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
teacher: {model: gpt-x, base_url: "http://127.0.0.1:9/v1"}
concurrency: 3
filters: {language: {enabled: true}}
generators:
  chat:
    count: 5
    prompts:
      follow_up: "Next message from {{.Persona}} after: {{.Transcript}}"
  recipes:
    kind: instruct
    count: 2
    topics: [soup, bread]
    tasks: [write a recipe]
    prompts: {instruction: "Ask for a {{.Topic}} recipe ({{.Task}})."}
`))
	if err != nil {
		t.Fatal(err)
	}
	chat := cfg.Generators["chat"]
	if chat.Count != 5 || !strings.Contains(chat.Prompts["follow_up"], "Next message") ||
		!strings.Contains(chat.Prompts["opener"], "first message") || chat.MaxTurns != 4 {
		t.Errorf("chat generator not merged field by field: %+v", chat)
	}
	if cfg.Concurrency != 3 || cfg.Teacher.Model != "gpt-x" || cfg.Sampling.MaxTokens != 1024 || !cfg.Filters.Language.Enabled ||
		!cfg.Filters.GopherRepetition.Enabled || cfg.Filters.GopherRepetition.DupLineFrac != 0.3 {
		t.Errorf("top-level merge: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.GeneratorNames(); !slices.Equal(got, []string{"instruct", "recipes", "chat", "textbook", "code", "rewrite"}) {
		t.Errorf("generator order %v", got)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"concurency: 3", "field concurency not found"},
		{"generators: {instruct: {count: two}}", "cannot unmarshal"},
		{"generators: {poems: {count: 1}}", `kind ""`},
		{"generators:\n  instruct:\n    count: 1\n    prompts:\n      instruction: '{{.Topic'\n", "prompts.instruction"},
		{"generators:\n  instruct:\n    cout: 1\n", "line 3: field cout not found"},
		{"generators: {instruct: {count: 1, prompts: {answer: 'x'}}}", "prompts.answer"},
		{"generators: {chat: {count: 1, min_turns: 3, max_turns: 2}}", "turns 3 to 2"},
		{"generators: {rewrite: {count: 5}}", "no inputs"},
		{"generators: {instruct: {count: 1, tasks: []}}", "tasks is empty"},
		{"generators: {textbook: {count: 1, topic_tree: {}}}", "topic_tree is empty"},
		{"logprobs: 21\ngenerators: {code: {count: 1}}", "logprobs 21"},
		{"dedup: {on: everything}\ngenerators: {code: {count: 1}}", "dedup.on"},
		{"- a list", "mapping at the top"},
	} {
		cfg, err := ParseConfig([]byte(tc.yaml))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestApplySelection(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Generators["chat"].Count = 9
	if err := ApplySelection(&cfg, []string{"code", "textbook"}, true, 4, []string{"a.jsonl"}); err != nil {
		t.Fatal(err)
	}
	g := cfg.Generators
	if g["code"].Count != 4 || g["textbook"].Count != 4 || g["chat"].Count != 0 || g["rewrite"].Count != 0 ||
		!slices.Equal(g["rewrite"].Inputs, []string{"a.jsonl"}) {
		t.Errorf("selection: code %d textbook %d chat %d rewrite %d %v", g["code"].Count, g["textbook"].Count, g["chat"].Count,
			g["rewrite"].Count, g["rewrite"].Inputs)
	}
	cfg = DefaultConfig()
	if err := ApplySelection(&cfg, nil, true, 2, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.Generators["instruct"].Count != 2 || cfg.Generators["rewrite"].Count != 0 {
		t.Error("--count without --kinds sets every prompt generator")
	}
	if err := ApplySelection(&cfg, []string{"nope"}, false, 0, nil); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestItemsDeterministic(t *testing.T) {
	mk := func(seed uint64) []string {
		cfg := DefaultConfig()
		cfg.Seed = seed
		cfg.Generators["instruct"].Count = 80
		cfg.Generators["textbook"].Count = 10
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var out []string
		for it, err := range cfg.items() {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, it.id+"|"+it.vars["Topic"].(string)+"|"+fmt.Sprint(it.vars, it.seed))
		}
		return out
	}
	a, b, c := mk(1), mk(1), mk(2)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different items")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds, same items")
	}
	// The first len(topics) instruct items use every topic once.
	cfg := DefaultConfig()
	topics := map[string]bool{}
	for _, s := range a[:len(cfg.Topics)] {
		topics[strings.Split(s, "|")[1]] = true
	}
	if len(topics) != len(cfg.Topics) {
		t.Errorf("%d distinct topics in the first %d items", len(topics), len(cfg.Topics))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"0.25", 250 * time.Millisecond}, {"-1", 0}, {"soon", 0},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
	// retry-after-ms wins, as OpenAI sends both.
	h := http.Header{}
	h.Set("Retry-After", "2")
	h.Set("Retry-After-Ms", "1500")
	err := &openai.Error{StatusCode: 429, Response: &http.Response{Header: h}}
	if got := retryAfter(err, now); got != 1500*time.Millisecond {
		t.Errorf("retry-after-ms: %v", got)
	}
}

func TestErrorClass(t *testing.T) {
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	for _, tc := range []struct {
		err  error
		ctx  context.Context
		want string
	}{
		{nil, bg, ""},
		{&openai.Error{StatusCode: 429}, bg, "rate_limited"},
		{&openai.Error{StatusCode: 503}, bg, "server_error"},
		{&openai.Error{StatusCode: 408}, bg, "server_error"},
		{&openai.Error{StatusCode: 401}, bg, "fatal"},
		{&openai.Error{StatusCode: 404}, bg, "fatal"},
		{&openai.Error{StatusCode: 400}, bg, "bad_request"},
		{&openai.Error{StatusCode: 429, Code: "insufficient_quota"}, bg, "fatal"},
		{&badResponseError{"x"}, bg, "bad_response"},
		{context.DeadlineExceeded, bg, "timeout"},
		{errors.New("read: connection reset by peer"), bg, "network"},
		{context.Canceled, canceled, "canceled"},
	} {
		if got := errorClass(tc.err, tc.ctx); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := NewClient(nil, nil, Limits{}, RetryConfig{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}, nil, nil)
	for attempt := 1; attempt < 40; attempt++ {
		want := min(time.Second, 100*time.Millisecond<<min(attempt-1, 30))
		for range 50 {
			d := c.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestLimiterDebt(t *testing.T) {
	// 600 tokens per minute = 10/s with a burst of 10: a take of 25 waits for a
	// full bucket, then leaves a debt of 15 that the next take must wait out.
	b := newBucket(600)
	now := time.Now()
	if d := b.reserve(25, now); d != 0 {
		t.Fatalf("first take waited %v", d)
	}
	if d := b.reserve(1, now); d < 1500*time.Millisecond || d > 1700*time.Millisecond {
		t.Fatalf("after a debt of 15 at 10/s, wait %v, want 1.6s", d)
	}
	b.give(20)
	if d := b.reserve(1, now); d != 0 {
		t.Fatalf("after giving back, wait %v", d)
	}
	if d := newBucket(0).reserve(1e9, now); d != 0 {
		t.Fatal("unlimited bucket waited")
	}
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{}
	for i := range 5 {
		req := &Request{Model: "m", Messages: []ChatMessage{{Role: "user", Content: strings.Repeat("x", i)}}}
		keys = append(keys, req.Key())
		if err := c.Put(req.Key(), &Response{Content: "answer\n" + strings.Repeat("é", i), Usage: Usage{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenCache(dir, 0); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second open: %v, want in use", err)
	}
	c.Close()
	// A torn last line, as a kill -9 in the middle of a write leaves.
	f, _ := os.OpenFile(filepath.Join(dir, cacheFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"key":"` + strings.Repeat("a", 64) + `","response":{"content":"half`)
	f.Close()
	c, err = OpenCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 5 {
		t.Fatalf("%d entries after a torn tail, want 5", c.Len())
	}
	for i, k := range keys {
		r, err := c.Get(k)
		if err != nil || r == nil || r.Content != "answer\n"+strings.Repeat("é", i) || r.Usage.CompletionTokens != 2 {
			t.Fatalf("entry %d: %+v %v", i, r, err)
		}
	}
	if r, _ := c.Get(strings.Repeat("b", 64)); r != nil {
		t.Fatal("missing key found")
	}
	if err := c.Put(strings.Repeat("c", 64), &Response{Content: "new"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, _ = OpenCache(dir, 0)
	defer c.Close()
	if r, _ := c.Get(strings.Repeat("c", 64)); c.Len() != 6 || r == nil || r.Content != "new" {
		t.Fatalf("after append past the cut: %d entries, %+v", c.Len(), r)
	}
}

func TestChunkText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var b strings.Builder
		for range rng.IntN(60) {
			switch rng.IntN(6) {
			case 0:
				b.WriteString("\n\n")
			case 1:
				b.WriteString("\n")
			case 2:
				b.WriteString("héllo ")
			default:
				b.WriteString(strings.Repeat("w", rng.IntN(40)) + " ")
			}
		}
		text := strings.TrimSpace(b.String())
		max := 20 + rng.IntN(100)
		chunks := chunkText(text, max)
		for _, c := range chunks {
			if len(c) > max || c == "" || !strings.Contains(text, c) {
				t.Fatalf("chunk %q (max %d) of %q", c, max, text)
			}
		}
		strip := func(s string) string { return strings.Join(strings.Fields(s), "") }
		if strip(strings.Join(chunks, "")) != strip(text) {
			t.Fatalf("chunks lose text: %q vs %q", chunks, text)
		}
	}
}

func TestParseExercise(t *testing.T) {
	good := "Sure!\n\n## Problem\nWrite `Sum(xs []int) int`.\n\n## Solution\n```go\npackage exercise\n\nfunc Sum(xs []int) int { return 0 }\n```\n\n### Tests\n```go\npackage exercise\n\nimport \"testing\"\n\nfunc TestSum(t *testing.T) {}\n```\n"
	ex, ok := parseExercise(good)
	if !ok || ex.problem != "Write `Sum(xs []int) int`." || !strings.Contains(ex.solution, "func Sum") ||
		!strings.Contains(ex.tests, "func TestSum") || !strings.HasPrefix(good[ex.answerStart:], "## Solution") {
		t.Fatalf("%+v %v", ex, ok)
	}
	for _, bad := range []string{
		"",
		"## Problem\nx\n",
		"## Solution\n```go\npackage a\n```\n## Problem\nx\n## Tests\n```go\npackage a\nfunc TestX(){}\n```",
		"## Problem\nx\n## Solution\nno code\n## Tests\n```go\npackage a\nfunc TestX(){}\n```",
		"## Problem\nx\n## Solution\n```go\npackage a\n```\n## Tests\n```go\npackage a\n```",
	} {
		if _, ok := parseExercise(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestCleanUserTurn(t *testing.T) {
	for in, want := range map[string]string{
		`  "How do tides work?"  `:           "How do tides work?",
		"Request: Plan my week.":             "Plan my week.",
		"**User message:** Hi there":         "Hi there",
		`"a" and "b" are letters`:            `"a" and "b" are letters`,
		"“Why is the sky blue?”":             "Why is the sky blue?",
		"Questions about prompts are fine.":  "Questions about prompts are fine.",
		"Instruction: \"Summarize this.\"\n": "Summarize this.",
	} {
		if got := cleanUserTurn(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestAlignLogprobs(t *testing.T) {
	toks := []TokenLogprob{{Token: "Hi"}, {Token: "\n##"}, {Token: " Sol"}, {Token: "é", Bytes: []int64{0xc3, 0xa9}}}
	content := "Hi\n## Solé"
	kept, start, ok := alignLogprobs(toks, content, 3) // "## Solé" starts inside "\n##"
	if !ok || start != 2 || len(kept) != 3 {
		t.Fatalf("kept %d from %d, aligned %v", len(kept), start, ok)
	}
	if _, _, ok := alignLogprobs(toks, "Hi there", 0); ok {
		t.Fatal("misaligned tokens reported aligned")
	}
	// Tokens of a stop sequence after the content (mai serve reports them)
	// are cut at the content's end; a token across the end is misaligned.
	stop := append(toks[:len(toks):len(toks)], TokenLogprob{Token: "<|im_"}, TokenLogprob{Token: "end|>"})
	if kept, start, ok := alignLogprobs(stop, content, 0); !ok || start != 0 || len(kept) != len(toks) {
		t.Fatalf("with stop tokens: kept %d from %d, aligned %v", len(kept), start, ok)
	}
	if _, _, ok := alignLogprobs(stop, content[:len(content)-1], 0); ok {
		t.Fatal("content ending inside a token reported aligned")
	}
}

func TestDedup(t *testing.T) {
	cfg := DefaultConfig().Dedup
	d := newDeduper(cfg)
	rng := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega")
	doc := func(n int) []string {
		ws := make([]string, n)
		for i := range ws {
			ws[i] = words[rng.IntN(len(words))] + words[rng.IntN(len(words))]
		}
		return ws
	}
	var kept []string
	near, missed, false_ := 0, 0, 0
	for range 300 {
		// A new random text (similarity about 0 to everything kept), or a kept
		// text edited a little (a near duplicate) or a lot (not one).
		var text string
		best := 0.0
		if len(kept) > 0 && rng.IntN(2) == 0 {
			src := kept[rng.IntN(len(kept))]
			base := strings.Fields(src)
			edits := 1 + rng.IntN(2)
			if rng.IntN(2) == 0 {
				edits = len(base) / 2
			}
			for range edits {
				base[rng.IntN(len(base))] = "changed" + words[rng.IntN(len(words))]
			}
			text = strings.Join(base, " ")
			best = data.Jaccard(text, src, cfg.ShingleSize)
		} else {
			text = strings.Join(doc(100), " ")
		}
		why := d.check(text)
		switch {
		case best >= cfg.Threshold+0.05 && why == "":
			missed++
		case best < cfg.Threshold-0.15 && why != "":
			false_++
		case why == "near_duplicate":
			near++
		}
		if why == "" {
			kept = append(kept, text)
		}
	}
	t.Logf("near duplicates removed %d, missed %d, false %d (threshold %v, %d bands x %d rows)", near, missed, false_, cfg.Threshold, d.cfg.Bands, d.cfg.Rows)
	if near < 30 || missed > near/20 || false_ > 0 {
		t.Errorf("near %d, missed %d, false %d", near, missed, false_)
	}
	if d.check(kept[0]) != "exact_duplicate" || d.check("  "+strings.ToUpper(kept[1])+"!") != "exact_duplicate" {
		t.Error("exact duplicates (after normalization) not found")
	}
}

func TestParseDocs(t *testing.T) {
	in := "{\"id\":\"a\",\"text\":\"one\"}\n\n{\"id\":7,\"text\":\"two\"}\n{\"text\":\"three\"}"
	var got []string
	for d, err := range parseDocs(strings.NewReader(in), "f.jsonl") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.ID+"="+d.Text)
	}
	if !slices.Equal(got, []string{"a=one", "7=two", "f.jsonl:4=three"}) {
		t.Errorf("%v", got)
	}
	for in, want := range map[string]string{
		"{\"id\":\"a\"}":                 `f.jsonl:1: no "text" field`,
		"{}\n[1,2]":                      "f.jsonl:1",
		"{\"id\":[1],\"text\":\"x\"}":    `"id" is neither`,
		"{\"text\":\"x\"}\n{\"text\":1}": "f.jsonl:2: not a JSON object",
	} {
		var err error
		for _, e := range parseDocs(strings.NewReader(in), "f.jsonl") {
			if e != nil {
				err = e
			}
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	env := map[string]string{"OPENAI_BASE_URL": "http://o/v1", "OPENAI_API_KEY": "sk-o", "MAI_TEACHER_API_KEY": "sk-m", "MY_KEY": "sk-x", "MAI_TEACHER_MODEL": "tm"}
	get := func(k string) string { return env[k] }
	var a TeacherConfig
	a.ResolveEnv(get)
	if a.BaseURL != "http://o/v1" || a.APIKey != "sk-m" || a.Model != "tm" {
		t.Errorf("%+v", a)
	}
	b := TeacherConfig{BaseURL: "http://b/v1", APIKeyEnv: "MY_KEY", Model: "x"}
	b.ResolveEnv(get)
	if b.BaseURL != "http://b/v1" || b.APIKey != "sk-x" || b.Model != "x" {
		t.Errorf("%+v", b)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("concurrency: 2\ngenerators: {instruct: {count: 1}}"))
	f.Add([]byte("generators: {textbook: {count: 2, topic_tree: {A: {B: [c, d]}, E: null}}}"))
	f.Add([]byte("generators: {x: {kind: chat, count: 1, min_turns: 1, max_turns: 1, prompts: {opener: '{{.Topic}}', follow_up: 'f'}}}"))
	f.Add(DefaultsYAML())
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		n := 0
		for _, err := range cfg.items() {
			if err != nil || n > 1000 {
				break
			}
			n++
		}
	})
}

func FuzzParseDocs(f *testing.F) {
	f.Add([]byte("{\"id\":\"a\",\"text\":\"one\"}\n{\"id\":2,\"text\":\"two\"}\n"))
	f.Add([]byte("{\"text\":null}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, err := range parseDocs(strings.NewReader(string(b)), "fuzz") {
			if err != nil {
				break
			}
		}
	})
}

func FuzzParseExercise(f *testing.F) {
	f.Add("## Problem\nx\n## Solution\n```go\npackage a\n```\n## Tests\n```go\npackage a\nfunc TestX(){}\n```")
	f.Add("### problem\n\n#### TEST\n```golang\n")
	f.Fuzz(func(t *testing.T, s string) {
		if ex, ok := parseExercise(s); ok && (ex.answerStart < 0 || ex.answerStart > len(s)) {
			t.Fatalf("answer start %d of %d", ex.answerStart, len(s))
		}
		chunkText(s, 1+len(s)%50)
		cleanUserTurn(s)
	})
}

// TestVerifyCode runs go test on exercises: a correct one is kept (meta.verified),
// one whose tests fail is dropped.
func TestVerifyCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test")
	}
	exercise := func(want int) string {
		return "## Problem\nWrite Double(x int) int returning 2x.\n\n## Solution\n```go\npackage exercise\n\n// Double returns 2x.\nfunc Double(x int) int { return 2 * x }\n```\n\n" +
			"## Tests\n```go\npackage exercise\n\nimport \"testing\"\n\nfunc TestDouble(t *testing.T) {\n\tif got := Double(21); got != " + fmt.Sprint(want) + " {\n\t\tt.Fatalf(\"Double(21) = %d\", got)\n\t}\n}\n```\n"
	}
	teacher := teacherFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if strings.Contains(req.Messages[0].Content, "easy") {
			return &Response{Content: exercise(42), FinishReason: "stop"}, nil
		}
		return &Response{Content: exercise(41), FinishReason: "stop"}, nil
	})
	cfg := DefaultConfig()
	cfg.Output = filepath.Join(t.TempDir(), "code.jsonl")
	cfg.Teacher.Model = "t"
	g := cfg.Generators["code"]
	g.Count, g.Verify, g.Difficulties = 2, true, []string{"easy", "hard"}
	cfg.Dedup.Exact, cfg.Dedup.Near = false, false
	// Both difficulties appear in two items with this seed.
	for seed := uint64(1); ; seed++ {
		cfg.Seed = seed
		var d []string
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		for it := range cfg.items() {
			d = append(d, it.vars["Difficulty"].(string))
		}
		if slices.Contains(d, "easy") && slices.Contains(d, "hard") {
			break
		}
	}
	rep, err := Run(context.Background(), cfg, Options{Teacher: teacher})
	if err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, cfg.Output)
	if len(recs) != 1 || rep.Dropped["tests_failed"] != 1 || recs[0].Meta["verified"] != true {
		t.Fatalf("%d records, dropped %v", len(recs), rep.Dropped)
	}
	if !strings.HasPrefix(recs[0].Messages[1].Content, "## Solution") || recs[0].Messages[0].Content != "Write Double(x int) int returning 2x." {
		t.Errorf("record %+v", recs[0].Messages)
	}
}
