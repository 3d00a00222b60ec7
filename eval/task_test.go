package eval

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuiltinTasks(t *testing.T) {
	want := map[string]string{"kjv-cloze": KindMultipleChoice, "go-doc-match": KindMultipleChoice, "go-next-line": KindMultipleChoice, "go-token-order": KindMultipleChoice,
		"kjv-ppl": KindPerplexity, "go-ppl": KindPerplexity, "arith": KindGenerate, "arith-chat": KindGenerate, "go-code": KindCode}
	names := Builtin()
	if len(names) != len(want) {
		t.Errorf("built-in tasks %v, want %d", names, len(want))
	}
	for _, n := range names {
		task, err := LoadTask(n)
		if err != nil {
			t.Fatal(err)
		}
		if task.Kind != want[n] || task.About == "" || task.License == "" || task.Source == "" {
			t.Errorf("%s: kind %q (want %q), about/license/source must be set", n, task.Kind, want[n])
		}
		t.Logf("%s: %s, %d items, %d few-shot", n, task.Kind, len(task.Items), len(task.Fewshot))
	}
}

func TestPublishedFormats(t *testing.T) {
	for _, tc := range []struct {
		file    string
		n       int
		context string
		choices []string
		gold    int
	}{
		{"hellaswag_sample.jsonl", 2, "Washing a car: A man sprays water over a red car. He",
			[]string{"is reading a book on a bench.", "is painting the fence blue.", "is holding a kite.", "scrubs the hood with a sponge."}, 3},
		{"arc_sample.jsonl", 2, "Question: A ball is dropped from a table. What pulls it toward the floor?\nAnswer:",
			[]string{"magnetism", "friction", "gravity", "light"}, 2},
		{"mmlu_sample.jsonl", 2, "What is the value of 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:", []string{"A", "B", "C", "D"}, 1},
		{"abstract_algebra_test.csv", 2, "Find the degree for the given field extension Q(sqrt(2)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:", []string{"A", "B", "C", "D"}, 2},
	} {
		t.Run(tc.file, func(t *testing.T) {
			task, err := LoadTask(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if task.Kind != KindMultipleChoice || len(task.Items) != tc.n {
				t.Fatalf("kind %s with %d items", task.Kind, len(task.Items))
			}
			it := task.Items[0]
			if it.Context != tc.context || strings.Join(it.Choices, "|") != strings.Join(tc.choices, "|") || it.Gold != tc.gold {
				t.Errorf("first item %+v\nwant context %q choices %q gold %d", it, tc.context, tc.choices, tc.gold)
			}
		})
	}
	// lm-evaluation-harness's HellaSwag cleanup: [title] becomes ". ",
	// bracketed text and double spaces go.
	task, _ := LoadTask("testdata/hellaswag_sample.jsonl")
	if got := task.Items[1].Context; got != "Baking cookies: A woman mixes flour and sugar in a bowl.. She adds butter. Then" {
		t.Errorf("hellaswag context %q", got)
	}
	if got := task.Items[1].Choices; got[0] != "she rolls the dough into balls." || got[1] != "she paints the wall ." {
		t.Errorf("hellaswag endings %q", got)
	}
	if task, _ := LoadTask("testdata/abstract_algebra_test.csv"); !strings.Contains(task.Description, "abstract algebra") {
		t.Errorf("MMLU description %q", task.Description)
	}
}

func TestParseTaskErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", "{oops\n", "line 1: not a JSON object"},
		{"gold out of range", `{"context":"a","choices":["b","c"],"gold":2}`, "gold index 2 outside its 2 choices"},
		{"one choice", `{"context":"a","choices":["b"],"gold":0}`, "has 1 choices"},
		{"nothing to score", `{"mai_task":{"name":"x","kind":"generate"}}`, "no items to score"},
		{"unknown fields only", `{"foo":1}`, "none of choices, test, answers or text"},
		{"bad kind", `{"mai_task":{"kind":"essay"}}` + "\n" + `{"text":"a"}`, `unknown kind "essay"`},
		{"bad regex", `{"mai_task":{"answer_regex":"("}}` + "\n" + `{"prompt":"a","answer":"b"}`, "answer_regex"},
		{"arc without the answer", `{"id":"x","question":"q","choices":{"text":["a","b"],"label":["A","B"]},"answerKey":"E"}`, `answerKey "E"`},
		{"code without test", `{"mai_task":{"kind":"code"}}` + "\n" + `{"prompt":"package p"}`, "needs a prompt and a test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTask("t", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadTask("no-such-task"); err == nil || !strings.Contains(err.Error(), "kjv-cloze") {
		t.Errorf("unknown task: %v (want the list of built-in tasks)", err)
	}
}

func FuzzParseTask(f *testing.F) {
	for _, n := range []string{"testdata/hellaswag_sample.jsonl", "testdata/arc_sample.jsonl", "testdata/mmlu_sample.jsonl"} {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := builtinFS.ReadFile("tasks/arith.jsonl")
	f.Add(b[:2000])
	f.Add([]byte(`{"mai_task":{"kind":"code"}}` + "\n" + `{"prompt":"p","test":"t"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := ParseTask("fuzz", bytes.NewReader(data))
		if err == nil && task.Validate() != nil {
			t.Fatal("parsed a task that does not validate")
		}
	})
}

// TestGoCodeSolutions builds every go-code task's reference solution with
// its test into one package and runs go test once: each task is solvable and
// its test accepts the solution. It also runs one task through the sandbox.
func TestGoCodeSolutions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test")
	}
	task, err := LoadTask("go-code")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module solution\n\ngo 1.22\n"), 0o644)
	for _, it := range task.Items {
		if err := os.WriteFile(filepath.Join(dir, it.ID+".go"), []byte(assembleGo(it.Prompt, it.Solution)), 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, it.ID+"_test.go"), []byte(it.Test), 0o644)
		// A body that returns zero values must fail each test.
	}
	cmd := exec.Command("go", "test", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference solutions fail their tests: %v\n%s", err, out)
	}
	// Through the sandbox: the reference passes, a wrong body fails.
	it := task.Items[0]
	opt := SandboxOptions{Timeout: 10 * time.Second, GoCache: userGoCache(t)}
	r, err := RunGoTest(context.Background(), it.Prompt, it.Solution, it.Test, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed {
		t.Errorf("%s: reference solution failed in the sandbox:\n%s", it.ID, r.Output)
	}
}
