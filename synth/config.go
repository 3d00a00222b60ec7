package synth

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mai-llm/mai/data"
)

//go:embed defaults.yaml
var defaultsYAML []byte

// DefaultsYAML returns the embedded default configuration, comments included.
func DefaultsYAML() []byte { return bytes.Clone(defaultsYAML) }

// Kinds are the generator kinds, in the order their items are numbered.
var Kinds = []string{"instruct", "chat", "textbook", "code", "rewrite"}

// Config is a whole synth run. DefaultConfig gives the shipped templates and seed
// lists; LoadConfig overlays a YAML file on them.
type Config struct {
	Teacher TeacherConfig `yaml:"teacher" json:"teacher"`
	// Output is the chat JSONL file, written whole at the end of a run.
	Output string `yaml:"output" json:"output"`
	// CacheDir holds the answer cache (default Output + ".cache"). Keep it to make
	// reruns free; delete it to pay again.
	CacheDir string `yaml:"cache_dir" json:"cache_dir"`
	// Report is the JSON report (default Output + ".report.json").
	Report string `yaml:"report" json:"report"`
	// Seed fixes every random choice: topics, personas, request seeds.
	Seed uint64 `yaml:"seed" json:"seed"`
	// Concurrency is the number of items in flight at once.
	Concurrency int         `yaml:"concurrency" json:"concurrency"`
	Limits      Limits      `yaml:"limits" json:"limits"`
	Retry       RetryConfig `yaml:"retry" json:"retry"`
	Price       Price       `yaml:"price" json:"price"`
	Sampling    Sampling    `yaml:"sampling" json:"sampling"`
	// Logprobs K > 0 asks for the top-K log probabilities of every assistant token
	// and stores them with the assistant messages (for distillation).
	Logprobs int `yaml:"logprobs" json:"logprobs"`
	// Tokenizer, when set (e.g. o200k_base), counts prompt tokens for the token rate
	// limit and for answers without usage; otherwise bytes/4 is the estimate.
	Tokenizer string  `yaml:"tokenizer" json:"tokenizer,omitempty"`
	Quality   Quality `yaml:"quality" json:"quality"`
	// Filters are the data pipeline's filters, run on the assistant text.
	Filters data.FilterConfig `yaml:"filters" json:"filters"`
	Dedup   Dedup             `yaml:"dedup" json:"dedup"`
	// EmitText adds "text" (the assistant messages) to each record, the field the
	// data pipeline reads from JSONL.
	EmitText bool `yaml:"emit_text" json:"emit_text"`
	// Topics and Personas are the seed lists generators use unless they set their own.
	Topics   []string `yaml:"topics" json:"-"`
	Personas []string `yaml:"personas" json:"-"`
	// Generators by name; a name that is not a kind must set Kind.
	Generators map[string]*Generator `yaml:"generators" json:"generators"`
	// ProgressEvery is the interval of progress lines (default 5s).
	ProgressEvery time.Duration `yaml:"progress_every" json:"-"`
}

// Price is the teacher's price in US dollars per million tokens.
type Price struct {
	InputPerMillion  float64 `yaml:"input_per_million" json:"input_per_million"`
	OutputPerMillion float64 `yaml:"output_per_million" json:"output_per_million"`
}

// Cost of the tokens.
func (p Price) Cost(in, out int64) float64 {
	return float64(in)*p.InputPerMillion/1e6 + float64(out)*p.OutputPerMillion/1e6
}

// Sampling are the default sampling settings of every request.
type Sampling struct {
	Temperature float64 `yaml:"temperature" json:"temperature"`
	TopP        float64 `yaml:"top_p" json:"top_p,omitempty"`
	MaxTokens   int     `yaml:"max_tokens" json:"max_tokens"`
}

// Quality are the checks of every teacher answer before the data filters.
type Quality struct {
	// MinChars drops answers shorter than this after trimming.
	MinChars int `yaml:"min_chars" json:"min_chars"`
	// AllowTruncated keeps answers cut by max_tokens (finish_reason "length").
	AllowTruncated bool `yaml:"allow_truncated" json:"allow_truncated"`
	// RejectPhrases drop an answer that contains one (case-insensitive).
	RejectPhrases []string `yaml:"reject_phrases" json:"reject_phrases"`
}

