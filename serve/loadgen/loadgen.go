// Package loadgen measures an OpenAI-compatible server under load: it runs a
// fixed number of concurrent streams, each sending streamed completion (or
// chat) requests one after another, and reports aggregate output tokens per
// second, requests per second, time to first token and inter-token latency
// percentiles for every concurrency level. It speaks plain HTTP and SSE, so
// it measures any server of that API (mai serve, llama.cpp's llama-server,
// vLLM) the same way.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config describes a benchmark run. Zero fields take the defaults.
type Config struct {
	// URL is the API base, e.g. http://127.0.0.1:8080/v1.
	URL string
	// Model is the model name sent with every request.
	Model string
	// APIKey, if set, is sent as a bearer token.
	APIKey string
	// Chat sends /chat/completions requests instead of /completions.
	Chat bool
	// Streams are the concurrency levels, run one after another (1, 8, 32).
	Streams []int
	// PromptWords is the prompt length in words (128). Each word is a
	// common English word after a space, one token in GPT-2-style and
	// Llama-style vocabularies; the servers' usage reports give the exact
	// count.
	PromptWords int
	// MaxTokens is max_tokens of every request (128).
	MaxTokens int
	// RequestsPerStream is how many requests each stream sends in turn (4).
	RequestsPerStream int
	// IgnoreEOS sends "ignore_eos": true so that every request generates
	// MaxTokens tokens (an extension of vLLM, llama.cpp and mai serve).
	IgnoreEOS bool
	// Warmup requests are sent (one at a time) before the first level and
	// not counted (1; negative for none).
	Warmup int
	// Seed fixes the prompts' words; 0 draws a random seed, so that a
	// second run does not find its prompts in the server's prefix cache.
	Seed uint64
	// Timeout bounds one request (10 minutes).
	Timeout time.Duration
	// ServerPID, if set, is the server's process id on this Linux machine:
	// its CPU time (user + system, all threads) during each level is
	// reported, and output tokens per CPU-second, a figure that holds up
	// when other work shares the cores.
	ServerPID int
	// Client is the HTTP client (a default one with no overall timeout).
	Client *http.Client
	// Progress, if set, is told when each level starts.
	Progress func(streams int)
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Mean float64 `json:"mean_ms"`
}

