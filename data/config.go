package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/mai-llm/mai/tokenizer"
	"go.yaml.in/yaml/v3"
)

// Config is a whole pipeline run. Zero fields take the defaults of DefaultConfig when
// the config is loaded with LoadConfig.
type Config struct {
	// Output is the shard directory (manifest.json, train-*.bin, val-*.bin, report.json).
	Output string `yaml:"output" json:"output"`
	// WorkDir holds intermediate results that make the run resumable
	// (default Output/.work).
	WorkDir string `yaml:"work_dir" json:"-"`
	// EmitJSONL, when set, keeps the cleaned documents as JSONL part files there.
	EmitJSONL string `yaml:"emit_jsonl" json:"emit_jsonl"`
	// Tokenizer is "byte", a named tokenizer (cl100k_base, o200k_base) or a path.
	Tokenizer string `yaml:"tokenizer" json:"tokenizer"`
	// Workers is the number of parallel workers (default GOMAXPROCS).
	Workers int            `yaml:"workers" json:"-"`
	Sources []SourceConfig `yaml:"sources" json:"sources"`
	Read    ReadConfig     `yaml:"read" json:"read"`
	Filters FilterConfig   `yaml:"filters" json:"filters"`
	PII     PIIConfig      `yaml:"pii" json:"pii"`
	Decon   DecontamConfig `yaml:"decontaminate" json:"decontaminate"`
	Dedup   DedupConfig    `yaml:"dedup" json:"dedup"`
	Shards  ShardConfig    `yaml:"shards" json:"shards"`

	// Encoder, when set, is used instead of loading Tokenizer (tests, embedding).
	Encoder Encoder `yaml:"-" json:"-"`
	// Progress receives progress lines; nil is silent.
	Progress io.Writer `yaml:"-" json:"-"`
	// ProgressTTY redraws one line per stage instead of printing new lines.
	ProgressTTY bool `yaml:"-" json:"-"`
	// Fresh discards an earlier run's work directory instead of resuming it.
	Fresh bool `yaml:"-" json:"-"`
	// StopAfterTasks makes the run stop with ErrStopped after this many completed
	// tasks in any phase (for testing interruption); 0 means never.
	StopAfterTasks int `yaml:"-" json:"-"`
}

// SourceConfig is one named group of inputs with its share of the mix.
type SourceConfig struct {
	Name   string   `yaml:"name" json:"name"`
	Inputs []string `yaml:"inputs" json:"inputs"`
	// Weight is the source's share of the training tokens relative to the other
	// weighted sources; the largest mix that needs no upsampling is taken.
	Weight float64 `yaml:"weight" json:"weight"`
	// Epochs repeats (or, below 1, subsamples) the source; it overrides Weight.
	Epochs float64 `yaml:"epochs" json:"epochs"`
	// TargetTokens sets the source's training tokens; it overrides Epochs and Weight.
	TargetTokens int64 `yaml:"target_tokens" json:"target_tokens"`
}

// ShardConfig shapes the output shards.
type ShardConfig struct {
	ValFraction float64 `yaml:"val_fraction" json:"val_fraction"` // fraction of documents held out
	ShardTokens int64   `yaml:"shard_tokens" json:"shard_tokens"`
	DType       string  `yaml:"dtype" json:"dtype"`
	Seed        uint64  `yaml:"seed" json:"seed"` // val split and fractional epochs
}

// DefaultConfig has every stage on with its default settings.
func DefaultConfig() Config {
	return Config{
		Tokenizer: "byte",
		Read:      ReadConfig{MaxFileBytes: 1 << 20},
		Filters:   DefaultFilterConfig(),
		PII:       DefaultPIIConfig(),
		Decon:     DecontamConfig{NGram: 13},
		Dedup:     DefaultDedupConfig(),
		Shards:    ShardConfig{ValFraction: 0.005, ShardTokens: DefaultShardTokens, Seed: 1},
	}
}

// LoadConfig reads a YAML pipeline file over DefaultConfig; unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read pipeline config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && err != io.EOF {
		return cfg, fmt.Errorf("parse pipeline config %s: %w", path, err)
	}
	return cfg, nil
}

// fingerprint identifies everything that changes the output.
func (c *Config) fingerprint(vocab, eot int) string {
	b, _ := json.Marshal(struct {
		C          *Config
		Vocab, EOT int
	}{c, vocab, eot})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

// LoadEncoder loads a MAI tokenizer by name ("byte", "cl100k_base", "o200k_base", ...)
// or path (see tokenizer.Load).
func LoadEncoder(name string) (Encoder, error) {
	if name == "" {
		name = "byte"
	}
	t, err := tokenizer.Load(name)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	return t, nil
}