// Dedup configures exact and MinHash near-duplicate removal of the outputs with the
// data pipeline's settings (threshold, shingles, permutations, bands and rows).
type Dedup struct {
	data.DedupConfig `yaml:",inline"`
	// On is the text compared: "conversation" (every message but the system
	// prompt), "prompt" (the first user message) or "response" (the assistant text).
	On string `yaml:"on" json:"on"`
}

// Generator turns templates and seed lists into items of one kind.
type Generator struct {
	// Kind is instruct, chat, textbook, code or rewrite.
	Kind string `yaml:"kind" json:"kind"`
	// Count is the number of items (rewrite: at most this many chunks, 0 for all).
	Count int `yaml:"count" json:"count"`
	// Temperature and MaxTokens override the sampling defaults.
	Temperature *float64 `yaml:"temperature" json:"temperature,omitempty"`
	MaxTokens   int      `yaml:"max_tokens" json:"max_tokens,omitempty"`
	// System, when set, is the system message of the assistant turns (kept in the
	// output).
	System string `yaml:"system" json:"system,omitempty"`
	// Prompts are text/template templates by name (see docs/synth.md for the names
	// each kind uses and the variables they see).
	Prompts map[string]string `yaml:"prompts" json:"-"`
	// Seed lists; empty Topics and Personas fall back to the config's.
	Topics       []string `yaml:"topics" json:"-"`
	Personas     []string `yaml:"personas" json:"-"`
	Tasks        []string `yaml:"tasks" json:"-"`
	Audiences    []string `yaml:"audiences" json:"-"`
	Styles       []string `yaml:"styles" json:"-"`
	Difficulties []string `yaml:"difficulties" json:"-"`
	// TopicTree (textbook) is a nested mapping of subjects whose leaves are topics.
	TopicTree yaml.Node `yaml:"topic_tree" json:"-"`
	// MinTurns and MaxTurns (chat) bound the user turns of a conversation.
	MinTurns int `yaml:"min_turns" json:"min_turns,omitempty"`
	MaxTurns int `yaml:"max_turns" json:"max_turns,omitempty"`
	// Inputs (rewrite) are JSONL files of {"id","text"} documents.
	Inputs []string `yaml:"inputs" json:"inputs,omitempty"`
	// MaxChars and MinChars (rewrite) cut long documents into chunks at paragraph
	// breaks and skip short ones; StylesPerDoc rewrites each chunk in this many styles.
	MaxChars     int `yaml:"max_chars" json:"max_chars,omitempty"`
	MinChars     int `yaml:"min_chars" json:"min_chars,omitempty"`
	StylesPerDoc int `yaml:"styles_per_doc" json:"styles_per_doc,omitempty"`
	// Verify (code) runs `go test` on every exercise and drops those that fail.
	// It executes teacher-written code: run it in a sandbox.
	Verify        bool          `yaml:"verify" json:"verify,omitempty"`
	VerifyTimeout time.Duration `yaml:"verify_timeout" json:"verify_timeout,omitempty"`

	tmpl   map[string]*template.Template
	leaves []topicLeaf
}

// promptNames are the templates each kind needs.
var promptNames = map[string][]string{
	"instruct": {"instruction"},
	"chat":     {"opener", "follow_up"},
	"textbook": {"passage"},
	"code":     {"exercise"},
	"rewrite":  {"rewrite"},
}

// DefaultConfig is the embedded defaults.yaml over the data pipeline's filter and
// dedup defaults.
func DefaultConfig() Config {
	cfg := Config{Filters: data.DefaultFilterConfig(), Dedup: Dedup{DedupConfig: data.DefaultDedupConfig()}}
	if err := overlay(&cfg, defaultsYAML); err != nil {
		panic("synth: embedded defaults.yaml: " + err.Error())
	}
	return cfg
}