// Result is the measurement of one concurrency level.
type Result struct {
	Streams  int `json:"streams"`
	Requests int `json:"requests"`
	// Failures are requests that ended with an error (HTTP status, a
	// broken stream, an error event); their tokens are not counted.
	Failures int `json:"failures"`
	// Short counts successful requests that produced fewer than
	// max_tokens tokens (they stopped early: EOS, a stop string).
	Short            int     `json:"short"`
	PromptTokens     int     `json:"prompt_tokens"`
	OutputTokens     int     `json:"output_tokens"`
	Seconds          float64 `json:"seconds"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
	RequestsPerS     float64 `json:"requests_per_s"`
	// TTFT is the time from sending a request to its first generated text.
	TTFT Percentiles `json:"ttft"`
	// ITL is the time between successive streamed chunks that carry text.
	ITL Percentiles `json:"itl"`
	// TPOT is each request's time per output token after the first:
	// (last chunk - first chunk) / (tokens - 1).
	TPOT Percentiles `json:"tpot"`
	// ServerCPUSeconds is the server process's CPU time during the level
	// and OutputTokensPerCPUS the output tokens per second of it (with
	// Config.ServerPID).
	ServerCPUSeconds    float64 `json:"server_cpu_seconds,omitempty"`
	OutputTokensPerCPUS float64 `json:"output_tokens_per_server_cpu_s,omitempty"`
	// Errors holds the first few distinct failure messages.
	Errors []string `json:"errors,omitempty"`
}

// Report is a whole run.
type Report struct {
	URL               string   `json:"url"`
	Model             string   `json:"model"`
	Endpoint          string   `json:"endpoint"`
	PromptWords       int      `json:"prompt_words"`
	MaxTokens         int      `json:"max_tokens"`
	RequestsPerStream int      `json:"requests_per_stream"`
	Started           string   `json:"started"`
	Results           []Result `json:"results"`
}

func (c *Config) fill() error {
	if c.URL == "" {
		return errors.New("loadgen: no URL")
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.Model == "" {
		return errors.New("loadgen: no model name")
	}
	if len(c.Streams) == 0 {
		c.Streams = []int{1, 8, 32}
	}
	for _, n := range c.Streams {
		if n < 1 || n > 4096 {
			return fmt.Errorf("loadgen: streams must be between 1 and 4096, got %d", n)
		}
	}
	if c.PromptWords == 0 {
		c.PromptWords = 128
	}
	if c.PromptWords < 1 {
		return fmt.Errorf("loadgen: prompt length must be positive, got %d", c.PromptWords)
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = 128
	}
	if c.MaxTokens < 1 {
		return fmt.Errorf("loadgen: max tokens must be positive, got %d", c.MaxTokens)
	}
	if c.RequestsPerStream == 0 {
		c.RequestsPerStream = 4
	}
	if c.RequestsPerStream < 1 {
		return fmt.Errorf("loadgen: requests per stream must be positive, got %d", c.RequestsPerStream)
	}
	if c.Warmup == 0 {
		c.Warmup = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Client == nil {
		// A new connection per request: servers close idle keep-alive
		// connections on their own schedule (llama-server after 5 s), and
		// a POST sent on one that is closing fails without a retry. On
		// loopback a connection costs well under a millisecond.
		c.Client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	}
	return nil
}

// Run measures every concurrency level of cfg in turn.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	rep := &Report{URL: cfg.URL, Model: cfg.Model, Endpoint: "completions", PromptWords: cfg.PromptWords,
		MaxTokens: cfg.MaxTokens, RequestsPerStream: cfg.RequestsPerStream, Started: time.Now().UTC().Format(time.RFC3339)}
	if cfg.Chat {
		rep.Endpoint = "chat/completions"
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6f616467656e))
	for range max(cfg.Warmup, 0) {
		if r := send(ctx, &cfg, prompt(rng, cfg.PromptWords)); r.err != nil {
			return nil, fmt.Errorf("loadgen: warm-up request: %w", r.err)
		}
	}
	for _, n := range cfg.Streams {
		if cfg.Progress != nil {
			cfg.Progress(n)
		}
		prompts := make([][]string, n)
		for i := range prompts {
			for range cfg.RequestsPerStream {
				prompts[i] = append(prompts[i], prompt(rng, cfg.PromptWords))
			}
		}
		res, err := level(ctx, &cfg, prompts)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// level runs len(prompts) streams at once, each sending its prompts in turn.
func level(ctx context.Context, cfg *Config, prompts [][]string) (Result, error) {
	n := len(prompts)
	outs := make([][]outcome, n)
	var cpu0 time.Duration
	if cfg.ServerPID > 0 {
		var err error
		if cpu0, err = processCPU(cfg.ServerPID); err != nil {
			return Result{}, fmt.Errorf("loadgen: %w", err)
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for _, p := range prompts[i] {
				if ctx.Err() != nil {
					return
				}
				outs[i] = append(outs[i], send(ctx, cfg, p))
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	res := Result{Streams: n, Seconds: wall.Seconds()}
	if cfg.ServerPID > 0 {
		cpu1, err := processCPU(cfg.ServerPID)
		if err != nil {
			return Result{}, fmt.Errorf("loadgen: %w", err)
		}
		res.ServerCPUSeconds = (cpu1 - cpu0).Seconds()
	}
	var ttft, itl, tpot []float64
	for _, list := range outs {
		for _, o := range list {
			res.Requests++
			if o.err != nil {
				res.Failures++
				if msg := o.err.Error(); len(res.Errors) < 5 && !slices.Contains(res.Errors, msg) {
					res.Errors = append(res.Errors, msg)
				}
				continue
			}
			res.PromptTokens += o.promptTokens
			res.OutputTokens += o.tokens
			if o.tokens < cfg.MaxTokens {
				res.Short++
			}
			if o.ttft > 0 {
				ttft = append(ttft, ms(o.ttft))
			}
			for _, g := range o.gaps {
				itl = append(itl, ms(g))
			}
			if o.tokens > 1 && o.last > o.ttft {
				tpot = append(tpot, ms(o.last-o.ttft)/float64(o.tokens-1))
			}
		}
	}
	res.OutputTokensPerS = float64(res.OutputTokens) / wall.Seconds()
	res.RequestsPerS = float64(res.Requests-res.Failures) / wall.Seconds()
	if res.ServerCPUSeconds > 0 {
		res.OutputTokensPerCPUS = float64(res.OutputTokens) / res.ServerCPUSeconds
	}
	res.TTFT, res.ITL, res.TPOT = percentiles(ttft), percentiles(itl), percentiles(tpot)
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentiles returns the nearest-rank percentiles of xs.
func percentiles(xs []float64) Percentiles {
	if len(xs) == 0 {
		return Percentiles{}
	}
	slices.Sort(xs)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(xs)))) - 1
		return xs[min(max(i, 0), len(xs)-1)]
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Mean: sum / float64(len(xs))}
}

// words are common English words, each one token after a space in GPT-2,
// cl100k and Llama vocabularies.
var words = strings.Fields(`the of and to in is was for that on as with by he it at from his an were are
which this be or had not but first one their its new after who they have two her she been other when
time there all would during into more school also some city only most over year may later made years
world people what used out state many can between part where game these team such each day
three while life war well under work both about film house music long water found best great home back`)

// prompt returns a random run of words (each after a space).
func prompt(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(' ')
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

// outcome is what one request measured.
type outcome struct {
	err          error
	promptTokens int
	tokens       int
	ttft, last   time.Duration   // first and last text chunk, from the send
	gaps         []time.Duration // between text chunks
}

// chunk is the part of a streamed completion or chat chunk the generator
// reads.
type chunk struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// send makes one streamed request and measures it. Output tokens are the
// server's usage count when it sends one (stream_options.include_usage),
// else the number of chunks that carry text.
func send(ctx context.Context, cfg *Config, text string) (o outcome) {
	body := map[string]any{
		"model": cfg.Model, "max_tokens": cfg.MaxTokens, "stream": true, "temperature": 0,
		"stream_options": map[string]any{"include_usage": true},
	}
	path := "/completions"
	if cfg.Chat {
		path = "/chat/completions"
		body["messages"] = []map[string]string{{"role": "user", "content": text}}
	} else {
		body["prompt"] = text
	}
	if cfg.IgnoreEOS {
		body["ignore_eos"] = true
	}
	b, err := json.Marshal(body)
	if err != nil {
		return outcome{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+path, bytes.NewReader(b))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	t0 := time.Now()
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return outcome{err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))}
	}
	return readStream(resp.Body, t0)
}

// readStream reads a server-sent event stream of completion or chat chunks
// and measures it; t0 is when the request was sent.
func readStream(body io.Reader, t0 time.Time) (o outcome) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var (
		chunks  int
		usage   = -1
		prev    time.Duration
		done    bool
		gotText bool
	)
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			done = true
			break
		}
		now := time.Since(t0)
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return outcome{err: fmt.Errorf("bad stream chunk %.80q: %w", data, err)}
		}
		if len(c.Error) > 0 && string(c.Error) != "null" {
			return outcome{err: fmt.Errorf("error event: %s", c.Error)}
		}
		if c.Usage != nil {
			usage = c.Usage.CompletionTokens
			o.promptTokens = c.Usage.PromptTokens
		}
		text := false
		for _, ch := range c.Choices {
			if ch.Text != "" || ch.Delta.Content != "" || ch.Delta.ReasoningContent != "" {
				text = true
			}
		}
		if !text {
			continue
		}
		chunks++
		if !gotText {
			gotText = true
			o.ttft = now
		} else {
			o.gaps = append(o.gaps, now-prev)
		}
		prev, o.last = now, now
	}
	if err := sc.Err(); err != nil {
		return outcome{err: fmt.Errorf("reading stream: %w", err)}
	}
	if !done {
		return outcome{err: errors.New("stream ended without data: [DONE]")}
	}
	o.tokens = chunks
	if usage >= 0 {
		o.tokens = usage
	}
	return o
}

// WriteTable prints a report as an aligned text table.
func WriteTable(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "%s  model %s  /%s  prompt %d words, max_tokens %d, %d requests per stream\n",
		r.URL, r.Model, r.Endpoint, r.PromptWords, r.MaxTokens, r.RequestsPerStream)
	fmt.Fprintf(w, "%7s %8s %6s %11s %7s %9s %9s %9s %9s %9s %9s\n",
		"streams", "requests", "failed", "out tok/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "TPOT p50", "prompt")
	for _, x := range r.Results {
		prompt := 0.0
		if ok := x.Requests - x.Failures; ok > 0 {
			prompt = float64(x.PromptTokens) / float64(ok)
		}
		fmt.Fprintf(w, "%7d %8d %6d %11.1f %7.2f %7.0fms %7.0fms %7.1fms %7.1fms %7.1fms %9.0f\n",
			x.Streams, x.Requests, x.Failures, x.OutputTokensPerS, x.RequestsPerS,
			x.TTFT.P50, x.TTFT.P99, x.ITL.P50, x.ITL.P99, x.TPOT.P50, prompt)
	}
	for _, x := range r.Results {
		if x.ServerCPUSeconds > 0 {
			fmt.Fprintf(w, "server CPU at %d streams: %.1f s, %.1f output tokens per CPU-second\n", x.Streams, x.ServerCPUSeconds, x.OutputTokensPerCPUS)
		}
	}
	for _, x := range r.Results {
		if x.Short > 0 {
			fmt.Fprintf(w, "note: at %d streams %d requests stopped before max_tokens\n", x.Streams, x.Short)
		}
		for _, e := range x.Errors {
			fmt.Fprintf(w, "error at %d streams: %s\n", x.Streams, e)
		}
	}
	return nil
}
