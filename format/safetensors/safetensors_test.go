package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fixtures are a tiny random Llama and its reference outputs, written by
// Hugging Face transformers; the expected values below were read from the
// files with Python's struct module.

func TestFixtureModel(t *testing.T) {
	f, err := Open("testdata/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := f.Names()
	if len(names) != 21 {
		t.Fatalf("got %d tensors, want 21", len(names))
	}
	if !slices.IsSorted(names) {
		t.Errorf("names not sorted: %v", names)
	}
	if got := f.Metadata()["format"]; got != "pt" {
		t.Errorf("metadata format = %q, want pt", got)
	}
	in, ok := f.Info("model.layers.0.self_attn.k_proj.weight")
	if !ok {
		t.Fatal("k_proj missing")
	}
	if in.DType != "F32" || !slices.Equal(in.Shape, []int{32, 64}) || in.Offsets != [2]int64{397824, 406016} {
		t.Errorf("k_proj info = %+v", in)
	}
	if _, ok := f.Info("nope"); ok {
		t.Error("Info of a missing tensor reported ok")
	}
	norm, shape, err := f.Float32("model.norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{64}) || norm[0] != 1 || norm[63] != 1 {
		t.Errorf("norm = %v %v", shape, norm[:3])
	}
	q, _, err := f.Float32("model.layers.1.self_attn.q_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{0.11418650299310684, 0.06948373466730118, -0.10120188444852829}
	if !slices.Equal(q[len(q)-3:], want) {
		t.Errorf("q_proj tail = %v, want %v", q[len(q)-3:], want)
	}
	if _, _, err := f.Int32("model.norm.weight"); err == nil {
		t.Error("Int32 of an F32 tensor succeeded")
	}
}

func TestFixtureReference(t *testing.T) {
	f, err := Open("testdata/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, shape, err := f.Int32("prompt")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{1, 8}) || !slices.Equal(ids, []int32{260, 494, 137, 343, 483, 195, 72, 339}) {
		t.Errorf("prompt = %v %v", shape, ids)
	}
	g, _, err := f.Float32("greedy")
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 32 || g[0] != 260 || g[31] != 78 {
		t.Errorf("greedy as float32 = %v", g)
	}
	logits, shape, err := f.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{2, 24, 512}) || !slices.Equal(logits[:3], []float32{0.1037045270204544, 0.6971854567527771, 0.2275528907775879}) {
		t.Errorf("logits = %v %v", shape, logits[:3])
	}
}

// encode returns the in-memory file for tensors.
func encode(t *testing.T, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, tensors, meta); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func allDTypes() []Tensor {
	vals := []float32{0, 1, -2.5, 3.25, 65504, -1e-3}
	return []Tensor{
		F32Tensor("f32", []int{2, 3}, vals),
		F16Tensor("f16", []int{3, 2}, vals),
		BF16Tensor("bf16", []int{6}, vals),
		I32Tensor("i32", []int{2, 2}, []int32{-1, 0, 7, math.MaxInt32}),
		I64Tensor("i64", []int{3}, []int64{-5, 0, 1 << 40}),
		{Name: "f64", DType: "F64", Shape: []int{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)), math.Float64bits(-2))},
		{Name: "i16", DType: "I16", Shape: []int{2}, Data: []byte{0xff, 0xff, 0x02, 0x00}},
		{Name: "i8", DType: "I8", Shape: []int{2}, Data: []byte{0x80, 0x7f}},
		{Name: "u8", DType: "U8", Shape: []int{2}, Data: []byte{0xff, 3}},
		{Name: "bool", DType: "BOOL", Shape: []int{3}, Data: []byte{1, 0, 1}},
		{Name: "scalar", DType: "F32", Shape: []int{}, Data: []byte{0, 0, 0x80, 0x3f}},
		{Name: "empty", DType: "F32", Shape: []int{0, 4}, Data: nil},
		{Name: "e4m3", DType: "F8_E4M3", Shape: []int{4}, Data: []byte{0x38, 0xb8, 0x01, 0x7e}},
		{Name: "e5m2", DType: "F8_E5M2", Shape: []int{2}, Data: []byte{0x3c, 0xc0}},
	}
}

func TestRoundTripAllDTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "all.safetensors")
	meta := map[string]string{"format": "pt", "note": "<a&b>"}
	in := allDTypes()
	if err := Write(path, in, meta); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 || raw[8] != '{' || !strings.HasPrefix(string(raw[8:]), `{"__metadata__":{"format":"pt","note":"<a&b>"},"bf16":`) {
		t.Errorf("header layout: n=%d %q", n, raw[8:60])
	}
	if h := bytes.TrimRight(raw[8:8+n], " "); h[len(h)-1] != '}' {
		t.Errorf("header not space padded: %q", raw[8:8+n])
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Path() != path {
		t.Errorf("Path = %q", f.Path())
	}
	if got := f.Metadata(); got["note"] != "<a&b>" || len(got) != 2 {
		t.Errorf("metadata = %v", got)
	}
	for _, want := range in {
		info, ok := f.Info(want.Name)
		if !ok {
			t.Fatalf("%s missing", want.Name)
		}
		if info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) {
			t.Errorf("%s: info %+v", want.Name, info)
		}
		b, err := f.Bytes(want.Name)
		if err != nil || !bytes.Equal(b, want.Data) {
			t.Errorf("%s: bytes %v %v, want %v", want.Name, b, err, want.Data)
		}
	}
	tests := []struct {
		name string
		want []float32
	}{
		{"f32", []float32{0, 1, -2.5, 3.25, 65504, -1e-3}},
		{"f16", []float32{0, 1, -2.5, 3.25, 65504, -0.0010004044}},
		{"bf16", []float32{0, 1, -2.5, 3.25, 65536, -0.0009994507}},
		{"i32", []float32{-1, 0, 7, math.MaxInt32}},
		{"i64", []float32{-5, 0, 1 << 40}},
		{"f64", []float32{1.5, -2}},
		{"i16", []float32{-1, 2}},
		{"i8", []float32{-128, 127}},
		{"u8", []float32{255, 3}},
		{"bool", []float32{1, 0, 1}},
		{"scalar", []float32{1}},
		{"empty", []float32{}},
		{"e4m3", []float32{1, -1, 0.001953125, 448}},
		{"e5m2", []float32{1, -2}},
	}
	for _, tt := range tests {
		got, _, err := f.Float32(tt.name)
		if err != nil {
			t.Errorf("Float32(%s): %v", tt.name, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Float32(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	ints := []struct {
		name string
		want []int32
		ok   bool
	}{
		{"i32", []int32{-1, 0, 7, math.MaxInt32}, true},
		{"i64", nil, false}, // 1<<40 does not fit
		{"i16", []int32{-1, 2}, true},
		{"i8", []int32{-128, 127}, true},
		{"u8", []int32{255, 3}, true},
		{"bool", []int32{1, 0, 1}, true},
		{"f32", nil, false},
	}
	for _, tt := range ints {
		got, _, err := f.Int32(tt.name)
		if (err == nil) != tt.ok || tt.ok && !slices.Equal(got, tt.want) {
			t.Errorf("Int32(%s) = %v, %v; want %v ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Bytes("f32"); err == nil {
		t.Error("Bytes after Close succeeded")
	}
}

func TestRewriteFixtureIsIdentical(t *testing.T) {
	src, err := Open("testdata/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var ts []Tensor
	for _, n := range src.Names() {
		in, _ := src.Info(n)
		b, _ := src.Bytes(n)
		ts = append(ts, Tensor{Name: n, DType: in.DType, Shape: in.Shape, Data: b})
	}
	// The fixture was written with sorted names, so the data buffer matches.
	out := encode(t, ts, src.Metadata())
	orig, _ := os.ReadFile("testdata/model.safetensors")
	no := binary.LittleEndian.Uint64(orig)
	nn := binary.LittleEndian.Uint64(out)
	if !bytes.Equal(orig[8+no:], out[8+nn:]) {
		t.Error("data buffer differs from the fixture")
	}
	var a, b map[string]any
	if err := json.Unmarshal(orig[8:8+no], &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out[8:8+nn], &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Errorf("header differs:\n%s\n%s", ja, jb)
	}
}

// withHeader builds a file from a raw JSON header and a data buffer.
func withHeader(h string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(append(b, h...), data...)
}

func TestCorrupt(t *testing.T) {
	good := encode(t, []Tensor{F32Tensor("a", []int{2}, []float32{1, 2}), F32Tensor("b", []int{1}, []float32{3})}, nil)
	huge := slices.Clone(good)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	past := slices.Clone(good)
	binary.LittleEndian.PutUint64(past, uint64(len(good)))
	d12 := make([]byte, 12)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"short", []byte{1, 2, 3}, "too short"},
		{"huge header claim", huge, "exceeds the 100000000-byte limit"},
		{"header past end", past, "truncated"},
		{"truncated data", good[:len(good)-1], "truncated"},
		{"extra data", append(slices.Clone(good), 0), "ends at 12"},
		{"not an object", withHeader(`[1, 2]   `, nil), "does not start with '{'"},
		{"bad json", withHeader(`{"a": {"dtype": "F32",`, nil), "a"},
		{"trailing", withHeader(`{} x`, nil), "trailing data"},
		{"unknown dtype", withHeader(`{"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), `unknown dtype "F17"`},
		{"size mismatch", withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)), "needs 8 bytes"},
		{"negative dim", withHeader(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, nil), "bad dimension"},
		{"overflow", withHeader(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "overflows"},
		{"missing shape", withHeader(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), "missing shape"},
		{"three offsets", withHeader(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), "3 entries"},
		{"reversed offsets", withHeader(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "bad data_offsets"},
		{"gap", withHeader(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "gap"},
		{"overlap", withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "overlap"},
		{"duplicate", withHeader(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "duplicate tensor"},
		{"bad metadata", withHeader(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"bad utf8", withHeader("{\"\xff\":{}}", nil), "UTF-8"},
		{"offset past end", withHeader(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`, d12[:8]), "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// The same through Open, which names the file.
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(path, good[:len(good)-2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of truncated file: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		ts   []Tensor
		want string
	}{
		{"short data", []Tensor{{Name: "a", DType: "F32", Shape: []int{2}, Data: make([]byte, 4)}}, "needs 8 bytes"},
		{"duplicate", []Tensor{F32Tensor("a", []int{1}, []float32{1}), F32Tensor("a", []int{1}, []float32{1})}, "duplicate"},
		{"dtype", []Tensor{{Name: "a", DType: "Q4", Shape: []int{1}, Data: make([]byte, 1)}}, "unknown dtype"},
		{"reserved", []Tensor{F32Tensor("__metadata__", []int{1}, []float32{1})}, "reserved"},
		{"empty name", []Tensor{F32Tensor("", []int{1}, []float32{1})}, "empty name"},
	}
	for _, tt := range tests {
		err := Write(filepath.Join(dir, tt.name), tt.ts, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed writes left files: %v", entries)
	}
}

func TestWriteDir(t *testing.T) {
	var ts []Tensor
	for i, n := range []string{"e", "a", "d", "c", "b"} {
		ts = append(ts, F32Tensor(n, []int{4 + i}, make([]float32, 4+i)))
	}
	dir := t.TempDir()
	// Sorted sizes: a=20, b=32, c=28, d=24, e=16 bytes; max 60 gives
	// [a b] [c d] [e].
	if err := WriteDir(dir, ts, map[string]string{"format": "pt"}, 60); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Metadata["total_size"] != float64(120) || idx.WeightMap["c"] != "model-00002-of-00003.safetensors" || idx.WeightMap["e"] != "model-00003-of-00003.safetensors" {
		t.Errorf("index = %s", raw)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Names(), []string{"a", "b", "c", "d", "e"}) || len(s.Files()) != 3 {
		t.Errorf("names %v files %v", s.Names(), s.Files())
	}
	if s.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v", s.Metadata())
	}
	for _, n := range s.Names() {
		v, shape, err := s.Float32(n)
		if err != nil || len(v) != shape[0] {
			t.Errorf("%s: %v %v %v", n, v, shape, err)
		}
		if _, ok := s.Info(n); !ok {
			t.Errorf("Info(%s) missing", n)
		}
	}
	if _, err := s.Bytes("zz"); err == nil {
		t.Error("Bytes of missing tensor succeeded")
	}
	s.Close()
	if _, err := s.Bytes("a"); err == nil {
		t.Error("Bytes after Close succeeded")
	}

	// Rewriting as one file removes the shards and the index.
	if err := WriteDir(dir, ts, nil, 0); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != SingleFile {
		t.Errorf("after single write: %v", entries)
	}
	s, err = OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Int32("a"); err == nil {
		t.Error("Int32 of F32 succeeded")
	}
	s.Close()
	// A path to a file opens that file.
	s, err = OpenDir(filepath.Join(dir, SingleFile))
	if err != nil || len(s.Names()) != 5 {
		t.Fatalf("OpenDir(file): %v", err)
	}
	s.Close()
}

func TestOpenDirErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty dir: %v", err)
	}
	if err := Write(filepath.Join(dir, "x.safetensors"), []Tensor{F32Tensor("a", []int{1}, []float32{1})}, nil); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, IndexFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ index, want string }{
		{`{`, "unexpected end"},
		{`{"weight_map":{}}`, "empty weight_map"},
		{`{"weight_map":{"a":"../x.safetensors"}}`, "plain file name"},
		{`{"weight_map":{"a":"y.safetensors"}}`, "no such file"},
		{`{"weight_map":{"b":"x.safetensors"}}`, "does not hold"},
	}
	for _, tt := range tests {
		write(tt.index)
		if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("index %s: %v, want %q", tt.index, err, tt.want)
		}
	}
	write(`{"metadata":{"total_size":4},"weight_map":{"a":"x.safetensors"}}`)
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _, err := s.Float32("a"); err != nil || v[0] != 1 {
		t.Errorf("a = %v %v", v, err)
	}
	// The fixture directory opens through model.safetensors.
	fs, err := OpenDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if len(fs.Names()) != 21 {
		t.Errorf("fixture dir has %d tensors", len(fs.Names()))
	}
}

func FuzzOpen(f *testing.F) {
	var b bytes.Buffer
	if err := Encode(&b, allDTypes(), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(withHeader(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(withHeader(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, []byte{0, 0, 0, 0x80, 0, 0, 0, 0}))
	ref, err := os.ReadFile("testdata/reference.safetensors")
	if err != nil {
		f.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(ref)
	f.Add(ref[:8+n+64])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		total := 0
		for _, name := range file.Names() {
			in, ok := file.Info(name)
			if !ok {
				t.Fatalf("Info(%q) missing", name)
			}
			b, err := file.Bytes(name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(b)) != in.Offsets[1]-in.Offsets[0] {
				t.Fatalf("%s: %d bytes for offsets %v", name, len(b), in.Offsets)
			}
			total += len(b)
			file.Float32(name)
			file.Int32(name)
		}
		_ = file.Metadata()
		// A valid file re-encodes to a valid file with the same tensors.
		var ts []Tensor
		for _, name := range file.Names() {
			in, _ := file.Info(name)
			b, _ := file.Bytes(name)
			ts = append(ts, Tensor{Name: name, DType: in.DType, Shape: in.Shape, Data: b})
		}
		var out bytes.Buffer
		if err := Encode(&out, ts, file.Metadata()); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !slices.Equal(again.Names(), file.Names()) {
			t.Fatal("names changed on re-encode")
		}
		_ = total
	})
}

func TestF32Stream(t *testing.T) {
	vals := make([]float32, 1<<18+5)
	for i := range vals {
		vals[i] = float32(i) * 0.5
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "s.safetensors")
	if err := Write(path, []Tensor{F32Stream("big", []int{len(vals)}, vals), F32Tensor("small", []int{1}, []float32{3})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _, err := f.Float32("big")
	if err != nil || !slices.Equal(got, vals) {
		t.Fatalf("big: %v", err)
	}
	// Sharding counts streamed tensors by their declared size.
	if err := WriteDir(dir, []Tensor{F32Stream("a", []int{4}, make([]float32, 4)), F32Stream("b", []int{4}, make([]float32, 4))}, nil, 16); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ShardName(2, 2))); err != nil {
		t.Errorf("streamed tensors were not sharded: %v", err)
	}
	short := Tensor{Name: "x", DType: "F32", Shape: []int{2}, WriteData: func(w io.Writer) error { _, err := w.Write(make([]byte, 4)); return err }}
	if err := Write(filepath.Join(dir, "bad"), []Tensor{short}, nil); err == nil || !strings.Contains(err.Error(), "wrote 4 bytes") {
		t.Errorf("short WriteData: %v", err)
	}
	both := F32Stream("y", []int{1}, []float32{1})
	both.Data = make([]byte, 4)
	if err := Write(filepath.Join(dir, "bad"), []Tensor{both}, nil); err == nil {
		t.Error("Data and WriteData both set accepted")
	}
}