// LoadConfig reads a YAML file over DefaultConfig.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("synth: config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("synth: config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig overlays YAML b on DefaultConfig. Fields b leaves out keep their
// defaults; a generator it names is changed field by field; unknown fields are
// errors.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	if err := overlay(&cfg, b); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// overlay decodes YAML b onto cfg, merging generators by name.
func overlay(cfg *Config, b []byte) error {
	// A strict decode into a fresh value finds unknown fields and type errors with
	// the file's line numbers; the merge below then cannot fail on them.
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return yamlError(err)
	}
	if doc.Kind == 0 {
		return nil // empty file
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("want a YAML mapping at the top")
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	var shape Config
	if err := d.Decode(&shape); err != nil && err != io.EOF {
		return yamlError(err)
	}
	top := doc.Content[0]
	var gens *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "generators" {
			gens = top.Content[i+1]
			top.Content = slices.Delete(top.Content, i, i+2)
			break
		}
	}
	if err := top.Decode(cfg); err != nil {
		return yamlError(err)
	}
	if gens == nil || gens.Kind == yaml.ScalarNode && gens.Tag == "!!null" {
		return nil
	}
	if gens.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: generators: want a mapping of name to generator", gens.Line)
	}
	if cfg.Generators == nil {
		cfg.Generators = map[string]*Generator{}
	}
	for i := 0; i+1 < len(gens.Content); i += 2 {
		name := gens.Content[i].Value
		g := cfg.Generators[name]
		if g == nil {
			g = &Generator{}
			if slices.Contains(Kinds, name) {
				g.Kind = name
			}
		}
		if err := gens.Content[i+1].Decode(g); err != nil {
			return fmt.Errorf("generator %s: %w", name, yamlError(err))
		}
		cfg.Generators[name] = g
	}
	return nil
}

// yamlError puts a YAML error on one line.
func yamlError(err error) error {
	return errors.New(strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " "))
}

// GeneratorNames lists the generators in item order: by kind, then name.
func (c *Config) GeneratorNames() []string {
	names := make([]string, 0, len(c.Generators))
	for n := range c.Generators {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		ka, kb := slices.Index(Kinds, c.Generators[a].Kind), slices.Index(Kinds, c.Generators[b].Kind)
		if ka != kb {
			return ka - kb
		}
		return strings.Compare(a, b)
	})
	return names
}

// Validate checks the configuration and compiles its templates.
func (c *Config) Validate() error {
	if c.Output == "" {
		return errors.New("synth: no output file")
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("synth: concurrency %d: want at least 1", c.Concurrency)
	}
	if c.Limits.RequestsPerMinute < 0 || c.Limits.TokensPerMinute < 0 {
		return errors.New("synth: negative rate limit")
	}
	if c.Logprobs < 0 || c.Logprobs > 20 {
		return fmt.Errorf("synth: logprobs %d: want 0 to 20 (the OpenAI API's limit)", c.Logprobs)
	}
	if c.Sampling.Temperature < 0 || c.Sampling.Temperature > 2 {
		return fmt.Errorf("synth: temperature %v: want 0 to 2", c.Sampling.Temperature)
	}
	if c.Price.InputPerMillion < 0 || c.Price.OutputPerMillion < 0 {
		return errors.New("synth: negative price")
	}
	switch c.Dedup.On {
	case "conversation", "prompt", "response":
	default:
		return fmt.Errorf("synth: dedup.on %q: want conversation, prompt or response", c.Dedup.On)
	}
	if (c.Dedup.Exact || c.Dedup.Near) && (c.Dedup.Threshold <= 0 || c.Dedup.Threshold > 1) {
		return fmt.Errorf("synth: dedup.threshold %v: want (0, 1]", c.Dedup.Threshold)
	}
	total := 0
	for _, name := range c.GeneratorNames() {
		g := c.Generators[name]
		if err := g.validate(c); err != nil {
			return fmt.Errorf("synth: generator %s: %w", name, err)
		}
		total += g.Count
		if g.Kind == "rewrite" && len(g.Inputs) > 0 {
			total++ // rewrite with inputs makes items even with count 0
		}
	}
	if total == 0 {
		return errors.New("synth: nothing to generate: give a generator a count (--count) or rewrite inputs (--input)")
	}
	return nil
}

