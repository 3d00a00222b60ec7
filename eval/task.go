package eval

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Task kinds.
const (
	KindPerplexity     = "perplexity"
	KindMultipleChoice = "multiple_choice"
	KindGenerate       = "generate"
	KindCode           = "code"
)

// Task is a set of evaluation items of one kind with the settings that turn
// them into prompts. See docs/eval.md for the JSONL format.
type Task struct {
	TaskConfig
	Items   []Item // scored items
	Fewshot []Item // examples for few-shot prompts (items with split "fewshot", "train" or "dev")
}

// TaskConfig is a task's header line: {"mai_task": {...}}.
type TaskConfig struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"` // prepended to every prompt
	// About says what the task is and where its data comes from.
	About   string `json:"about,omitempty"`
	Source  string `json:"source,omitempty"`
	License string `json:"license,omitempty"`
	// NumFewshot is the default number of few-shot examples.
	NumFewshot int `json:"num_fewshot,omitempty"`
	// TargetDelimiter joins a context and its continuation (default " ").
	TargetDelimiter *string `json:"target_delimiter,omitempty"`
	// FewshotDelimiter separates few-shot examples (default "\n\n").
	FewshotDelimiter *string `json:"fewshot_delimiter,omitempty"`
	// Generation: stop strings, token budget, answer extraction.
	Until       []string `json:"until,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	AnswerRegex string   `json:"answer_regex,omitempty"`
	IgnoreCase  bool     `json:"ignore_case,omitempty"`
	// Chat renders prompts with the model's chat template (generation tasks).
	Chat   bool   `json:"chat,omitempty"`
	System string `json:"system,omitempty"`
	// Language of code tasks ("go").
	Language string `json:"language,omitempty"`
}

// Item is one line of a task file. Which fields matter depends on the kind.
type Item struct {
	ID    string `json:"id,omitempty"`
	Split string `json:"split,omitempty"`
	// Multiple choice: log P(choice | context) for each choice.
	Context string   `json:"context,omitempty"`
	Choices []string `json:"choices,omitempty"`
	Gold    int      `json:"gold"`
	// Generation: the answer(s) accepted after extraction; code: the
	// prompt to complete.
	Prompt  string   `json:"prompt,omitempty"`
	Answers []string `json:"answers,omitempty"`
	// Code: a _test.go file run against prompt+completion, and a reference
	// solution (the completion that passes) used to check the task itself.
	Test     string `json:"test,omitempty"`
	Solution string `json:"solution,omitempty"`
	// Perplexity: text scored as a whole.
	Text string `json:"text,omitempty"`
}

func (c *TaskConfig) targetDelim() string {
	if c.TargetDelimiter != nil {
		return *c.TargetDelimiter
	}
	return " "
}

func (c *TaskConfig) fewshotDelim() string {
	if c.FewshotDelimiter != nil {
		return *c.FewshotDelimiter
	}
	return "\n\n"
}

//go:embed tasks/*.jsonl
var builtinFS embed.FS

// Builtin lists the task names shipped inside the binary.
func Builtin() []string {
	ents, _ := fs.ReadDir(builtinFS, "tasks")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".jsonl"))
	}
	sort.Strings(names)
	return names
}

// LoadTask returns a built-in task by name, or reads a task file: MAI's JSONL
// format, or a published benchmark file as distributed (HellaSwag JSONL, ARC
// JSONL, MMLU CSV or JSONL), recognized by its fields.
func LoadTask(nameOrPath string) (*Task, error) {
	if b, err := builtinFS.ReadFile(path.Join("tasks", nameOrPath+".jsonl")); err == nil {
		return ParseTask(nameOrPath, bytes.NewReader(b))
	}
	f, err := os.Open(nameOrPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("task %q: neither a built-in task (%s) nor a file", nameOrPath, strings.Join(Builtin(), ", "))
		}
		return nil, fmt.Errorf("task: %w", err)
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(nameOrPath), filepath.Ext(nameOrPath))
	if strings.EqualFold(filepath.Ext(nameOrPath), ".csv") {
		return parseMMLUCSV(name, f)
	}
	t, err := ParseTask(name, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	return t, nil
}

// ParseTask reads a task in JSONL: an optional header line
// {"mai_task": {...}} and one item per line, in MAI's format or a published
// benchmark's. The kind, when the header does not give it, follows from the
// items' fields.
func ParseTask(name string, r io.Reader) (*Task, error) {
	t := &Task{TaskConfig: TaskConfig{Name: name}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %w", line, err)
		}
		if h, ok := fields["mai_task"]; ok {
			if err := json.Unmarshal(h, &t.TaskConfig); err != nil {
				return nil, fmt.Errorf("line %d: mai_task header: %w", line, err)
			}
			if t.Name == "" {
				t.Name = name
			}
			continue
		}
		it, kind, err := parseItem(fields, raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if t.Kind == "" {
			if kind == "" {
				return nil, fmt.Errorf("line %d: item has none of choices, test, answers or text", line)
			}
			t.Kind = kind
		}
		switch strings.ToLower(it.Split) {
		case "fewshot", "train", "dev":
			t.Fewshot = append(t.Fewshot, it)
		default:
			t.Items = append(t.Items, it)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read task: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate checks that every item has what its kind needs.
func (t *Task) Validate() error {
	switch t.Kind {
	case KindPerplexity, KindMultipleChoice, KindGenerate, KindCode:
	case "":
		return fmt.Errorf("task %s: no items", t.Name)
	default:
		return fmt.Errorf("task %s: unknown kind %q (want %s, %s, %s or %s)", t.Name, t.Kind, KindPerplexity, KindMultipleChoice, KindGenerate, KindCode)
	}
	if len(t.Items) == 0 {
		return fmt.Errorf("task %s: no items to score", t.Name)
	}
	if t.AnswerRegex != "" {
		if _, err := regexp.Compile(t.AnswerRegex); err != nil {
			return fmt.Errorf("task %s: answer_regex: %w", t.Name, err)
		}
	}
	if t.Kind == KindCode && t.Language != "" && t.Language != "go" {
		return fmt.Errorf("task %s: code tasks run Go only, not %q", t.Name, t.Language)
	}
	for i, it := range append(append([]Item(nil), t.Items...), t.Fewshot...) {
		var err error
		switch t.Kind {
		case KindMultipleChoice:
			if len(it.Choices) < 2 {
				err = fmt.Errorf("has %d choices, want at least 2", len(it.Choices))
			} else if it.Gold < 0 || it.Gold >= len(it.Choices) {
				err = fmt.Errorf("gold index %d outside its %d choices", it.Gold, len(it.Choices))
			}
		case KindGenerate:
			if it.Prompt == "" || len(it.Answers) == 0 {
				err = fmt.Errorf("needs a prompt and answers")
			}
		case KindCode:
			if it.Prompt == "" || it.Test == "" {
				err = fmt.Errorf("needs a prompt and a test")
			}
		case KindPerplexity:
			if it.Text == "" {
				err = fmt.Errorf("has no text")
			}
		}
		if err != nil {
			id := it.ID
			if id == "" {
				id = "#" + strconv.Itoa(i+1)
			}
			return fmt.Errorf("task %s: item %s %w", t.Name, id, err)
		}
	}
	return nil
}

// parseItem reads one item in MAI's format or a published benchmark format.
func parseItem(fields map[string]json.RawMessage, raw []byte) (Item, string, error) {
	has := func(k string) bool { _, ok := fields[k]; return ok }
	switch {
	case has("ctx_a") || has("endings"): // HellaSwag
		return parseHellaSwag(raw)
	case has("answerKey"): // ARC (AI2 JSONL or the datasets layout)
		return parseARC(raw)
	case has("question") && has("choices") && has("answer"): // MMLU (datasets layout)
		return parseMMLUJSON(raw)
	}
	var it Item
	if err := json.Unmarshal(raw, &it); err != nil {
		return it, "", fmt.Errorf("item: %w", err)
	}
	// Accept "answer" as a single answer.
	if a, ok := fields["answer"]; ok && len(it.Answers) == 0 {
		var s string
		if err := json.Unmarshal(a, &s); err == nil {
			it.Answers = []string{s}
		}
	}
	var kind string
	switch {
	case len(it.Choices) > 0:
		kind = KindMultipleChoice
	case it.Test != "":
		kind = KindCode
	case len(it.Answers) > 0:
		kind = KindGenerate
	case it.Text != "":
		kind = KindPerplexity
	}
	return it, kind, nil
}

var bracketRE = regexp.MustCompile(`\[.*?\]`)

// hellaswagClean is lm-evaluation-harness's preprocess for HellaSwag.
func hellaswagClean(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, " [title]", ". ")
	s = bracketRE.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "  ", " ")
}

func parseHellaSwag(raw []byte) (Item, string, error) {
	var d struct {
		Ind           json.RawMessage `json:"ind"`
		ActivityLabel string          `json:"activity_label"`
		CtxA          string          `json:"ctx_a"`
		CtxB          string          `json:"ctx_b"`
		Endings       []string        `json:"endings"`
		Label         json.RawMessage `json:"label"`
		Split         string          `json:"split"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Item{}, "", fmt.Errorf("hellaswag item: %w", err)
	}
	gold, err := intOf(d.Label)
	if err != nil {
		return Item{}, "", fmt.Errorf("hellaswag item: label: %w", err)
	}
	ctx := d.CtxA + " " + capitalize(d.CtxB)
	it := Item{ID: strings.Trim(string(d.Ind), `"`), Context: hellaswagClean(d.ActivityLabel + ": " + ctx), Gold: gold}
	for _, e := range d.Endings {
		it.Choices = append(it.Choices, hellaswagClean(e))
	}
	if d.Split == "train" {
		it.Split = "train"
	}
	return it, KindMultipleChoice, nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

