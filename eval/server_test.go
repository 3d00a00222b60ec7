package eval

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

// fakeServer serves /v1/models and /v1/completions (echo with logprobs, text
// or token-id prompts, and greedy generation) over a local model: the
// smallest OpenAI-compatible server, to test the server path against the
// local one.
func fakeServer(t *testing.T, m *model.Model, codec infer.Codec) *httptest.Server {
	t.Helper()
	lm := &localModel{m: m, codec: codec, opt: LocalOptions{Name: "fake", BatchTokens: 4096, Chat: ChatML}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "fake", "object": "model", "max_model_len": m.Cfg.MaxSeq}}})
	})
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Prompt    json.RawMessage `json:"prompt"`
			Echo      bool            `json:"echo"`
			Logprobs  *int            `json:"logprobs"`
			MaxTokens int             `json:"max_tokens"`
			Stop      []string        `json:"stop"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ids []int32
		var text string
		if err := json.Unmarshal(req.Prompt, &text); err == nil {
			ids, _ = lm.encode(text)
		} else if err := json.Unmarshal(req.Prompt, &ids); err != nil {
			http.Error(w, "prompt: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(ids) > m.Cfg.MaxSeq {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": "prompt longer than the context"}})
			return
		}
		choice := map[string]any{"index": 0, "finish_reason": "length"}
		if req.Echo {
			scores, err := lm.score(r.Context(), []scoreSeq{{ids: ids, from: 1}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			lp := logprobs{TokenLogprobs: []*float64{nil}, TopLogprobs: []map[string]float64{nil}}
			off := 0
			for i, id := range ids {
				tok := codec.Decode([]int{int(id)})
				lp.Tokens = append(lp.Tokens, tok)
				lp.TextOffset = append(lp.TextOffset, off)
				off += len(tok)
				if i > 0 {
					s := scores[0][i-1]
					v := s.lp
					lp.TokenLogprobs = append(lp.TokenLogprobs, &v)
					top := map[string]float64{tok: v}
					if !s.greedy {
						top = map[string]float64{"<best>": s.top}
					}
					lp.TopLogprobs = append(lp.TopLogprobs, top)
				}
			}
			choice["logprobs"] = lp
			choice["text"] = codec.Decode(toIntSlice(ids))
		} else {
			out, err := lm.generate(r.Context(), []GenRequest{{Prompt: text, MaxTokens: req.MaxTokens, Until: req.Stop}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			choice["text"] = out[0]
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "text_completion", "choices": []any{choice}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func toIntSlice(ids []int32) []int {
	out := make([]int, len(ids))
	for i, v := range ids {
		out[i] = int(v)
	}
	return out
}

// mcTask is a small multiple-choice task with few-shot examples and choices
// of different lengths.
func mcTask() *Task {
	t := &Task{TaskConfig: TaskConfig{Name: "mc", Kind: KindMultipleChoice, Description: "Pick the ending.\n\n", NumFewshot: 2}}
	add := func(ctx string, gold int, choices ...string) {
		t.Items = append(t.Items, Item{ID: ctx, Context: ctx, Choices: choices, Gold: gold})
	}
	add("The cat sat on the", 0, "mat.", "moon", "a very long and unlikely ending")
	add("func main() {", 1, "}", "\n\tfmt.Println(\"hi\")\n}", "return")
	add("In the beginning God created the heaven and the", 2, "sea", "fish", "earth.")
	add("1, 2, 3, 4,", 0, " 5", " 7", " banana")
	add("Ünïcödé text:", 1, "ß", "ü", "€uro")
	return t
}

// TestServerMatchesLocal scores the same multiple-choice task through the
// local path and through an OpenAI-compatible server (text prompts and
// token-id prompts) on the same model: the log-likelihoods agree.
func TestServerMatchesLocal(t *testing.T) {
	m := loadLlama(t)
	m.Cfg.MaxSeq = 64 // force truncation of the longest few-shot prompts
	codec := infer.ByteCodec{}
	srv := fakeServer(t, m, codec)
	ctx := context.Background()
	local := NewLocal(m, codec, LocalOptions{})
	text, err := NewServer(ctx, ServerOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := NewServer(ctx, ServerOptions{URL: srv.URL + "/v1", Tokenizer: codec})
	if err != nil {
		t.Fatal(err)
	}
	task := mcTask()
	opt := Options{KeepSamples: true, Seed: 3}
	want, err := Run(ctx, local, []*Task{task}, opt)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]Backend{"text prompts": text, "token-id prompts": ids} {
		t.Run(name, func(t *testing.T) {
			got, err := Run(ctx, b, []*Task{task}, opt)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range got.Tasks[0].Samples {
				w := want.Tasks[0].Samples[i]
				for j := range s.LogProbs {
					if d := math.Abs(s.LogProbs[j] - w.LogProbs[j]); d > 1e-5 { // the local path runs shared contexts through a KV cache
						t.Errorf("item %d choice %d: server %.9f, local %.9f", i, j, s.LogProbs[j], w.LogProbs[j])
					}
				}
			}
			for k, v := range want.Tasks[0].Metrics {
				if got.Tasks[0].Metrics[k] != v {
					t.Errorf("%s: server %v, local %v", k, got.Tasks[0].Metrics[k], v)
				}
			}
		})
	}
	t.Logf("local: %v", want.Tasks[0].Metrics)

	// Perplexity through token ids agrees too, windows and all.
	ref, _, _ := refNLL(t)
	seq := append(append([]int32(nil), ref[0]...), ref[1]...)
	for i := range seq {
		seq[i] %= 256
	}
	pl, err := PerplexityIDs(ctx, local, seq, 16)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := PerplexityIDs(ctx, ids, seq, 16)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(pl.NLL-ps.NLL) > 1e-9 || pl.Tokens != ps.Tokens {
		t.Errorf("perplexity: local %+v, server %+v", pl, ps)
	}
}
