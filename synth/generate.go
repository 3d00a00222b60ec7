package synth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/mai-llm/mai/data"
)

// Message is one message of an output record.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Logprobs (assistant messages, with Config.Logprobs > 0) are the teacher's log
	// probabilities of the content's tokens and the top alternatives, in the OpenAI
	// API's form: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}.
	Logprobs *Logprobs `json:"logprobs,omitempty"`
}

// Logprobs are the per-token log probabilities of one assistant message.
type Logprobs struct {
	Content []TokenLogprob `json:"content"`
}

// Record is one line of the output: a chat ready for SFT.
type Record struct {
	ID       string         `json:"id"`
	Messages []Message      `json:"messages"`
	Meta     map[string]any `json:"meta"`
	// Text (with Config.EmitText) is the assistant text, for the data pipeline.
	Text string `json:"text,omitempty"`
}

// dropError is an item left out on purpose (quality, filters), not a failure.
type dropError struct{ reason string }

func (e *dropError) Error() string { return "dropped: " + e.reason }

func drop(reason string) error { return &dropError{reason} }

// dropReason returns the reason of a dropped item, or "".
func dropReason(err error) string {
	var d *dropError
	if errors.As(err, &d) {
		return d.reason
	}
	return ""
}

// itemRun is the state of one item while it runs.
type itemRun struct {
	r        *runner
	it       *item
	step     int
	calls    int
	cached   int
	promptT  int64
	complT   int64
	model    string
	aligned  bool
	hasLogps bool
}

// ask sends one request of the item. assistant marks the answers that become
// assistant messages (they get logprobs and the answer quality checks).
func (ir *itemRun) ask(ctx context.Context, msgs []ChatMessage, assistant bool) (*Response, error) {
	cfg, g := ir.r.cfg, ir.it.gen
	req := &Request{
		Model:       cfg.Teacher.Model,
		Messages:    msgs,
		Temperature: cfg.Sampling.Temperature,
		TopP:        cfg.Sampling.TopP,
		MaxTokens:   cfg.Sampling.MaxTokens,
		Seed:        ir.it.requestSeed(ir.step),
		Item:        ir.it.id,
	}
	if g.Temperature != nil {
		req.Temperature = *g.Temperature
	}
	if g.MaxTokens > 0 {
		req.MaxTokens = g.MaxTokens
	}
	if assistant && cfg.Logprobs > 0 {
		req.TopLogprobs = cfg.Logprobs
	}
	ir.step++
	resp, cached, err := ir.r.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	ir.calls++
	if cached {
		ir.cached++
	}
	ir.promptT += resp.Usage.PromptTokens
	ir.complT += resp.Usage.CompletionTokens
	if resp.Model != "" {
		ir.model = resp.Model
	}
	if resp.FinishReason == "length" && !cfg.Quality.AllowTruncated {
		return nil, drop("truncated")
	}
	text := strings.TrimSpace(resp.Content)
	if text == "" {
		return nil, drop("empty")
	}
	if assistant && len(text) < cfg.Quality.MinChars {
		return nil, drop("too_short")
	}
	low := strings.ToLower(text)
	for _, p := range cfg.Quality.RejectPhrases {
		if p != "" && strings.Contains(low, strings.ToLower(p)) {
			return nil, drop("refusal")
		}
	}
	return resp, nil
}

// assistantMessage turns an answer, from byte start on, into a message with its
// logprobs. With logprobs, start moves back to the token boundary at or before it,
// so that the stored tokens spell the content exactly.
func (ir *itemRun) assistantMessage(resp *Response, start int) Message {
	if ir.r.cfg.Logprobs == 0 {
		return Message{Role: "assistant", Content: resp.Content[start:]}
	}
	lps, start, ok := alignLogprobs(resp.Logprobs, resp.Content, start)
	ir.hasLogps = true
	ir.aligned = ir.aligned && ok
	return Message{Role: "assistant", Content: resp.Content[start:], Logprobs: &Logprobs{Content: lps}}
}

// alignLogprobs keeps the tokens from the last token boundary at or before start,
// returns that boundary, and reports whether the kept tokens' text (their bytes
// where given) is exactly content from there. Tokens past the end of content
// are cut when the content ends at a token boundary: some servers (mai serve)
// report the tokens of the stop sequence that ended the answer, which the
// content leaves out.
func alignLogprobs(lps []TokenLogprob, content string, start int) ([]TokenLogprob, int, bool) {
	off, i := 0, 0
	for i < len(lps) {
		n := len(tokenBytes(&lps[i]))
		if off+n > start {
			break
		}
		off += n
		i++
	}
	kept := lps[i:]
	var b bytes.Buffer
	for j := range kept {
		if off+b.Len() == len(content) && j > 0 {
			kept = kept[:j] // the rest lies past the content
			break
		}
		b.Write(tokenBytes(&kept[j]))
	}
	if off > len(content) {
		return kept, start, false
	}
	return kept, off, b.String() == content[off:]
}

func tokenBytes(t *TokenLogprob) []byte {
	if len(t.Bytes) > 0 {
		b := make([]byte, len(t.Bytes))
		for i, v := range t.Bytes {
			b[i] = byte(v)
		}
		return b
	}
	return []byte(t.Token)
}

