package serve

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
)

// scriptedModel builds a byte-level model that, after a prompt of exactly
// promptLen tokens, writes script greedily and then ends with EOS (256).
// It is a GPT-2-style model whose blocks add nothing: the last position's
// hidden state is its learned position embedding, a one-hot vector, and the
// output head maps position p to the byte the script wants after it.
func scriptedModel(t testing.TB, promptLen int, script string) *model.Model {
	t.Helper()
	n := promptLen + len(script) + 1
	cfg := model.Config{Family: "gpt2", Vocab: 257, Dim: n, Layers: 1, Heads: 1, KVHeads: 1, HeadDim: 8, FFN: 4, MaxSeq: n,
		Norm: "layernorm", NormEps: 1e-5, NormBias: true, Pos: "learned", MLP: "gelu", Act: "gelu_new",
		QKVBias: true, OutBias: true, MLPBias: true, BOS: -1, EOS: 256}
	m, err := model.New(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Tensors {
		if strings.HasSuffix(p.Name, "norm.weight") || strings.HasSuffix(p.Name, "layernorm.weight") {
			for i := range p.V.Data {
				p.V.Data[i] = 1
			}
		}
	}
	for pos := 0; pos < n; pos++ {
		m.Pos.Data[pos*n+pos] = 1
	}
	// Row promptLen-1+i predicts script[i]; the row after the script, EOS.
	for i := 0; i <= len(script); i++ {
		tok := 256
		if i < len(script) {
			tok = int(script[i])
		}
		m.Head.Data[tok*n+promptLen-1+i] = 1
	}
	return m
}

// TestToolCalls serves a model scripted to answer with a tool call and
// checks that the call comes back parsed, plain and streamed, and through
// the official Go client.
func TestToolCalls(t *testing.T) {
	call := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	tools := []Tool{{Type: "function", Function: ToolFunction{Name: "get_weather", Description: "Weather in a city",
		Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}}}
	msgs := []ChatMessage{{Role: "user", Content: Content{Text: "Weather in Paris?"}}}
	// The prompt the server will render, to script the model after it.
	k := newCodec(infer.ByteCodec{}, 257, 256)
	tm, err := chatMessages(msgs, k.template)
	if err != nil {
		t.Fatal(err)
	}
	text, err := k.renderChat(tm, tools)
	if err != nil {
		t.Fatal(err)
	}
	prompt := k.encodeTemplated(text)
	mm, err := NewModel("tools", scriptedModel(t, len(prompt), call), infer.ByteCodec{}, infer.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Log: quietLog()}, mm)
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, s)
	body := map[string]any{"model": "tools", "messages": msgs, "tools": tools, "temperature": 0}

	var resp ChatResponse
	if code := post(t, ts.URL+"/v1/chat/completions", "", body, &resp); code != 200 {
		t.Fatalf("%d %+v", code, resp)
	}
	ch := resp.Choices[0]
	if *ch.FinishReason != "tool_calls" || ch.Message.Content != nil || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("choice %+v", ch)
	}
	tc := ch.Message.ToolCalls[0]
	if tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city": "Paris"}` || tc.Type != "function" || tc.ID == "" {
		t.Errorf("tool call %+v", tc)
	}

	// Without tools the same text is plain content.
	var plain ChatResponse
	post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "tools", "messages": msgs, "tools": tools, "tool_choice": "none", "temperature": 0}, &plain)
	if plain.Choices[0].Message.Content == nil || len(plain.Choices[0].Message.ToolCalls) != 0 {
		t.Errorf("tool_choice none: %+v", plain.Choices[0])
	}

	// Streamed: no text leaks, then one tool_calls delta.
	body["stream"] = true
	var calls []ToolCall
	finish, content := "", ""
	for _, e := range sseEvents(t, ts.URL+"/v1/chat/completions", body) {
		if e == "[DONE]" {
			break
		}
		var c ChatResponse
		json.Unmarshal([]byte(e), &c)
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				content += *ch.Delta.Content
			}
			calls = append(calls, ch.Delta.ToolCalls...)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	if content != "" || finish != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Index == nil {
		t.Errorf("stream: content %q finish %q calls %+v", content, finish, calls)
	}

	// The official client sees a tool call.
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: "tools", Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: "get_weather", Description: openai.String("Weather in a city"),
			Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
		})}}
	got, err := client.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Choices[0].Message.ToolCalls) != 1 || got.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Errorf("client reply: %s", got.RawJSON())
	}
}
