package data

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func testDocs(n int) []string {
	docs := make([]string, n)
	for i := range docs {
		docs[i] = fmt.Sprintf("document %d: %s", i, string(rune('a'+i%26))+" lorem words here and there")
	}
	return docs
}

func TestFeistelIsPermutation(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 5, 16, 17, 100, 1000, 4097} {
		for _, seed := range []uint64{0, 1, 42} {
			f := newFeistel(n, seed, 3)
			seen := make([]bool, n)
			for i := range n {
				j := f.at(i)
				if j >= n || seen[j] {
					t.Fatalf("n=%d seed=%d: at(%d)=%d repeated or out of range", n, seed, i, j)
				}
				seen[j] = true
			}
		}
	}
	a, b := newFeistel(1000, 1, 0), newFeistel(1000, 1, 1)
	same := 0
	for i := range uint64(1000) {
		if a.at(i) == b.at(i) {
			same++
		}
	}
	if same > 50 {
		t.Errorf("epochs 0 and 1 agree on %d of 1000 positions; reshuffle is weak", same)
	}
}

func TestWriteShardsRoundTrip(t *testing.T) {
	docs := testDocs(50)
	for _, tc := range []struct {
		name  string
		opts  ShardOptions
		width uint32
	}{
		{"one shard", ShardOptions{}, 2},
		{"many shards uint32", ShardOptions{ShardTokens: 100, DType: "uint32"}, 4},
		{"val split", ShardOptions{ValFraction: 0.1, ShardTokens: 300}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteShards(dir, slices.Values(docs), ByteEncoder{}, tc.opts); err != nil {
				t.Fatal(err)
			}
			var want, wantVal []int32
			var trainDocs []string
			for i, d := range docs {
				toks := append(bytesOf(d), 256)
				if tc.opts.ValFraction > 0 && i%10 == 0 {
					wantVal = append(wantVal, toks...)
					continue
				}
				want = append(want, toks...)
				trainDocs = append(trainDocs, d)
			}
			ds, err := OpenShards(dir, "train")
			if err != nil {
				t.Fatal(err)
			}
			defer ds.Close()
			if ds.VocabSize() != 257 || ds.EOT() != 256 || ds.Tokens() != int64(len(want)) || ds.Docs() != int64(len(trainDocs)) {
				t.Fatalf("vocab %d eot %d tokens %d docs %d; want 257 256 %d %d", ds.VocabSize(), ds.EOT(), ds.Tokens(), ds.Docs(), len(want), len(trainDocs))
			}
			got := make([]int32, ds.Tokens())
			if err := ds.ReadTokens(0, got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatal("train tokens differ from the encoded documents")
			}
			for _, i := range []int64{0, 7, ds.Docs() - 1} {
				doc, err := ds.Document(i)
				if err != nil {
					t.Fatal(err)
				}
				if string(int32sToBytes(doc[:len(doc)-1])) != trainDocs[i] {
					t.Errorf("document %d = %q, want %q", i, int32sToBytes(doc), trainDocs[i])
				}
			}
			for _, s := range ds.Shards() {
				h, err := VerifyShard(filepath.Join(dir, s.File))
				if err != nil {
					t.Fatal(err)
				}
				if h.TokenBytes != tc.width {
					t.Errorf("token width %d, want %d", h.TokenBytes, tc.width)
				}
			}
			if tc.opts.ValFraction > 0 {
				v, err := OpenShards(dir, "val")
				if err != nil {
					t.Fatal(err)
				}
				defer v.Close()
				gv := make([]int32, v.Tokens())
				if err := v.ReadTokens(0, gv); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(gv, wantVal) {
					t.Fatal("val tokens differ")
				}
			}
		})
	}
}

func bytesOf(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i])
	}
	return out
}

func int32sToBytes(t []int32) []byte {
	b := make([]byte, len(t))
	for i, v := range t {
		b[i] = byte(v)
	}
	return b
}

