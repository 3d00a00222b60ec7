package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mai-llm/mai/infer"
)

// ServerOptions configures a backend that reaches a model through an
// OpenAI-compatible HTTP server (/v1/completions with echo and logprobs,
// /v1/chat/completions for chat generation).
type ServerOptions struct {
	// URL is the server's base address (with or without /v1).
	URL string
	// Model names the model in requests (default: the first of /v1/models).
	Model string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// Tokenizer, when set, is the model's tokenizer: prompts are then sent
	// as token ids, and scoring windows count tokens exactly. Without it
	// prompts are text, continuation tokens are found by text_offset, and
	// long texts are windowed by bytes (a byte-level BPE token is at least
	// one byte, so a window of MaxLength bytes always fits).
	Tokenizer infer.Codec
	// Prefix is the start-of-text token id prepended to rolling texts in
	// token mode (default: the tokenizer's end-of-text).
	Prefix *int
	// MaxLength is the model's context in tokens (default: what /v1/models
	// says, else 2048).
	MaxLength int
	// Concurrency is the number of requests in flight (default 4).
	Concurrency int
	// Timeout bounds one request (default 10 minutes).
	Timeout time.Duration
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client
}

type server struct {
	opt       ServerOptions
	base      string
	maxLength int
	// echoTokens is max_tokens sent with echo: 0, or 1 for servers that
	// refuse 0 (one position of the context is then kept free).
	echoTokens int
}

// NewServer connects to an OpenAI-compatible server, asks it for its model
// and context length, and checks that it can echo prompt logprobs.
func NewServer(ctx context.Context, opt ServerOptions) (Backend, error) {
	if opt.URL == "" {
		return nil, fmt.Errorf("server: no URL")
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Minute
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: opt.Timeout}
	}
	s := &server{opt: opt, base: strings.TrimSuffix(strings.TrimSuffix(opt.URL, "/"), "/v1")}
	if err := s.discover(ctx); err != nil {
		return nil, err
	}
	if err := s.probe(ctx); err != nil {
		return nil, err
	}
	if opt.Tokenizer != nil {
		return &tokenBackend{m: &serverModel{s: s}}, nil
	}
	return &textServer{s: s}, nil
}

func (s *server) discover(ctx context.Context) error {
	var list struct {
		Data []map[string]any `json:"data"`
	}
	if err := s.call(ctx, http.MethodGet, "/v1/models", nil, &list); err != nil {
		if s.opt.Model == "" {
			return fmt.Errorf("server %s: listing models (give --server-model to skip): %w", s.base, err)
		}
	}
	var info map[string]any
	for _, m := range list.Data {
		if id, _ := m["id"].(string); s.opt.Model == "" || id == s.opt.Model {
			info = m
			break
		}
	}
	if s.opt.Model == "" {
		if info == nil {
			return fmt.Errorf("server %s: /v1/models lists no model", s.base)
		}
		s.opt.Model, _ = info["id"].(string)
	}
	s.maxLength = s.opt.MaxLength
	for _, k := range []string{"max_model_len", "context_length", "context_window", "max_context_length", "n_ctx"} {
		if v, ok := info[k].(float64); ok && v > 0 && s.maxLength == 0 {
			s.maxLength = int(v)
		}
	}
	if s.maxLength == 0 {
		s.maxLength = 2048
	}
	return nil
}

// probe checks echo with logprobs, with max_tokens 0 and else 1.
func (s *server) probe(ctx context.Context) error {
	var firstErr error
	for _, n := range []int{0, 1} {
		s.echoTokens = n
		var prompt any = "Hello"
		if s.opt.Tokenizer != nil {
			prompt = s.opt.Tokenizer.Encode("Hello, world")
		}
		lp, err := s.echo(ctx, prompt)
		if err == nil && len(lp.TokenLogprobs) > 0 {
			return nil
		}
		if err == nil {
			err = errors.New("the response has no prompt logprobs")
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return fmt.Errorf("server %s cannot score prompts (/v1/completions with echo and logprobs): %w", s.base, firstErr)
}

// call sends one JSON request and decodes the answer.
func (s *server) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.opt.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.opt.APIKey)
	}
	resp, err := s.opt.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		return &httpError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, msg)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: bad response: %w", method, path, err)
	}
	return nil
}

// httpError is a server's refusal.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// logprobs is the legacy completions logprobs object.
type logprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type completionResponse struct {
	Choices []struct {
		Index    int       `json:"index"`
		Text     string    `json:"text"`
		Logprobs *logprobs `json:"logprobs"`
	} `json:"choices"`
}

