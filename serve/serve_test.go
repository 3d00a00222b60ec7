package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// post sends a JSON body and decodes the JSON answer into out (if not nil).
func post(t testing.TB, url, key string, body any, out any) int {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: status %d, body %q: %v", url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// sseEvents posts a streaming request and returns the data payloads.
func sseEvents(t testing.TB, url string, body any) []string {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := httpClient.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, d)
		} else if line != "" {
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return out
}

func llamaReference(t testing.TB) (prompt, greedy []int32) {
	t.Helper()
	ref, err := safetensors.Open(filepath.Join(fixtureDir("llama"), "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	prompt, _, err = ref.Int32("prompt")
	if err != nil {
		t.Fatal(err)
	}
	greedy, _, err = ref.Int32("greedy")
	if err != nil {
		t.Fatal(err)
	}
	return prompt, greedy
}

func TestModelsAndHealth(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	var list ModelList
	if code := get(t, ts.URL+"/v1/models", &list); code != 200 || len(list.Data) != 2 || list.Data[0].ID != "llama" || list.Data[1].ID != "tiny" || list.Object != "list" {
		t.Fatalf("models: %d %+v", code, list)
	}
	var one ModelInfo
	if code := get(t, ts.URL+"/v1/models/tiny", &one); code != 200 || one.ID != "tiny" || one.MaxModelLen != 256 {
		t.Fatalf("model: %d %+v", code, one)
	}
	var e ErrorBody
	if code := get(t, ts.URL+"/v1/models/nope", &e); code != 404 || e.Error.Code == nil || *e.Error.Code != "model_not_found" {
		t.Fatalf("missing model: %d %+v", code, e)
	}
	var h map[string]string
	if code := get(t, ts.URL+"/health", &h); code != 200 || h["status"] != "ok" {
		t.Fatalf("health: %d %v", code, h)
	}
}

func get(t testing.TB, url string, out any) int {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: %d %q: %v", url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// TestCompletionsGreedyMatchesTransformers checks token-id prompts on the
// llama fixture against the transformers reference, and the same request
// streamed.
func TestCompletionsGreedyMatchesTransformers(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	prompt, want := llamaReference(t)
	n := len(want) - len(prompt)
	var resp CompletionResponse
	code := post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "llama", "prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 0}, &resp)
	if code != 200 || len(resp.Choices) != 1 {
		t.Fatalf("%d %+v", code, resp)
	}
	// The llama fixture has no tokenizer of its own; the byte codec maps ids
	// below 256 to bytes, so compare ids through the logprobs' tokens count
	// and usage, and the greedy ids through the engine's text.
	if resp.Usage.CompletionTokens != n || resp.Usage.PromptTokens != len(prompt) {
		t.Fatalf("usage %+v", resp.Usage)
	}
	m, err := model.Load(fixtureDir("llama"), false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := infer.Generate(context.Background(), m, prompt, infer.Options{MaxTokens: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(append(slices.Clone(prompt), res.IDs...), want) {
		t.Fatalf("reference changed")
	}
	// The fixture's ids are not text, so check the ids through their
	// log-probabilities: each must be the reference token's.
	lps := resp.Choices[0].Logprobs.TokenLogprobs
	if len(lps) != n {
		t.Fatalf("%d logprobs for %d tokens", len(lps), n)
	}
	all := slices.Clone(want)
	out, err := m.Forward(nn.NewTape(nil, false), all, 1, len(all), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		pos := len(prompt) + i
		if w := logSoftmaxAt(out.Logits.Data[(pos-1)*m.Cfg.Vocab:pos*m.Cfg.Vocab], all[pos]); math.Abs(*lps[i]-w) > 1e-4 {
			t.Errorf("token %d: logprob %v, reference token's %v", i, *lps[i], w)
		}
	}
	wantText := jsonText(infer.ByteCodec{}.Decode(toInts(res.IDs)))
	if resp.Choices[0].Text != wantText {
		t.Errorf("text %q, want %q", resp.Choices[0].Text, wantText)
	}
	// Streamed: the deltas add up to the same text.
	evs := sseEvents(t, ts.URL+"/v1/completions", map[string]any{"model": "llama", "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": true})
	if evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %v", evs[len(evs)-1])
	}
	var text strings.Builder
	var finish string
	for _, e := range evs[:len(evs)-1] {
		var c CompletionResponse
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	if text.String() != wantText || finish != "length" {
		t.Errorf("streamed %q (%s), want %q", text.String(), finish, wantText)
	}
}

// jsonText is s as it reads after a JSON round trip (invalid UTF-8 becomes
// U+FFFD).
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

func logSoftmaxAt(row []float32, id int32) float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	var s float64
	for _, x := range row {
		s += math.Exp(float64(x) - mx)
	}
	return float64(row[id]) - mx - math.Log(s)
}

func toInts(x []int32) []int {
	out := make([]int, len(x))
	for i, v := range x {
		out[i] = int(v)
	}
	return out
}

// TestCompletionsEchoLogprobs is what lm-evaluation-harness asks for to
// score a multiple-choice task: the log-probability of every prompt token.
func TestCompletionsEchoLogprobs(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	prompt, _ := llamaReference(t)
	var resp CompletionResponse
	code := post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "llama", "prompt": [][]int32{prompt}, "max_tokens": 1, "temperature": 0, "logprobs": 2, "echo": true}, &resp)
	if code != 200 {
		t.Fatalf("%d %+v", code, resp)
	}
	lp := resp.Choices[0].Logprobs
	if len(lp.Tokens) != len(prompt)+1 || lp.TokenLogprobs[0] != nil || len(lp.TopLogprobs[0]) != 0 || len(lp.TextOffset) != len(lp.Tokens) {
		t.Fatalf("logprobs %+v", lp)
	}
	m, _ := model.Load(fixtureDir("llama"), false)
	out, err := m.Forward(nn.NewTape(nil, false), prompt, 1, len(prompt), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	v := m.Cfg.Vocab
	for i := 1; i < len(prompt); i++ {
		want := logSoftmaxAt(out.Logits.Data[(i-1)*v:i*v], prompt[i])
		if got := *lp.TokenLogprobs[i]; math.Abs(got-want) > 1e-4 {
			t.Errorf("token %d: logprob %v, want %v", i, got, want)
		}
		if len(lp.TopLogprobs[i]) == 0 || len(lp.TopLogprobs[i]) > 2 {
			t.Errorf("token %d: top logprobs %v", i, lp.TopLogprobs[i])
		}
	}
	if !strings.HasPrefix(resp.Choices[0].Text, jsonText(infer.ByteCodec{}.Decode(toInts(prompt)))) {
		t.Errorf("echo text %q", resp.Choices[0].Text)
	}
}

func TestChat(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	body := map[string]any{"model": "tiny", "messages": []map[string]any{
		{"role": "system", "content": "You are terse."},
		{"role": "user", "content": []map[string]string{{"type": "text", "text": "Hello"}}},
	}, "max_tokens": 12, "temperature": 0}
	var resp ChatResponse
	if code := post(t, ts.URL+"/v1/chat/completions", "", body, &resp); code != 200 {
		t.Fatalf("%d %+v", code, resp)
	}
	ch := resp.Choices[0]
	if resp.Object != "chat.completion" || ch.Message.Role != "assistant" || ch.Message.Content == nil || ch.FinishReason == nil {
		t.Fatalf("%+v", resp)
	}
	if resp.Usage.CompletionTokens < 1 || resp.Usage.CompletionTokens > 12 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
		t.Errorf("usage %+v", resp.Usage)
	}
	// The same prompt through infer.Generate gives the same text.
	dir, _ := byteModelDir()
	m, _ := model.Load(dir, false)
	text := "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
	ids := to32(infer.ByteCodec{}.Encode(text))
	if resp.Usage.PromptTokens != len(ids) {
		t.Errorf("prompt tokens %d, want %d", resp.Usage.PromptTokens, len(ids))
	}
	dec := func(x []int32) string { return infer.ByteCodec{}.Decode(toInts(x)) }
	res, err := infer.Generate(context.Background(), m, ids, infer.Options{MaxTokens: 12, EOS: []int32{256}, Stop: []string{"<|im_end|>"}, Decode: dec}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *ch.Message.Content != jsonText(res.Text) {
		t.Errorf("content %q, want %q", *ch.Message.Content, res.Text)
	}

	// Streaming: role first, deltas that add up, a finish reason, usage,
	// [DONE].
	body["stream"] = true
	body["stream_options"] = map[string]bool{"include_usage": true}
	body["logprobs"] = true
	body["top_logprobs"] = 2
	evs := sseEvents(t, ts.URL+"/v1/chat/completions", body)
	if evs[len(evs)-1] != "[DONE]" {
		t.Fatal("no [DONE]")
	}
	var got strings.Builder
	var sawRole, sawFinish, sawUsage bool
	nlp := 0
	for _, e := range evs[:len(evs)-1] {
		var c ChatResponse
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion.chunk" || c.ID == "" {
			t.Fatalf("chunk %s", e)
		}
		if c.Usage != nil {
			sawUsage = c.Usage.CompletionTokens == resp.Usage.CompletionTokens && len(c.Choices) == 0
			continue
		}
		d := c.Choices[0].Delta
		if d.Role == "assistant" {
			sawRole = true
		}
		if d.Content != nil {
			got.WriteString(*d.Content)
		}
		if c.Choices[0].Logprobs != nil {
			nlp += len(c.Choices[0].Logprobs.Content)
			for _, lp := range c.Choices[0].Logprobs.Content {
				if len(lp.TopLogprobs) != 2 || lp.Logprob > 0 {
					t.Errorf("logprob entry %+v", lp)
				}
			}
		}
		if c.Choices[0].FinishReason != nil {
			sawFinish = true
		}
	}
	if got.String() != jsonText(res.Text) || !sawRole || !sawFinish || !sawUsage || nlp != resp.Usage.CompletionTokens {
		t.Errorf("stream: %q (want %q) role %v finish %v usage %v logprobs %d", got.String(), res.Text, sawRole, sawFinish, sawUsage, nlp)
	}

	// n choices with a seed: reproducible, and different choices.
	nb := map[string]any{"model": "tiny", "messages": []map[string]any{{"role": "user", "content": "hi"}}, "max_tokens": 10, "n": 3, "seed": 5, "temperature": 1}
	var a, b ChatResponse
	post(t, ts.URL+"/v1/chat/completions", "", nb, &a)
	post(t, ts.URL+"/v1/chat/completions", "", nb, &b)
	if len(a.Choices) != 3 {
		t.Fatalf("n=3 gave %d choices", len(a.Choices))
	}
	for i := range a.Choices {
		if *a.Choices[i].Message.Content != *b.Choices[i].Message.Content {
			t.Errorf("seeded choice %d differs between runs", i)
		}
	}
	if *a.Choices[0].Message.Content == *a.Choices[1].Message.Content && *a.Choices[1].Message.Content == *a.Choices[2].Message.Content {
		t.Errorf("all choices equal: %q", *a.Choices[0].Message.Content)
	}
}

func TestStopStrings(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	prompt, want := llamaReference(t)
	full := infer.ByteCodec{}.Decode(toInts(want[len(prompt):]))
	// A stop string of two ASCII bytes from the output (JSON carries only
	// valid UTF-8).
	at := -1
	for i := 0; i+1 < len(full); i++ {
		if full[i] < 0x80 && full[i+1] < 0x80 {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatalf("no ASCII pair in %q", full)
	}
	stop := full[at : at+2]
	cut := strings.Index(full, stop)
	for _, stream := range []bool{false, true} {
		body := map[string]any{"model": "llama", "prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stop, "stream": stream}
		var text, finish string
		if stream {
			evs := sseEvents(t, ts.URL+"/v1/completions", body)
			for _, e := range evs[:len(evs)-1] {
				var c CompletionResponse
				json.Unmarshal([]byte(e), &c)
				text += c.Choices[0].Text
				if c.Choices[0].FinishReason != nil {
					finish = *c.Choices[0].FinishReason
				}
			}
		} else {
			var resp CompletionResponse
			post(t, ts.URL+"/v1/completions", "", body, &resp)
			text, finish = resp.Choices[0].Text, *resp.Choices[0].FinishReason
		}
		if text != jsonText(full[:cut]) || finish != "stop" {
			t.Errorf("stream=%v: %q (%s), want %q", stream, text, finish, full[:cut])
		}
	}
}

func TestEmbeddings(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	var f EmbeddingResponse
	if code := post(t, ts.URL+"/v1/embeddings", "", map[string]any{"model": "tiny", "input": []string{"hello", "world!"}}, &f); code != 200 {
		t.Fatalf("%d %+v", code, f)
	}
	if len(f.Data) != 2 || f.Usage.PromptTokens != 11 || f.Data[1].Index != 1 {
		t.Fatalf("%+v", f)
	}
	vec := f.Data[0].Embedding.([]any)
	if len(vec) != 128 {
		t.Fatalf("dim %d", len(vec))
	}
	var b EmbeddingResponse
	post(t, ts.URL+"/v1/embeddings", "", map[string]any{"model": "tiny", "input": "hello", "encoding_format": "base64"}, &b)
	raw, err := base64.StdEncoding.DecodeString(b.Data[0].Embedding.(string))
	if err != nil || len(raw) != 4*128 {
		t.Fatalf("base64: %v %d", err, len(raw))
	}
	for i := range 128 {
		x := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if float64(x) != vec[i].(float64) && math.Abs(float64(x)-vec[i].(float64)) > 1e-6 {
			t.Fatalf("dim %d: base64 %v, float %v", i, x, vec[i])
		}
	}
}

// TestErrors sends bad requests and checks each status and OpenAI-shaped
// error, and that the server keeps serving.
func TestErrors(t *testing.T) {
	ts := startServer(t, Config{APIKeys: []string{"k1"}, MaxBodyBytes: 4096, MaxTokens: 100}, infer.EngineConfig{})
	long := strings.Repeat("x", 300)
	chat := func(extra map[string]any) map[string]any {
		b := map[string]any{"model": "tiny", "messages": []map[string]any{{"role": "user", "content": "hi"}}, "max_tokens": 4}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	for _, tc := range []struct {
		name, path, key string
		body            any
		status          int
		code, param     string
	}{
		{"no key", "/v1/chat/completions", "", chat(nil), 401, "", ""},
		{"bad key", "/v1/chat/completions", "nope", chat(nil), 401, "invalid_api_key", ""},
		{"malformed json", "/v1/chat/completions", "k1", `{"model": "tiny", "messages": [`, 400, "", ""},
		{"not json", "/v1/chat/completions", "k1", `hello`, 400, "", ""},
		{"wrong type", "/v1/chat/completions", "k1", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":"lots"}`, 400, "", "max_tokens"},
		{"wrong content type", "/v1/chat/completions", "k1", `{"model":"tiny","messages":[{"role":"user","content":7}]}`, 400, "", ""},
		{"unknown model", "/v1/chat/completions", "k1", map[string]any{"model": "gpt-9", "messages": []map[string]string{{"role": "user", "content": "hi"}}}, 404, "model_not_found", "model"},
		{"no messages", "/v1/chat/completions", "k1", map[string]any{"model": "tiny", "messages": []any{}}, 400, "", "messages"},
		{"bad role", "/v1/chat/completions", "k1", map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "wizard", "content": "hi"}}}, 400, "", "messages[0].role"},
		{"oversize prompt", "/v1/chat/completions", "k1", map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "user", "content": long}}}, 400, "context_length_exceeded", "messages"},
		{"prompt plus max_tokens", "/v1/completions", "k1", map[string]any{"model": "tiny", "prompt": strings.Repeat("y", 200), "max_tokens": 80}, 400, "context_length_exceeded", "prompt"},
		{"max_tokens over limit", "/v1/chat/completions", "k1", chat(map[string]any{"max_tokens": 101}), 400, "", "max_tokens"},
		{"temperature", "/v1/chat/completions", "k1", chat(map[string]any{"temperature": 3}), 400, "", "temperature"},
		{"n", "/v1/chat/completions", "k1", chat(map[string]any{"n": 0}), 400, "", "n"},
		{"top_logprobs without logprobs", "/v1/chat/completions", "k1", chat(map[string]any{"top_logprobs": 2}), 400, "", "top_logprobs"},
		{"response_format", "/v1/chat/completions", "k1", chat(map[string]any{"response_format": map[string]any{"type": "xml"}}), 400, "", "response_format.type"},
		{"body too large", "/v1/chat/completions", "k1", chat(map[string]any{"user": strings.Repeat("z", 5000)}), 413, "", ""},
		{"token id outside vocab", "/v1/completions", "k1", map[string]any{"model": "llama", "prompt": []int{1, 9999}}, 400, "", "prompt"},
		{"empty prompt", "/v1/completions", "k1", map[string]any{"model": "tiny", "prompt": ""}, 400, "", "prompt"},
		{"embedding too long", "/v1/embeddings", "k1", map[string]any{"model": "tiny", "input": long}, 400, "context_length_exceeded", "input"},
		{"unknown route", "/v1/nothing", "k1", map[string]any{}, 404, "", ""},
		{"wrong method", "/v1/models", "k1", map[string]any{}, 405, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e ErrorBody
			code := post(t, ts.URL+tc.path, tc.key, tc.body, &e)
			if code != tc.status || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("status %d (want %d), error %+v", code, tc.status, e.Error)
			}
			if tc.code != "" && (e.Error.Code == nil || *e.Error.Code != tc.code) {
				t.Errorf("code %v, want %s", e.Error.Code, tc.code)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Errorf("param %v, want %s (%s)", e.Error.Param, tc.param, e.Error.Message)
			}
		})
	}
	// Still serving.
	var resp ChatResponse
	if code := post(t, ts.URL+"/v1/chat/completions", "k1", chat(nil), &resp); code != 200 {
		t.Fatalf("after the errors: %d", code)
	}
}

