package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mai-llm/mai/format/quant"
)

func allKVs() []KV {
	return []KV{
		{"u8", uint8(200)},
		{"i8", int8(-5)},
		{"u16", uint16(60000)},
		{"i16", int16(-30000)},
		{"u32", uint32(4000000000)},
		{"i32", int32(-2000000000)},
		{"f32", float32(1.5)},
		{"bool", true},
		{"boolf", false},
		{"str", "héllo\x00world"},
		{"empty", ""},
		{"u64", uint64(1 << 63)},
		{"i64", int64(-1 << 62)},
		{"f64", math.Pi},
		{"a.u8", []uint8{1, 2, 3}},
		{"a.i8", []int8{-1, 2}},
		{"a.u16", []uint16{1, 65535}},
		{"a.i16", []int16{-1, 2}},
		{"a.u32", []uint32{7}},
		{"a.i32", []int32{-7, 8}},
		{"a.f32", []float32{0.5, -1}},
		{"a.bool", []bool{true, false, true}},
		{"a.str", []string{"a", "", "ccc"}},
		{"a.u64", []uint64{1 << 40}},
		{"a.i64", []int64{-1}},
		{"a.f64", []float64{2.25}},
		{"a.empty", []string{}},
		{"a.nested", []any{[]int32{1, 2}, []int32{3}}},
		{"a.nested2", []any{[]any{[]string{"x"}}, []any{}}},
	}
}