func (g *Generator) validate(c *Config) error {
	if !slices.Contains(Kinds, g.Kind) {
		return fmt.Errorf("kind %q: want one of %s", g.Kind, strings.Join(Kinds, ", "))
	}
	if g.Count < 0 {
		return fmt.Errorf("count %d is negative", g.Count)
	}
	if g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2) {
		return fmt.Errorf("temperature %v: want 0 to 2", *g.Temperature)
	}
	g.tmpl = map[string]*template.Template{}
	for _, name := range promptNames[g.Kind] {
		src, ok := g.Prompts[name]
		if !ok || strings.TrimSpace(src) == "" {
			return fmt.Errorf("prompts.%s is missing", name)
		}
		t, err := template.New(name).Option("missingkey=error").Parse(src)
		if err != nil {
			return fmt.Errorf("prompts.%s: %w", name, err)
		}
		g.tmpl[name] = t
	}
	for name := range g.Prompts {
		if !slices.Contains(promptNames[g.Kind], name) {
			return fmt.Errorf("prompts.%s: a %s generator uses only %s", name, g.Kind, strings.Join(promptNames[g.Kind], ", "))
		}
	}
	need := func(field string, list []string) error {
		if g.Count > 0 && len(list) == 0 {
			return fmt.Errorf("%s is empty", field)
		}
		return nil
	}
	var err error
	switch g.Kind {
	case "instruct":
		err = errors.Join(need("topics", g.topics(c)), need("personas", g.personas(c)), need("tasks", g.Tasks))
	case "chat":
		if g.MinTurns < 1 || g.MaxTurns < g.MinTurns {
			return fmt.Errorf("turns %d to %d: want 1 <= min_turns <= max_turns", g.MinTurns, g.MaxTurns)
		}
		err = errors.Join(need("topics", g.topics(c)), need("personas", g.personas(c)))
	case "textbook":
		if g.leaves, err = flattenTree(&g.TopicTree); err != nil {
			return fmt.Errorf("topic_tree: %w", err)
		}
		if g.Count > 0 && len(g.leaves) == 0 {
			return errors.New("topic_tree is empty")
		}
		err = errors.Join(need("audiences", g.Audiences), need("styles", g.Styles))
	case "code":
		err = errors.Join(need("topics", g.Topics), need("difficulties", g.Difficulties))
		if g.Verify && g.VerifyTimeout <= 0 {
			g.VerifyTimeout = time.Minute
		}
	case "rewrite":
		if len(g.Inputs) > 0 && len(g.Styles) == 0 {
			return errors.New("styles is empty")
		}
		if g.Count > 0 && len(g.Inputs) == 0 {
			return errors.New("count is set but there are no inputs (--input FILE.jsonl)")
		}
		if g.StylesPerDoc < 1 {
			g.StylesPerDoc = 1
		}
		if g.StylesPerDoc > len(g.Styles) {
			return fmt.Errorf("styles_per_doc %d exceeds the %d styles", g.StylesPerDoc, len(g.Styles))
		}
		if g.MaxChars <= 0 {
			g.MaxChars = 6000
		}
	}
	return err
}

func (g *Generator) topics(c *Config) []string {
	if len(g.Topics) > 0 {
		return g.Topics
	}
	return c.Topics
}

func (g *Generator) personas(c *Config) []string {
	if len(g.Personas) > 0 {
		return g.Personas
	}
	return c.Personas
}

// topicLeaf is one leaf of a topic tree with the path to it.
type topicLeaf struct {
	Topic string
	Path  string // "Mathematics > Algebra"
}

