package data

// Deduper removes exact and near duplicates from a stream held in memory,
// keeping the first of each group, with the same normalization, MinHash
// signatures and LSH banding as the pipeline's dedup stage (which works on
// disk over many shards). Other producers of text, such as synth, use it for
// streams small enough to index in memory.
type Deduper struct {
	cfg   DedupConfig
	mh    *minHasher
	exact map[[2]uint64]struct{}
	bands []map[uint64][]int32
	sigs  [][]uint32
	keys  []uint64
}

// NewDeduper returns a Deduper for c. With c.Near, c.Threshold must lie in
// (0, 1]; zero shingle size, permutations, bands or rows take their defaults.
func NewDeduper(c DedupConfig) (*Deduper, error) {
	d := &Deduper{cfg: c, exact: map[[2]uint64]struct{}{}}
	if !c.Near {
		return d, nil
	}
	if err := d.cfg.resolve(); err != nil {
		return nil, err
	}
	d.mh = newMinHasher(&d.cfg)
	d.bands = make([]map[uint64][]int32, d.cfg.Bands)
	for i := range d.bands {
		d.bands[i] = map[uint64][]int32{}
	}
	return d, nil
}

// Config returns the configuration in use, with defaults filled in (the
// bands and rows chosen for the threshold).
func (d *Deduper) Config() DedupConfig { return d.cfg }

// Check returns "" when text is new, and remembers it, or the kind of
// duplicate it is: "exact_duplicate" (its normalized text was seen) or
// "near_duplicate" (an earlier text's estimated Jaccard similarity reaches
// the threshold).
func (d *Deduper) Check(text string) string {
	ws := normalizeWords(text)
	if d.cfg.Exact {
		k := exactKey(ws)
		if _, ok := d.exact[k]; ok {
			return "exact_duplicate"
		}
		d.exact[k] = struct{}{}
	}
	if !d.cfg.Near {
		return ""
	}
	sig := make([]uint32, d.cfg.Permutations)
	d.mh.signature(ws, sig)
	d.keys = bandKeys(sig, d.cfg.Bands, d.cfg.Rows, d.keys)
	for bi, k := range d.keys {
		for _, j := range d.bands[bi][k] {
			if jaccardEstimate(sig, d.sigs[j]) >= d.cfg.Threshold {
				return "near_duplicate"
			}
		}
	}
	id := int32(len(d.sigs))
	d.sigs = append(d.sigs, sig)
	for bi, k := range d.keys {
		d.bands[bi][k] = append(d.bands[bi][k], id)
	}
	return ""
}