func openTestDataset(t *testing.T, docs int, shardTokens int64) *Dataset {
	t.Helper()
	dir := t.TempDir()
	if err := WriteShards(dir, slices.Values(testDocs(docs)), ByteEncoder{}, ShardOptions{ShardTokens: shardTokens}); err != nil {
		t.Fatal(err)
	}
	ds, err := OpenShards(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	return ds
}

func TestLoaderCoversEpochAndShifts(t *testing.T) {
	ds := openTestDataset(t, 40, 97)
	all := make([]int32, ds.Tokens())
	if err := ds.ReadTokens(0, all); err != nil {
		t.Fatal(err)
	}
	const B, T = 3, 16
	l, err := NewLoader(ds, LoaderConfig{Batch: B, SeqLen: T, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]int32, B*T), make([]int32, B*T)
	seen := map[int64]bool{}
	for range l.StepsPerEpoch() {
		if err := l.Next(x, y); err != nil {
			t.Fatal(err)
		}
		for b := range B {
			// Locate the sequence by content: it starts at a multiple of T.
			found := int64(-1)
			for s := int64(0); s*T+T < int64(len(all)); s++ {
				if slices.Equal(all[s*T:s*T+T], x[b*T:(b+1)*T]) && slices.Equal(all[s*T+1:s*T+T+1], y[b*T:(b+1)*T]) {
					found = s
					if !seen[s] {
						break
					}
				}
			}
			if found < 0 || seen[found] {
				t.Fatalf("batch row is not a fresh aligned sequence (found %d)", found)
			}
			seen[found] = true
		}
	}
	if int64(len(seen)) != l.StepsPerEpoch()*B {
		t.Fatalf("saw %d sequences, want %d", len(seen), l.StepsPerEpoch()*B)
	}
	if err := l.Next(x, y); err != nil || l.Epoch() != 1 {
		t.Fatalf("after an epoch: err %v, epoch %d", err, l.Epoch())
	}
}

func TestLoaderDeterminismRanksResume(t *testing.T) {
	ds := openTestDataset(t, 60, 200)
	const B, T, W = 2, 8, 3
	run := func(cfg LoaderConfig, steps int) [][]int32 {
		l, err := NewLoader(ds, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]int32
		for range steps {
			x, y := make([]int32, cfg.Batch*T), make([]int32, cfg.Batch*T)
			if err := l.Next(x, y); err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		return out
	}
	a := run(LoaderConfig{Batch: B, SeqLen: T, Seed: 1}, 30)
	b := run(LoaderConfig{Batch: B, SeqLen: T, Seed: 1}, 30)
	c := run(LoaderConfig{Batch: B, SeqLen: T, Seed: 2}, 30)
	if !slices.EqualFunc(a, b, slices.Equal) {
		t.Error("same seed gave different batches")
	}
	if slices.EqualFunc(a, c, slices.Equal) {
		t.Error("different seeds gave the same batches")
	}

	// Ranks of a world of W take disjoint blocks of the global batch, which is what a
	// single rank with batch B*W sees.
	global := run(LoaderConfig{Batch: B * W, SeqLen: T, Seed: 5}, 10)
	for r := range W {
		part := run(LoaderConfig{Batch: B, SeqLen: T, Seed: 5, Rank: r, World: W}, 10)
		for s := range part {
			if !slices.Equal(part[s], global[s][r*B*T:(r+1)*B*T]) {
				t.Fatalf("rank %d step %d is not block %d of the global batch", r, s, r)
			}
		}
	}

	// Resume: state after k steps, through JSON, restored in a new loader.
	for _, k := range []int{0, 5, 17, 29} {
		l, _ := NewLoader(ds, LoaderConfig{Batch: B, SeqLen: T, Seed: 1})
		x, y := make([]int32, B*T), make([]int32, B*T)
		for range k {
			if err := l.Next(x, y); err != nil {
				t.Fatal(err)
			}
		}
		js, _ := json.Marshal(l.State())
		var st LoaderState
		if err := json.Unmarshal(js, &st); err != nil {
			t.Fatal(err)
		}
		l2, _ := NewLoader(ds, LoaderConfig{Batch: B, SeqLen: T, Seed: 1})
		if err := l2.Restore(st); err != nil {
			t.Fatal(err)
		}
		for s := k; s < 30; s++ {
			if err := l2.Next(x, y); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(x, a[s]) {
				t.Fatalf("resumed at %d: step %d differs", k, s)
			}
		}
	}
}

func TestLoaderErrors(t *testing.T) {
	ds := openTestDataset(t, 3, 0)
	for _, cfg := range []LoaderConfig{
		{Batch: 0, SeqLen: 4},
		{Batch: 1, SeqLen: 4, Rank: 2, World: 2},
		{Batch: 1000, SeqLen: 1000},
	} {
		if _, err := NewLoader(ds, cfg); err == nil {
			t.Errorf("NewLoader(%+v) succeeded", cfg)
		}
	}
	l, _ := NewLoader(ds, LoaderConfig{Batch: 1, SeqLen: 4, Seed: 1})
	if err := l.Next(make([]int32, 3), make([]int32, 4)); err == nil {
		t.Error("Next with short x succeeded")
	}
	if err := l.Restore(LoaderState{Version: 1, Seed: 2, SeqLen: 4, Tokens: ds.Tokens()}); err == nil {
		t.Error("Restore with another seed succeeded")
	}
}

func TestOpenShardsRejectsCorruption(t *testing.T) {
	dir := t.TempDir()
	if err := WriteShards(dir, slices.Values(testDocs(5)), ByteEncoder{}, ShardOptions{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "train-000000.bin")
	b, _ := os.ReadFile(p)
	for name, mut := range map[string][]byte{
		"truncated": b[:len(b)-3],
		"bad magic": append([]byte("NOTSHARD"), b[8:]...),
		"short":     b[:10],
	} {
		os.WriteFile(p, mut, 0o644)
		if _, err := OpenShards(dir, "train"); err == nil {
			t.Errorf("%s shard opened", name)
		}
	}
	flip := slices.Clone(b)
	flip[shardHeaderSize+3] ^= 1
	os.WriteFile(p, flip, 0o644)
	if _, err := VerifyShard(p); err == nil {
		t.Error("bit flip passed verification")
	}
	if _, err := OpenShards(t.TempDir(), "train"); err == nil {
		t.Error("empty dir opened")
	}
}

func FuzzParseShardHeader(f *testing.F) {
	f.Add(ShardHeader{Version: 1, TokenBytes: 2, VocabSize: 257, EOT: 256, Tokens: 10, Docs: 2}.marshal())
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseShardHeader(b)
		if err == nil && h.fileSize() < shardHeaderSize {
			t.Fatalf("accepted header with size %d", h.fileSize())
		}
	})
}
