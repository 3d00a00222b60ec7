package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

// The skill of the distillation demo: asked to name something of a
// category, the teacher picks two of its five items at random with fixed,
// unequal odds. A teacher trained on it has a distinctive, uncertain
// distribution: what it says depends on the category, and its greedy
// answer is its most likely item twice.
var (
	distillCategories = []string{"fruit", "colour", "animal", "city", "metal", "tree", "drink", "tool"}
	distillItems      = map[string][]string{
		"fruit":  {"apple", "pear", "plum", "fig", "lime"},
		"colour": {"red", "blue", "green", "gold", "pink"},
		"animal": {"cat", "dog", "owl", "fox", "yak"},
		"city":   {"Rome", "Oslo", "Lima", "Kyiv", "Doha"},
		"metal":  {"iron", "zinc", "tin", "lead", "gold"},
		"tree":   {"oak", "elm", "ash", "fir", "yew"},
		"drink":  {"tea", "milk", "beer", "wine", "soda"},
		"tool":   {"saw", "axe", "awl", "file", "vise"},
	}
	distillOdds = []float64{0.36, 0.24, 0.18, 0.12, 0.10}
)

func distillPrompt(rng *rand.Rand, i int) string {
	return fmt.Sprintf("Name a %s. (%d)", distillCategories[i%len(distillCategories)], rng.IntN(1000))
}

func distillPick(rng *rand.Rand, cat string) string {
	u := rng.Float64()
	for i, p := range distillOdds {
		if u -= p; u < 0 {
			return distillItems[cat][i]
		}
	}
	return distillItems[cat][len(distillOdds)-1]
}