// TestClientDisconnect drops a stream mid-way: the engine frees the
// sequence and the server keeps serving.
func TestClientDisconnect(t *testing.T) {
	ts := startServer(t, Config{}, slowEngine)
	ctx, cancel := context.WithCancel(context.Background())
	b, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": "once upon", "max_tokens": 240, "stream": true, "temperature": 0, "ignore_eos": true})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/completions", bytes.NewReader(b))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	tiny := ts.models["tiny"].Engine
	deadline := time.Now().Add(10 * time.Second)
	for tiny.Stats().Running > 0 || tiny.Stats().BlocksUsed > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sequence still running after the client left: %+v", tiny.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var out CompletionResponse
	if code := post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "llama", "prompt": "hi", "max_tokens": 3}, &out); code != 200 {
		t.Fatalf("after disconnect: %d", code)
	}
	// The handler records the cancelled generation once the engine has
	// ended it (unless the model happened to stop by itself first).
	deadline = time.Now().Add(10 * time.Second)
	for {
		c := ts.met.value("mai_finished_total", "model", "tiny", "reason", "cancelled")
		st := ts.met.value("mai_finished_total", "model", "tiny", "reason", "stop")
		if c == 1 || st > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the disconnected stream was not counted as cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcurrencyLimitAndShutdown(t *testing.T) {
	ts := startServer(t, Config{MaxConcurrent: 1}, slowEngine)
	// A long stream holds the only slot.
	b, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": "a", "max_tokens": 200, "stream": true, "temperature": 0, "ignore_eos": true})
	resp, err := httpClient.Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var e ErrorBody
	if code := post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "tiny", "prompt": "b", "max_tokens": 2}, &e); code != 429 {
		t.Fatalf("second request: %d %+v", code, e)
	}
	// Graceful shutdown lets the stream finish.
	stopped := make(chan struct{})
	go func() { ts.stop(t); close(stopped) }()
	defer func() { <-stopped }()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(bytes.TrimSpace(rest), []byte("data: [DONE]")) {
		t.Fatalf("stream cut by shutdown: ...%q", rest[max(0, len(rest)-200):])
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := httpClient.Get(ts.URL + "/health"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	var usage Usage
	for i := range 3 {
		var r CompletionResponse
		post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "tiny", "prompt": fmt.Sprintf("prompt %d", i), "max_tokens": 5 + i}, &r)
		usage.add(*r.Usage)
	}
	resp, err := httpClient.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`mai_requests_total{endpoint="completions",code="200"} 3`,
		fmt.Sprintf(`mai_generation_tokens_total{model="tiny"} %d`, usage.CompletionTokens),
		fmt.Sprintf(`mai_prompt_tokens_total{model="tiny"} %d`, usage.PromptTokens),
		`mai_time_to_first_token_seconds_count{model="tiny"} 3`,
		`mai_queue_depth{model="tiny"} 0`,
		`mai_kv_cache_usage_ratio{model="tiny"} 0`,
		`# TYPE mai_batch_size histogram`,
		`mai_inter_token_latency_seconds_bucket{model="tiny",le="+Inf"}`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

