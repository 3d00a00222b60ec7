package synth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// RetryConfig bounds the attempts at one request.
type RetryConfig struct {
	// MaxAttempts per request, the first included (default 8).
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// BaseDelay is the first backoff; each retry doubles it up to MaxDelay, and a
	// random jitter spreads the retries of many workers (defaults 1s and 60s).
	BaseDelay time.Duration `yaml:"base_delay" json:"base_delay"`
	MaxDelay  time.Duration `yaml:"max_delay" json:"max_delay"`
	// Timeout bounds one attempt (default 10m: long answers of slow teachers).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// Limits are client-side rate limits; 0 is unlimited.
type Limits struct {
	RequestsPerMinute float64 `yaml:"requests_per_minute" json:"requests_per_minute"`
	// TokensPerMinute counts prompt plus completion tokens. A request reserves its
	// estimated prompt tokens plus max_tokens; the unused part is given back when
	// the answer's usage is known.
	TokensPerMinute float64 `yaml:"tokens_per_minute" json:"tokens_per_minute"`
}

// maxRetryAfter caps the wait a server's Retry-After may ask for.
const maxRetryAfter = 10 * time.Minute

// FatalError is a failure that no retry fixes for any request (bad key, unknown
// model): the run stops.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return "teacher refused the run: " + e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// Client sends requests to a Teacher with a cache, rate limits and retries, and
// accounts for every attempt.
type Client struct {
	teacher  Teacher
	cache    *Cache
	lim      *limiter
	retry    RetryConfig
	estimate func(string) int
	log      *slog.Logger

	mu sync.Mutex
	st RequestStats
	// latencies of successful attempts, seconds (reservoir of the last 100k).
	lat []float64
}

// RequestStats counts what the client did.
type RequestStats struct {
	// Attempts is every HTTP request sent; Succeeded those that gave an answer.
	Attempts  int64 `json:"attempts"`
	Succeeded int64 `json:"succeeded"`
	// Cached answers were served from the cache: no request, no cost.
	Cached int64 `json:"cached"`
	// Failed requests gave up (non-retryable error or attempts exhausted).
	Failed int64 `json:"failed"`
	// Errors by class: rate_limited, server_error, timeout, network, bad_response,
	// bad_request, fatal.
	Errors map[string]int64 `json:"errors"`
	// Tokens of answers paid for in this run, and of answers taken from the cache.
	PromptTokens           int64 `json:"prompt_tokens"`
	CompletionTokens       int64 `json:"completion_tokens"`
	CachedPromptTokens     int64 `json:"cached_prompt_tokens"`
	CachedCompletionTokens int64 `json:"cached_completion_tokens"`
	// EstimatedUsage counts answers without usage from the server.
	EstimatedUsage int64 `json:"estimated_usage,omitempty"`
	// RetryAfterHonoured counts waits that a server's Retry-After set.
	RetryAfterHonoured int64 `json:"retry_after_honoured"`
	// LatencyP50 and LatencyP95 are of successful attempts, in seconds.
	LatencyP50 float64 `json:"latency_p50_s"`
	LatencyP95 float64 `json:"latency_p95_s"`
}

// NewClient wraps teacher. cache may be nil (no caching); estimate counts the tokens
// of a text for rate limiting and for answers without usage (nil: bytes/4).
func NewClient(teacher Teacher, cache *Cache, limits Limits, retry RetryConfig, estimate func(string) int, log *slog.Logger) *Client {
	if retry.MaxAttempts <= 0 {
		retry.MaxAttempts = 8
	}
	if retry.BaseDelay <= 0 {
		retry.BaseDelay = time.Second
	}
	if retry.MaxDelay <= 0 {
		retry.MaxDelay = time.Minute
	}
	if retry.Timeout <= 0 {
		retry.Timeout = 10 * time.Minute
	}
	if estimate == nil {
		estimate = func(s string) int { return (len(s) + 3) / 4 }
	}
	if log == nil {
		log = slog.Default()
	}
	return &Client{teacher: teacher, cache: cache, lim: newLimiter(limits.RequestsPerMinute, limits.TokensPerMinute),
		retry: retry, estimate: estimate, log: log, st: RequestStats{Errors: map[string]int64{}}}
}

// Stats returns a copy of the counters.
func (c *Client) Stats() RequestStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Errors = make(map[string]int64, len(c.st.Errors))
	for k, v := range c.st.Errors {
		s.Errors[k] = v
	}
	if n := len(c.lat); n > 0 {
		l := slices.Clone(c.lat)
		slices.Sort(l)
		s.LatencyP50 = l[n/2]
		s.LatencyP95 = l[min(n-1, n*95/100)]
	}
	return s
}