// echo returns the logprobs of a prompt (text or token ids) as scored by the
// server.
func (s *server) echo(ctx context.Context, prompt any) (*logprobs, error) {
	req := map[string]any{"model": s.opt.Model, "prompt": prompt, "echo": true, "logprobs": 1,
		"max_tokens": s.echoTokens, "temperature": 0}
	var resp completionResponse
	if err := s.call(ctx, http.MethodPost, "/v1/completions", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 || resp.Choices[0].Logprobs == nil {
		return nil, fmt.Errorf("/v1/completions: the response has no logprobs")
	}
	lp := resp.Choices[0].Logprobs
	if len(lp.TokenLogprobs) != len(lp.Tokens) || (lp.TextOffset != nil && len(lp.TextOffset) != len(lp.Tokens)) {
		return nil, fmt.Errorf("/v1/completions: logprobs lists of different lengths")
	}
	return lp, nil
}

// at reads position i of an echo: the token's logprob, and whether
// it was the top choice.
func (lp *logprobs) at(i int) (tokScore, error) {
	if lp.TokenLogprobs[i] == nil {
		return tokScore{}, fmt.Errorf("no logprob for prompt token %d", i)
	}
	v := *lp.TokenLogprobs[i]
	ts := tokScore{lp: v, top: v, greedy: true}
	if i < len(lp.TopLogprobs) && lp.TopLogprobs[i] != nil {
		for _, t := range lp.TopLogprobs[i] {
			ts.top = math.Max(ts.top, t)
		}
		ts.greedy = v >= ts.top-1e-6
	}
	return ts, nil
}

func (s *server) generate(ctx context.Context, reqs []GenRequest) ([]string, error) {
	out := make([]string, len(reqs))
	err := parallel(ctx, len(reqs), s.opt.Concurrency, func(i int) error {
		r := reqs[i]
		body := map[string]any{"model": s.opt.Model, "max_tokens": r.MaxTokens, "temperature": r.Temperature, "seed": r.Seed}
		if len(r.Until) > 0 {
			body["stop"] = r.Until
		}
		if len(r.Messages) > 0 {
			body["messages"] = r.Messages
			var resp struct {
				Choices []struct {
					Message Message `json:"message"`
				} `json:"choices"`
			}
			if err := s.call(ctx, http.MethodPost, "/v1/chat/completions", body, &resp); err != nil {
				return err
			}
			if len(resp.Choices) == 0 {
				return fmt.Errorf("/v1/chat/completions: no choices")
			}
			out[i] = cutAt(resp.Choices[0].Message.Content, r.Until)
			return nil
		}
		body["prompt"] = r.Prompt
		var resp completionResponse
		if err := s.call(ctx, http.MethodPost, "/v1/completions", body, &resp); err != nil {
			return err
		}
		if len(resp.Choices) == 0 {
			return fmt.Errorf("/v1/completions: no choices")
		}
		out[i] = cutAt(resp.Choices[0].Text, r.Until)
		return nil
	})
	return out, err
}

// cutAt cuts text at the first stop string (servers should, but a stop list
// longer than a server accepts may be truncated).
func cutAt(text string, stops []string) string {
	for _, s := range stops {
		if i := strings.Index(text, s); i >= 0 && s != "" {
			text = text[:i]
		}
	}
	return text
}

// parallel runs f(0..n-1) with at most k at once and returns the first error.
func parallel(ctx context.Context, n, k int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	sem := make(chan struct{}, k)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
		if errors.Is(first, context.Canceled) {
			first = nil
		}
	}
	return first
}

// serverModel is a tokenModel over a server that accepts token-id prompts.
type serverModel struct{ s *server }

func (m *serverModel) name() string { return m.s.opt.Model }

func (m *serverModel) maxLen() int { return m.s.maxLength - m.s.echoTokens }

func (m *serverModel) encode(text string) ([]int32, error) {
	ids := m.s.opt.Tokenizer.Encode(text)
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out, nil
}

func (m *serverModel) prefix() int32 {
	if m.s.opt.Prefix != nil {
		return int32(*m.s.opt.Prefix)
	}
	return int32(m.s.opt.Tokenizer.EOT())
}

