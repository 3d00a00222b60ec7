package serve

import (
	"encoding/json"
	"strings"
	"testing"
)

// byteDecode decodes ids as bytes (the byte-level tokenizer).
func byteDecode(ids []int32) string {
	b := make([]byte, len(ids))
	for i, v := range ids {
		b[i] = byte(v)
	}
	return string(b)
}

func TestTextStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		stops   []string
		freeze  []string
		want    []string // delta after each byte
		final   string   // the flushed rest
		stopped bool
	}{
		{"plain", "abc", nil, nil, []string{"a", "b", "c"}, "", false},
		{"stop held back then cut", "xy<ENDz", []string{"<END"}, nil, []string{"x", "y", "", "", "", ""}, "", true},
		{"false alarm released", "a<Eb", []string{"<END"}, nil, []string{"a", "", "", "<Eb"}, "", false},
		{"prefix at the end flushed", "a<E", []string{"<END"}, nil, []string{"a", "", ""}, "<E", false},
		{"utf-8 held until whole", "é€", nil, nil, []string{"", "é", "", "", "€"}, "", false},
		{"earliest of two stops", "abcd", []string{"cd", "bc"}, nil, []string{"a", "", ""}, "", true},
		{"freeze at tool call", "hi <tool_call>{}", nil, []string{"<tool_call>"}, []string{"h", "i", " ", "", "", "", "", "", "", "", "", "", "", "", "", ""}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTextStream(byteDecode, tc.stops)
			s.freeze = tc.freeze
			var got []string
			for i := 0; i < len(tc.in) && !s.stopped; i++ {
				got = append(got, s.push(int32(tc.in[i])))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("deltas %q, want %q", got, tc.want)
			}
			if f := s.flush(); f != tc.final || s.stopped != tc.stopped {
				t.Errorf("flush %q (stopped %v), want %q (%v)", f, s.stopped, tc.final, tc.stopped)
			}
		})
	}
}

func TestParseToolCalls(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		calls    []string // name(arguments)
	}{
		{"no calls here", "no calls here", nil},
		{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "", []string{`get_weather({"city": "Paris"})`}},
		{"Let me check.\n<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call><tool_call>{\"name\":\"b\"}</tool_call>", "Let me check.", []string{"a({})", "b({})"}},
		{"<tool_call>not json</tool_call> ok", "<tool_call>not json</tool_call> ok", nil},
		{"<tool_call>{\"name\":\"cut\",\"arguments\":{\"x\":1}}", "", []string{`cut({"x":1})`}}, // ended inside the block
	} {
		rest, calls := parseToolCalls(tc.in)
		var got []string
		for _, c := range calls {
			if c.Type != "function" || !strings.HasPrefix(c.ID, "call_") || !json.Valid([]byte(c.Function.Arguments)) {
				t.Errorf("%q: bad call %+v", tc.in, c)
			}
			got = append(got, c.Function.Name+"("+c.Function.Arguments+")")
		}
		if rest != tc.rest || strings.Join(got, ",") != strings.Join(tc.calls, ",") {
			t.Errorf("%q: rest %q calls %v, want %q %v", tc.in, rest, got, tc.rest, tc.calls)
		}
	}
}

func TestChatMessages(t *testing.T) {
	in := []ChatMessage{
		{Role: "developer", Content: Content{Text: "rules"}},
		{Role: "user", Content: Content{Text: "weather?"}},
		{Role: "assistant", Content: Content{Null: true}, ToolCalls: []ToolCall{{ID: "c1", Type: "function", Function: FunctionCall{Name: "w", Arguments: `{"c":"P"}`}}}},
		{Role: "tool", ToolCallID: "c1", Content: Content{Text: "sunny"}},
	}
	out, err := chatMessages(in, "{{ messages }}")
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Role != "system" || out[2].Content != "<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\":\"P\"}}\n</tool_call>" || out[3].Role != "user" || out[3].Content != "<tool_response>\nsunny\n</tool_response>" {
		t.Errorf("%+v", out)
	}
	if out, _ := chatMessages(in[3:], "{% if message['role'] == 'tool' %}"); out[0].Role != "tool" {
		t.Errorf("a template with a tool role should keep it: %+v", out)
	}
	if _, err := chatMessages([]ChatMessage{{Role: "assistant", ToolCalls: []ToolCall{{Function: FunctionCall{Name: "x", Arguments: "{"}}}}}, ""); err == nil {
		t.Error("invalid tool-call arguments accepted")
	}
}

// FuzzRequests decodes arbitrary bodies as every request type and runs the
// validation that does not need a model: nothing may panic.
func FuzzRequests(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stop":"x","tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`))
	f.Add([]byte(`{"model":"m","prompt":[[1,2],[3]],"logprobs":2,"echo":true,"stop":["a","b"]}`))
	f.Add([]byte(`{"input":["a","b"],"encoding_format":"base64"}`))
	f.Add([]byte(`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var c ChatRequest
		if json.Unmarshal(body, &c) == nil {
			chatMessages(c.Messages, "")
			toolsFor(c.Tools, c.ToolChoice)
		}
		var p CompletionRequest
		json.Unmarshal(body, &p)
		var e EmbeddingRequest
		json.Unmarshal(body, &e)
		parseToolCalls(string(body))
	})
}
