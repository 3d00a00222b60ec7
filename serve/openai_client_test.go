package serve

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/mai-llm/mai/infer"
)

// TestOpenAIGoClient drives the server with the official Go client,
// unmodified: models, chat (plain, streamed, JSON mode), completions with
// logprobs and echo, embeddings, and errors.
func TestOpenAIGoClient(t *testing.T) {
	ts := startServer(t, Config{APIKeys: []string{"sk-test"}}, infer.EngineConfig{})
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := context.Background()

	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[1].ID != "tiny" {
		t.Fatalf("models: %+v", page.Data)
	}

	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hi")},
		MaxTokens:   openai.Int(10),
		Temperature: openai.Float(0),
		Logprobs:    openai.Bool(true),
		TopLogprobs: openai.Int(3),
	}
	chat, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(chat.Choices) != 1 || chat.Usage.CompletionTokens < 1 || len(chat.Choices[0].Logprobs.Content) != int(chat.Usage.CompletionTokens) {
		t.Fatalf("chat: %s", chat.RawJSON())
	}
	for _, lp := range chat.Choices[0].Logprobs.Content {
		if len(lp.TopLogprobs) != 3 || lp.Logprob != lp.TopLogprobs[0].Logprob {
			t.Errorf("greedy token is not the top alternative: %+v", lp)
		}
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != chat.Choices[0].Message.Content || acc.Usage.CompletionTokens != chat.Usage.CompletionTokens {
		t.Errorf("stream (%d chunks): %q, usage %+v; want %q", chunks, acc.Choices[0].Message.Content, acc.Usage, chat.Choices[0].Message.Content)
	}

	// JSON mode: the reply is a JSON object (when it finishes in time).
	jp := openai.ChatCompletionNewParams{Model: "tiny", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("JSON please")},
		MaxTokens: openai.Int(150), Seed: openai.Int(3),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}}
	js, err := client.Chat.Completions.New(ctx, jp)
	if err != nil {
		t.Fatal(err)
	}
	if js.Choices[0].FinishReason == "stop" {
		var v map[string]any
		dec := json.NewDecoder(strings.NewReader(js.Choices[0].Message.Content))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Errorf("JSON mode: %q: %v", js.Choices[0].Message.Content, err)
		}
	} else if !strings.HasPrefix(strings.TrimSpace(js.Choices[0].Message.Content), "{") {
		t.Errorf("JSON mode: %q", js.Choices[0].Message.Content)
	}

	prompt, _ := llamaReference(t)
	toks := make([]int64, len(prompt))
	for i, v := range prompt {
		toks[i] = int64(v)
	}
	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:     "llama",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: toks},
		MaxTokens: openai.Int(1), Temperature: openai.Float(0), Logprobs: openai.Int(2), Echo: openai.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	lp := comp.Choices[0].Logprobs
	if len(lp.TokenLogprobs) != len(prompt)+1 || len(lp.TopLogprobs) != len(prompt)+1 || comp.Usage.PromptTokens != int64(len(prompt)) {
		t.Fatalf("completion logprobs (%d %d %d): %s", len(lp.TokenLogprobs), len(lp.TopLogprobs), comp.Usage.PromptTokens, comp.RawJSON())
	}

	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{"", openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "tiny",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "there"}}, EncodingFormat: format})
		if err != nil {
			t.Fatal(err)
		}
		if len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 128 || emb.Usage.PromptTokens != 10 {
			t.Fatalf("embeddings (%q): %d items, dim %d, usage %+v", format, len(emb.Data), len(emb.Data[0].Embedding), emb.Usage)
		}
	}

	// Errors come back as *openai.Error with the status and message.
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "no-such-model", Messages: params.Messages})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
	bad := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	if _, err := bad.Models.List(ctx); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("wrong key: %v", err)
	}
}
