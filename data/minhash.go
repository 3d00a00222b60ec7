package data

import (
	"fmt"
	"math"
	"strings"
)

// DedupConfig configures exact and near-duplicate removal.
type DedupConfig struct {
	// Exact removes documents whose normalized text (lowercase, no punctuation,
	// single spaces) equals an earlier document's.
	Exact bool `yaml:"exact" json:"exact"`
	// Near removes documents whose estimated Jaccard similarity of word shingles with
	// an earlier document is at least Threshold (MinHash with LSH banding).
	Near         bool    `yaml:"near" json:"near"`
	Threshold    float64 `yaml:"threshold" json:"threshold"`
	ShingleSize  int     `yaml:"shingle_size" json:"shingle_size"`
	Permutations int     `yaml:"permutations" json:"permutations"`
	// Bands and Rows (Bands*Rows <= Permutations) default to the split that minimizes
	// the false-positive plus false-negative area around Threshold.
	Bands int    `yaml:"bands" json:"bands"`
	Rows  int    `yaml:"rows" json:"rows"`
	Seed  uint64 `yaml:"seed" json:"seed"`
	// MemoryBytes bounds the LSH index held at once; a larger index is processed in
	// several passes over the signatures.
	MemoryBytes int64 `yaml:"memory_bytes" json:"memory_bytes"`
}

// DefaultDedupConfig is exact plus near dedup at Jaccard 0.75 on 5-word shingles with
// 128 permutations.
func DefaultDedupConfig() DedupConfig {
	return DedupConfig{Exact: true, Near: true, Threshold: 0.75, ShingleSize: 5, Permutations: 128, Seed: 1, MemoryBytes: 1 << 30}
}

func (c *DedupConfig) resolve() error {
	if c.ShingleSize <= 0 {
		c.ShingleSize = 5
	}
	if c.Permutations <= 0 {
		c.Permutations = 128
	}
	if c.Threshold <= 0 || c.Threshold > 1 {
		return fmt.Errorf("dedup: threshold %v outside (0,1]", c.Threshold)
	}
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = 1 << 30
	}
	if c.Bands <= 0 || c.Rows <= 0 {
		c.Bands, c.Rows = optimalBands(c.Threshold, c.Permutations)
	}
	if c.Bands*c.Rows > c.Permutations {
		return fmt.Errorf("dedup: %d bands x %d rows exceed %d permutations", c.Bands, c.Rows, c.Permutations)
	}
	return nil
}

// optimalBands picks bands b and rows r (b*r <= perms) minimizing the area of false
// positives below threshold t plus false negatives above it, where a pair of
// similarity s becomes a candidate with probability 1-(1-s^r)^b.
func optimalBands(t float64, perms int) (int, int) {
	integrate := func(f func(float64) float64, a, b float64) float64 {
		const n = 200
		h := (b - a) / n
		s := 0.0
		for i := range n {
			s += f(a + (float64(i)+0.5)*h)
		}
		return s * h
	}
	best, bb, br := math.Inf(1), 1, perms
	for b := 1; b <= perms; b++ {
		for r := 1; b*r <= perms; r++ {
			p := func(s float64) float64 { return 1 - math.Pow(1-math.Pow(s, float64(r)), float64(b)) }
			fp := integrate(p, 0, t)
			fn := integrate(func(s float64) float64 { return 1 - p(s) }, t, 1)
			if e := fp + fn; e < best {
				best, bb, br = e, b, r
			}
		}
	}
	return bb, br
}

// minHasher computes MinHash signatures of word shingles.
type minHasher struct {
	k    int
	a, b []uint64
}

func newMinHasher(c *DedupConfig) *minHasher {
	m := &minHasher{k: c.ShingleSize, a: make([]uint64, c.Permutations), b: make([]uint64, c.Permutations)}
	s := c.Seed
	for i := range m.a {
		s = splitmix64(s + 1)
		m.a[i] = s | 1
		s = splitmix64(s + 1)
		m.b[i] = s
	}
	return m
}

// signature fills sig (len = permutations) for the normalized words; each slot is the
// minimum over shingles of a multiply-shift hash of the shingle's 64-bit hash.
func (m *minHasher) signature(ws []string, sig []uint32) {
	for i := range sig {
		sig[i] = math.MaxUint32
	}
	hs := make([]uint64, len(ws))
	for i, w := range ws {
		hs[i] = hashString(w)
	}
	n := len(hs) - m.k + 1
	if n < 1 {
		n = 1 // documents shorter than one shingle are a single shingle
	}
	for i := range n {
		x := ngramHash(hs[i:min(len(hs), i+m.k)])
		for j := range sig {
			v := uint32((m.a[j]*x + m.b[j]) >> 32)
			if v < sig[j] {
				sig[j] = v
			}
		}
	}
}

// exactKey is the 128-bit hash of the normalized text.
func exactKey(ws []string) [2]uint64 { return hash128(strings.Join(ws, " ")) }

// bandKeys returns one LSH key per band.
func bandKeys(sig []uint32, bands, rows int, out []uint64) []uint64 {
	out = out[:0]
	for b := range bands {
		h := uint64(b+1) * 0x9e3779b97f4a7c15
		for _, v := range sig[b*rows : (b+1)*rows] {
			h = splitmix64(h ^ uint64(v))
		}
		out = append(out, h)
	}
	return out
}

// jaccardEstimate is the fraction of equal signature slots.
func jaccardEstimate(a, b []uint32) float64 {
	eq := 0
	for i := range a {
		if a[i] == b[i] {
			eq++
		}
	}
	return float64(eq) / float64(len(a))
}

// Jaccard is the exact Jaccard similarity of two texts' k-word shingle sets after
// normalization (for tests and reports).
func Jaccard(a, b string, k int) float64 {
	set := func(s string) map[string]bool {
		ws := normalizeWords(s)
		m := map[string]bool{}
		for i := 0; i+k <= len(ws); i++ {
			m[strings.Join(ws[i:i+k], " ")] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	inter := 0
	for x := range sa {
		if sb[x] {
			inter++
		}
	}
	u := len(sa) + len(sb) - inter
	if u == 0 {
		return 1
	}
	return float64(inter) / float64(u)
}
