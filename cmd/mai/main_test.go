package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mai-llm/mai/format/safetensors"
)

var maiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mai-cli-test")
	if err != nil {
		panic(err)
	}
	maiBin = filepath.Join(dir, "mai")
	build := exec.Command("go", "build", "-o", maiBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		panic("build mai: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mai runs the binary and returns stdout, stderr and the exit code.
func mai(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(maiBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

const fixtures = "../../model/testdata/hf"

func TestGenerateJSONMatchesTransformers(t *testing.T) {
	for _, name := range []string{"llama", "mixtral"} {
		ref, err := safetensors.Open(filepath.Join(fixtures, name, "reference.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		prompt, _, _ := ref.Int32("prompt")
		want, _, _ := ref.Int32("greedy")
		ref.Close()
		ids := make([]string, len(prompt))
		for i, v := range prompt {
			ids[i] = strconv.Itoa(int(v))
		}
		out, stderr, code := mai(t, "generate", "--model", filepath.Join(fixtures, name), "--prompt-ids", strings.Join(ids, ","),
			"--max-tokens", "24", "--temperature", "0", "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		var res struct {
			IDs []int32 `json:"ids"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s: %v in %q", name, err, out)
		}
		if !slices.Equal(res.IDs, want) {
			t.Errorf("%s: got %v, want %v", name, res.IDs, want)
		}
	}
}

// corpusDir copies a slice of real Go source into a folder for training.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(runtime.GOROOT(), "src", "strings")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Skipf("no Go source tree: %v", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".go") {
			b, _ := os.ReadFile(filepath.Join(src, e.Name()))
			os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
		}
	}
	return dir
}

func losses(t *testing.T, run string) []float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m struct {
			Step int     `json:"step"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Loss)
	}
	return out
}

func TestKillAndResume(t *testing.T) {
	corpus := corpusDir(t)
	args := func(out string) []string {
		return []string{"train", "--preset", "tiny", "--data", corpus, "--out", out, "--batch", "4", "--seq", "64",
			"--steps", "24", "--warmup", "4", "--save-every", "4", "--eval-every", "8", "--log-every", "0", "--threads", "2"}
	}
	full := filepath.Join(t.TempDir(), "full")
	if _, stderr, code := mai(t, args(full)...); code != 0 {
		t.Fatalf("full run: %s", stderr)
	}
	want := losses(t, full)

	part := filepath.Join(t.TempDir(), "part")
	cmd := exec.Command(maiBin, args(part)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill -9 once a checkpoint past step 8 exists, mid-run.
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(part, "latest"))
		if s := strings.TrimSpace(string(b)); s != "" && s >= "checkpoints/step-0000008" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, stderr, code := mai(t, args(part)...); code != 0 {
		t.Fatalf("resumed run: %s", stderr)
	}
	got := losses(t, part)
	if !slices.Equal(got, want) {
		t.Fatalf("after kill -9 and resume the losses differ:\n got %v\nwant %v", got, want)
	}
	// The trained run answers mai generate.
	out, stderr, code := mai(t, "generate", "--model", part, "--prompt", "func ", "--max-tokens", "8", "--json")
	if code != 0 || !strings.Contains(out, `"ids"`) {
		t.Fatalf("generate on the run: %d %s %s", code, out, stderr)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt")
	os.MkdirAll(corrupt, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(fixtures, "llama", "config.json"))
	os.WriteFile(filepath.Join(corrupt, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(corrupt, "model.safetensors"), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{not json"), 0o644)

	unknown := filepath.Join(dir, "unknown")
	os.MkdirAll(unknown, 0o755)
	os.WriteFile(filepath.Join(unknown, "config.json"), []byte(`{"model_type": "bert", "vocab_size": 10}`), 0o644)

	mismatch := filepath.Join(dir, "mismatch")
	os.MkdirAll(mismatch, 0o755)
	os.WriteFile(filepath.Join(mismatch, "config.json"), bytes.Replace(cfg, []byte(`"intermediate_size": 176`), []byte(`"intermediate_size": 180`), 1), 0o644)
	st, _ := os.ReadFile(filepath.Join(fixtures, "llama", "model.safetensors"))
	os.WriteFile(filepath.Join(mismatch, "model.safetensors"), st, 0o644)

	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing model", []string{"generate", "--model", filepath.Join(dir, "nope"), "--prompt-ids", "1"}, "no such file"},
		{"corrupt weights", []string{"generate", "--model", corrupt, "--prompt-ids", "1"}, "safetensors"},
		{"unknown model_type", []string{"generate", "--model", unknown, "--prompt-ids", "1"}, "unknown model_type"},
		{"shape mismatch", []string{"generate", "--model", mismatch, "--prompt-ids", "1"}, "does not match"},
		{"empty data", []string{"train", "--data", empty, "--out", filepath.Join(dir, "run")}, "no text or source files"},
		{"bad token id", []string{"generate", "--model", filepath.Join(fixtures, "llama"), "--prompt-ids", "1,99999"}, "outside the vocabulary"},
		{"unknown preset", []string{"info", "--preset", "nope"}, "unknown preset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := mai(t, c.args...)
			if code == 0 {
				t.Fatal("want a non-zero exit")
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("panicked: %s", stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "mai: ") || !strings.Contains(last, c.want) {
				t.Fatalf("want one clear error line mentioning %q, got:\n%s", c.want, stderr)
			}
		})
	}
}
