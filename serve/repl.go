package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/mai-llm/mai/infer"
)

// ChatOptions configures the terminal chat (mai chat).
type ChatOptions struct {
	// URL is a server's base URL (http://host:port); or Dir names a model
	// folder to load and serve in-process.
	URL, Dir string
	// Model is the model name to ask the server for ("" picks its only one).
	Model  string
	APIKey string
	// System is the initial system prompt.
	System      string
	Temperature float64
	MaxTokens   int
	In          io.Reader
	Out         io.Writer
}

// Chat runs an interactive chat: each line is a user turn whose reply
// streams back; the history is kept. "/reset" clears it, "/system TEXT"
// sets the system prompt (and clears the history), "/exit" or end of input
// quits.
func Chat(ctx context.Context, o ChatOptions) error {
	if o.Out == nil || o.In == nil {
		return fmt.Errorf("chat: no input or output")
	}
	base := strings.TrimRight(o.URL, "/")
	if o.Dir != "" {
		m, err := LoadModel("local", o.Dir, "", infer.EngineConfig{MaxSeqs: 1})
		if err != nil {
			return err
		}
		s, err := New(Config{Log: quietLogger()}, m)
		if err != nil {
			m.Close()
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return fmt.Errorf("chat: %w", err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { s.Serve(sctx, ln); close(done) }()
		defer func() { cancel(); <-done }()
		base, o.Model = "http://"+ln.Addr().String(), "local"
	}
	if base == "" {
		return fmt.Errorf("chat: give a server URL or a model folder")
	}
	c := &chatClient{base: base, key: o.APIKey, http: &http.Client{}}
	system := o.System
	var history []map[string]string
	reset := func() {
		history = history[:0]
		if system != "" {
			history = append(history, map[string]string{"role": "system", "content": system})
		}
	}
	reset()
	fmt.Fprintln(o.Out, "Chat with the model. /reset clears the history, /system TEXT sets the system prompt, /exit quits.")
	in := bufio.NewScanner(o.In)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for {
		fmt.Fprint(o.Out, "> ")
		if !in.Scan() {
			fmt.Fprintln(o.Out)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch {
		case line == "":
			continue
		case line == "/exit" || line == "/quit":
			return nil
		case line == "/reset":
			reset()
			fmt.Fprintln(o.Out, "(history cleared)")
			continue
		case strings.HasPrefix(line, "/system"):
			system = strings.TrimSpace(strings.TrimPrefix(line, "/system"))
			reset()
			fmt.Fprintln(o.Out, "(system prompt set, history cleared)")
			continue
		case strings.HasPrefix(line, "/"):
			fmt.Fprintln(o.Out, "(commands: /reset, /system TEXT, /exit)")
			continue
		}
		history = append(history, map[string]string{"role": "user", "content": line})
		body := map[string]any{"model": o.Model, "messages": history, "stream": true, "temperature": o.Temperature}
		if o.MaxTokens > 0 {
			body["max_tokens"] = o.MaxTokens
		}
		reply, err := c.stream(ctx, body, o.Out)
		fmt.Fprintln(o.Out)
		if err != nil {
			history = history[:len(history)-1]
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(o.Out, "error: %v\n", err)
			continue
		}
		history = append(history, map[string]string{"role": "assistant", "content": reply})
	}
}

type chatClient struct {
	base, key string
	http      *http.Client
}

// stream posts a streaming chat request, writes the reply as it comes and
// returns it.
func (c *chatClient) stream(ctx context.Context, body any, out io.Writer) (string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e ErrorBody
		data, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return "", fmt.Errorf("%s (HTTP %d)", e.Error.Message, resp.StatusCode)
		}
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var reply strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			return reply.String(), nil
		}
		var chunk struct {
			ChatResponse
			Error *APIError `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return reply.String(), fmt.Errorf("bad event %q: %w", data, err)
		}
		if chunk.Error != nil {
			return reply.String(), fmt.Errorf("%s", chunk.Error.Message)
		}
		for _, ch := range chunk.Choices {
			if ch.Delta != nil && ch.Delta.Content != nil {
				reply.WriteString(*ch.Delta.Content)
				io.WriteString(out, *ch.Delta.Content)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return reply.String(), err
	}
	return reply.String(), fmt.Errorf("the stream ended without [DONE]")
}

// ParseModelFlag splits a --model value "NAME=DIR" (or a bare DIR, named
// after its last path element).
func ParseModelFlag(v string) (name, dir string, err error) {
	if n, d, ok := strings.Cut(v, "="); ok {
		if n == "" || d == "" {
			return "", "", fmt.Errorf("--model %q: want NAME=DIR", v)
		}
		return n, d, nil
	}
	if v == "" {
		return "", "", fmt.Errorf("--model: empty")
	}
	parts := strings.Split(strings.TrimRight(v, "/"), "/")
	return parts[len(parts)-1], v, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
