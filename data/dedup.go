package data

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// DedupReport sums exact and near-duplicate removal.
type DedupReport struct {
	Docs           int64   `json:"docs"`
	ExactRemoved   int64   `json:"exact_removed"`
	NearRemoved    int64   `json:"near_removed"`
	Clusters       int64   `json:"clusters"`
	CandidatePairs int64   `json:"candidate_pairs"`
	VerifiedPairs  int64   `json:"verified_pairs"`
	Passes         int     `json:"passes"`
	Bands          int     `json:"bands"`
	Rows           int     `json:"rows"`
	Threshold      float64 `json:"threshold"`
	// ClusterFile lists every cluster: the kept document and the removed ones.
	ClusterFile string `json:"cluster_file"`
}

type lshRec struct {
	key, key2 uint64
	doc       uint64
}

// phase2 finds duplicate clusters from the signatures of phase 1. Memory is bounded
// by Dedup.MemoryBytes: the LSH keys are processed in as many passes as needed, each
// holding the keys that fall in one hash partition. Only documents that take part in
// a candidate pair are held afterwards.
func (p *pipeline) phase2(ctx context.Context) error {
	dc := &p.cfg.Dedup
	donePath := filepath.Join(p.work, "p2", "dedup.json")
	if !dc.Exact && !dc.Near {
		return nil
	}
	if _, err := os.Stat(donePath); err == nil {
		p.resumed.Add(1)
		return nil
	}
	rep := DedupReport{Bands: dc.Bands, Rows: dc.Rows, Threshold: dc.Threshold}
	counts := make([]int64, len(p.plan.Tasks))
	for i := range p.plan.Tasks {
		var st taskStats
		if err := readJSON(p.taskPath("p1", i, ".json"), &st); err != nil {
			return fmt.Errorf("dedup: %w", err)
		}
		counts[i] = st.Docs
		rep.Docs += st.Docs
	}
	perDoc := int64(0)
	if dc.Exact {
		perDoc++
	}
	if dc.Near {
		perDoc += int64(dc.Bands)
	}
	passes := int(max(1, (rep.Docs*perDoc*24+dc.MemoryBytes-1)/dc.MemoryBytes))
	rep.Passes = passes
	p.prog.start("dedup", passes*len(p.plan.Tasks), 0, 0)
	type pair struct{ a, b uint64 }
	exactPairs := map[pair]bool{}
	nearCand := map[pair]bool{}
	keys := make([]uint64, 0, dc.Bands)
	for pass := range passes {
		var exact, bands []lshRec
		err := p.scanSigs(ctx, nil, func(doc uint64, rec []byte) {
			e0, e1 := binary.LittleEndian.Uint64(rec), binary.LittleEndian.Uint64(rec[8:])
			if dc.Exact && int(e0%uint64(passes)) == pass {
				exact = append(exact, lshRec{key: e0, key2: e1, doc: doc})
			}
			if dc.Near {
				sig := sigSlots(rec[16:])
				keys = bandKeys(sig, dc.Bands, dc.Rows, keys)
				for _, k := range keys {
					if int(k%uint64(passes)) == pass {
						bands = append(bands, lshRec{key: k, doc: doc})
					}
				}
			}
		})
		if err != nil {
			return err
		}
		for _, set := range []struct {
			recs []lshRec
			out  map[pair]bool
		}{{exact, exactPairs}, {bands, nearCand}} {
			slices.SortFunc(set.recs, func(x, y lshRec) int {
				return cmp.Or(cmp.Compare(x.key, y.key), cmp.Compare(x.key2, y.key2), cmp.Compare(x.doc, y.doc))
			})
			for i := 0; i < len(set.recs); {
				j := i + 1
				for j < len(set.recs) && set.recs[j].key == set.recs[i].key && set.recs[j].key2 == set.recs[i].key2 {
					if set.recs[j].doc != set.recs[i].doc {
						set.out[pair{set.recs[i].doc, set.recs[j].doc}] = true
					}
					j++
				}
				i = j
			}
		}
	}
	rep.CandidatePairs = int64(len(nearCand))
	// Verify near candidates on their full signatures.
	need := map[uint64][]uint32{}
	for pr := range nearCand {
		if !exactPairs[pr] {
			need[pr.a], need[pr.b] = nil, nil
		}
	}
	if len(need) > 0 {
		if err := p.scanSigs(ctx, need, func(doc uint64, rec []byte) {
			need[doc] = slices.Clone(sigSlots(rec[16:]))
		}); err != nil {
			return err
		}
	}
	parent := map[uint64]uint64{}
	var find func(uint64) uint64
	find = func(x uint64) uint64 {
		px, ok := parent[x]
		if !ok || px == x {
			return x
		}
		r := find(px)
		parent[x] = r
		return r
	}
	union := func(a, b uint64) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[ra] = ra
		parent[rb] = ra // the earliest document represents the cluster
	}
	sim := map[uint64]float64{}
	for pr := range exactPairs {
		union(pr.a, pr.b)
		rep.VerifiedPairs++
	}
	for pr := range nearCand {
		if exactPairs[pr] {
			continue
		}
		j := jaccardEstimate(need[pr.a], need[pr.b])
		if j >= dc.Threshold {
			union(pr.a, pr.b)
			rep.VerifiedPairs++
			sim[pr.b] = max(sim[pr.b], j)
		}
	}
	// Clusters: the root is kept; a member is an exact duplicate when its normalized
	// text hash equals the root's.
	exactOf := map[uint64]bool{}
	for pr := range exactPairs {
		if find(pr.a) == find(pr.b) {
			exactOf[pr.a], exactOf[pr.b] = true, true
		}
	}
	clusters := map[uint64][]uint64{}
	for x := range parent {
		r := find(x)
		if r != x {
			clusters[r] = append(clusters[r], x)
		}
	}
	roots := make([]uint64, 0, len(clusters))
	for r := range clusters {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	p.removed = map[uint64]byte{}
	var exactKeys map[uint64][2]uint64
	if dc.Exact {
		exactKeys = map[uint64][2]uint64{}
		want := map[uint64][]uint32{}
		for r, ms := range clusters {
			want[r] = nil
			for _, m := range ms {
				want[m] = nil
			}
		}
		if err := p.scanSigs(ctx, want, func(doc uint64, rec []byte) {
			exactKeys[doc] = [2]uint64{binary.LittleEndian.Uint64(rec), binary.LittleEndian.Uint64(rec[8:])}
		}); err != nil {
			return err
		}
	}
	ids := map[uint64]string{}
	for _, r := range roots {
		ids[r] = ""
		for _, m := range clusters[r] {
			ids[m] = ""
		}
	}
	if err := p.readIDs(ids); err != nil {
		return err
	}
	clusterPath := filepath.Join(p.work, "p2", "clusters.jsonl")
	cf, err := createTmp(clusterPath)
	if err != nil {
		return fmt.Errorf("dedup: %w", err)
	}
	type member struct {
		ID      string  `json:"id"`
		Reason  string  `json:"reason"`
		Jaccard float64 `json:"jaccard_estimate,omitempty"`
	}
	removedList := make([]byte, 0)
	for _, r := range roots {
		ms := clusters[r]
		slices.Sort(ms)
		out := struct {
			Keep    string   `json:"keep"`
			Size    int      `json:"size"`
			Removed []member `json:"removed"`
		}{Keep: ids[r], Size: len(ms) + 1}
		for _, m := range ms {
			reason := byte('n')
			if dc.Exact && exactKeys[m] == exactKeys[r] {
				reason = 'e'
				rep.ExactRemoved++
				out.Removed = append(out.Removed, member{ID: ids[m], Reason: "exact"})
			} else {
				rep.NearRemoved++
				out.Removed = append(out.Removed, member{ID: ids[m], Reason: "near", Jaccard: sim[m]})
			}
			p.removed[m] = reason
			removedList = binary.LittleEndian.AppendUint64(removedList, m)
			removedList = append(removedList, reason)
		}
		b, _ := json.Marshal(out)
		cf.w.Write(b)
		cf.w.WriteByte('\n')
	}
	_ = exactOf
	rep.Clusters = int64(len(roots))
	if err := cf.commit(); err != nil {
		return fmt.Errorf("dedup: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(p.work, "p2", "removed.bin"), removedList); err != nil {
		return err
	}
	rep.ClusterFile = clusterPath
	p.prog.finish()
	return writeJSONAtomic(donePath, &rep)
}

func sigSlots(b []byte) []uint32 {
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// scanSigs calls fn for the signature record of every document, or only of the
// documents in want when want is not nil (skipping tasks with none of them).
func (p *pipeline) scanSigs(ctx context.Context, want map[uint64][]uint32, fn func(doc uint64, rec []byte)) error {
	var tasks map[int]bool
	if want != nil {
		tasks = map[int]bool{}
		for d := range want {
			tasks[int(d>>32)] = true
		}
	}
	rec := make([]byte, p.sigSize())
	for _, t := range p.plan.Tasks {
		if tasks != nil && !tasks[t.Index] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(p.taskPath("p1", t.Index, ".sig"))
		if err != nil {
			return fmt.Errorf("dedup: %w", err)
		}
		br := bufio.NewReaderSize(f, 1<<20)
		for i := uint64(0); ; i++ {
			if _, err := io.ReadFull(br, rec); err != nil {
				f.Close()
				if err == io.EOF {
					break
				}
				return fmt.Errorf("dedup: signatures of task %d: %w", t.Index, err)
			}
			doc := uint64(t.Index)<<32 | i
			if want != nil {
				if _, ok := want[doc]; !ok {
					continue
				}
			}
			fn(doc, rec)
		}
		p.prog.add(1, 0)
	}
	return nil
}

// readIDs fills ids (keyed by document number) from the .ids files.
func (p *pipeline) readIDs(ids map[uint64]string) error {
	tasks := map[int]bool{}
	for d := range ids {
		tasks[int(d>>32)] = true
	}
	for t := range tasks {
		f, err := os.Open(p.taskPath("p1", t, ".ids"))
		if err != nil {
			return fmt.Errorf("dedup: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), 1<<26)
		for i := uint64(0); sc.Scan(); i++ {
			doc := uint64(t)<<32 | i
			if _, ok := ids[doc]; ok {
				var s string
				json.Unmarshal(sc.Bytes(), &s)
				ids[doc] = s
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("dedup: ids of task %d: %w", t, err)
		}
	}
	return nil
}

// loadRemoved reads the removal list of phase 2 (for a resumed run).
func (p *pipeline) loadRemoved() error {
	if p.removed != nil || (!p.cfg.Dedup.Exact && !p.cfg.Dedup.Near) {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(p.work, "p2", "removed.bin"))
	if err != nil {
		return fmt.Errorf("dedup: %w", err)
	}
	if len(b)%9 != 0 {
		return fmt.Errorf("dedup: corrupt removed.bin")
	}
	p.removed = make(map[uint64]byte, len(b)/9)
	for i := 0; i < len(b); i += 9 {
		p.removed[binary.LittleEndian.Uint64(b[i:])] = b[i+8]
	}
	return nil
}
