package loadgen_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/serve"
	"github.com/mai-llm/mai/serve/loadgen"
)

// startMAI serves a random "tiny" byte-level model as "tiny" on a loopback
// port and returns the API base URL.
func startMAI(t *testing.T) string {
	t.Helper()
	c, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(c, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	mm, err := serve.NewModel("tiny", m, infer.ByteCodec{}, infer.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := serve.New(serve.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, mm)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not shut down")
		}
	})
	return "http://" + ln.Addr().String() + "/v1"
}

func TestRunAgainstMAIServe(t *testing.T) {
	url := startMAI(t)
	for _, chat := range []bool{false, true} {
		t.Run(fmt.Sprintf("chat=%v", chat), func(t *testing.T) {
			cfg := loadgen.Config{URL: url, Model: "tiny", Chat: chat, Streams: []int{1, 4}, PromptWords: 12,
				MaxTokens: 10, RequestsPerStream: 2, IgnoreEOS: true}
			r, err := loadgen.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Results) != 2 {
				t.Fatalf("got %d levels, want 2", len(r.Results))
			}
			for i, x := range r.Results {
				want := cfg.Streams[i] * cfg.RequestsPerStream
				if x.Streams != cfg.Streams[i] || x.Requests != want || x.Failures != 0 || x.Short != 0 {
					t.Errorf("level %d: streams %d requests %d failures %d short %d %v, want %d requests and none failed or short",
						i, x.Streams, x.Requests, x.Failures, x.Short, x.Errors, want)
				}
				if x.OutputTokens != want*cfg.MaxTokens {
					t.Errorf("level %d: %d output tokens, want %d", i, x.OutputTokens, want*cfg.MaxTokens)
				}
				// Byte-level model: each word and its space are bytes.
				if x.PromptTokens < want*cfg.PromptWords*3 {
					t.Errorf("level %d: %d prompt tokens for %d prompts of %d words", i, x.PromptTokens, want, cfg.PromptWords)
				}
				// A tiny model can finish before the handler reads its
				// tokens, which then come in one chunk (no gap to time), so
				// only the order of the gaps is checked here;
				// TestRunTimesChunks checks their size.
				if x.TTFT.P50 <= 0 || x.TTFT.P99 < x.TTFT.P50 || x.ITL.P50 < 0 || x.ITL.P99 < x.ITL.P50 || x.TPOT.P50 < 0 {
					t.Errorf("level %d: latencies TTFT %+v ITL %+v TPOT %+v", i, x.TTFT, x.ITL, x.TPOT)
				}
				if x.OutputTokensPerS <= 0 || x.RequestsPerS <= 0 || x.Seconds <= 0 {
					t.Errorf("level %d: rates %g tokens/s %g requests/s over %g s", i, x.OutputTokensPerS, x.RequestsPerS, x.Seconds)
				}
			}
			var buf bytes.Buffer
			if err := loadgen.WriteTable(&buf, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), "TTFT p50") || strings.Count(buf.String(), "\n") != 4 {
				t.Errorf("table:\n%s", buf.String())
			}
		})
	}
}

func TestRunCountsFailures(t *testing.T) {
	url := startMAI(t)
	// An unknown model is a 404 for every request (and the warm-up fails).
	_, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Model: "nope", Streams: []int{2}, MaxTokens: 4, RequestsPerStream: 1})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("warm-up against an unknown model: err %v, want a 404", err)
	}
	r, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Model: "nope", Streams: []int{2}, MaxTokens: 4, RequestsPerStream: 2, Warmup: -1})
	if err != nil {
		t.Fatal(err)
	}
	if x := r.Results[0]; x.Requests != 4 || x.Failures != 4 || x.OutputTokens != 0 || len(x.Errors) != 1 {
		t.Errorf("got %+v, want 4 requests, 4 failures, one distinct error", x)
	}
}

