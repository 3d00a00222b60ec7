// Package serve is MAI's inference server: an OpenAI-compatible HTTP API
// (chat completions, completions, embeddings, models) over continuous-
// batching engines, with SSE streaming, API keys, limits, Prometheus
// metrics, graceful shutdown, and a small web chat page.
package serve

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mai-llm/mai/format/gguf"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

// Config holds the server's limits and keys. Zero fields take the defaults.
type Config struct {
	// APIKeys, if any, are required as "Authorization: Bearer KEY" on /v1.
	APIKeys []string
	// MaxBodyBytes bounds request bodies (8 MiB).
	MaxBodyBytes int64
	// MaxTokens bounds max_tokens of one request (0: the context length).
	MaxTokens int
	// MaxConcurrent bounds the requests generating at once; more get 429 (256).
	MaxConcurrent int
	// MaxN bounds the choices of one request (n, 16).
	MaxN int
	// RequestTimeout ends a generation that runs longer (10 minutes).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds how long shutdown waits for streams to finish
	// (1 minute).
	ShutdownTimeout time.Duration
	// Log receives request errors (slog.Default()).
	Log *slog.Logger
}

func (c *Config) fill() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 256
	}
	if c.MaxN <= 0 {
		c.MaxN = 16
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Model is a model being served under a name: its engine and tokenizer.
type Model struct {
	Name    string
	Engine  *infer.Engine
	codec   *codec
	created int64
	hook    atomic.Pointer[func(infer.StepStats)]
	vocab   func() *infer.TokenVocab
}

// LoadModel loads a model folder (a Hugging Face folder or a MAI
// checkpoint or training run directory) or a GGUF file with its tokenizer
// and starts its engine. draftDir, if not empty, is a smaller model for speculative
// decoding.
func LoadModel(name, dir, draftDir string, cfg infer.EngineConfig) (*Model, error) {
	var (
		m       *model.Model
		c       infer.Codec
		created = time.Now().Unix()
	)
	if st, err := os.Stat(dir); err == nil && !st.IsDir() && model.IsGGUF(dir) {
		if m, c, err = loadGGUF(dir); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		created = st.ModTime().Unix()
	} else {
		d, err := model.ResolveDir(dir)
		if err != nil {
			return nil, err
		}
		if m, err = model.Load(d, false); err != nil {
			return nil, err
		}
		if c, err = infer.OpenCodec(d); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		if st, err := os.Stat(filepath.Join(d, "config.json")); err == nil {
			created = st.ModTime().Unix()
		}
	}
	if draftDir != "" {
		var err error
		if cfg.Draft, err = model.LoadAny(draftDir); err != nil {
			return nil, fmt.Errorf("draft model: %w", err)
		}
	}
	mm, err := NewModel(name, m, c, cfg)
	if err != nil {
		return nil, err
	}
	mm.created = created
	return mm, nil
}

// NewModel serves m under name with the given tokenizer.
func NewModel(name string, m *model.Model, c infer.Codec, cfg infer.EngineConfig) (*Model, error) {
	if name == "" {
		return nil, fmt.Errorf("serve: a model needs a name")
	}
	mm := &Model{Name: name, codec: newCodec(c, m.Cfg.Vocab, m.Cfg.EOS), created: time.Now().Unix()}
	mm.vocab = sync.OnceValue(func() *infer.TokenVocab { return infer.NewTokenVocab(mm.codec.tokBytes, mm.codec.eos) })
	user := cfg.OnStep
	cfg.OnStep = func(st infer.StepStats) {
		if user != nil {
			user(st)
		}
		if h := mm.hook.Load(); h != nil {
			(*h)(st)
		}
	}
	e, err := infer.NewEngine(m, cfg)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	mm.Engine = e
	return mm, nil
}

// Close stops the model's engine.
func (m *Model) Close() { m.Engine.Close() }

// Server serves models over the OpenAI HTTP API.
type Server struct {
	cfg      Config
	models   map[string]*Model
	names    []string
	met      *metrics
	sem      chan struct{}
	inflight atomic.Int64
	draining atomic.Bool
	mux      *http.ServeMux
	closing  sync.Once
}

// New returns a server for models (it takes ownership: Close stops their
// engines).
func New(cfg Config, models ...*Model) (*Server, error) {
	cfg.fill()
	if len(models) == 0 {
		return nil, fmt.Errorf("serve: no models")
	}
	s := &Server{cfg: cfg, models: map[string]*Model{}, met: newMetrics(), sem: make(chan struct{}, cfg.MaxConcurrent)}
	for _, m := range models {
		if _, dup := s.models[m.Name]; dup {
			return nil, fmt.Errorf("serve: two models named %q", m.Name)
		}
		s.models[m.Name] = m
		s.names = append(s.names, m.Name)
	}
	sort.Strings(s.names)
	s.initMetrics()
	for _, m := range models {
		name := m.Name
		hook := func(st infer.StepStats) {
			s.met.observe("mai_batch_size", float64(st.Seqs), "model", name)
			s.met.observe("mai_batch_tokens", float64(st.Tokens), "model", name)
			s.met.observe("mai_step_seconds", st.Duration.Seconds(), "model", name)
		}
		m.hook.Store(&hook)
	}
	s.routes()
	return s, nil
}

func (s *Server) initMetrics() {
	m := s.met
	m.counter("mai_requests_total", "HTTP requests by endpoint and status code.")
	m.counter("mai_prompt_tokens_total", "Prompt tokens processed.")
	m.counter("mai_generation_tokens_total", "Tokens generated.")
	m.counter("mai_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.")
	m.counter("mai_finished_total", "Finished generations by finish reason.")
	m.histogram("mai_request_duration_seconds", "Time to serve a request.", latencyBuckets)
	m.histogram("mai_time_to_first_token_seconds", "Time from request to first generated token.", latencyBuckets)
	m.histogram("mai_inter_token_latency_seconds", "Time between consecutive tokens of a stream.", latencyBuckets)
	m.histogram("mai_batch_size", "Sequences in each engine step.", batchBuckets)
	m.histogram("mai_batch_tokens", "Tokens in each engine step.", batchBuckets)
	m.histogram("mai_step_seconds", "Duration of each engine step.", latencyBuckets)
	per := func(f func(st infer.EngineStats) float64) func() map[string]float64 {
		return func() map[string]float64 {
			out := map[string]float64{}
			for _, n := range s.names {
				out[labels("model", n)] = f(s.models[n].Engine.Stats())
			}
			return out
		}
	}
	m.gauge("mai_queue_depth", "Requests waiting for admission.", per(func(st infer.EngineStats) float64 { return float64(st.Waiting) }))
	m.gauge("mai_running_sequences", "Sequences in the running batch.", per(func(st infer.EngineStats) float64 { return float64(st.Running) }))
	m.gauge("mai_kv_cache_usage_ratio", "Fraction of KV-cache blocks owned by sequences.", per(func(st infer.EngineStats) float64 {
		return float64(st.BlocksUsed) / float64(max(st.BlocksTotal, 1))
	}))
	m.gauge("mai_kv_cache_blocks", "KV-cache blocks in all.", per(func(st infer.EngineStats) float64 { return float64(st.BlocksTotal) }))
	m.gauge("mai_prefix_cache_hit_blocks", "Prompt blocks found in the prefix cache (cumulative).", per(func(st infer.EngineStats) float64 { return float64(st.PrefixHitBlocks) }))
	m.gauge("mai_prefix_cache_lookup_blocks", "Prompt blocks looked up in the prefix cache (cumulative).", per(func(st infer.EngineStats) float64 { return float64(st.PrefixLookupBlocks) }))
	m.gauge("mai_preemptions", "Sequences preempted for lack of KV blocks (cumulative).", per(func(st infer.EngineStats) float64 { return float64(st.Preemptions) }))
	m.gauge("mai_spec_draft_tokens", "Draft tokens proposed (cumulative).", per(func(st infer.EngineStats) float64 { return float64(st.DraftProposed) }))
	m.gauge("mai_spec_accepted_tokens", "Draft tokens accepted (cumulative).", per(func(st infer.EngineStats) float64 { return float64(st.DraftAccepted) }))
	m.gauge("mai_requests_in_flight", "Requests being served.", func() map[string]float64 { return map[string]float64{"": float64(s.inflight.Load())} })
	g, h := processGauges()
	m.gauge("go_goroutines", "Goroutines.", g)
	m.gauge("go_memstats_heap_alloc_bytes", "Heap bytes in use.", h)
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v1/chat/completions", s.api("chat", http.MethodPost, s.handleChat))
	s.mux.HandleFunc("/v1/completions", s.api("completions", http.MethodPost, s.handleCompletions))
	s.mux.HandleFunc("/v1/embeddings", s.api("embeddings", http.MethodPost, s.handleEmbeddings))
	s.mux.HandleFunc("/v1/models", s.api("models", http.MethodGet, s.handleModels))
	s.mux.HandleFunc("/v1/models/{id...}", s.api("models", http.MethodGet, s.handleModel))
	s.mux.HandleFunc("/v1/", s.api("other", "", func(w http.ResponseWriter, r *http.Request) error {
		return apiErr(http.StatusNotFound, "invalid_request_error", "", fmt.Sprintf("Unknown request URL: %s %s.", r.Method, r.URL.Path))
	}))
	s.mux.HandleFunc("/health", s.handleHealth)
	s.mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.met.write(w)
	})
	s.mux.Handle("/", webHandler())
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// api wraps an /v1 handler: method check, authentication, metrics, and
// OpenAI-shaped errors for what the handler returns.
func (s *Server) api(endpoint, method string, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		w := &statusWriter{ResponseWriter: rw}
		err := func() error {
			if err := s.authorize(r); err != nil {
				return err
			}
			if method != "" && r.Method != method {
				w.Header().Set("Allow", method)
				return apiErr(http.StatusMethodNotAllowed, "invalid_request_error", "", fmt.Sprintf("%s %s is not allowed; use %s.", r.Method, r.URL.Path, method))
			}
			return h(w, r)
		}()
		if err != nil {
			s.writeError(w, r, err)
		}
		code := w.status
		if code == 0 {
			code = http.StatusOK
		}
		s.met.add("mai_requests_total", 1, "endpoint", endpoint, "code", fmt.Sprint(code))
		s.met.observe("mai_request_duration_seconds", time.Since(start).Seconds(), "endpoint", endpoint)
	}
}

