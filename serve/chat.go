package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"net/http"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/tokenizer"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req ChatRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return err
	}
	if len(req.Messages) == 0 {
		return badRequest("messages", "messages must be a non-empty list.")
	}
	var p params
	if err := s.samplingParams(&p, req.Temperature, req.TopP, req.TopK, req.MinP, req.RepetitionPenalty, req.Seed, req.N); err != nil {
		return err
	}
	p.ignoreEOS = req.IgnoreEOS
	mt, param := req.MaxCompletionTokens, "max_completion_tokens"
	if mt == nil {
		mt, param = req.MaxTokens, "max_tokens"
	}
	if err := s.maxTokensParam(&p, mt, math.MaxInt32, 1, param); err != nil {
		return err
	}
	if p.stops, err = stopsParam(req.Stop); err != nil {
		return err
	}
	p.logprobs = req.Logprobs
	if req.TopLogprobs != nil {
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return badRequest("top_logprobs", "top_logprobs must be between 0 and 20.")
		}
		if !req.Logprobs {
			return badRequest("top_logprobs", "top_logprobs requires logprobs to be true.")
		}
		p.topLogprobs = *req.TopLogprobs
	}
	if p.constraint, err = constraintFor(m, req.ResponseFormat); err != nil {
		return err
	}
	tools, err := toolsFor(req.Tools, req.ToolChoice)
	if err != nil {
		return err
	}
	msgs, err := chatMessages(req.Messages, m.codec.template)
	if err != nil {
		return err
	}
	text, err := m.codec.renderChat(msgs, tools)
	if err != nil {
		return badRequest("messages", "Could not apply the model's chat template: %v", err)
	}
	prompt := m.codec.encodeTemplated(text)
	stops := p.stops
	if p.constraint == nil { // constrained JSON ends by itself
		stops = append(append([]string(nil), p.stops...), m.codec.chatStops...)
	}

	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	var choices []*choice
	for i := 0; i < p.n; i++ {
		c, err := s.submit(ctx, m, &p, prompt, i, i, stops)
		if err != nil {
			return err
		}
		if len(tools) > 0 {
			c.ts.freeze = []string{toolCallOpen}
		}
		choices = append(choices, c)
	}
	id, created := newID("chatcmpl-"), time.Now().Unix()
	if req.Stream {
		return s.streamChat(w, ctx, m, &req, &p, start, id, created, choices, len(tools) > 0)
	}
	if err := s.run(ctx, m, start, choices, func(event) error { return nil }); err != nil {
		return err
	}
	resp := ChatResponse{ID: id, Object: "chat.completion", Created: created, Model: m.Name, SystemFingerprint: fingerprint}
	for _, c := range choices {
		content := c.ts.text
		reason := c.final.FinishReason
		msg := &OutMessage{Role: "assistant"}
		if len(tools) > 0 {
			var calls []ToolCall
			content, calls = parseToolCalls(content)
			if len(calls) > 0 {
				msg.ToolCalls = calls
				reason = "tool_calls"
			}
		}
		if content != "" || len(msg.ToolCalls) == 0 {
			msg.Content = ptr(content)
		}
		ch := ChatChoice{Index: c.index, Message: msg, FinishReason: ptr(reason)}
		if p.logprobs {
			ch.Logprobs = &ChatLogprobs{Content: chatLogprobs(m, c.toks[:min(len(c.toks), c.ts.inText(len(c.ts.text)))], p.topLogprobs), Refusal: nil}
		}
		resp.Choices = append(resp.Choices, ch)
	}
	u := s.usage(m, choices, p.n)
	resp.Usage = &u
	return writeJSON(w, resp)
}

const fingerprint = "fp_mai"

