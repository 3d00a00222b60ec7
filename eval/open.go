package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/tokenizer"
)

// BackendSpec says which model to evaluate: a local folder or a server.
type BackendSpec struct {
	Model       string // model folder, training run directory or GGUF file
	Server      string // OpenAI-compatible server URL
	ServerModel string // model name on the server
	APIKey      string
	// Tokenizer for token-id prompts to a server: "byte", a tokenizer name
	// or a model/tokenizer folder ("" sends text).
	Tokenizer string
	MaxLength int // the server model's context (0: ask the server)
}

// OpenBackend opens the backend a spec describes.
func OpenBackend(ctx context.Context, s BackendSpec) (Backend, error) {
	switch {
	case s.Model != "" && s.Server != "":
		return nil, fmt.Errorf("give --model or --server, not both")
	case s.Model != "":
		return OpenLocal(s.Model, LocalOptions{})
	case s.Server != "":
		opt := ServerOptions{URL: s.Server, Model: s.ServerModel, APIKey: s.APIKey, MaxLength: s.MaxLength}
		if s.Tokenizer != "" {
			c, err := OpenCodec(s.Tokenizer)
			if err != nil {
				return nil, err
			}
			opt.Tokenizer = c
		}
		return NewServer(ctx, opt)
	}
	return nil, fmt.Errorf("no model: give --model DIR or --server URL")
}

// OpenCodec returns a tokenizer by name ("byte", "gpt2", ...), from a
// model or tokenizer folder, or from a GGUF file's metadata.
func OpenCodec(nameOrPath string) (infer.Codec, error) {
	if nameOrPath == "byte" {
		return infer.ByteCodec{}, nil
	}
	if model.IsGGUF(nameOrPath) {
		c, _, err := modelSource{path: nameOrPath, gguf: true}.codec()
		return c, err
	}
	if st, err := os.Stat(nameOrPath); err == nil && st.IsDir() {
		if c, err := infer.OpenCodec(nameOrPath); err == nil {
			return c, nil
		}
	}
	t, err := tokenizer.Load(nameOrPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", nameOrPath, err)
	}
	return t, nil
}

// localCodec opens a model folder's tokenizer, and the chat template that
// goes with it when there is one.
func localCodec(dir string) (infer.Codec, func([]Message) (string, error), error) {
	codec, err := infer.OpenCodec(dir)
	hasHF := false
	if _, e := os.Stat(filepath.Join(dir, "tokenizer.json")); e == nil {
		hasHF = true
	}
	if err != nil && !hasHF {
		return nil, nil, err
	}
	if !hasHF {
		return codec, nil, nil
	}
	tok, terr := tokenizer.Load(dir)
	if terr != nil {
		if err != nil {
			return nil, nil, terr
		}
		return codec, nil, nil
	}
	if codec == nil {
		codec = tok
	}
	chat := func(msgs []Message) (string, error) {
		tm := make([]tokenizer.Message, len(msgs))
		for i, m := range msgs {
			tm[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
		}
		s, err := tok.ApplyChatTemplate(tm, true)
		if errors.Is(err, tokenizer.ErrNoChatTemplate) {
			return ChatML(msgs)
		}
		return s, err
	}
	return codec, chat, nil
}

// LoadTasks loads a comma-separated list of built-in task names and task
// files ("all" means every built-in task). A name may end in ":N" to keep a
// fixed sample of N items (seed 0), as in go-ppl:5.
func LoadTasks(list string) ([]*Task, error) {
	var tasks []*Task
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if n == "all" {
			for _, b := range Builtin() {
				t, err := LoadTask(b)
				if err != nil {
					return nil, err
				}
				tasks = append(tasks, t)
			}
			continue
		}
		limit := 0
		if i := strings.LastIndex(n, ":"); i > 0 {
			if v, err := strconv.Atoi(n[i+1:]); err == nil && v > 0 {
				n, limit = n[:i], v
			}
		}
		t, err := LoadTask(n)
		if err != nil {
			return nil, err
		}
		if limit > 0 {
			t.Items = items(t, Options{Limit: limit})
		}
		tasks = append(tasks, t)
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("no tasks: give --tasks with names (%s) or task files", strings.Join(Builtin(), ", "))
	}
	return tasks, nil
}

// ReadTexts reads held-out text: each file whole, each line's "text" of a
// .jsonl file, and every text file under a folder.
func ReadTexts(paths []string) ([]string, error) {
	var texts []string
	add := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".jsonl") {
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
			for n := 1; sc.Scan(); n++ {
				var d struct {
					Text string `json:"text"`
				}
				if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
					return fmt.Errorf("%s: line %d: %w", p, n, err)
				}
				if d.Text != "" {
					texts = append(texts, d.Text)
				}
			}
			return sc.Err()
		}
		if utf8.Valid(b) && len(b) > 0 {
			texts = append(texts, string(b))
		}
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("text: %w", err)
		}
		if !st.IsDir() {
			if err := add(p); err != nil {
				return nil, fmt.Errorf("text: %w", err)
			}
			continue
		}
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") && q != p {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() {
				return add(q)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("text: %w", err)
		}
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("text: no UTF-8 text found in %v", paths)
	}
	return texts, nil
}

// ParseIDs reads comma-separated token ids.
func ParseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := strconv.ParseInt(p, 10, 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a token id", p)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no token ids")
	}
	return ids, nil
}
