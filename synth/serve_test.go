package synth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mai-llm/mai/model"
)

// tinyModelDir saves a tiny random byte-level model (the "tiny" preset) for
// mai serve.
func tinyModelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mai_tokenizer.json"), []byte(`{"tokenizer":"byte"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeTeacher uses `mai serve` on a tiny random model as the teacher of `mai
// synth` (every generator but code, whose format a random model cannot follow, with
// logprobs), and checks the JSONL.
func TestServeTeacher(t *testing.T) {
	bin := maiBinary(t)
	if err := exec.Command(bin, "serve", "--help").Run(); err != nil {
		t.Skipf("this mai has no serve command (%v)", err)
	}
	modelDir := tinyModelDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve", "--model", "tiny="+modelDir, "--addr", addr, "--kv-memory", "64")
	var srvLog bytes.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
	}()
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mai serve did not come up: %v\n%s", err, srvLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The tiny model has a 256-byte context: short templates, short answers. Its
	// answers are random bytes, so the prose filters and dedup are off and cut
	// answers are kept.
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs.jsonl")
	os.WriteFile(docs, []byte(`{"id":"d1","text":"Rivers carry water to the sea."}`+"\n"+`{"id":"d2","text":"Bees dance to tell where flowers are."}`+"\n"), 0o644)
	cfgPath := filepath.Join(dir, "synth.yaml")
	os.WriteFile(cfgPath, []byte(`
sampling: {temperature: 0.7, max_tokens: 24}
quality: {min_chars: 1, allow_truncated: true, reject_phrases: []}
filters: {length: {enabled: false}, gopher_repetition: {enabled: false}}
dedup: {exact: false, near: false}
generators:
  instruct:
    count: 4
    prompts: {instruction: "Ask about {{.Topic}}."}
  chat:
    count: 2
    min_turns: 2
    max_turns: 2
    max_tokens: 12
    prompts: {opener: "Hi, {{.Topic}}?", follow_up: "More: {{.Transcript}}"}
  textbook:
    count: 3
    max_tokens: 24
    prompts: {passage: "Teach {{.Topic}}."}
  rewrite:
    min_chars: 10
    styles: [simply]
    prompts: {rewrite: "Rewrite {{.Style}}: {{.Document}}"}
`), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command(bin, "synth", "--config", cfgPath, "--base-url", base+"/v1", "--model", "tiny",
		"--input", docs, "--out", out, "--logprobs", "2", "--concurrency", "4", "--timeout", "60s")
	cmd.Env = append(os.Environ(), "MAI_TEACHER_API_KEY=", "OPENAI_API_KEY=")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mai synth: %v\n%s\nserver:\n%s", err, b, srvLog.String())
	}
	t.Logf("mai synth against mai serve:\n%s", b)
	recs := readRecords(t, out)
	checkRecords(t, recs)
	kinds := map[string]int{}
	aligned := 0
	for _, r := range recs {
		kinds[r.Meta["kind"].(string)]++
		if r.Meta["teacher"] != "tiny" {
			t.Errorf("%s: teacher %v", r.ID, r.Meta["teacher"])
		}
		u := r.Meta["usage"].(map[string]any)
		if u["prompt_tokens"].(float64) <= 0 || u["completion_tokens"].(float64) <= 0 {
			t.Errorf("%s: usage %v", r.ID, u)
		}
		if r.Meta["logprobs_aligned"] == true {
			aligned++
		}
		for _, m := range r.Messages {
			if m.Role == "assistant" {
				if m.Logprobs == nil || len(m.Logprobs.Content) == 0 {
					t.Fatalf("%s: no logprobs from mai serve", r.ID)
				}
				for _, tl := range m.Logprobs.Content {
					if len(tl.TopLogprobs) != 2 || tl.Logprob > 0 {
						t.Fatalf("%s: token %+v", r.ID, tl)
					}
				}
			}
		}
	}
	want := map[string]int{"instruct": 4, "chat": 2, "textbook": 3, "rewrite": 2}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("records by kind %v, want %v", kinds, want)
	}
	// A random byte-level model writes invalid UTF-8, which the server's JSON turns
	// into U+FFFD: those answers' token bytes cannot spell the content.
	t.Logf("%d records, %d with logprobs that spell the content exactly", len(recs), aligned)
	if !strings.Contains(string(b), "complete: 11 records") {
		t.Errorf("table does not report completion")
	}
}
