package serve

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mai-llm/mai/infer"
)

// openaiNPM is the version of the official npm client the test installs.
const openaiNPM = "openai@7.59.0"

// npmOpenAI returns a folder whose node_modules holds the openai package,
// installing it there on first use (scripts/deps.sh does it ahead of
// time). The folder is $MAI_NPM_DIR or a per-user cache.
func npmOpenAI(t *testing.T) string {
	dir := os.Getenv("MAI_NPM_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "mai", "npm-"+openaiNPM)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot make %s: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", openaiNPM)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm cannot install %s (offline?): %v\n%s", openaiNPM, err, out)
	}
	return dir
}

// TestOpenAINodeClient runs serve/testdata/openai_client.mjs, which drives
// the server with the official openai npm package: chat, streaming,
// completions with logprobs and echo, models, embeddings, JSON mode, errors.
func TestOpenAINodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := npmOpenAI(t)
	script, err := os.ReadFile(filepath.Join("testdata", "openai_client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	// The script must sit beside node_modules for its import to resolve.
	path := filepath.Join(dir, "mai_openai_client.mjs")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{APIKeys: []string{"sk-node"}}, infer.EngineConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, path)
	cmd.Env = append(os.Environ(), "MAI_BASE_URL="+ts.URL+"/v1", "MAI_API_KEY=sk-node")
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", openaiNPM, out)
	if err != nil {
		t.Fatalf("the node client failed: %v", err)
	}
}