func (s *Server) streamChat(w http.ResponseWriter, ctx context.Context, m *Model, req *ChatRequest, p *params, start time.Time, id string, created int64, choices []*choice, tools bool) error {
	out := newSSE(w)
	chunk := func(ch ChatChoice) error {
		b, err := json.Marshal(ChatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: m.Name,
			SystemFingerprint: fingerprint, Choices: []ChatChoice{ch}})
		if err != nil {
			return err
		}
		return out.send(b)
	}
	for _, c := range choices {
		if err := chunk(ChatChoice{Index: c.index, Delta: &OutMessage{Role: "assistant", Content: ptr("")}}); err != nil {
			return nil // the client went away
		}
	}
	err := s.run(ctx, m, start, choices, func(ev event) error {
		// Logprobs go out with the text their tokens start in: held-back
		// text (a possible stop string) holds back its tokens' too.
		var lps []infer.Token
		if upto := min(ev.lp, len(ev.c.toks)); upto > ev.c.lpSent {
			lps, ev.c.lpSent = ev.c.toks[ev.c.lpSent:upto], upto
		}
		if ev.delta != "" || (p.logprobs && len(lps) > 0) {
			ch := ChatChoice{Index: ev.c.index, Delta: &OutMessage{Content: ptr(ev.delta)}}
			if p.logprobs {
				ch.Logprobs = &ChatLogprobs{Content: chatLogprobs(m, lps, p.topLogprobs)}
			}
			if err := chunk(ch); err != nil {
				return err
			}
		}
		if !ev.done {
			return nil
		}
		reason := ev.c.final.FinishReason
		if tools {
			// The text from the first <tool_call> on was held back.
			rest, calls := parseToolCalls(ev.c.ts.text[ev.c.ts.sent:])
			if rest != "" {
				if err := chunk(ChatChoice{Index: ev.c.index, Delta: &OutMessage{Content: ptr(rest)}}); err != nil {
					return err
				}
			}
			if len(calls) > 0 {
				for i := range calls {
					calls[i].Index = ptr(i)
				}
				reason = "tool_calls"
				if err := chunk(ChatChoice{Index: ev.c.index, Delta: &OutMessage{ToolCalls: calls}}); err != nil {
					return err
				}
			}
		}
		return chunk(ChatChoice{Index: ev.c.index, Delta: &OutMessage{}, FinishReason: ptr(reason)})
	})
	if err != nil {
		if ctx.Err() != nil && r0(ctx) {
			return nil // the client went away: nothing to tell it
		}
		ae, ok := err.(*APIError)
		if !ok {
			s.cfg.Log.Error("stream failed", "err", err)
			ae = apiErr(http.StatusInternalServerError, "server_error", "", "The server had an error while processing your request.")
		}
		b, _ := json.Marshal(ErrorBody{Error: *ae})
		out.send(b)
		return nil
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := s.usage(m, choices, p.n)
		b, _ := json.Marshal(ChatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: m.Name,
			SystemFingerprint: fingerprint, Choices: []ChatChoice{}, Usage: &u})
		out.send(b)
	} else {
		s.usage(m, choices, p.n)
	}
	out.done()
	return nil
}

// r0 reports whether ctx ended because its client went away (not a timeout).
func r0(ctx context.Context) bool { return ctx.Err() == context.Canceled }

// chatLogprobs converts engine tokens to the chat logprobs shape.
func chatLogprobs(m *Model, toks []infer.Token, top int) []ChatTokenLogprob {
	out := make([]ChatTokenLogprob, 0, len(toks))
	for _, t := range toks {
		e := tokenLogprob(m, t.ID, t.Logprob)
		if top > 0 {
			e.TopLogprobs = make([]ChatTokenLogprob, 0, len(t.Top))
			for _, a := range t.Top[:min(top, len(t.Top))] {
				e.TopLogprobs = append(e.TopLogprobs, tokenLogprob(m, a.ID, a.Logprob))
			}
		} else {
			e.TopLogprobs = []ChatTokenLogprob{}
		}
		out = append(out, e)
	}
	return out
}

func tokenLogprob(m *Model, id int32, lp float32) ChatTokenLogprob {
	text := m.codec.tokenText(id)
	b := make([]int, len(text))
	for i := 0; i < len(text); i++ {
		b[i] = int(text[i])
	}
	return ChatTokenLogprob{Token: text, Logprob: float64(lp), Bytes: b}
}