func TestJSONMode(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{})
	schema := json.RawMessage(`{"type":"object","properties":{"answer":{"enum":["yes","no"]},"score":{"type":"integer"}},"required":["answer","score"],"additionalProperties":false}`)
	done := 0
	for seed := range 4 {
		for _, rf := range []map[string]any{
			{"type": "json_object"},
			{"type": "json_schema", "json_schema": map[string]any{"name": "verdict", "schema": schema, "strict": true}},
		} {
			var resp ChatResponse
			code := post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "user", "content": "Answer in JSON."}},
				"max_tokens": 180, "seed": seed, "response_format": rf}, &resp)
			if code != 200 {
				t.Fatalf("%d %+v", code, resp)
			}
			text := *resp.Choices[0].Message.Content
			if *resp.Choices[0].FinishReason != "stop" {
				continue // a random model may pad until max_tokens
			}
			done++
			var v map[string]any
			dec := json.NewDecoder(strings.NewReader(text))
			dec.UseNumber() // valid JSON numbers may overflow float64
			if err := dec.Decode(&v); err != nil {
				t.Errorf("%v: %q is not JSON: %v", rf["type"], text, err)
				continue
			}
			if rf["type"] == "json_schema" {
				if a := v["answer"]; (a != "yes" && a != "no") || len(v) != 2 {
					t.Errorf("%q breaks the schema", text)
				}
				if s, ok := v["score"].(json.Number); !ok || strings.ContainsAny(string(s), ".eE") {
					t.Errorf("%q: score is not an integer", text)
				}
			}
		}
	}
	if done < 4 {
		t.Errorf("only %d of 8 JSON outputs finished", done)
	}
	var e ErrorBody
	if code := post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "user", "content": "x"}},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "x", "schema": map[string]any{"type": "nope"}}}}, &e); code != 400 {
		t.Errorf("bad schema: %d %+v", code, e)
	}
}

