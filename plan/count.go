package plan

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseCount parses a positive count such as a token budget: a plain number
// ("300000000000", "3e11", "16_000_000") or a number with a decimal suffix
// K (10^3), M (10^6), B or G (10^9), T (10^12), case-insensitive ("15.6T",
// "300B", "16M").
func ParseCount(s string) (float64, error) {
	orig := s
	s = strings.TrimSpace(s)
	s = strings.NewReplacer("_", "", ",", "").Replace(s)
	if s == "" {
		return 0, fmt.Errorf("empty count")
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1e3
	case 'm', 'M':
		mult = 1e6
	case 'b', 'B', 'g', 'G':
		mult = 1e9
	case 't', 'T':
		mult = 1e12
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("count %q: want a number with an optional K, M, B or T suffix", orig)
	}
	v *= mult
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, fmt.Errorf("count %q: must be a positive finite number", orig)
	}
	return v, nil
}

// FormatCount writes a count with a decimal suffix: 1.56e13 -> "15.6T".
func FormatCount(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e12:
		return trimNum(v/1e12) + "T"
	case a >= 1e9:
		return trimNum(v/1e9) + "B"
	case a >= 1e6:
		return trimNum(v/1e6) + "M"
	case a >= 1e3:
		return trimNum(v/1e3) + "K"
	}
	return trimNum(v)
}

// trimNum prints three significant digits without trailing zeros.
func trimNum(v float64) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1 || a == 0:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
