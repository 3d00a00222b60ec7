package synth

import (
	"log/slog"
	"strings"

	"github.com/mai-llm/mai/data"
)

// deduper removes exact and near duplicates from the outputs, keeping the
// first of each group: the data pipeline's dedup (data.Deduper: exact on
// normalized text, MinHash over word shingles with LSH banding) over the
// text that cfg.On selects.
type deduper struct {
	cfg Dedup // with the bands and rows in use
	d   *data.Deduper
}

func newDeduper(cfg Dedup) *deduper {
	d, err := data.NewDeduper(cfg.DedupConfig)
	if err != nil {
		// Validate rejects such configs; keep exact dedup if one gets here.
		slog.Warn("synth: near dedup off", "err", err)
		cfg.Near = false
		d, _ = data.NewDeduper(cfg.DedupConfig)
	}
	cfg.DedupConfig = d.Config()
	return &deduper{cfg: cfg, d: d}
}

// check returns "" when text is new (and remembers it), or the kind of duplicate.
func (d *deduper) check(text string) string { return d.d.Check(text) }

// dedupText is the text of a record that dedup compares.
func dedupText(rec *Record, on string) string {
	var parts []string
	for _, m := range rec.Messages {
		switch {
		case m.Role == "system":
		case on == "prompt" && m.Role == "user":
			return m.Content
		case on == "response" && m.Role != "assistant":
		case on == "prompt":
		default:
			parts = append(parts, m.Content)
		}
	}
	return strings.Join(parts, "\n")
}
