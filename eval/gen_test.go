package eval

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/mai-llm/mai/infer"
)

func TestExtract(t *testing.T) {
	for _, tc := range []struct{ re, out, want string }{
		{``, " 42.\n", " 42.\n"},
		{`-?\d+`, "The answer is -17, I think", "-17"},
		{`answer is (\w+)`, "so the answer is Paris.", "Paris"},
		{`\d+`, "no digits", ""},
	} {
		var re *regexp.Regexp
		if tc.re != "" {
			re = regexp.MustCompile(tc.re)
		}
		if got := extract(re, tc.out); got != tc.want {
			t.Errorf("extract(%q, %q) = %q, want %q", tc.re, tc.out, got, tc.want)
		}
	}
	if normalize(" Paris. ", true) != "paris" || normalize("42", false) != "42" {
		t.Error("normalize")
	}
}

// TestGenerate scores generation tasks on the llama fixture: answers equal
// to what greedy decoding extracts score 1, others 0, through the local
// path and an OpenAI-compatible server alike; chat tasks go through the
// chat template with few-shot turns.
func TestGenerate(t *testing.T) {
	m := loadLlama(t)
	codec := infer.ByteCodec{}
	var rendered [][]Message
	local := NewLocal(m, codec, LocalOptions{Chat: func(msgs []Message) (string, error) {
		rendered = append(rendered, msgs)
		return ChatML(msgs)
	}})
	ctx := context.Background()
	prompts := []string{"Question: 1, 2, 3,", "Question: abc", "Question: hello"}
	outs, err := local.Generate(ctx, []GenRequest{{Prompt: prompts[0], MaxTokens: 12}, {Prompt: prompts[1], MaxTokens: 12}, {Prompt: prompts[2], MaxTokens: 12}})
	if err != nil {
		t.Fatal(err)
	}
	srv := fakeServer(t, m, codec)
	server, err := NewServer(ctx, ServerOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	souts, err := server.Generate(ctx, []GenRequest{{Prompt: prompts[0], MaxTokens: 12}, {Prompt: prompts[1], MaxTokens: 12}, {Prompt: prompts[2], MaxTokens: 12}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range outs {
		// JSON carries text as UTF-8: compare after the same round trip.
		b, _ := json.Marshal(outs[i])
		var want string
		json.Unmarshal(b, &want)
		if souts[i] != want {
			t.Errorf("prompt %d: server generated %q, local %q", i, souts[i], want)
		}
	}
	for name, c := range map[string]struct {
		b    Backend
		outs []string
	}{"local": {local, outs}, "server": {server, souts}} {
		task := &Task{TaskConfig: TaskConfig{Name: "gen", Kind: KindGenerate, MaxTokens: 12, AnswerRegex: `(?s)^(.{3})`}}
		for i, p := range prompts {
			ans := extract(regexp.MustCompile(`(?s)^(.{3})`), c.outs[i])
			if i == 2 {
				ans = "no such answer"
			}
			task.Items = append(task.Items, Item{ID: p, Prompt: p, Answers: []string{"x", ans}})
		}
		res, err := Run(ctx, c.b, []*Task{task}, Options{Log: discard(), KeepSamples: true})
		if err != nil {
			t.Fatal(err)
		}
		if em := res.Tasks[0].Metrics["exact_match"]; em != 2.0/3 {
			t.Errorf("%s: exact_match %v, want 2/3 (samples %+v)", name, em, res.Tasks[0].Samples)
		}
	}

	chat := &Task{TaskConfig: TaskConfig{Name: "chat", Kind: KindGenerate, Chat: true, System: "Be brief.", NumFewshot: 1, MaxTokens: 4},
		Items:   []Item{{ID: "q", Prompt: "What is 2+2?", Answers: []string{"4"}}},
		Fewshot: []Item{{ID: "e", Prompt: "What is 1+1?", Answers: []string{"2"}}}}
	if _, err := Run(ctx, local, []*Task{chat}, Options{Log: discard()}); err != nil {
		t.Fatal(err)
	}
	if len(rendered) != 1 {
		t.Fatalf("chat template called %d times", len(rendered))
	}
	var roles []string
	for _, m := range rendered[0] {
		roles = append(roles, m.Role+":"+m.Content)
	}
	if got := strings.Join(roles, "|"); got != "system:Be brief.|user:What is 1+1?|assistant:2|user:What is 2+2?" {
		t.Errorf("chat messages %q", got)
	}
	if s, _ := ChatML(rendered[0][:1]); s != "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n" {
		t.Errorf("ChatML %q", s)
	}
}
