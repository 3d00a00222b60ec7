package eval_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mai-llm/mai/eval"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/serve"
)

const mcJSONL = `{"mai_task":{"name":"mc","kind":"multiple_choice","num_fewshot":1}}
{"id":"1","context":"The cat sat on the","choices":["mat.","moon","a very long and unlikely ending"],"gold":0}
{"id":"2","context":"func main() {","choices":["}","\n\tfmt.Println(\"hi\")\n}","return"],"gold":1}
{"id":"3","context":"In the beginning God created the heaven and the","choices":["sea","fish","earth."],"gold":2}
{"id":"4","context":"1, 2, 3, 4,","choices":[" 5"," 7"," banana"],"gold":0}
{"id":"5","context":"Ünïcödé text:","choices":["ß","ü","€uro"],"gold":1}
`

// TestServeMatchesLocal scores a multiple-choice task through MAI's own
// server (serve, /v1/completions with echo and logprobs) and in-process on
// the same model: the log-likelihoods agree, with text prompts and with
// token-id prompts.
func TestServeMatchesLocal(t *testing.T) {
	m, err := model.Load("../model/testdata/hf/llama", false)
	if err != nil {
		t.Fatal(err)
	}
	codec := infer.ByteCodec{}
	sm, err := serve.NewModel("llama", m, codec, infer.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := serve.New(serve.Config{Log: quiet}, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	task, err := eval.ParseTask("mc", strings.NewReader(mcJSONL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opt := eval.Options{KeepSamples: true, Seed: 1, Log: quiet}
	want, err := eval.Run(ctx, eval.NewLocal(m, codec, eval.LocalOptions{}), []*eval.Task{task}, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  infer.Codec
	}{{"text prompts", nil}, {"token-id prompts", codec}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := eval.NewServer(ctx, eval.ServerOptions{URL: srv.URL, Tokenizer: tc.tok})
			if err != nil {
				t.Fatal(err)
			}
			got, err := eval.Run(ctx, b, []*eval.Task{task}, opt)
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for i, s := range got.Tasks[0].Samples {
				for j, lp := range s.LogProbs {
					worst = math.Max(worst, math.Abs(lp-want.Tasks[0].Samples[i].LogProbs[j]))
				}
			}
			t.Logf("max |server - local| log-likelihood: %.2e; metrics %v", worst, got.Tasks[0].Metrics)
			if worst > 1e-4 {
				t.Errorf("server and local log-likelihoods differ by %.2e", worst)
			}
			for k, v := range want.Tasks[0].Metrics {
				if got.Tasks[0].Metrics[k] != v {
					t.Errorf("%s: server %v, local %v", k, got.Tasks[0].Metrics[k], v)
				}
			}
		})
	}
}
