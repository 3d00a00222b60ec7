package synth

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fault is what the fake server does with one attempt.
type fault int

const (
	ok         fault = iota
	rateLimit        // 429 with Retry-After
	serverErr        // 500
	slow             // answers after the client's timeout (the client gives up)
	slowOK           // answers late but in time
	dropConn         // closes the connection before answering
	dropMidway       // starts a 200 answer and closes the connection halfway
)

// arrival is one request the server saw.
type arrival struct {
	at     time.Time
	key    string
	item   string
	tokens int64 // usage of the answer, when it answered
}

// fakeTeacher is an OpenAI-compatible chat completions server on loopback that
// writes plausible, distinct answers for every generator kind and injects faults.
type fakeTeacher struct {
	t   *testing.T
	srv *httptest.Server
	// policy picks the fault of an attempt (attempt counts from 1 per request key).
	policy     func(key string, attempt int) fault
	retryAfter string        // Retry-After of 429s
	slowFor    time.Duration // how long "slow" and "slowOK" wait
	delay      time.Duration // every answer waits this long

	mu        sync.Mutex
	arrivals  []arrival
	attempts  map[string]int // by request key
	successes map[string]int // 200 answers written whole, by key
	items     map[string]int // attempts by X-Synth-Item
	itemOK    map[string]int // 200 answers written whole, by X-Synth-Item
	lastFault map[string]time.Time
	retryGaps []time.Duration // time between a 429 and the next attempt at that key
	auth      string
}

func newFakeTeacher(t *testing.T) *fakeTeacher {
	f := &fakeTeacher{t: t, attempts: map[string]int{}, successes: map[string]int{}, items: map[string]int{},
		itemOK: map[string]int{}, lastFault: map[string]time.Time{}, retryAfter: "1", slowFor: 2 * time.Second}
	f.srv = httptest.NewServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTeacher) url() string { return f.srv.URL + "/v1" }

// wireRequest is the request body as the OpenAI client sends it.
type wireRequest struct {
	Model               string        `json:"model"`
	Messages            []ChatMessage `json:"messages"`
	Temperature         *float64      `json:"temperature"`
	TopP                float64       `json:"top_p"`
	MaxTokens           int           `json:"max_tokens"`
	MaxCompletionTokens int           `json:"max_completion_tokens"`
	Seed                int64         `json:"seed"`
	Logprobs            bool          `json:"logprobs"`
	TopLogprobs         int           `json:"top_logprobs"`
}

func (w *wireRequest) canonical() *Request {
	r := &Request{Model: w.Model, Messages: w.Messages, TopP: w.TopP, MaxTokens: w.MaxTokens, Seed: w.Seed}
	if w.Temperature != nil {
		r.Temperature = *w.Temperature
	}
	if w.MaxCompletionTokens > 0 {
		r.MaxTokens = w.MaxCompletionTokens
	}
	if w.Logprobs {
		r.TopLogprobs = w.TopLogprobs
	}
	return r
}

func (f *fakeTeacher) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req wireRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	key := req.canonical().Key()
	now := time.Now()
	f.mu.Lock()
	f.auth = r.Header.Get("Authorization")
	f.attempts[key]++
	attempt := f.attempts[key]
	f.items[r.Header.Get("X-Synth-Item")]++
	if t, ok := f.lastFault[key]; ok {
		f.retryGaps = append(f.retryGaps, now.Sub(t))
		delete(f.lastFault, key)
	}
	f.arrivals = append(f.arrivals, arrival{at: now, key: key, item: r.Header.Get("X-Synth-Item")})
	ai := len(f.arrivals) - 1
	fa := ok
	if f.policy != nil {
		fa = f.policy(key, attempt)
	}
	if fa == rateLimit {
		f.lastFault[key] = now
	}
	f.mu.Unlock()

	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	switch fa {
	case rateLimit:
		w.Header().Set("Retry-After", f.retryAfter)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":{"message":"rate limited","type":"rate_limit_exceeded"}}`))
		return
	case serverErr:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":{"message":"boom","type":"server_error"}}`))
		return
	case slow:
		select {
		case <-time.After(f.slowFor):
		case <-r.Context().Done():
			return // the client gave up: nothing was delivered
		}
		return // never answer in time; if the client is still there, give up too
	case slowOK:
		time.Sleep(150 * time.Millisecond)
	case dropConn, dropMidway:
		hj, okh := w.(http.Hijacker)
		if !okh {
			f.t.Error("fake teacher: no hijacker")
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		if fa == dropMidway {
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\":\"x\",\"choices\":[")
			buf.Flush()
		}
		conn.Close()
		return
	}
	body, usage := f.answer(&req, key)
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(body); err != nil {
		return
	}
	f.mu.Lock()
	f.successes[key]++
	f.itemOK[r.Header.Get("X-Synth-Item")]++
	f.arrivals[ai].tokens = usage
	f.mu.Unlock()
}