// slowEngine makes every engine step take at least 5 ms: a generation of
// hundreds of tokens then outlasts what a test does meanwhile (a timeout,
// a disconnect, a second request) however fast the kernels are. Such tests
// also set ignore_eos, so that end-of-text cannot end it early.
var slowEngine = infer.EngineConfig{OnStep: func(infer.StepStats) { time.Sleep(5 * time.Millisecond) }}

func TestRequestTimeout(t *testing.T) {
	ts := startServer(t, Config{RequestTimeout: 50 * time.Millisecond}, slowEngine)
	var e ErrorBody
	code := post(t, ts.URL+"/v1/completions", "", map[string]any{"model": "tiny", "prompt": "slow", "max_tokens": 200, "ignore_eos": true}, &e)
	if code != http.StatusGatewayTimeout || e.Error.Type != "server_error" {
		t.Fatalf("%d %+v", code, e)
	}
	// A stream that times out ends with an error event.
	evs := sseEvents(t, ts.URL+"/v1/completions", map[string]any{"model": "tiny", "prompt": "slow", "max_tokens": 200, "ignore_eos": true, "stream": true})
	if last := evs[len(evs)-1]; !strings.Contains(last, `"error"`) {
		t.Errorf("stream ended with %q", last)
	}
}

func TestChatREPL(t *testing.T) {
	ts := startServer(t, Config{APIKeys: []string{"k"}}, infer.EngineConfig{})
	in := strings.NewReader("hello\n/system Be brief.\nhi again\n/reset\n/bogus\nlast\n")
	var out bytes.Buffer
	err := Chat(context.Background(), ChatOptions{URL: ts.URL, Model: "tiny", APIKey: "k", Temperature: 0, MaxTokens: 5, In: in, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(system prompt set, history cleared)", "(history cleared)", "(commands: /reset, /system TEXT, /exit)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "> "); n != 7 {
		t.Errorf("%d prompts in:\n%s", n, out.String())
	}
	// A wrong key is reported, and the chat goes on.
	out.Reset()
	Chat(context.Background(), ChatOptions{URL: ts.URL, Model: "tiny", APIKey: "bad", In: strings.NewReader("x\n"), Out: &out})
	if !strings.Contains(out.String(), "error: Incorrect API key provided. (HTTP 401)") {
		t.Errorf("wrong key: %s", out.String())
	}
	// A model folder, served in-process.
	dir, _ := byteModelDir()
	out.Reset()
	if err := Chat(context.Background(), ChatOptions{Dir: dir, MaxTokens: 3, In: strings.NewReader("hey\n/exit\n"), Out: &out}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "error") {
		t.Errorf("local chat: %s", out.String())
	}
}

// TestBPEModel serves a model whose folder holds a trained BPE tokenizer
// (tokenizer.json with ChatML special tokens): chat through its template,
// the turn delimiter as an end-of-sequence id, multi-byte tokens in
// logprobs and in JSON-constrained decoding.
func TestBPEModel(t *testing.T) {
	corpus := []string{}
	for i := range 200 {
		corpus = append(corpus, fmt.Sprintf(`{"name": "item %d", "ok": true, "tags": ["a", "b"]} hello world, the quick brown fox %d`, i, i*7))
	}
	tk, err := tokenizer.Train(context.Background(), slices.Values(corpus), tokenizer.TrainOptions{VocabSize: 400})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tk.Save(dir); err != nil {
		t.Fatal(err)
	}
	cfg, _ := model.Preset("tiny")
	cfg.Vocab = tk.VocabSize()
	imEnd, ok := tk.SpecialID("<|im_end|>")
	if !ok {
		t.Fatal("no <|im_end|>")
	}
	m, err := model.New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	if err := m.Save(dir, "f32", 0); err != nil {
		t.Fatal(err)
	}
	mm, err := LoadModel("bpe", dir, "", infer.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mm.codec.eos, int32(imEnd)) || len(mm.codec.chatStops) != 0 {
		t.Errorf("eos %v, chat stops %v", mm.codec.eos, mm.codec.chatStops)
	}
	s, err := New(Config{Log: quietLog()}, mm)
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, s)
	var resp ChatResponse
	if code := post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "bpe", "max_tokens": 20, "temperature": 0, "logprobs": true,
		"messages": []map[string]string{{"role": "user", "content": "hello world"}}}, &resp); code != 200 {
		t.Fatalf("%d %+v", code, resp)
	}
	// The prompt is the template's text with <|im_start|> as one id.
	want := tk.EncodeWithSpecial("<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n")
	if resp.Usage.PromptTokens != len(want) {
		t.Errorf("prompt tokens %d, want %d", resp.Usage.PromptTokens, len(want))
	}
	var joined string
	for _, lp := range resp.Choices[0].Logprobs.Content {
		joined += lp.Token
	}
	if joined != *resp.Choices[0].Message.Content {
		t.Errorf("logprob tokens %q do not add up to the content %q", joined, *resp.Choices[0].Message.Content)
	}
	done := 0
	for seed := range 6 {
		var js ChatResponse
		post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "bpe", "max_tokens": 150, "seed": seed,
			"response_format": map[string]any{"type": "json_object"},
			"messages":        []map[string]string{{"role": "user", "content": "json"}}}, &js)
		if *js.Choices[0].FinishReason != "stop" {
			continue
		}
		done++
		dec := json.NewDecoder(strings.NewReader(*js.Choices[0].Message.Content))
		dec.UseNumber()
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("seed %d: %q: %v", seed, *js.Choices[0].Message.Content, err)
		}
	}
	if done == 0 {
		t.Error("no JSON output finished")
	}
}
