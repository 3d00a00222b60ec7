package data

import (
	"strings"
	"testing"
)

func TestDeduper(t *testing.T) {
	base := strings.Repeat("the quick brown fox jumps over the lazy dog while the cat sleeps ", 8)
	tests := []struct {
		name  string
		cfg   DedupConfig
		texts []string
		want  []string
	}{
		{"exact", DedupConfig{Exact: true}, []string{"Hello, World!", "hello world", "hello there"},
			[]string{"", "exact_duplicate", ""}},
		{"near", DefaultDedupConfig(), []string{base, base + " and one more word", "an entirely different text about go compilers and linkers"},
			[]string{"", "near_duplicate", ""}},
		{"off", DedupConfig{}, []string{"same", "same"}, []string{"", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDeduper(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.texts {
				if got := d.Check(s); got != tt.want[i] {
					t.Errorf("Check(text %d) = %q, want %q", i, got, tt.want[i])
				}
			}
		})
	}
	if _, err := NewDeduper(DedupConfig{Near: true, Threshold: 2}); err == nil {
		t.Error("NewDeduper with threshold 2 succeeded")
	}
	d, _ := NewDeduper(DedupConfig{Near: true, Threshold: 0.8})
	if c := d.Config(); c.Bands <= 0 || c.Rows <= 0 || c.Bands*c.Rows > c.Permutations {
		t.Errorf("Config() = %+v: bands and rows not resolved", c)
	}
}
