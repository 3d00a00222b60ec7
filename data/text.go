package data

import (
	"fmt"
	"os"
	"strings"
	"unicode"
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString is FNV-1a followed by a finalizer: fast, deterministic across runs and
// machines (unlike hash/maphash), and well mixed in every bit.
func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return splitmix64(h)
}

// hash128 is two independent 64-bit hashes of s.
func hash128(s string) [2]uint64 {
	h1, h2 := uint64(fnvOffset), uint64(0x84222325cbf29ce4)
	for i := 0; i < len(s); i++ {
		h1 ^= uint64(s[i])
		h1 *= fnvPrime
		h2 = (h2 ^ uint64(s[i])) * 0x100000001b3
		h2 ^= h2 >> 29
	}
	return [2]uint64{splitmix64(h1), splitmix64(h2 ^ uint64(len(s)))}
}

// normalizeWords lowercases text, drops punctuation and symbols, and returns the
// words. It is the normalization used by exact dedup, MinHash and decontamination.
func normalizeWords(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsControl(r)
	})
}

func readFileString(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), nil
}