func parseARC(raw []byte) (Item, string, error) {
	var d struct {
		ID       string          `json:"id"`
		Question json.RawMessage `json:"question"`
		Choices  struct {
			Text  []string `json:"text"`
			Label []string `json:"label"`
		} `json:"choices"`
		AnswerKey string `json:"answerKey"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Item{}, "", fmt.Errorf("arc item: %w", err)
	}
	var stem string
	var texts, labels []string
	if err := json.Unmarshal(d.Question, &stem); err == nil { // datasets layout
		texts, labels = d.Choices.Text, d.Choices.Label
	} else { // AI2's JSONL: question {stem, choices [{text, label}]}
		var q struct {
			Stem    string `json:"stem"`
			Choices []struct {
				Text  string `json:"text"`
				Label string `json:"label"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(d.Question, &q); err != nil {
			return Item{}, "", fmt.Errorf("arc item %s: question: %w", d.ID, err)
		}
		stem = q.Stem
		for _, c := range q.Choices {
			texts, labels = append(texts, c.Text), append(labels, c.Label)
		}
	}
	gold := -1
	for i, l := range labels {
		if l == d.AnswerKey {
			gold = i
		}
	}
	if gold < 0 {
		return Item{}, "", fmt.Errorf("arc item %s: answerKey %q is not one of the labels %v", d.ID, d.AnswerKey, labels)
	}
	return Item{ID: d.ID, Context: "Question: " + stem + "\nAnswer:", Choices: texts, Gold: gold}, KindMultipleChoice, nil
}