func (s *Server) authorize(r *http.Request) error {
	if len(s.cfg.APIKeys) == 0 {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return apiErr(http.StatusUnauthorized, "invalid_request_error", "", "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
	}
	key, ok := strings.CutPrefix(h, "Bearer ")
	if ok {
		for _, k := range s.cfg.APIKeys {
			if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(k)) == 1 {
				return nil
			}
		}
	}
	e := apiErr(http.StatusUnauthorized, "invalid_request_error", "", "Incorrect API key provided.")
	e.Code = ptr("invalid_api_key")
	return e
}

func (s *Server) writeError(w *statusWriter, r *http.Request, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		s.cfg.Log.Error("request failed", "path", r.URL.Path, "err", err)
		ae = apiErr(http.StatusInternalServerError, "server_error", "", "The server had an error while processing your request.")
	}
	if w.status != 0 {
		return // a stream already started; it reports errors itself
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	json.NewEncoder(w).Encode(ErrorBody{Error: *ae})
}

func apiErr(status int, typ, param, msg string) *APIError {
	e := &APIError{Message: msg, Type: typ, status: status}
	if param != "" {
		e.Param = ptr(param)
	}
	return e
}

func badRequest(param, format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, "invalid_request_error", param, fmt.Sprintf(format, args...))
}

