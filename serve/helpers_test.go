package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

// byteModelDir saves a tiny random byte-level model (the "tiny" preset)
// once per test binary and returns its folder.
var byteModelDir = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mai-serve-test-")
	if err != nil {
		return "", err
	}
	cfg, err := model.Preset("tiny")
	if err != nil {
		return "", err
	}
	m, err := model.New(cfg, false)
	if err != nil {
		return "", err
	}
	m.Init(7)
	// Larger weights than training starts from, so that greedy outputs
	// depend on the prompt (a freshly initialized model repeats one byte).
	for _, p := range m.Tensors {
		if !strings.HasSuffix(p.Name, "norm.weight") {
			for i := range p.V.Data {
				p.V.Data[i] *= 6
			}
		}
	}
	if err := m.Save(dir, "f32", 0); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "mai_tokenizer.json"), []byte(`{"tokenizer":"byte"}`), 0o644); err != nil {
		return "", err
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := byteModelDir(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func fixtureDir(name string) string { return filepath.Join("..", "model", "testdata", "hf", name) }

// testServer is a server on a loopback port with the byte model as "tiny"
// and the llama fixture as "llama" (token-id prompts only).
type testServer struct {
	*Server
	URL    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t testing.TB, cfg Config, ecfg infer.EngineConfig) *testServer {
	t.Helper()
	dir, err := byteModelDir()
	if err != nil {
		t.Fatal(err)
	}
	tiny, err := LoadModel("tiny", dir, "", ecfg)
	if err != nil {
		t.Fatal(err)
	}
	llama, err := LoadModel("llama", fixtureDir("llama"), "", ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	s, err := New(cfg, tiny, llama)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, s)
}

func serveOn(t testing.TB, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, URL: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down gracefully (once).
func (ts *testServer) stop(t testing.TB) {
	ts.once.Do(func() {
		ts.cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("shutdown did not finish")
		}
	})
}

var httpClient = &http.Client{Timeout: 60 * time.Second}