func (c *Client) promptTokens(req *Request) int {
	n := 3
	for _, m := range req.Messages {
		n += 4 + c.estimate(m.Content)
	}
	return n
}

// Do returns the answer to req, from the cache when it holds one (cached true).
func (c *Client) Do(ctx context.Context, req *Request) (resp *Response, cached bool, err error) {
	key := req.Key()
	if c.cache != nil {
		r, err := c.cache.Get(key)
		if err != nil {
			return nil, false, err
		}
		if r != nil {
			c.mu.Lock()
			c.st.Cached++
			c.st.CachedPromptTokens += r.Usage.PromptTokens
			c.st.CachedCompletionTokens += r.Usage.CompletionTokens
			c.mu.Unlock()
			return r, true, nil
		}
	}
	est := c.promptTokens(req)
	reserve := float64(est + req.MaxTokens)
	if req.MaxTokens <= 0 {
		reserve = float64(est + 1024)
	}
	for attempt := 1; ; attempt++ {
		if err := c.lim.wait(ctx, reserve); err != nil {
			return nil, false, err
		}
		c.mu.Lock()
		c.st.Attempts++
		c.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, c.retry.Timeout)
		t0 := time.Now()
		r, err := c.teacher.Complete(actx, req)
		cancel()
		class := errorClass(err, ctx)
		if class == "" {
			if r.Usage.PromptTokens == 0 && r.Usage.CompletionTokens == 0 {
				r.Usage = Usage{PromptTokens: int64(est), CompletionTokens: int64(c.estimate(r.Content))}
				r.UsageEstimated = true
			}
			c.lim.tok.give(reserve - float64(r.Usage.PromptTokens+r.Usage.CompletionTokens))
			c.mu.Lock()
			c.st.Succeeded++
			c.st.PromptTokens += r.Usage.PromptTokens
			c.st.CompletionTokens += r.Usage.CompletionTokens
			if r.UsageEstimated {
				c.st.EstimatedUsage++
			}
			if len(c.lat) < 100_000 {
				c.lat = append(c.lat, time.Since(t0).Seconds())
			} else {
				c.lat[rand.IntN(len(c.lat))] = time.Since(t0).Seconds()
			}
			c.mu.Unlock()
			if c.cache != nil {
				if err := c.cache.Put(key, r); err != nil {
					return nil, false, err
				}
			}
			return r, false, nil
		}
		// A failed attempt used no tokens we know of.
		c.lim.tok.give(reserve)
		if class == "canceled" {
			return nil, false, ctx.Err()
		}
		c.mu.Lock()
		c.st.Errors[class]++
		c.mu.Unlock()
		switch {
		case class == "fatal":
			c.fail()
			return nil, false, &FatalError{errors.New(apiErrorText(err))}
		case class == "bad_request":
			c.fail()
			return nil, false, fmt.Errorf("teacher rejected the request: %s", apiErrorText(err))
		case attempt >= c.retry.MaxAttempts:
			c.fail()
			return nil, false, fmt.Errorf("gave up after %d attempts: %s", attempt, apiErrorText(err))
		}
		d := c.backoff(attempt)
		if ra := min(retryAfter(err, time.Now()), maxRetryAfter); ra > 0 {
			// The server said when: wait that long (plus a little jitter so that the
			// waiting workers do not all come back at once), and hold every other
			// request back too when it was a rate limit.
			d = ra + time.Duration(rand.Int64N(int64(ra/10)+int64(10*time.Millisecond)))
			if class == "rate_limited" {
				c.lim.pause(time.Now().Add(ra))
			}
			c.mu.Lock()
			c.st.RetryAfterHonoured++
			c.mu.Unlock()
		}
		c.log.Debug("synth: retrying", "class", class, "attempt", attempt, "wait", d, "err", err)
		if err := sleep(ctx, d); err != nil {
			return nil, false, err
		}
	}
}

func (c *Client) fail() {
	c.mu.Lock()
	c.st.Failed++
	c.mu.Unlock()
}

// backoff is the wait before retry number attempt: an exponential delay capped at
// MaxDelay with "equal jitter" (half fixed, half random), so it never collapses to
// zero and concurrent retries spread out.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.retry.BaseDelay << min(attempt-1, 30)
	if d <= 0 || d > c.retry.MaxDelay {
		d = c.retry.MaxDelay
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// isFatal reports whether err stops the whole run.
func isFatal(err error) bool {
	var f *FatalError
	return errors.As(err, &f)
}
