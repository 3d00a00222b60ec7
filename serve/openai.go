package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The request and response bodies of the OpenAI API, as far as MAI serves
// it. Fields a client may send that MAI does not use are accepted and
// ignored, as the API does for unknown parameters.

// ChatRequest is the body of POST /v1/chat/completions.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                int             `json:"top_k"`
	MinP                float64         `json:"min_p"`
	RepetitionPenalty   float64         `json:"repetition_penalty"`
	IgnoreEOS           bool            `json:"ignore_eos"` // extension (vLLM, llama.cpp): generate past end-of-text
	N                   *int            `json:"n"`
	Stop                StringList      `json:"stop"`
	Seed                *int64          `json:"seed"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	Logprobs            bool            `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	ResponseFormat      *ResponseFormat `json:"response_format"`
	Tools               []Tool          `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	User                string          `json:"user"`
}

// ChatMessage is one message of a chat. Content is a string or a list of
// parts ({"type":"text","text":...}); assistant messages may carry tool calls.
type ChatMessage struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Refusal    *string    `json:"refusal,omitempty"`
}

// Content is message content: a string, or text parts joined.
type Content struct {
	Text string
	Null bool
}

// UnmarshalJSON accepts a string, null, or a list of parts.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*c = Content{Null: true}
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &c.Text)
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or a list of content parts")
	}
	c.Text = ""
	for _, p := range parts {
		switch {
		case p.Type == "text" && p.Text != nil:
			c.Text += *p.Text
		case p.Type == "text":
			return fmt.Errorf("a text content part needs a text field")
		default:
			return fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
	}
	return nil
}

// MarshalJSON writes a string, or null.
func (c Content) MarshalJSON() ([]byte, error) {
	if c.Null {
		return []byte("null"), nil
	}
	return json.Marshal(c.Text)
}

// StringList is a string or a list of strings (the stop parameter).
type StringList []string

// UnmarshalJSON accepts a string, a list of strings, or null.
func (s *StringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("must be a string or a list of strings")
	}
	*s = many
	return nil
}

// Prompt is the prompt of a completion or the input of an embedding: a
// string, a list of strings, a list of token ids, or a list of such lists.
type Prompt struct {
	Texts []string
	IDs   [][]int32
}

// Len is the number of prompts.
func (p *Prompt) Len() int { return len(p.Texts) + len(p.IDs) }

// UnmarshalJSON accepts the four shapes.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*p = Prompt{}
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p.Texts = []string{s}
		return nil
	case '[':
	default:
		return fmt.Errorf("must be a string, a list of strings, a list of token ids or a list of lists of token ids")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		return nil
	}
	first := bytes.TrimSpace(raw[0])
	switch {
	case len(first) > 0 && first[0] == '"':
		return json.Unmarshal(b, &p.Texts)
	case len(first) > 0 && first[0] == '[':
		if err := json.Unmarshal(b, &p.IDs); err != nil {
			return fmt.Errorf("a list of token-id lists must hold only integers")
		}
		return nil
	default:
		var one []int32
		if err := json.Unmarshal(b, &one); err != nil {
			return fmt.Errorf("a list of token ids must hold only integers")
		}
		p.IDs = [][]int32{one}
		return nil
	}
}

// StreamOptions asks for a final usage chunk when streaming.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat selects plain text, any JSON object, or JSON that follows
// a schema.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema"`
}

// JSONSchema names a schema for structured output.
type JSONSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict bool            `json:"strict"`
}

// Tool is a function the model may call.
type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a function's name and JSON-schema parameters.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is a call the model made.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is a called function's name and arguments (a JSON text).
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ChatResponse is a chat completion.
type ChatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []ChatChoice `json:"choices"`
	Usage             *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one choice of a chat completion, or of a streamed chunk
// (with Delta instead of Message).
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      *OutMessage   `json:"message,omitempty"`
	Delta        *OutMessage   `json:"delta,omitempty"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

// OutMessage is the assistant's message (or a streamed delta of it).
type OutMessage struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	Refusal   *string    `json:"refusal,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChatLogprobs holds per-token log-probabilities of a chat choice.
type ChatLogprobs struct {
	Content []ChatTokenLogprob `json:"content"`
	Refusal []ChatTokenLogprob `json:"refusal"`
}

// ChatTokenLogprob is one token with its log-probability and alternatives.
type ChatTokenLogprob struct {
	Token       string             `json:"token"`
	Logprob     float64            `json:"logprob"`
	Bytes       []int              `json:"bytes"`
	TopLogprobs []ChatTokenLogprob `json:"top_logprobs,omitempty"`
}

// Usage counts tokens.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails says how many prompt tokens came from the prefix cache.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func (u *Usage) add(v Usage) {
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.TotalTokens += v.TotalTokens
	if v.PromptTokensDetails != nil {
		if u.PromptTokensDetails == nil {
			u.PromptTokensDetails = &PromptTokensDetails{}
		}
		u.PromptTokensDetails.CachedTokens += v.PromptTokensDetails.CachedTokens
	}
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model             string          `json:"model"`
	Prompt            Prompt          `json:"prompt"`
	MaxTokens         *int            `json:"max_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	TopK              int             `json:"top_k"`
	MinP              float64         `json:"min_p"`
	RepetitionPenalty float64         `json:"repetition_penalty"`
	IgnoreEOS         bool            `json:"ignore_eos"` // extension (vLLM, llama.cpp): generate past end-of-text
	N                 *int            `json:"n"`
	Stop              StringList      `json:"stop"`
	Seed              *int64          `json:"seed"`
	Stream            bool            `json:"stream"`
	StreamOptions     *StreamOptions  `json:"stream_options"`
	Logprobs          *int            `json:"logprobs"`
	Echo              bool            `json:"echo"`
	ResponseFormat    *ResponseFormat `json:"response_format"`
	User              string          `json:"user"`
}

// CompletionResponse is a text completion (or a streamed chunk of one).
type CompletionResponse struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []CompletionChoice `json:"choices"`
	Usage             *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is one completion.
type CompletionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

// CompletionLogprobs are the legacy completions log-probabilities: parallel
// lists over tokens (the first prompt token of an echo has null).
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model          string `json:"model"`
	Input          Prompt `json:"input"`
	EncodingFormat string `json:"encoding_format"`
	Dimensions     *int   `json:"dimensions"`
	User           string `json:"user"`
}

// EmbeddingResponse lists embeddings.
type EmbeddingResponse struct {
	Object string      `json:"object"`
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  Usage       `json:"usage"`
}

// Embedding is one vector: a list of floats, or base64 of little-endian
// float32s.
type Embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// ModelInfo describes a served model.
type ModelInfo struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// MaxModelLen is the context length (as vLLM reports it).
	MaxModelLen int `json:"max_model_len"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string      `json:"object"`
	Data   []ModelInfo `json:"data"`
}

// ErrorBody is the OpenAI error envelope.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// APIError is an error as the OpenAI API reports it.
type APIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
	status  int
}

// Error returns the message.
func (e *APIError) Error() string { return e.Message }