func (r *runner) render(g *Generator, name string, vars map[string]any) (string, error) {
	var b strings.Builder
	if err := g.tmpl[name].Execute(&b, vars); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	return b.String(), nil
}

// runItem makes the record of one item, or returns why not (a *dropError for
// items left out on purpose).
func (r *runner) runItem(ctx context.Context, it *item) (*Record, *itemRun, error) {
	ir := &itemRun{r: r, it: it, aligned: true}
	g := it.gen
	var msgs []Message
	sys := func() []ChatMessage {
		if g.System == "" {
			return nil
		}
		return []ChatMessage{{Role: "system", Content: g.System}}
	}
	if g.System != "" {
		msgs = append(msgs, Message{Role: "system", Content: g.System})
	}
	vars := map[string]any{}
	for k, v := range it.vars {
		vars[k] = v
	}
	meta := map[string]any{"kind": g.Kind, "generator": it.name}
	for k, v := range it.vars {
		meta[snake(k)] = v
	}
	for k, v := range it.sources {
		meta[k] = v
	}
	switch g.Kind {
	case "instruct":
		prompt, err := r.render(g, "instruction", vars)
		if err != nil {
			return nil, ir, err
		}
		resp, err := ir.ask(ctx, []ChatMessage{{Role: "user", Content: prompt}}, false)
		if err != nil {
			return nil, ir, err
		}
		instr := cleanUserTurn(resp.Content)
		if instr == "" {
			return nil, ir, drop("empty")
		}
		ans, err := ir.ask(ctx, append(sys(), ChatMessage{Role: "user", Content: instr}), true)
		if err != nil {
			return nil, ir, err
		}
		msgs = append(msgs, Message{Role: "user", Content: instr}, ir.assistantMessage(ans, 0))
	case "chat":
		conv := sys()
		for turn := range it.turns {
			vars["Turn"] = turn + 1
			var prompt string
			var err error
			if turn == 0 {
				prompt, err = r.render(g, "opener", vars)
			} else {
				vars["Transcript"] = transcript(msgs)
				prompt, err = r.render(g, "follow_up", vars)
			}
			if err != nil {
				return nil, ir, err
			}
			resp, err := ir.ask(ctx, []ChatMessage{{Role: "user", Content: prompt}}, false)
			if err != nil {
				return nil, ir, err
			}
			user := cleanUserTurn(resp.Content)
			if user == "" {
				return nil, ir, drop("empty")
			}
			conv = append(conv, ChatMessage{Role: "user", Content: user})
			ans, err := ir.ask(ctx, conv, true)
			if err != nil {
				return nil, ir, err
			}
			conv = append(conv, ChatMessage{Role: "assistant", Content: ans.Content})
			msgs = append(msgs, Message{Role: "user", Content: user}, ir.assistantMessage(ans, 0))
		}
		meta["turns"] = it.turns
	case "textbook", "rewrite":
		name := "passage"
		if g.Kind == "rewrite" {
			name = "rewrite"
			vars["Document"] = it.doc
		}
		prompt, err := r.render(g, name, vars)
		if err != nil {
			return nil, ir, err
		}
		ans, err := ir.ask(ctx, append(sys(), ChatMessage{Role: "user", Content: prompt}), true)
		if err != nil {
			return nil, ir, err
		}
		msgs = append(msgs, Message{Role: "user", Content: prompt}, ir.assistantMessage(ans, 0))
	case "code":
		prompt, err := r.render(g, "exercise", vars)
		if err != nil {
			return nil, ir, err
		}
		ans, err := ir.ask(ctx, []ChatMessage{{Role: "user", Content: prompt}}, true)
		if err != nil {
			return nil, ir, err
		}
		ex, ok := parseExercise(ans.Content)
		if !ok {
			return nil, ir, drop("unparsable")
		}
		if g.Verify {
			if err := r.verifyGo(ctx, g, ex); err != nil {
				if ctx.Err() != nil {
					return nil, ir, ctx.Err()
				}
				r.log.Debug("synth: exercise failed its tests", "id", it.id, "err", err)
				return nil, ir, drop("tests_failed")
			}
			meta["verified"] = true
		}
		meta["tests"] = ex.tests
		msgs = append(msgs, Message{Role: "user", Content: ex.problem}, ir.assistantMessage(ans, ex.answerStart))
	default:
		return nil, ir, fmt.Errorf("unknown kind %q", g.Kind)
	}
	if ir.model != "" {
		meta["teacher"] = ir.model
	} else {
		meta["teacher"] = r.cfg.Teacher.Model
	}
	meta["usage"] = map[string]int64{"prompt_tokens": ir.promptT, "completion_tokens": ir.complT}
	if ir.hasLogps {
		meta["logprobs_aligned"] = ir.aligned
	}
	rec := &Record{ID: it.id, Messages: msgs, Meta: meta}
	kind := "text"
	if g.Kind == "code" {
		kind = "code"
	}
	doc := data.Document{ID: it.id, Text: assistantText(msgs), Kind: kind, Source: it.name}
	for _, f := range r.filters {
		d := doc // filters may rewrite the text: the record keeps the teacher's
		if keep, why := f.Keep(&d); !keep {
			return nil, ir, drop(f.Name() + ":" + why)
		}
	}
	if r.cfg.EmitText {
		rec.Text = doc.Text
	}
	return rec, ir, nil
}

