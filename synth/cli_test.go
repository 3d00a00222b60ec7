package synth

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	maiPath   string
	buildErr  error
)

// maiBinary builds cmd/mai once per test binary.
func maiBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the mai binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mai-synth-test")
		if err != nil {
			buildErr = err
			return
		}
		maiPath = filepath.Join(dir, "mai")
		cmd := exec.Command("go", "build", "-o", maiPath, "github.com/mai-llm/mai/cmd/mai")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			maiPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build mai: %v\n%s", buildErr, maiPath)
	}
	return maiPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if maiPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(maiPath))
	}
	os.Exit(code)
}

// TestKill9Resume kills `mai synth` with SIGKILL in the middle of a run and runs it
// again: no request answered before the kill (its answer in the cache) may be sent
// again, and the output has every item exactly once.
func TestKill9Resume(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL")
	}
	bin := maiBinary(t)
	ft := newFakeTeacher(t)
	ft.delay = 40 * time.Millisecond
	// A few faults, so that the kill also lands among retries.
	ft.policy = func(key string, attempt int) fault {
		if attempt == 1 && hashString(key)%7 == 0 {
			return serverErr
		}
		return ok
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	docs, _ := filepath.Abs("testdata/docs.jsonl")
	args := []string{"synth", "--base-url", ft.url(), "--model", "fake-teacher", "--kinds", "instruct,textbook,code",
		"--count", "20", "--input", docs, "--concurrency", "4", "--out", out, "--timeout", "5s", "-q"}
	env := append(os.Environ(), "MAI_TEACHER_API_KEY=sk-test-key")

	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, succ, _ := ft.snapshot()
		if len(succ) >= 30 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run did not get going: %d answers; stderr:\n%s", len(succ), stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("output exists after kill -9: %v", err)
	}
	arr1, _, succ1, _ := ft.snapshot()
	if got := ft.auth; got != "Bearer sk-test-key" {
		t.Errorf("Authorization %q, want the key from MAI_TEACHER_API_KEY", got)
	}
	cache, err := OpenCache(out+".cache", 0)
	if err != nil {
		t.Fatal(err)
	}
	cached := map[string]bool{}
	for _, k := range cache.Keys() {
		cached[k] = true
	}
	cache.Close()
	// Items whose every request was answered and cached before the kill.
	itemKeys := map[string]map[string]bool{}
	for _, a := range arr1 {
		if itemKeys[a.item] == nil {
			itemKeys[a.item] = map[string]bool{}
		}
		itemKeys[a.item][a.key] = true
	}
	finished := map[string]bool{}
	for item, keys := range itemKeys {
		steps := 1
		if strings.HasPrefix(item, "instruct-") {
			steps = 2
		}
		n := 0
		for k := range keys {
			if cached[k] {
				n++
			}
		}
		if n == steps {
			finished[item] = true
		}
	}
	lost := 0
	for k := range succ1 {
		if !cached[k] {
			lost++ // answered while the process died: at most the requests in flight
		}
	}
	if lost > 4 {
		t.Errorf("%d answers were delivered but not cached (concurrency 4)", lost)
	}

	ft.reset()
	cmd = exec.Command(bin, args...)
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, b)
	}
	arr2, att2, succ2, items2 := ft.snapshot()
	for k := range att2 {
		if cached[k] {
			t.Errorf("request %s was answered and cached before the kill, and sent again", k[:8])
		}
	}
	for item := range finished {
		if items2[item] != 0 {
			t.Errorf("item %s finished before the kill, and got %d requests after", item, items2[item])
		}
	}
	for k, n := range succ2 {
		if n != 1 {
			t.Errorf("request %s answered %d times in the rerun", k[:8], n)
		}
	}
	recs := readRecords(t, out)
	checkRecords(t, recs)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.ID]++
	}
	const want = 20*3 + 7 // 7 rewrite items in testdata/docs.jsonl at the default max_chars
	if len(recs) != want || len(seen) != want {
		t.Errorf("%d records, %d distinct, want %d", len(recs), len(seen), want)
	}
	var rep Report
	b, err := os.ReadFile(out + ".report.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Kept != want || rep.Requests.Attempts != int64(len(arr2)) {
		t.Errorf("report: complete %v, kept %d, %d attempts (server saw %d)", rep.Complete, rep.Kept, rep.Requests.Attempts, len(arr2))
	}
	t.Logf("dropped %v", rep.Dropped)
	t.Logf("killed after %d requests (%d answered, %d cached, %d items finished); rerun sent %d requests for %d items, none for the finished ones; %d answered-but-lost",
		len(arr1), len(succ1), len(cached), len(finished), len(arr2), len(items2), lost)
	if len(finished) == 0 || len(finished) >= want {
		t.Errorf("the kill did not land mid-run: %d of %d items finished", len(finished), want)
	}
}

// TestCLIErrors checks that bad input gives one clear error line and exit 1.
func TestCLIErrors(t *testing.T) {
	bin := maiBinary(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("generators:\n  instruct:\n    cout: 3\n"), 0o644)
	docs := filepath.Join(dir, "docs.jsonl")
	os.WriteFile(docs, []byte("{\"id\":\"a\",\"text\":\"hello\"}\nnot json\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"synth", "--count", "2", "--out", filepath.Join(dir, "o.jsonl")}, "no teacher model"},
		{[]string{"synth", "--model", "m", "--out", filepath.Join(dir, "o.jsonl")}, "nothing to generate"},
		{[]string{"synth", "--model", "m", "--config", bad}, "field cout not found"},
		{[]string{"synth", "--model", "m", "--kinds", "poetry", "--count", "1"}, `--kinds "poetry"`},
		{[]string{"synth", "--model", "m", "--count", "1", "--logprobs", "50"}, "logprobs 50"},
		{[]string{"synth", "--model", "m", "--input", docs, "--base-url", "http://127.0.0.1:1/v1", "--out", filepath.Join(dir, "o.jsonl")}, "docs.jsonl:2: not a JSON object"},
		{[]string{"synth", "--model", "m", "--count", "1", "--base-url", "ftp://x"}, "want http:// or https://"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "MAI_TEACHER_MODEL=", "OPENAI_BASE_URL=", "MAI_TEACHER_BASE_URL=")
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if code != 1 || !strings.Contains(string(b), tc.want) || !strings.HasPrefix(lines[len(lines)-1], "mai: ") {
			t.Errorf("%v: exit %d, output %q; want exit 1 and one line with %q", tc.args, code, b, tc.want)
		}
	}
	// --print-config shows the merged configuration.
	b, err := exec.Command(bin, "synth", "--print-config", "--model", "m", "--count", "3", "--kinds", "code").Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("--print-config output does not parse back: %v\n%s", err, b)
	}
	if cfg.Generators["code"].Count != 3 || cfg.Generators["instruct"].Count != 0 || cfg.Teacher.Model != "m" {
		t.Errorf("--print-config: code %d, instruct %d, model %q", cfg.Generators["code"].Count, cfg.Generators["instruct"].Count, cfg.Teacher.Model)
	}
	_ = strconv.Itoa
}
