package synth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// ChatMessage is one message of a request.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one chat completion request. It is canonical: its hash (Key) names the
// answer in the cache, so everything that changes the answer is in it.
type Request struct {
	Model       string        `json:"model"`
	Messages    []ChatMessage `json:"messages"`
	Temperature float64       `json:"temperature"`
	TopP        float64       `json:"top_p,omitempty"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Seed        int64         `json:"seed,omitempty"`
	// TopLogprobs > 0 asks for the log probability of every output token and of the
	// TopLogprobs most likely tokens at each position.
	TopLogprobs int `json:"top_logprobs,omitempty"`
	// Item names the item the request is for; it is sent as the X-Synth-Item header
	// (for the teacher's logs) and is not part of the key.
	Item string `json:"-"`
}

// Key is the hex SHA-256 of the request's canonical JSON.
func (r *Request) Key() string {
	b, _ := json.Marshal(r) // a Request always marshals
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Usage counts the tokens of one answer.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// TopLogprob is one of the most likely tokens at a position.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int64 `json:"bytes,omitempty"`
}

// TokenLogprob is the teacher's log probability of one output token and the top
// alternatives at its position, as the OpenAI API returns them.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int64      `json:"bytes,omitempty"`
	TopLogprobs []TopLogprob `json:"top_logprobs,omitempty"`
}

// Response is the teacher's answer to a Request.
type Response struct {
	Content      string         `json:"content"`
	FinishReason string         `json:"finish_reason"`
	Model        string         `json:"model,omitempty"`
	Usage        Usage          `json:"usage"`
	Logprobs     []TokenLogprob `json:"logprobs,omitempty"`
	// UsageEstimated is set when the server reported no usage and the counts were
	// estimated locally.
	UsageEstimated bool `json:"usage_estimated,omitempty"`
}

// Teacher answers chat completion requests. One call is one attempt: retries, rate
// limits and caching are the Client's business. Implementations must be safe for
// concurrent use.
type Teacher interface {
	Complete(ctx context.Context, req *Request) (*Response, error)
}

// TeacherConfig says where the teacher is.
type TeacherConfig struct {
	// BaseURL of the OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1 (default:
	// $MAI_TEACHER_BASE_URL, then $OPENAI_BASE_URL, then OpenAI's own).
	BaseURL string `yaml:"base_url" json:"base_url"`
	// APIKeyEnv names the environment variable holding the key; by default
	// MAI_TEACHER_API_KEY, then OPENAI_API_KEY. Keys never go in config files.
	APIKeyEnv string `yaml:"api_key_env" json:"api_key_env,omitempty"`
	// Model is the teacher model name (default $MAI_TEACHER_MODEL).
	Model string `yaml:"model" json:"model"`
	// Headers are extra HTTP headers sent with every request.
	Headers map[string]string `yaml:"headers" json:"-"`
	// MaxTokensField is "max_tokens" (default) or "max_completion_tokens", the name
	// under which the output limit is sent (OpenAI's reasoning models want the latter).
	MaxTokensField string `yaml:"max_tokens_field" json:"max_tokens_field,omitempty"`

	// APIKey is resolved from the environment or a flag, never read from YAML.
	APIKey string `yaml:"-" json:"-"`
}

// ResolveEnv fills BaseURL, APIKey and Model from the environment where they are
// unset: MAI_TEACHER_BASE_URL / OPENAI_BASE_URL, APIKeyEnv or MAI_TEACHER_API_KEY /
// OPENAI_API_KEY, MAI_TEACHER_MODEL. getenv is os.Getenv in production.
func (t *TeacherConfig) ResolveEnv(getenv func(string) string) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	if t.BaseURL == "" {
		t.BaseURL = first("MAI_TEACHER_BASE_URL", "OPENAI_BASE_URL")
	}
	if t.APIKey == "" {
		if t.APIKeyEnv != "" {
			t.APIKey = getenv(t.APIKeyEnv)
		} else {
			t.APIKey = first("MAI_TEACHER_API_KEY", "OPENAI_API_KEY")
		}
	}
	if t.Model == "" {
		t.Model = first("MAI_TEACHER_MODEL")
	}
}

// OpenAITeacher is a Teacher over the official OpenAI Go client.
type OpenAITeacher struct {
	client openai.Client
	cfg    TeacherConfig
}

// NewOpenAITeacher returns a client for cfg. The SDK's own retries are off: the
// Client retries, so that every attempt is rate limited and counted. httpClient may
// be nil.
func NewOpenAITeacher(cfg TeacherConfig, httpClient *http.Client) (*OpenAITeacher, error) {
	if cfg.Model == "" {
		return nil, errors.New("synth: no teacher model (set --model, teacher.model or MAI_TEACHER_MODEL)")
	}
	switch cfg.MaxTokensField {
	case "", "max_tokens", "max_completion_tokens":
	default:
		return nil, fmt.Errorf("synth: teacher.max_tokens_field %q: want max_tokens or max_completion_tokens", cfg.MaxTokensField)
	}
	opts := []option.RequestOption{option.WithMaxRetries(0)}
	if cfg.BaseURL != "" {
		if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
			return nil, fmt.Errorf("synth: teacher base URL %q: want http:// or https://", cfg.BaseURL)
		}
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	key := cfg.APIKey
	if key == "" {
		// Local servers (llama.cpp, Ollama, vLLM, mai serve without keys) need none;
		// the SDK wants one, and an unused bearer token is harmless.
		key = "none"
	}
	opts = append(opts, option.WithAPIKey(key))
	if httpClient == nil {
		httpClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	opts = append(opts, option.WithHTTPClient(httpClient))
	for k, v := range cfg.Headers {
		opts = append(opts, option.WithHeader(k, v))
	}
	return &OpenAITeacher{client: openai.NewClient(opts...), cfg: cfg}, nil
}

// Complete sends one chat completion request.
func (t *OpenAITeacher) Complete(ctx context.Context, req *Request) (*Response, error) {
	p := openai.ChatCompletionNewParams{
		Model:       req.Model,
		Temperature: openai.Float(req.Temperature),
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "system":
			p.Messages = append(p.Messages, openai.SystemMessage(m.Content))
		case "user":
			p.Messages = append(p.Messages, openai.UserMessage(m.Content))
		case "assistant":
			p.Messages = append(p.Messages, openai.AssistantMessage(m.Content))
		default:
			return nil, fmt.Errorf("synth: message role %q", m.Role)
		}
	}
	if req.TopP > 0 {
		p.TopP = openai.Float(req.TopP)
	}
	if req.MaxTokens > 0 {
		if t.cfg.MaxTokensField == "max_completion_tokens" {
			p.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
		} else {
			p.MaxTokens = openai.Int(int64(req.MaxTokens))
		}
	}
	if req.Seed != 0 {
		p.Seed = openai.Int(req.Seed)
	}
	if req.TopLogprobs > 0 {
		p.Logprobs = openai.Bool(true)
		p.TopLogprobs = openai.Int(int64(req.TopLogprobs))
	}
	var ropts []option.RequestOption
	if req.Item != "" {
		ropts = append(ropts, option.WithHeader("X-Synth-Item", req.Item))
	}
	c, err := t.client.Chat.Completions.New(ctx, p, ropts...)
	if err != nil {
		return nil, err
	}
	if len(c.Choices) == 0 {
		return nil, &badResponseError{"no choices in the answer"}
	}
	ch := c.Choices[0]
	r := &Response{
		Content:      ch.Message.Content,
		FinishReason: string(ch.FinishReason),
		Model:        c.Model,
		Usage:        Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens},
	}
	if req.TopLogprobs > 0 {
		for _, lp := range ch.Logprobs.Content {
			tl := TokenLogprob{Token: lp.Token, Logprob: lp.Logprob, Bytes: lp.Bytes}
			for _, top := range lp.TopLogprobs {
				tl.TopLogprobs = append(tl.TopLogprobs, TopLogprob{Token: top.Token, Logprob: top.Logprob, Bytes: top.Bytes})
			}
			r.Logprobs = append(r.Logprobs, tl)
		}
	}
	return r, nil
}

// apiErrorText is a one-line description of a failed request: the status and the
// server's message.
func apiErrorText(err error) string {
	var api *openai.Error
	if !errors.As(err, &api) {
		return err.Error()
	}
	msg := strings.Join(strings.Fields(api.Message), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if msg == "" {
		return api.Error()
	}
	return api.Error() + ": " + msg
}

// badResponseError is a 200 answer that cannot be used (retried).
type badResponseError struct{ msg string }

func (e *badResponseError) Error() string { return "bad answer: " + e.msg }

// errorClass sorts a failed attempt: "" for success, "fatal" for errors that no
// retry fixes for any item (authentication, unknown model), "bad_request" for
// errors of this request only, and the retryable classes "rate_limited",
// "server_error", "timeout", "network" and "bad_response".
func errorClass(err error, parent context.Context) string {
	if err == nil {
		return ""
	}
	var api *openai.Error
	if errors.As(err, &api) {
		switch s := api.StatusCode; {
		case api.Code == "insufficient_quota" || api.Type == "insufficient_quota":
			return "fatal" // a 429 that waiting does not fix: the account is out of credit
		case s == http.StatusTooManyRequests:
			return "rate_limited"
		case s == http.StatusRequestTimeout || s == http.StatusConflict || s >= 500:
			return "server_error"
		case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusNotFound:
			return "fatal"
		default:
			return "bad_request"
		}
	}
	var bad *badResponseError
	if errors.As(err, &bad) {
		return "bad_response"
	}
	if parent.Err() != nil {
		return "canceled"
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		return "timeout"
	}
	// Dropped connections, resets, truncated bodies: all worth another try.
	return "network"
}

// retryAfter reads Retry-After (seconds or an HTTP date) and OpenAI's retry-after-ms
// from a failed answer; 0 when there is none.
func retryAfter(err error, now time.Time) time.Duration {
	var api *openai.Error
	if !errors.As(err, &api) || api.Response == nil {
		return 0
	}
	h := api.Response.Header
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return parseRetryAfter(h.Get("Retry-After"), now)
}

// parseRetryAfter parses an HTTP Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