func ptr[T any](v T) *T { return &v }

// decode reads a JSON body into v, mapping the failures to OpenAI errors.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	data, err := io.ReadAll(body)
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErr(http.StatusRequestEntityTooLarge, "invalid_request_error", "", fmt.Sprintf("Request body is larger than the limit of %d bytes.", mbe.Limit))
		}
		return badRequest("", "Could not read the request body: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return badRequest(te.Field, "Invalid type for '%s': expected %s, but got %s.", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return badRequest("", "We could not parse the JSON body of your request: %v at byte %d. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)", se, se.Offset)
		default:
			return badRequest("", "Invalid request body: %v.", err)
		}
	}
	return nil
}

// model finds a served model by name. An empty name picks the only model.
func (s *Server) model(name string) (*Model, error) {
	if name == "" && len(s.names) == 1 {
		return s.models[s.names[0]], nil
	}
	if name == "" {
		return nil, badRequest("model", "you must provide a model parameter")
	}
	m, ok := s.models[name]
	if !ok {
		e := apiErr(http.StatusNotFound, "invalid_request_error", "model", fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", name))
		e.Code = ptr("model_not_found")
		return nil, e
	}
	return m, nil
}

// acquire takes a concurrency slot or fails with 429.
func (s *Server) acquire() (release func(), err error) {
	if s.draining.Load() {
		return nil, apiErr(http.StatusServiceUnavailable, "server_error", "", "The server is shutting down.")
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	default:
		return nil, apiErr(http.StatusTooManyRequests, "rate_limit_error", "", fmt.Sprintf("Too many concurrent requests (the limit is %d); retry later.", s.cfg.MaxConcurrent))
	}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) error {
	list := ModelList{Object: "list", Data: []ModelInfo{}}
	for _, n := range s.names {
		list.Data = append(list.Data, s.info(s.models[n]))
	}
	return writeJSON(w, list)
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	m, ok := s.models[id]
	if !ok {
		e := apiErr(http.StatusNotFound, "invalid_request_error", "model", fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", id))
		e.Code = ptr("model_not_found")
		return e
	}
	return writeJSON(w, s.info(m))
}

func (s *Server) info(m *Model) ModelInfo {
	return ModelInfo{ID: m.Name, Object: "model", Created: m.created, OwnedBy: "mai", MaxModelLen: m.Engine.Model().Cfg.MaxSeq}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"shutting down"}`+"\n")
		return
	}
	io.WriteString(w, `{"status":"ok"}`+"\n")
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting connections, lets running requests and streams finish
// (up to ShutdownTimeout), and stops the engines.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout or WriteTimeout: they would cut long streams. The
		// body has its own deadline (see decode) and generations have
		// RequestTimeout.
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.cfg.Log.Info("shutting down: finishing running requests", "in_flight", s.inflight.Load(), "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	s.Close()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.cfg.Log.Info("shut down")
	return nil
}

// ListenAndServe listens on addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	s.cfg.Log.Info("serving", "addr", ln.Addr().String(), "models", strings.Join(s.names, ","))
	return s.Serve(ctx, ln)
}

// Close stops every model's engine.
func (s *Server) Close() {
	s.closing.Do(func() {
		for _, n := range s.names {
			s.models[n].Close()
		}
	})
}

// bodyTimeout bounds the time a client may take to send a request body.
const bodyTimeout = 30 * time.Second

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// loadGGUF loads a GGUF model and the tokenizer stored in its metadata (a
// MAI tokenizer name, or llama.cpp's byte-level BPE), which is written out
// as tokenizer files into a temporary folder and read from there.
func loadGGUF(path string) (*model.Model, infer.Codec, error) {
	// Weights the batched forward multiplies through row-stable kernels
	// (Q4_0, Q8_0 on CPUs with AVX-512 VNNI) keep no float32 copy.
	m, err := model.LoadGGUFWith(path, model.LoadOptions{NoFloat32Copy: true})
	if err != nil {
		return nil, nil, err
	}
	if err := m.MaterializeGEMM(); err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "mai-gguf-tokenizer-")
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer os.RemoveAll(tmp)
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	err = model.WriteGGUFTokenizer(f, tmp)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "mai_tokenizer.json")); err != nil {
		if _, err := os.Stat(filepath.Join(tmp, "tokenizer.json")); err != nil {
			return nil, nil, fmt.Errorf("%s holds no tokenizer MAI can read (only byte-level BPE and MAI tokenizers are)", path)
		}
	}
	c, err := infer.OpenCodec(tmp)
	if err != nil {
		return nil, nil, err
	}
	return m, c, nil
}