var mmluLetters = []string{"A", "B", "C", "D", "E", "F", "G", "H"}

// mmluItem builds lm-evaluation-harness's MMLU prompt: the question, lettered
// choices and "Answer:", scored over the letters.
func mmluItem(id, question string, choices []string, gold int) (Item, error) {
	if len(choices) < 2 || len(choices) > len(mmluLetters) {
		return Item{}, fmt.Errorf("mmlu item %s: %d choices", id, len(choices))
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(question))
	for i, c := range choices {
		fmt.Fprintf(&b, "\n%s. %s", mmluLetters[i], c)
	}
	b.WriteString("\nAnswer:")
	return Item{ID: id, Context: b.String(), Choices: mmluLetters[:len(choices)], Gold: gold}, nil
}

func parseMMLUJSON(raw []byte) (Item, string, error) {
	var d struct {
		Question string          `json:"question"`
		Subject  string          `json:"subject"`
		Choices  []string        `json:"choices"`
		Answer   json.RawMessage `json:"answer"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Item{}, "", fmt.Errorf("mmlu item: %w", err)
	}
	gold, err := intOf(d.Answer)
	if err != nil {
		return Item{}, "", fmt.Errorf("mmlu item: answer: %w", err)
	}
	it, err := mmluItem(d.Subject, d.Question, d.Choices, gold)
	return it, KindMultipleChoice, err
}

// parseMMLUCSV reads one subject file of the original MMLU release
// (question, A, B, C, D, answer letter; no header).
func parseMMLUCSV(name string, r io.Reader) (*Task, error) {
	subject := strings.ReplaceAll(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_test"), "_dev"), "_val"), "_", " ")
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	t := &Task{TaskConfig: TaskConfig{Name: name, Kind: KindMultipleChoice,
		Description: "The following are multiple choice questions (with answers) about " + subject + ".\n\n"}}
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(rec) < 4 {
			return nil, fmt.Errorf("%s: row %d has %d fields, want question, choices and an answer letter", name, n, len(rec))
		}
		gold, err := intOf(json.RawMessage(strconv.Quote(rec[len(rec)-1])))
		if err != nil {
			return nil, fmt.Errorf("%s: row %d: answer: %w", name, n, err)
		}
		it, err := mmluItem(strconv.Itoa(n), rec[0], rec[1:len(rec)-1], gold)
		if err != nil {
			return nil, fmt.Errorf("%s: row %d: %w", name, n, err)
		}
		t.Items = append(t.Items, it)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// intOf reads a gold index given as a number, a numeric string or a letter.
func intOf(raw json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("%s is neither a number nor a string", raw)
	}
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	if len(s) == 1 && s[0] >= 'A' && s[0] <= 'Z' {
		return int(s[0] - 'A'), nil
	}
	return 0, fmt.Errorf("%q is not an index or a letter", s)
}
