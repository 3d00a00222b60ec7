package synth

import (
	"crypto/sha256"
	"math"
	"strings"
	"unicode"
)

// deduper removes exact and near duplicates from a stream, keeping the first of
// each group. Exact: equal normalized text (lowercase, letters and digits only,
// single spaces), as the data pipeline defines it. Near: MinHash over word shingles
// with LSH banding; a candidate pair is a duplicate when the fraction of equal
// signature slots (the Jaccard estimate) reaches the threshold.
type deduper struct {
	cfg   Dedup
	exact map[[16]byte]struct{}
	a, b  []uint64
	bands []map[uint64][]int32
	sigs  [][]uint32
	rows  int
}

func newDeduper(cfg Dedup) *deduper {
	d := &deduper{cfg: cfg, exact: map[[16]byte]struct{}{}}
	if !cfg.Near {
		return d
	}
	if d.cfg.ShingleSize <= 0 {
		d.cfg.ShingleSize = 5
	}
	if d.cfg.Permutations <= 0 {
		d.cfg.Permutations = 128
	}
	if d.cfg.Bands <= 0 || d.cfg.Rows <= 0 || d.cfg.Bands*d.cfg.Rows > d.cfg.Permutations {
		d.cfg.Bands, d.cfg.Rows = lshBands(d.cfg.Threshold, d.cfg.Permutations)
	}
	d.rows = d.cfg.Rows
	d.a, d.b = make([]uint64, d.cfg.Permutations), make([]uint64, d.cfg.Permutations)
	s := d.cfg.Seed
	for i := range d.a {
		s = mix64(s + 0x9e3779b97f4a7c15)
		d.a[i] = s | 1
		s = mix64(s + 0x9e3779b97f4a7c15)
		d.b[i] = s
	}
	d.bands = make([]map[uint64][]int32, d.cfg.Bands)
	for i := range d.bands {
		d.bands[i] = map[uint64][]int32{}
	}
	return d
}

// lshBands picks bands b and rows r (b*r <= perms) minimizing the false-positive
// area below threshold t plus the false-negative area above it, where a pair of
// similarity s becomes a candidate with probability 1-(1-s^r)^b.
func lshBands(t float64, perms int) (int, int) {
	integrate := func(f func(float64) float64, lo, hi float64) float64 {
		const n = 100
		h := (hi - lo) / n
		sum := 0.0
		for i := range n {
			sum += f(lo + (float64(i)+0.5)*h)
		}
		return sum * h
	}
	best, bb, br := math.Inf(1), 1, perms
	for b := 1; b <= perms; b++ {
		for r := 1; b*r <= perms; r++ {
			p := func(s float64) float64 { return 1 - math.Pow(1-math.Pow(s, float64(r)), float64(b)) }
			e := integrate(p, 0, t) + integrate(func(s float64) float64 { return 1 - p(s) }, t, 1)
			if e < best {
				best, bb, br = e, b, r
			}
		}
	}
	return bb, br
}

// normWords lowercases text and keeps runs of letters and digits.
func normWords(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// check returns "" when text is new (and remembers it), or the kind of duplicate.
func (d *deduper) check(text string) string {
	ws := normWords(text)
	if d.cfg.Exact {
		h := sha256.Sum256([]byte(strings.Join(ws, " ")))
		var k [16]byte
		copy(k[:], h[:16])
		if _, ok := d.exact[k]; ok {
			return "exact_duplicate"
		}
		d.exact[k] = struct{}{}
	}
	if !d.cfg.Near {
		return ""
	}
	sig := d.signature(ws)
	keys := make([]uint64, len(d.bands))
	for bi := range d.bands {
		h := uint64(bi+1) * 0x9e3779b97f4a7c15
		for _, v := range sig[bi*d.rows : (bi+1)*d.rows] {
			h = mix64(h ^ uint64(v))
		}
		keys[bi] = h
		for _, j := range d.bands[bi][h] {
			if estimate(sig, d.sigs[j]) >= d.cfg.Threshold {
				return "near_duplicate"
			}
		}
	}
	id := int32(len(d.sigs))
	d.sigs = append(d.sigs, sig)
	for bi, h := range keys {
		d.bands[bi][h] = append(d.bands[bi][h], id)
	}
	return ""
}

func (d *deduper) signature(ws []string) []uint32 {
	sig := make([]uint32, len(d.a))
	for i := range sig {
		sig[i] = math.MaxUint32
	}
	hs := make([]uint64, len(ws))
	for i, w := range ws {
		hs[i] = hashString(w)
	}
	k := d.cfg.ShingleSize
	n := max(1, len(hs)-k+1) // a text shorter than a shingle is one shingle
	for i := range n {
		x := uint64(0x51ed27)
		for _, h := range hs[i:min(len(hs), i+k)] {
			x = mix64(x ^ h)
		}
		for j := range sig {
			if v := uint32((d.a[j]*x + d.b[j]) >> 32); v < sig[j] {
				sig[j] = v
			}
		}
	}
	return sig
}

func estimate(a, b []uint32) float64 {
	eq := 0
	for i := range a {
		if a[i] == b[i] {
			eq++
		}
	}
	return float64(eq) / float64(len(a))
}

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