// encodeFile returns the encoded bytes of w.
func encodeFile(t testing.TB, w *Writer) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := w.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func randFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, align := range []uint32{0, 64, 1} {
		w := NewWriter()
		if align != 0 {
			if err := w.Set(KeyAlignment, align); err != nil {
				t.Fatal(err)
			}
		}
		for _, kv := range allKVs() {
			if err := w.Set(kv.Key, kv.Value); err != nil {
				t.Fatalf("Set(%s): %v", kv.Key, err)
			}
		}
		types := []quant.Type{quant.F32, quant.F16, quant.BF16, quant.Q8_0, quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q4_K, quant.Q5_K, quant.Q6_K}
		vals := map[string][]float32{}
		for i, typ := range types {
			name := "t." + strings.ToLower(typ.String())
			shape := []int{3, 512}
			if i%2 == 1 {
				shape = []int{2, 1, 256}
			}
			x := randFloats(rng, shape[0]*shape[len(shape)-1])
			vals[name] = x
			tt := Tensor{Name: name, Type: typ, Shape: shape, Float32: x}
			if i%3 == 1 {
				tt.Float32, tt.Source = nil, func() ([]float32, error) { return x, nil }
			}
			if err := w.Add(tt); err != nil {
				t.Fatal(err)
			}
		}
		raw := []byte{1, 2, 3, 4, 5}
		if err := w.Add(Tensor{Name: "raw.i8", Type: quant.I8, Shape: []int{5}, Data: raw}); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(Tensor{Name: "scalar", Type: quant.F32, Float32: []float32{42}}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := w.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		wantAlign := int(align)
		if align == 0 {
			wantAlign = DefaultAlignment
		}
		if f.Version != 3 || f.Alignment != wantAlign || f.DataOffset%int64(wantAlign) != 0 {
			t.Errorf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
		}
		for _, kv := range allKVs() {
			got, ok := f.Get(kv.Key)
			if !ok || !reflect.DeepEqual(got, kv.Value) {
				t.Errorf("align %d: %s = %#v, want %#v", align, kv.Key, got, kv.Value)
			}
		}
		if len(f.Tensors) != len(types)+2 {
			t.Fatalf("%d tensors", len(f.Tensors))
		}
		for _, typ := range types {
			name := "t." + strings.ToLower(typ.String())
			info, _ := f.Tensor(name)
			if info.Type != typ || info.Offset%uint64(wantAlign) != 0 {
				t.Errorf("%s: %+v", name, info)
			}
			got, shape, err := f.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			if shape[len(shape)-1] != 512 && shape[len(shape)-1] != 256 {
				t.Errorf("%s: shape %v, dims %v", name, shape, info.Dims)
			}
			// Expected: the same codec applied in memory.
			x := vals[name]
			q := make([]byte, info.Size)
			if err := quant.Quantize(typ, q, x); err != nil {
				t.Fatal(err)
			}
			b, _ := f.Bytes(name)
			if !bytes.Equal(b, q) {
				t.Errorf("%s: stored bytes differ from quant.Quantize", name)
			}
			want := make([]float32, len(x))
			quant.Dequantize(typ, want, q)
			if !slices.Equal(got, want) {
				t.Errorf("%s: values differ", name)
			}
		}
		if b, _ := f.Bytes("raw.i8"); !bytes.Equal(b, raw) {
			t.Errorf("raw.i8 = %v", b)
		}
		if v, shape, err := f.Float32("scalar"); err != nil || v[0] != 42 || !slices.Equal(shape, []int{1}) {
			t.Errorf("scalar = %v %v %v", v, shape, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Bytes("scalar"); err == nil {
			t.Error("Bytes after Close succeeded")
		}
	}
}

func TestDimsOrder(t *testing.T) {
	w := NewWriter()
	if err := w.Add(Tensor{Name: "w", Type: quant.F32, Shape: []int{3, 2}, Float32: []float32{1, 2, 3, 4, 5, 6}}); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(encodeFile(t, w))
	if err != nil {
		t.Fatal(err)
	}
	info := f.Tensors[0]
	if !slices.Equal(info.Dims, []uint64{2, 3}) || !slices.Equal(info.Shape(), []int{3, 2}) || info.NumElements() != 6 {
		t.Errorf("dims %v shape %v", info.Dims, info.Shape())
	}
}

func TestTypedGetters(t *testing.T) {
	w := NewWriter()
	for _, kv := range allKVs() {
		w.Set(kv.Key, kv.Value)
	}
	f, err := Parse(encodeFile(t, w))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Uint("u16"); !ok || v != 60000 {
		t.Errorf("Uint(u16) = %d %v", v, ok)
	}
	if _, ok := f.Uint("i8"); ok {
		t.Error("Uint of a negative int8 succeeded")
	}
	if v, ok := f.Int("i32"); !ok || v != -2000000000 {
		t.Errorf("Int(i32) = %d %v", v, ok)
	}
	if _, ok := f.Int("u64"); ok {
		t.Error("Int of 1<<63 succeeded")
	}
	if v, ok := f.Float("f32"); !ok || v != 1.5 {
		t.Errorf("Float(f32) = %v", v)
	}
	if v, ok := f.Bool("bool"); !ok || !v {
		t.Errorf("Bool = %v", v)
	}
	if v, ok := f.String("str"); !ok || v != "héllo\x00world" {
		t.Errorf("String = %q", v)
	}
	if v, ok := f.Strings("a.str"); !ok || len(v) != 3 {
		t.Errorf("Strings = %q", v)
	}
	if _, ok := f.String("u8"); ok {
		t.Error("String of a uint8 succeeded")
	}
	if s := Describe(make([]string, 10)); !strings.Contains(s, "10 strings") {
		t.Errorf("Describe = %s", s)
	}
}

func TestWriterRejects(t *testing.T) {
	w := NewWriter()
	setErrs := []struct {
		key string
		v   any
	}{
		{"", uint32(1)},
		{"x", 5}, // untyped int
		{"x", []int{1}},
		{"x", []any{[]int32{1}, []string{"a"}}},
		{"x", []any{uint8(1)}},
		{KeyAlignment, uint32(3)},
		{KeyAlignment, uint64(32)},
	}
	for _, tt := range setErrs {
		if err := w.Set(tt.key, tt.v); err == nil {
			t.Errorf("Set(%q, %#v) succeeded", tt.key, tt.v)
		}
	}
	addErrs := []struct {
		t    Tensor
		want string
	}{
		{Tensor{Name: "", Type: quant.F32, Float32: []float32{1}}, "empty name"},
		{Tensor{Name: strings.Repeat("n", 64), Type: quant.F32, Float32: []float32{1}}, "longer than"},
		{Tensor{Name: "a", Type: quant.F32, Shape: []int{1, 1, 1, 1, 1}, Float32: []float32{1}}, "more than 4"},
		{Tensor{Name: "a", Type: quant.Q4_K, Shape: []int{2, 128}, Float32: make([]float32, 256)}, "block size"},
		{Tensor{Name: "a", Type: quant.F32, Shape: []int{2}, Float32: []float32{1}}, "needs 2 values"},
		{Tensor{Name: "a", Type: quant.F16, Shape: []int{2}, Data: []byte{1}}, "needs 4 bytes"},
		{Tensor{Name: "a", Type: quant.F32, Shape: []int{1}}, "exactly one"},
		{Tensor{Name: "a", Type: quant.F32, Shape: []int{1}, Data: make([]byte, 4), Float32: []float32{1}}, "exactly one"},
		{Tensor{Name: "a", Type: quant.Q2_K, Shape: []int{256}, Float32: make([]float32, 256)}, "cannot encode"},
		{Tensor{Name: "a", Type: quant.Type(4), Shape: []int{1}, Data: []byte{1}}, "unknown type"},
		{Tensor{Name: "a", Type: quant.F32, Shape: []int{-1}}, "negative"},
	}
	for _, tt := range addErrs {
		err := w.Add(tt.t)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%+v) = %v, want %q", tt.t.Name, err, tt.want)
		}
	}
	if err := w.Add(Tensor{Name: "a", Type: quant.F32, Shape: []int{1}, Float32: []float32{1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Tensor{Name: "a", Type: quant.F32, Shape: []int{1}, Float32: []float32{1}}); err == nil {
		t.Error("duplicate Add succeeded")
	}
	// A failing source aborts the write and leaves no file.
	w2 := NewWriter()
	w2.Add(Tensor{Name: "s", Type: quant.F32, Shape: []int{2}, Source: func() ([]float32, error) { return []float32{1}, nil }})
	dir := t.TempDir()
	if err := w2.WriteFile(filepath.Join(dir, "x.gguf")); err == nil || !strings.Contains(err.Error(), "source gave 1 values") {
		t.Errorf("WriteFile with short source: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed write left %v", entries)
	}
}

// header builds a raw GGUF prefix for corrupt-file tests.
type raw struct{ b []byte }

func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) pad(n int) *raw    { r.b = append(r.b, make([]byte, n)...); return r }

func hdr(nt, nkv uint64) *raw {
	r := &raw{b: []byte("GGUF")}
	return r.u32(3).u64(nt).u64(nkv)
}

func TestCorrupt(t *testing.T) {
	good := func() []byte {
		w := NewWriter()
		w.Set("k", "v")
		w.Add(Tensor{Name: "a", Type: quant.F32, Shape: []int{4}, Float32: []float32{1, 2, 3, 4}})
		w.Add(Tensor{Name: "b", Type: quant.Q8_0, Shape: []int{32}, Float32: make([]float32, 32)})
		return encodeFile(t, w)
	}()
	// tensor info of one F32 [4] tensor at offset off
	tinfo := func(r *raw, name string, typ uint32, off uint64, dims ...uint64) *raw {
		r.str(name).u32(uint32(len(dims)))
		for _, d := range dims {
			r.u64(d)
		}
		return r.u32(typ).u64(off)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"magic", []byte("GGUX\x03\x00\x00\x00"), "bad magic"},
		{"v1", (&raw{b: []byte("GGUF")}).u32(1).b, "version 1"},
		{"big endian", (&raw{b: []byte("GGUF")}).u32(0x03000000).b, "big-endian"},
		{"v4", (&raw{b: []byte("GGUF")}).u32(4).b, "unsupported GGUF version 4"},
		{"short header", []byte("GGUF\x03\x00\x00\x00\x01"), "unexpected end"},
		{"huge tensor count", hdr(1<<60, 0).b, "tensor count"},
		{"huge kv count", hdr(0, 1<<60).b, "metadata count"},
		{"huge key", hdr(0, 1).u64(1 << 62).pad(8).b, "exceeds"},
		{"empty key", hdr(0, 1).str("").u32(4).u32(1).b, "empty key"},
		{"dup key", hdr(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(1).b, "duplicate key"},
		{"bad value type", hdr(0, 1).str("k").u32(13).pad(8).b, "unknown value type"},
		{"bad array type", hdr(0, 1).str("k").u32(9).u32(77).u64(0).b, "unknown array element type"},
		{"huge array", hdr(0, 1).str("k").u32(9).u32(4).u64(1 << 61).pad(16).b, "cannot fit"},
		{"huge string array", hdr(0, 1).str("k").u32(9).u32(8).u64(1 << 40).pad(16).b, "cannot fit"},
		{"huge nested string", hdr(0, 1).str("k").u32(9).u32(8).u64(1).u64(1 << 50).pad(8).b, "exceeds"},
		{"deep nesting", func() []byte {
			r := hdr(0, 1).str("k").u32(9)
			for range 10 {
				r.u32(9).u64(1)
			}
			return r.u32(4).u64(0).b
		}(), "nested deeper"},
		{"alignment type", hdr(0, 1).str(KeyAlignment).u32(10).u64(32).b, "want uint32"},
		{"alignment value", hdr(0, 1).str(KeyAlignment).u32(4).u32(48).b, "power of two"},
		{"name too long", tinfo(hdr(1, 0), strings.Repeat("x", 64), 0, 0, 4).pad(32).b, "longer than 63"},
		{"empty name", tinfo(hdr(1, 0), "", 0, 0, 4).pad(32).b, "empty tensor name"},
		{"too many dims", tinfo(hdr(1, 0), "a", 0, 0, 1, 1, 1, 1, 1).pad(32).b, "5 dimensions"},
		{"negative dim", tinfo(hdr(1, 0), "a", 0, 0, 1<<63).pad(32).b, "negative"},
		{"dims overflow", tinfo(hdr(1, 0), "a", 0, 0, 1<<40, 1<<40).pad(32).b, "overflow"},
		{"unknown type", tinfo(hdr(1, 0), "a", 5, 0, 4).pad(32).b, "unknown ggml type 5"},
		{"partial block", tinfo(hdr(1, 0), "a", uint32(quant.Q8_0), 0, 16).pad(64).b, "not a multiple"},
		{"dup tensor", tinfo(tinfo(hdr(2, 0), "a", 0, 0, 4), "a", 0, 32, 4).pad(64).b, "duplicate name"},
		{"misaligned", tinfo(hdr(1, 0), "a", 0, 4, 4).pad(64).b, "not a multiple of the alignment"},
		{"past end", tinfo(hdr(1, 0), "a", 0, 0, 1024).pad(64).b, "extends past"},
		{"huge offset", tinfo(hdr(1, 0), "a", 0, 1<<63, 4).pad(64).b, "extends past"},
		{"overlap", tinfo(tinfo(hdr(2, 0), "a", 0, 0, 16), "b", 0, 32, 16).pad(128).b, "overlaps"},
		{"truncated data", good[:len(good)-40], "extends past"},
		{"truncated header", good[:40], "cannot fit"},
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
	if _, err := Parse(good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "t.gguf")
	os.WriteFile(path, good[:len(good)-40], 0o644)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of truncated file: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	w := NewWriter()
	for _, kv := range allKVs() {
		w.Set(kv.Key, kv.Value)
	}
	w.Add(Tensor{Name: "a", Type: quant.Q4_K, Shape: []int{256}, Float32: make([]float32, 256)})
	w.Add(Tensor{Name: "b", Type: quant.F16, Shape: []int{2, 3}, Float32: make([]float32, 6)})
	f.Add(encodeFile(f, w))
	small := NewWriter()
	small.Set(KeyAlignment, uint32(8))
	small.Add(Tensor{Name: "x", Type: quant.Q8_0, Shape: []int{32}, Float32: make([]float32, 32)})
	f.Add(encodeFile(f, small))
	f.Add(hdr(0, 0).b)
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			b, err := file.Bytes(ti.Name)
			if err != nil || int64(len(b)) != ti.Size {
				t.Fatalf("%s: %d bytes, %v", ti.Name, len(b), err)
			}
			if ti.Type.CanDequantize() && ti.NumElements() < 1<<20 {
				file.Float32(ti.Name)
			}
		}
		// Whatever was read re-encodes and re-reads the same.
		w := NewWriter()
		for _, kv := range file.KV {
			if err := w.Set(kv.Key, kv.Value); err != nil {
				t.Fatalf("re-set %q: %v", kv.Key, err)
			}
		}
		for _, ti := range file.Tensors {
			b, _ := file.Bytes(ti.Name)
			if err := w.Add(Tensor{Name: ti.Name, Type: ti.Type, Shape: ti.Shape(), Data: b}); err != nil {
				t.Fatalf("re-add %q: %v", ti.Name, err)
			}
		}
		again, err := Parse(encodeFile(t, w))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again.KV) != len(file.KV) || len(again.Tensors) != len(file.Tensors) {
			t.Fatal("re-encoded file differs")
		}
	})
}

func TestQuantizeParallelMatchesSerial(t *testing.T) {
	x := randFloats(rand.New(rand.NewPCG(9, 9)), 1<<17+256)
	for _, typ := range []quant.Type{quant.Q4_K, quant.Q8_0, quant.F16} {
		n, _ := typ.RowBytes(int64(len(x)))
		a, b := make([]byte, n), make([]byte, n)
		if err := quant.Quantize(typ, a, x); err != nil {
			t.Fatal(err)
		}
		if err := QuantizeParallel(typ, b, x); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%v: parallel result differs", typ)
		}
	}
	if err := QuantizeParallel(quant.Q4_K, make([]byte, 144), make([]float32, 1<<17+1)); err == nil {
		t.Error("QuantizeParallel of a partial block succeeded")
	}
}