func (m *serverModel) score(ctx context.Context, seqs []scoreSeq) ([][]tokScore, error) {
	out := make([][]tokScore, len(seqs))
	err := parallel(ctx, len(seqs), m.s.opt.Concurrency, func(i int) error {
		sq := seqs[i]
		ids := make([]int, len(sq.ids))
		for j, v := range sq.ids {
			ids[j] = int(v)
		}
		lp, err := m.s.echo(ctx, ids)
		if err != nil {
			return err
		}
		if len(lp.TokenLogprobs) < len(ids) {
			return fmt.Errorf("/v1/completions: %d logprobs for a prompt of %d tokens", len(lp.TokenLogprobs), len(ids))
		}
		res := make([]tokScore, 0, len(ids)-sq.from)
		for p := sq.from; p < len(ids); p++ {
			ts, err := lp.at(p)
			if err != nil {
				return err
			}
			res = append(res, ts)
		}
		out[i] = res
		return nil
	})
	return out, err
}

func (m *serverModel) generate(ctx context.Context, reqs []GenRequest) ([]string, error) {
	return m.s.generate(ctx, reqs)
}

// textServer scores text prompts and finds continuation tokens by their
// text offsets.
type textServer struct{ s *server }

func (t *textServer) Name() string   { return t.s.opt.Model }
func (t *textServer) MaxLength() int { return t.s.maxLength }

// scoreText returns the tokens of text starting at or after byte from.
func (t *textServer) scoreText(ctx context.Context, text string, from int) ([]tokScore, error) {
	lp, err := t.s.echo(ctx, text)
	if err != nil {
		return nil, err
	}
	if len(lp.TextOffset) != len(lp.Tokens) {
		return nil, fmt.Errorf("/v1/completions: the response has no text_offset")
	}
	var res []tokScore
	for i, off := range lp.TextOffset {
		if off < from || off >= len(text) {
			continue // context, or a token generated after the prompt
		}
		ts, err := lp.at(i)
		if err != nil {
			return nil, err
		}
		res = append(res, ts)
	}
	return res, nil
}

func (t *textServer) LogLikelihood(ctx context.Context, reqs []LLRequest) ([]LLResult, error) {
	out := make([]LLResult, len(reqs))
	err := parallel(ctx, len(reqs), t.s.opt.Concurrency, func(i int) error {
		c, k := splitSpaces(reqs[i].Context, reqs[i].Continuation)
		full := c + k
		toks, err := t.scoreText(ctx, full, len(c))
		var he *httpError
		if err != nil && len(full) > t.s.maxLength && errors.As(err, &he) && he.status == http.StatusBadRequest {
			// Too long, probably: keep the last MaxLength bytes, which
			// are at most MaxLength tokens.
			cut := runeStart(full, len(full)-t.s.maxLength)
			if cut > len(c) {
				return fmt.Errorf("loglikelihood: a continuation of %d bytes does not fit the context of %d tokens", len(k), t.s.maxLength)
			}
			toks, err = t.scoreText(ctx, full[cut:], len(c)-cut)
		}
		if err != nil {
			return err
		}
		r := LLResult{Greedy: true, Tokens: len(toks)}
		for _, s := range toks {
			r.LogProb += s.lp
			r.Greedy = r.Greedy && s.greedy
		}
		out[i] = r
		return nil
	})
	return out, err
}

// LogLikelihoodRolling scores texts in byte windows; the first token of each
// text has no logprob (nothing precedes it) and is left out.
func (t *textServer) LogLikelihoodRolling(ctx context.Context, texts []string, stride int) ([]RollingResult, error) {
	out := make([]RollingResult, len(texts))
	for i, text := range texts {
		ws, err := windows(len(text), max(2, t.s.maxLength-4), stride)
		if err != nil {
			return nil, err
		}
		sums := make([]RollingResult, len(ws))
		err = parallel(ctx, len(ws), t.s.opt.Concurrency, func(j int) error {
			w := ws[j]
			lo, from, hi := runeStart(text, w.lo), runeStart(text, w.from), runeStart(text, w.hi)
			if j == 0 {
				from = 0 // the first token is skipped below (it has no logprob)
			}
			if hi <= from {
				return nil
			}
			lp, err := t.s.echo(ctx, text[lo:hi])
			if err != nil {
				return err
			}
			for k, off := range lp.TextOffset {
				if off < from-lo || off >= hi-lo || lp.TokenLogprobs[k] == nil {
					continue
				}
				sums[j].LogProb += *lp.TokenLogprobs[k]
				sums[j].Tokens++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, s := range sums {
			out[i].LogProb += s.LogProb
			out[i].Tokens += s.Tokens
		}
	}
	return out, nil
}

// runeStart moves byte index i back to the start of the character it is in.
func runeStart(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

func (t *textServer) Generate(ctx context.Context, reqs []GenRequest) ([]string, error) {
	return t.s.generate(ctx, reqs)
}