// chatMessages converts API messages to template messages: content parts
// joined, "developer" as "system", assistant tool calls and tool results in
// the Hermes/Qwen text form.
func chatMessages(in []ChatMessage, template string) ([]tokenizer.Message, error) {
	toolRole := strings.Contains(template, "'tool'") || strings.Contains(template, `"tool"`)
	out := make([]tokenizer.Message, 0, len(in))
	for i, msg := range in {
		role := msg.Role
		content := msg.Content.Text
		switch role {
		case "system", "user":
		case "developer":
			role = "system"
		case "assistant":
			for _, tc := range msg.ToolCalls {
				args := tc.Function.Arguments
				if args == "" {
					args = "{}"
				}
				if !json.Valid([]byte(args)) {
					return nil, badRequest(fmt.Sprintf("messages[%d].tool_calls", i), "tool call arguments must be a JSON text.")
				}
				if content != "" {
					content += "\n"
				}
				content += fmt.Sprintf("%s\n{\"name\": %q, \"arguments\": %s}\n%s", toolCallOpen, tc.Function.Name, args, toolCallClose)
			}
		case "tool", "function":
			content = "<tool_response>\n" + content + "\n</tool_response>"
			if !toolRole {
				role = "user"
			} else {
				role = "tool"
			}
		case "":
			return nil, badRequest(fmt.Sprintf("messages[%d].role", i), "Missing required parameter: 'messages[%d].role'.", i)
		default:
			return nil, badRequest(fmt.Sprintf("messages[%d].role", i), "Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.", role)
		}
		out = append(out, tokenizer.Message{Role: role, Content: content})
	}
	return out, nil
}

const (
	toolCallOpen  = "<tool_call>"
	toolCallClose = "</tool_call>"
)

// toolsFor validates tools and tool_choice, returning the tools to offer
// ("none" offers none).
func toolsFor(tools []Tool, choice json.RawMessage) ([]Tool, error) {
	for i, t := range tools {
		if t.Type != "function" {
			return nil, badRequest(fmt.Sprintf("tools[%d].type", i), "Invalid value: '%s'. Supported values are: 'function'.", t.Type)
		}
		if t.Function.Name == "" {
			return nil, badRequest(fmt.Sprintf("tools[%d].function.name", i), "Missing required parameter: 'tools[%d].function.name'.", i)
		}
		if len(t.Function.Parameters) > 0 && !json.Valid(t.Function.Parameters) {
			return nil, badRequest(fmt.Sprintf("tools[%d].function.parameters", i), "parameters must be a JSON schema object.")
		}
	}
	if len(choice) > 0 {
		var s string
		if json.Unmarshal(choice, &s) == nil {
			switch s {
			case "none":
				return nil, nil
			case "auto", "required":
			default:
				return nil, badRequest("tool_choice", "Invalid value: '%s'. Supported values are: 'none', 'auto' and 'required'.", s)
			}
		} else {
			var named struct {
				Type     string `json:"type"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if err := json.Unmarshal(choice, &named); err != nil || named.Type != "function" {
				return nil, badRequest("tool_choice", "tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}.")
			}
			for _, t := range tools {
				if t.Function.Name == named.Function.Name {
					return []Tool{t}, nil
				}
			}
			return nil, badRequest("tool_choice", "tool_choice names function '%s', which is not among the tools.", named.Function.Name)
		}
	}
	return tools, nil
}

// parseToolCalls takes <tool_call>{"name":..., "arguments":...}</tool_call>
// blocks out of text. Blocks that are not valid calls stay in the text.
func parseToolCalls(text string) (string, []ToolCall) {
	var calls []ToolCall
	var rest strings.Builder
	for {
		i := strings.Index(text, toolCallOpen)
		if i < 0 {
			rest.WriteString(text)
			break
		}
		j := strings.Index(text[i:], toolCallClose)
		body := ""
		end := len(text)
		if j >= 0 {
			body = text[i+len(toolCallOpen) : i+j]
			end = i + j + len(toolCallClose)
		} else {
			body = text[i+len(toolCallOpen):] // generation ended inside the block
		}
		var call struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &call); err != nil || call.Name == "" {
			rest.WriteString(text[:end])
			text = text[end:]
			continue
		}
		args := string(call.Arguments)
		if args == "" || args == "null" {
			args = "{}"
		}
		rest.WriteString(text[:i])
		calls = append(calls, ToolCall{ID: newID("call_"), Type: "function", Function: FunctionCall{Name: call.Name, Arguments: args}})
		text = text[end:]
	}
	return strings.TrimSpace(rest.String()), calls
}