// snake turns a template variable name into a meta key: "Topic" -> "topic".
func snake(s string) string {
	var b strings.Builder
	for i, c := range s {
		if unicode.IsUpper(c) {
			if i > 0 {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

func assistantText(msgs []Message) string {
	var parts []string
	for _, m := range msgs {
		if m.Role == "assistant" {
			parts = append(parts, m.Content)
		}
	}
	return strings.Join(parts, "\n\n")
}

// transcript renders a conversation for the user-simulator prompt.
func transcript(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		switch m.Role {
		case "user":
			b.WriteString("User: ")
		case "assistant":
			b.WriteString("Assistant: ")
		default:
			continue
		}
		b.WriteString(strings.TrimSpace(m.Content))
		b.WriteString("\n\n")
	}
	return strings.TrimSpace(b.String())
}

var labelRE = regexp.MustCompile(`(?i)^\s*(?:\*\*)?(?:request|instruction|user|message|question|prompt|user message)(?:\*\*)?\s*:\s*(?:\*\*)?\s*`)

// cleanUserTurn strips the wrapping a teacher puts around a user turn it was asked
// to write: a label ("Request:"), surrounding quotes, whitespace.
func cleanUserTurn(s string) string {
	s = strings.TrimSpace(s)
	s = labelRE.ReplaceAllString(s, "")
	for _, q := range [][2]string{{`"`, `"`}, {"“", "”"}, {"'", "'"}} {
		if len(s) >= 2 && strings.HasPrefix(s, q[0]) && strings.HasSuffix(s, q[1]) &&
			!strings.Contains(s[len(q[0]):len(s)-len(q[1])], q[0]) {
			s = s[len(q[0]) : len(s)-len(q[1])]
		}
	}
	return strings.TrimSpace(s)
}

// exercise is a parsed code exercise.
type exercise struct {
	problem, solution, tests string
	// answerStart is the byte offset of the "Solution" heading: the assistant
	// message is the answer from there on (solution and tests).
	answerStart int
}

var (
	headingRE = regexp.MustCompile(`(?mi)^#{1,4}[ \t]*(problem|solution|tests?)\b[^\n]*$`)
	codeRE    = regexp.MustCompile("(?s)```[ \t]*(?:go|golang)?[ \t]*\r?\n(.*?)```")
)

// parseExercise reads the Problem / Solution / Tests format of the code prompt.
func parseExercise(s string) (exercise, bool) {
	var ex exercise
	hs := headingRE.FindAllStringSubmatchIndex(s, -1)
	sec := map[string][2]int{}
	for i, h := range hs {
		name := strings.ToLower(s[h[2]:h[3]])
		if name == "test" {
			name = "tests"
		}
		end := len(s)
		if i+1 < len(hs) {
			end = hs[i+1][0]
		}
		if _, dup := sec[name]; !dup {
			sec[name] = [2]int{h[0], end}
		}
	}
	p, okP := sec["problem"]
	sol, okS := sec["solution"]
	if !okP || !okS || sol[0] < p[1] {
		return ex, false
	}
	ex.problem = strings.TrimSpace(s[p[0]:p[1]][len(headingRE.FindString(s[p[0]:p[1]])):])
	ex.answerStart = sol[0]
	if m := codeRE.FindStringSubmatch(s[sol[0]:sol[1]]); m != nil {
		ex.solution = m[1]
	}
	if t, ok := sec["tests"]; ok {
		if m := codeRE.FindStringSubmatch(s[t[0]:t[1]]); m != nil {
			ex.tests = m[1]
		}
	}
	if ex.tests == "" {
		// Tests in the solution section, in a second block.
		for _, m := range codeRE.FindAllStringSubmatch(s[sol[0]:], -1) {
			if strings.Contains(m[1], "func Test") && m[1] != ex.solution {
				ex.tests = m[1]
				break
			}
		}
	}
	ok := ex.problem != "" && strings.Contains(ex.solution, "package ") &&
		strings.Contains(ex.tests, "package ") && strings.Contains(ex.tests, "func Test")
	return ex, ok
}

// verifyGo runs the exercise's tests in a scratch module, offline.
func (r *runner) verifyGo(ctx context.Context, g *Generator, ex exercise) error {
	select {
	case r.verifySem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.verifySem }()
	dir, err := os.MkdirTemp("", "mai-synth-exercise-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files := map[string]string{
		"go.mod":           "module exercise\n\ngo 1.22\n",
		"solution.go":      ex.solution,
		"solution_test.go": ex.tests,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	tctx, cancel := context.WithTimeout(ctx, g.VerifyTimeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, r.goBin, "test", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 2000 {
			out = out[len(out)-2000:]
		}
		return fmt.Errorf("go test: %v\n%s", err, out)
	}
	return nil
}