// TestRunStreamShapes checks token counting against hand-written streams:
// the usage count wins over chunk counting, a server without usage is
// counted by its text chunks, and broken streams are failures.
func TestRunStreamShapes(t *testing.T) {
	tests := []struct {
		name           string
		body           string
		tokens, failed int
	}{
		{"usage", `data: {"choices":[{"text":"ab"}]}` + "\n\n" + `data: {"choices":[{"text":"c"}]}` + "\n\n" +
			`data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}` + "\n\ndata: [DONE]\n\n", 3, 0},
		{"no usage", `data: {"choices":[{"text":"ab"}]}` + "\n\n" + `data: {"choices":[{"text":""}]}` + "\n\n" +
			`data: {"choices":[{"text":"c"}]}` + "\n\ndata: [DONE]\n\n", 2, 0},
		{"no done", `data: {"choices":[{"text":"ab"}]}` + "\n\n", 0, 1},
		{"error event", `data: {"choices":[{"text":"ab"}]}` + "\n\n" + `data: {"error":{"message":"boom"}}` + "\n\n", 0, 1},
		{"bad json", "data: {nope\n\n", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/completions" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			r, err := loadgen.Run(context.Background(), loadgen.Config{URL: srv.URL + "/v1/", Model: "m", Streams: []int{1}, RequestsPerStream: 1, Warmup: -1})
			if err != nil {
				t.Fatal(err)
			}
			if x := r.Results[0]; x.OutputTokens != tt.tokens || x.Failures != tt.failed {
				t.Errorf("got %d tokens, %d failures (%v), want %d, %d", x.OutputTokens, x.Failures, x.Errors, tt.tokens, tt.failed)
			}
		})
	}
}

// TestRunTimesChunks serves text chunks a known time apart and checks the
// measured inter-token latency and time per output token.
func TestRunTimesChunks(t *testing.T) {
	const gap = 5 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			if i > 0 {
				time.Sleep(gap)
			}
			io.WriteString(w, `data: {"choices":[{"text":"x"}]}`+"\n\n")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	r, err := loadgen.Run(context.Background(), loadgen.Config{URL: srv.URL + "/v1", Model: "m", Streams: []int{1}, MaxTokens: 4,
		RequestsPerStream: 2, Warmup: -1})
	if err != nil {
		t.Fatal(err)
	}
	x := r.Results[0]
	ms := float64(gap) / float64(time.Millisecond)
	if x.OutputTokens != 8 || x.ITL.P50 < ms || x.ITL.P99 < x.ITL.P50 || x.TPOT.P50 < ms || x.TTFT.P50 <= 0 {
		t.Errorf("got %d tokens, TTFT %+v ITL %+v TPOT %+v, want 8 tokens and gaps of at least %g ms", x.OutputTokens, x.TTFT, x.ITL, x.TPOT, ms)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  loadgen.Config
		want string
	}{
		{"no url", loadgen.Config{Model: "m"}, "no URL"},
		{"no model", loadgen.Config{URL: "http://x/v1"}, "no model"},
		{"zero streams", loadgen.Config{URL: "http://x/v1", Model: "m", Streams: []int{0}}, "streams"},
		{"negative max tokens", loadgen.Config{URL: "http://x/v1", Model: "m", MaxTokens: -1}, "max tokens"},
		{"negative prompt", loadgen.Config{URL: "http://x/v1", Model: "m", PromptWords: -3}, "prompt length"},
		{"negative requests", loadgen.Config{URL: "http://x/v1", Model: "m", RequestsPerStream: -1}, "requests per stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadgen.Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestServerCPU(t *testing.T) {
	url := startMAI(t) // in this process: its own pid is the server's
	r, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Model: "tiny", Streams: []int{2}, PromptWords: 12, MaxTokens: 16,
		RequestsPerStream: 2, IgnoreEOS: true, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if x := r.Results[0]; x.ServerCPUSeconds < 0 || x.ServerCPUSeconds > 60 || (x.ServerCPUSeconds > 0) != (x.OutputTokensPerCPUS > 0) {
		t.Errorf("server CPU %g s, %g tokens per CPU-second", x.ServerCPUSeconds, x.OutputTokensPerCPUS)
	}
	_, err = loadgen.Run(context.Background(), loadgen.Config{URL: url, Model: "tiny", Streams: []int{1}, PromptWords: 12, MaxTokens: 1,
		RequestsPerStream: 1, ServerPID: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "server CPU time") {
		t.Errorf("a missing process: err %v", err)
	}
}