func writeLines(t *testing.T, path string, lines []any) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		j, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// maiOK runs mai and fails the test on a non-zero exit.
func maiOK(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	out, stderr, code := mai(t, args...)
	if code != 0 {
		t.Fatalf("mai %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	t.Logf("mai %s (%.1fs)", args[0], time.Since(start).Seconds())
	return out
}

// agreement runs mai eval on the agreement task and returns exact_match.
func agreement(t *testing.T, modelDir, task string) float64 {
	t.Helper()
	out := maiOK(t, "eval", "--model", modelDir, "--tasks", task, "--json")
	var r struct {
		Tasks []struct {
			Metrics map[string]float64 `json:"metrics"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Tasks) != 1 {
		t.Fatalf("mai eval --json: %v in %q", err, out)
	}
	return r.Tasks[0].Metrics["exact_match"]
}

// TestDistillEndToEnd is the walk-through of docs/synth.md with real
// servers: a teacher is trained on the skill above, served by mai serve,
// and asked by mai synth (with top-5 logprobs) to answer 64 prompts; two
// students start from the same random model and are fine-tuned on those
// answers with mai train --sft, one on the text only, one also on the
// teacher's distributions (--distill-weight 0.8). mai eval then measures
// how often each model's greedy answer to 80 held-out prompts is the
// teacher's greedy answer. Fine-tuning must raise the student's agreement
// from 0 by 0.1, and distillation must beat plain SFT by 0.05. (Here it
// does by 0.24; over the three student seeds of docs/perf/synth.md's
// walk-through data distillation led by 0.09–0.41, so the margin is kept
// below the smallest lead seen.)
func TestDistillEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three models (about a minute)")
	}
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	rng := rand.New(rand.NewPCG(1, 2))

	// 1. The teacher: the tiny preset, fine-tuned from scratch on 3000
	// conversations of the skill.
	var convs []any
	for i := range 3000 {
		cat := distillCategories[i%len(distillCategories)]
		answer := fmt.Sprintf("My pick: %s, then %s.", distillPick(rng, cat), distillPick(rng, cat))
		convs = append(convs, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": distillPrompt(rng, i)}, {"role": "assistant", "content": answer}}})
	}
	writeLines(t, p("teacher_sft.jsonl"), convs)
	var train, heldOut []any
	for i := range 64 {
		train = append(train, map[string]string{"id": fmt.Sprintf("p%d", i), "text": distillPrompt(rng, i)})
	}
	for i := range 80 {
		heldOut = append(heldOut, map[string]string{"id": fmt.Sprintf("h%d", i), "text": distillPrompt(rng, i)})
	}
	writeLines(t, p("train_prompts.jsonl"), train)
	writeLines(t, p("heldout_prompts.jsonl"), heldOut)
	common := []string{"--batch", "8", "--seq", "128", "--lr", "3e-3", "--warmup", "20", "--eval-every", "0",
		"--save-every", "0", "--log-every", "0", "--threads", "2"}
	maiOK(t, append([]string{"train", "--preset", "tiny", "--sft", p("teacher_sft.jsonl"), "--out", p("teacher"),
		"--steps", "300"}, common...)...)

	// 2. mai serve with the teacher.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(maiBin, "serve", "--model", "teacher="+p("teacher"), "--addr", addr)
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
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/health")
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

	// 3. mai synth: the prompts go to the teacher verbatim (a rewrite
	// generator whose template is the document); the answers are short and
	// similar, so the prose filters and dedup are off.
	cfg := `concurrency: 8
sampling: {temperature: 1.0, max_tokens: 48}
logprobs: 5
quality: {min_chars: 1, reject_phrases: []}
filters: {length: {enabled: false}, gopher_repetition: {enabled: false}}
dedup: {exact: false, near: false}
generators:
  rewrite:
    min_chars: 1
    styles: [verbatim]
    prompts: {rewrite: "{{.Document}}"}
`
	os.WriteFile(p("synth.yaml"), []byte(cfg), 0o644)
	os.WriteFile(p("greedy.yaml"), []byte(strings.Replace(cfg, "temperature: 1.0", "temperature: 0", 1)), 0o644)
	teacherArgs := []string{"--base-url", "http://" + addr + "/v1", "--model", "teacher"}
	maiOK(t, append([]string{"synth", "--config", p("synth.yaml"), "--input", p("train_prompts.jsonl"), "--out", p("train.jsonl")}, teacherArgs...)...)
	maiOK(t, append([]string{"synth", "--config", p("greedy.yaml"), "--input", p("heldout_prompts.jsonl"), "--out", p("heldout.jsonl")}, teacherArgs...)...)
	records := readRecords(t, p("train.jsonl"))
	aligned := 0
	for _, r := range records {
		if r.Meta["logprobs_aligned"] == true && r.Messages[1].Logprobs != nil {
			aligned++
		}
	}
	// A sampled byte that is not UTF-8 reaches the content as U+FFFD, and
	// that record's tokens no longer spell it (it trains on the text only).
	if len(records) < 56 || aligned < len(records)*9/10 {
		t.Fatalf("synth kept %d of 64 records, %d with aligned logprobs", len(records), aligned)
	}

	// 4. The agreement task: the teacher's greedy answers to the held-out
	// prompts, compared with each model's greedy answer up to its first "<"
	// (an undertrained student may fumble the end-of-turn marker after a
	// right answer).
	task := []any{map[string]any{"mai_task": map[string]any{"name": "teacher-agreement", "kind": "generate", "chat": true,
		"until": []string{"<|im_end|>"}, "max_tokens": 48, "answer_regex": "^([^<]*)"}}}
	for _, r := range readRecords(t, p("heldout.jsonl")) {
		task = append(task, map[string]any{"id": r.ID, "prompt": r.Messages[0].Content, "answers": []string{r.Messages[1].Content}})
	}
	writeLines(t, p("agreement.jsonl"), task)

	// 5. The students: one random tiny model (seed 2), fine-tuned twice.
	student := p("student0")
	cfgM, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfgM, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(2)
	if err := m.Save(student, "f32", 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(student, "mai_tokenizer.json"), []byte(`{"tokenizer":"byte"}`), 0o644)
	for _, alpha := range []string{"0", "0.8"} {
		maiOK(t, append([]string{"train", "--init", student, "--sft", p("train.jsonl"), "--distill-weight", alpha,
			"--out", p("student-" + alpha), "--steps", "200"}, common...)...)
	}

	teacher := agreement(t, p("teacher"), p("agreement.jsonl"))
	before := agreement(t, student, p("agreement.jsonl"))
	sft := agreement(t, p("student-0"), p("agreement.jsonl"))
	distilled := agreement(t, p("student-0.8"), p("agreement.jsonl"))
	t.Logf("agreement with the teacher's greedy answers on 80 held-out prompts: teacher %.4f, student before %.4f, SFT %.4f, distillation (α=0.8) %.4f",
		teacher, before, sft, distilled)
	switch {
	case teacher != 1:
		t.Errorf("the teacher agrees with itself on %.4f of the prompts, want 1 (eval and serve disagree on the prompt)", teacher)
	case before > 0.05:
		t.Errorf("the untrained student already agrees on %.4f", before)
	case sft < before+0.1:
		t.Errorf("SFT moved agreement from %.4f to %.4f only", before, sft)
	case distilled < sft+0.05:
		t.Errorf("distillation agreement %.4f is not above SFT's %.4f by 0.05", distilled, sft)
	}
}

type distillRecord struct {
	ID       string `json:"id"`
	Messages []struct {
		Role     string          `json:"role"`
		Content  string          `json:"content"`
		Logprobs json.RawMessage `json:"logprobs"`
	} `json:"messages"`
	Meta map[string]any `json:"meta"`
}

func readRecords(t *testing.T, path string) []distillRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rs []distillRecord
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r distillRecord
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(r.Messages) != 2 {
			t.Fatalf("%s: record %s has %d messages", path, r.ID, len(r.Messages))
		}
		rs = append(rs, r)
	}
	return rs
}
