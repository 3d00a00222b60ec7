package plan

import (
	"math"
	"testing"
)

func TestParseCount(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"15.6T", 15.6e12},
		{"300B", 300e9},
		{"300b", 300e9},
		{"16M", 16e6},
		{"2k", 2e3},
		{"1.5G", 1.5e9},
		{"3e11", 3e11},
		{"16_777_216", 16777216},
		{"1,000,000", 1e6},
		{" 10T ", 10e12},
		{"42", 42},
	}
	for _, tc := range tests {
		got, err := ParseCount(tc.in)
		if err != nil {
			t.Errorf("ParseCount(%q): %v", tc.in, err)
			continue
		}
		if math.Abs(got-tc.want) > 1e-9*tc.want {
			t.Errorf("ParseCount(%q) = %g, want %g", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "T", "abc", "-5B", "0", "1.2.3M", "NaN", "inf", "5X", "1e400"} {
		if v, err := ParseCount(bad); err == nil {
			t.Errorf("ParseCount(%q) = %g, want an error", bad, v)
		}
	}
}

func TestFormatCount(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{15.6e12, "15.6T"}, {300e9, "300B"}, {30.84e6, "30.8M"}, {1.5e3, "1.5K"}, {7, "7"}, {2e6, "2M"}, {0, "0"}, {0.000312, "0.000312"}, {0.5, "0.5"},
	}
	for _, tc := range tests {
		if got := FormatCount(tc.in); got != tc.want {
			t.Errorf("FormatCount(%g) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"15.6T", "300B", "16M", "1e3", "", "-1", "1_000k", "0x10", "9e999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseCount(s)
		if err == nil && (v <= 0 || math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("ParseCount(%q) = %g without error", s, v)
		}
	})
}