var fakeWords = strings.Fields(`the a of to and in is that for it as with was on be by this are from at or an
which have has not but one all their there can more about were when will would also into other than been some
could these two its time may first only new most after any many over such where through between those because
system energy water value process model market light number group method data rate change level point result
study field structure form theory function power force surface pressure signal network memory cell growth plant
river city history language music story example problem answer question reason idea simple careful quick strong`)

// answer writes a completion for req: distinct, fluent-looking text seeded by the
// request key, shaped for the prompt's kind.
func (f *fakeTeacher) answer(req *wireRequest, key string) ([]byte, int64) {
	last := req.Messages[len(req.Messages)-1].Content
	rng := rand.New(rand.NewPCG(hashString(key), 7))
	sentence := func(n int) string {
		ws := make([]string, n)
		for i := range ws {
			ws[i] = fakeWords[rng.IntN(len(fakeWords))]
		}
		s := strings.Join(ws, " ")
		return strings.ToUpper(s[:1]) + s[1:] + "."
	}
	paragraph := func(sentences int) string {
		ss := make([]string, sentences)
		for i := range ss {
			ss[i] = sentence(8 + rng.IntN(8))
		}
		return strings.Join(ss, " ")
	}
	var content string
	switch {
	case strings.Contains(last, "Reply in exactly this format"):
		n := rng.IntN(1000)
		content = fmt.Sprintf("## Problem\nWrite `func Add%d(a, b int) int` that returns the sum of a and b plus %d. %s\n\n"+
			"## Solution\n```go\npackage exercise\n\n// Add%d returns a+b+%d. %s\nfunc Add%d(a, b int) int { return a + b + %d }\n```\n\n"+
			"## Tests\n```go\npackage exercise\n\nimport \"testing\"\n\n// %s\nfunc TestAdd%d(t *testing.T) {\n\tif got := Add%d(1, 2); got != %d {\n\t\tt.Fatalf(\"got %%d\", got)\n\t}\n}\n```\n",
			n, n, paragraph(3), n, n, sentence(12), n, n, sentence(12), n, n, 3+n)
	case strings.Contains(last, "Write one realistic request"), strings.Contains(last, "Reply with the message only"):
		content = "Request: " + sentence(12) + " " + sentence(10)
	default:
		content = paragraph(4+rng.IntN(3)) + "\n\n" + paragraph(3+rng.IntN(3))
	}
	promptTok := int64(0)
	for _, m := range req.Messages {
		promptTok += int64(len(m.Content)/4 + 4)
	}
	type top struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
		Bytes   []int   `json:"bytes"`
	}
	type tok struct {
		Token       string  `json:"token"`
		Logprob     float64 `json:"logprob"`
		Bytes       []int   `json:"bytes"`
		TopLogprobs []top   `json:"top_logprobs"`
	}
	// Tokens: words with their leading space, so the pieces add up to the content.
	var toks []string
	for i := 0; i < len(content); {
		j := i + 1
		for j < len(content) && content[j] != ' ' && content[j] != '\n' {
			j++
		}
		toks = append(toks, content[i:j])
		i = j
	}
	bytesOf := func(s string) []int {
		b := make([]int, len(s))
		for i := range s {
			b[i] = int(s[i])
		}
		return b
	}
	var lp any
	if req.Logprobs {
		var ts []tok
		for _, s := range toks {
			t := tok{Token: s, Logprob: -rng.Float64(), Bytes: bytesOf(s)}
			for k := range req.TopLogprobs {
				alt := s
				if k > 0 {
					alt = fakeWords[rng.IntN(len(fakeWords))]
				}
				t.TopLogprobs = append(t.TopLogprobs, top{Token: alt, Logprob: -float64(k) - rng.Float64(), Bytes: bytesOf(alt)})
			}
			ts = append(ts, t)
		}
		lp = map[string]any{"content": ts}
	}
	completion := int64(len(toks))
	resp := map[string]any{
		"id": "chatcmpl-" + key[:12], "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "logprobs": lp,
			"message": map[string]any{"role": "assistant", "content": content}}},
		"usage": map[string]any{"prompt_tokens": promptTok, "completion_tokens": completion, "total_tokens": promptTok + completion},
	}
	b, _ := json.Marshal(resp)
	return b, promptTok + completion
}

// snapshot returns copies of the counters.
func (f *fakeTeacher) snapshot() (arrivals []arrival, attempts, successes, items map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		o := make(map[string]int, len(m))
		for k, v := range m {
			o[k] = v
		}
		return o
	}
	return append([]arrival(nil), f.arrivals...), cp(f.attempts), cp(f.successes), cp(f.items)
}

// reset forgets what the server saw (between runs).
func (f *fakeTeacher) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrivals = nil
	f.attempts = map[string]int{}
	f.successes = map[string]int{}
	f.items = map[string]int{}
	f.itemOK = map[string]int{}
	f.lastFault = map[string]time.Time{}
	f.retryGaps = nil
}