// flattenTree lists the leaves of a nested mapping / sequence of topics in order.
func flattenTree(n *yaml.Node) ([]topicLeaf, error) {
	var out []topicLeaf
	var walk func(n *yaml.Node, path []string, depth int) error
	walk = func(n *yaml.Node, path []string, depth int) error {
		if depth > 32 {
			return errors.New("nested deeper than 32 levels")
		}
		switch n.Kind {
		case 0:
			return nil
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if err := walk(c, path, depth+1); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Kind != yaml.ScalarNode || strings.TrimSpace(k.Value) == "" {
					return fmt.Errorf("line %d: want a topic name", k.Line)
				}
				if v.Kind == yaml.ScalarNode && (v.Tag == "!!null" || v.Value == "") {
					out = append(out, topicLeaf{Topic: k.Value, Path: strings.Join(path, " > ")})
					continue
				}
				if err := walk(v, append(slices.Clone(path), k.Value), depth+1); err != nil {
					return err
				}
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if err := walk(c, path, depth+1); err != nil {
					return err
				}
			}
		case yaml.ScalarNode:
			if strings.TrimSpace(n.Value) == "" {
				return fmt.Errorf("line %d: empty topic", n.Line)
			}
			p := strings.Join(path, " > ")
			if p == "" {
				p = n.Value
			}
			out = append(out, topicLeaf{Topic: n.Value, Path: p})
		case yaml.AliasNode:
			return walk(n.Alias, path, depth+1)
		default:
			return fmt.Errorf("line %d: unexpected YAML node", n.Line)
		}
		return nil
	}
	if err := walk(n, nil, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// YAML renders the configuration without secrets: no API key, and the values of
// headers whose names suggest credentials replaced by REDACTED.
func (c *Config) YAML() ([]byte, error) {
	cp := *c
	if len(c.Teacher.Headers) > 0 {
		cp.Teacher.Headers = map[string]string{}
		for k, v := range c.Teacher.Headers {
			lk := strings.ToLower(k)
			for _, s := range []string{"key", "auth", "token", "secret", "cookie"} {
				if strings.Contains(lk, s) {
					v = "REDACTED"
				}
			}
			cp.Teacher.Headers[k] = v
		}
	}
	return yaml.Marshal(&cp)
}

// ApplySelection applies a command line's choice of generators: kinds (generator
// names or kinds; empty keeps the configured counts) are run and the others get
// count 0; count, when set, is the count of every selected generator (of every
// generator but rewrite when kinds is empty); inputs are added to the rewrite
// generator, which they select.
func ApplySelection(cfg *Config, kinds []string, countSet bool, count int, inputs []string) error {
	if count < 0 {
		return fmt.Errorf("synth: count %d is negative", count)
	}
	var rewrite *Generator
	for _, name := range cfg.GeneratorNames() {
		if g := cfg.Generators[name]; g.Kind == "rewrite" && (rewrite == nil || name == "rewrite") {
			rewrite = g
		}
	}
	if len(inputs) > 0 {
		if rewrite == nil {
			return errors.New("synth: --input needs a rewrite generator, and the configuration has none")
		}
		rewrite.Inputs = append(rewrite.Inputs, inputs...)
	}
	if len(kinds) == 0 {
		if countSet {
			for _, g := range cfg.Generators {
				if g.Kind != "rewrite" {
					g.Count = count
				} else if len(inputs) > 0 {
					g.Count = 0
				}
			}
		}
		return nil
	}
	selected := map[*Generator]bool{}
	for _, k := range kinds {
		k = strings.TrimSpace(k)
		found := false
		for name, g := range cfg.Generators {
			if name == k || g.Kind == k {
				selected[g] = true
				found = true
			}
		}
		if !found {
			return fmt.Errorf("synth: --kinds %q: no such generator (have %s)", k, strings.Join(cfg.GeneratorNames(), ", "))
		}
	}
	if len(inputs) > 0 {
		selected[rewrite] = true
	}
	for _, g := range cfg.Generators {
		switch {
		case !selected[g]:
			g.Count = 0
			if g.Kind == "rewrite" {
				g.Inputs = nil
			}
		case countSet && !(g.Kind == "rewrite" && len(inputs) > 0 && !slices.Contains(kinds, "rewrite")):
			g.Count = count
		}
	}
	return nil
}
