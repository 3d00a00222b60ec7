// Package gguf reads and writes GGUF, the model file format of llama.cpp and
// Ollama (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
//
// A GGUF file is a header ("GGUF", version, tensor count, metadata count),
// typed key/value metadata, one info record per tensor (name, dimensions,
// ggml type, offset), padding to the alignment (general.alignment, default
// 32), then the tensor data, each tensor starting at an aligned offset.
//
// Dimensions in GGUF are listed innermost first (ggml's ne[0] is the row
// length): a PyTorch weight of shape [out, in] has GGUF dims [in, out].
// TensorInfo.Dims keeps the file's order; TensorInfo.Shape and the writer's
// Tensor.Shape use the row-major (PyTorch, safetensors) order.
//
// Open maps a file read-only and validates it before returning: every count
// and length is checked against the bytes left in the file before anything
// is allocated, so a corrupt or hostile file gives an error, never a huge
// allocation or a panic.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/internal/mmap"
)

// Magic is the first four bytes of a GGUF file.
const Magic = "GGUF"

// Version is the GGUF version written; versions 2 and 3 are read (they
// differ only in that 3 allows big-endian files, which are not supported).
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME-1).
const MaxNameLen = 63

// MaxDims is the most dimensions a ggml tensor has.
const MaxDims = 4

// maxArrayDepth bounds nested metadata arrays.
const maxArrayDepth = 8

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size returns the encoded size of a fixed-size value type, 0 otherwise.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry. Value holds one of: uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64; a slice of
// one of those for an array; or []any of such slices for a nested array.
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	// Name is the tensor's GGUF name ("blk.0.attn_q.weight").
	Name string
	// Dims are the dimensions innermost first, as stored (ggml's ne).
	Dims []uint64
	// Type is the ggml storage type.
	Type quant.Type
	// Offset is the data's offset from the start of the data section.
	Offset uint64
	// Size is the data's size in bytes.
	Size int64
}

// Shape returns the dimensions outermost first (row-major, as PyTorch).
func (t TensorInfo) Shape() []int {
	s := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		s[len(s)-1-i] = int(d)
	}
	return s
}

// NumElements returns the product of the dimensions.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// File is an open GGUF file. Its methods are safe for concurrent use until
// Close.
type File struct {
	// Version is the file's GGUF version.
	Version uint32
	// KV is the metadata in file order.
	KV []KV
	// Tensors are the tensor infos in file order.
	Tensors []TensorInfo
	// Alignment is the data alignment in bytes.
	Alignment int
	// DataOffset is the file offset of the data section.
	DataOffset int64

	path   string
	data   []byte
	kvIdx  map[string]int
	tIdx   map[string]int
	infos  []TensorInfo // validated copy of Tensors, immune to callers' edits
	unmap  func() error
	closed bool
}

// Open opens and validates the GGUF file at path, mapping it read-only
// where the platform allows and reading it into memory otherwise.
func Open(path string) (*File, error) {
	data, unmap, err := mmap.Map(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := parse(data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.path, f.unmap = path, unmap
	return f, nil
}

// Parse validates data as a GGUF file held in memory. The File refers to
// data, which must not change while the File is in use.
func Parse(data []byte) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return f, nil
}

// decoder reads little-endian values from a byte slice, failing cleanly at
// its end.
type decoder struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end of file")

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.err = fmt.Errorf("at offset %d: need %d bytes, %d left: %w", d.off, n, len(d.b)-d.off, errShort)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) left() int { return len(d.b) - d.off }

// count reads a uint64 count of items of at least minSize bytes each and
// checks that they can fit in the rest of the file.
func (d *decoder) count(what string, minSize int) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if n > uint64(d.left()/max(minSize, 1)) {
		d.err = fmt.Errorf("at offset %d: %s count %d cannot fit in the %d bytes left", d.off-8, what, n, d.left())
		return 0
	}
	return int(n)
}

func (d *decoder) str(what string) string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > uint64(d.left()) {
		d.err = fmt.Errorf("at offset %d: %s length %d exceeds the %d bytes left: %w", d.off-8, what, n, d.left(), errShort)
		return ""
	}
	return string(d.take(int(n)))
}

func parse(data []byte) (*File, error) {
	d := &decoder{b: data}
	magic := d.take(4)
	if d.err != nil {
		return nil, fmt.Errorf("file is %d bytes, too short for a GGUF header", len(data))
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("bad magic %q, not a GGUF file", magic)
	}
	f := &File{Alignment: DefaultAlignment, data: data, kvIdx: map[string]int{}, tIdx: map[string]int{}}
	f.Version = d.u32()
	switch {
	case d.err != nil:
		return nil, d.err
	case f.Version == 1:
		return nil, fmt.Errorf("GGUF version 1 is not supported")
	case f.Version&0xffff == 0:
		return nil, fmt.Errorf("GGUF version %#x: a big-endian file, not supported", f.Version)
	case f.Version != 2 && f.Version != 3:
		return nil, fmt.Errorf("unsupported GGUF version %d", f.Version)
	}
	// Each tensor info takes at least 8+4+4+8 bytes, each KV at least 8+4+1.
	nTensors := d.count("tensor", 24)
	nKV := d.count("metadata", 13)
	if d.err != nil {
		return nil, d.err
	}
	for i := 0; i < nKV; i++ {
		key := d.str("key")
		if d.err != nil {
			return nil, fmt.Errorf("metadata %d: %w", i, d.err)
		}
		if key == "" {
			return nil, fmt.Errorf("metadata %d: empty key", i)
		}
		if _, dup := f.kvIdx[key]; dup {
			return nil, fmt.Errorf("metadata %d: duplicate key %q", i, key)
		}
		typ := ValueType(d.u32())
		v := d.value(typ, 0)
		if d.err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, d.err)
		}
		f.kvIdx[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if v, ok := f.kvIdx["general.alignment"]; ok {
		a, isU32 := f.KV[v].Value.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("general.alignment has type %T, want uint32", f.KV[v].Value)
		}
		if a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("general.alignment %d is not a power of two up to 1 MiB", a)
		}
		f.Alignment = int(a)
	}
	for i := 0; i < nTensors; i++ {
		t, err := d.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		if _, dup := f.tIdx[t.Name]; dup {
			return nil, fmt.Errorf("tensor %d: duplicate name %q", i, t.Name)
		}
		f.tIdx[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	f.DataOffset = int64(alignUp(uint64(d.off), uint64(f.Alignment)))
	if err := f.checkData(); err != nil {
		return nil, err
	}
	f.infos = make([]TensorInfo, len(f.Tensors))
	for i, t := range f.Tensors {
		t.Dims = slices.Clone(t.Dims)
		f.infos[i] = t
	}
	return f, nil
}

// value reads one value of type typ.
func (d *decoder) value(typ ValueType, depth int) any {
	switch typ {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		return int8(d.u8())
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		return int16(d.u16())
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		return int32(d.u32())
	case TypeFloat32:
		return math.Float32frombits(d.u32())
	case TypeBool:
		return d.boolean()
	case TypeString:
		return d.str("string")
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		return int64(d.u64())
	case TypeFloat64:
		return math.Float64frombits(d.u64())
	case TypeArray:
		return d.array(depth)
	}
	if d.err == nil {
		d.err = fmt.Errorf("at offset %d: unknown value type %d", d.off-4, typ)
	}
	return nil
}

// boolean reads a bool; like ggml, any non-zero byte is true.
func (d *decoder) boolean() bool { return d.u8() != 0 }

// array reads an array: element type, count, elements, into a typed slice.
func (d *decoder) array(depth int) any {
	if depth >= maxArrayDepth {
		d.err = fmt.Errorf("at offset %d: arrays nested deeper than %d", d.off, maxArrayDepth)
		return nil
	}
	et := ValueType(d.u32())
	minSize := et.size()
	switch et {
	case TypeString, TypeArray:
		minSize = 8 // a length or an element type and count
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeFloat32, TypeBool, TypeUint64, TypeInt64, TypeFloat64:
	default:
		if d.err == nil {
			d.err = fmt.Errorf("at offset %d: unknown array element type %d", d.off-4, et)
		}
		return nil
	}
	n := d.count("array element", minSize)
	if d.err != nil {
		return nil
	}
	switch et {
	case TypeUint8:
		return slices.Clone(d.take(n))
	case TypeInt8:
		return readFixed(d, n, func(p []byte) int8 { return int8(p[0]) }, 1)
	case TypeUint16:
		return readFixed(d, n, binary.LittleEndian.Uint16, 2)
	case TypeInt16:
		return readFixed(d, n, func(p []byte) int16 { return int16(binary.LittleEndian.Uint16(p)) }, 2)
	case TypeUint32:
		return readFixed(d, n, binary.LittleEndian.Uint32, 4)
	case TypeInt32:
		return readFixed(d, n, func(p []byte) int32 { return int32(binary.LittleEndian.Uint32(p)) }, 4)
	case TypeFloat32:
		return readFixed(d, n, func(p []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(p)) }, 4)
	case TypeUint64:
		return readFixed(d, n, binary.LittleEndian.Uint64, 8)
	case TypeInt64:
		return readFixed(d, n, func(p []byte) int64 { return int64(binary.LittleEndian.Uint64(p)) }, 8)
	case TypeFloat64:
		return readFixed(d, n, func(p []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(p)) }, 8)
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			out[i] = d.boolean()
		}
		return out
	case TypeString:
		out := make([]string, n)
		for i := range out {
			out[i] = d.str("string")
			if d.err != nil {
				return nil
			}
		}
		return out
	}
	// Nested arrays: each element is itself element type, count, elements.
	out := make([]any, n)
	for i := range out {
		out[i] = d.array(depth + 1)
		if d.err != nil {
			return nil
		}
	}
	return out
}

func readFixed[T any](d *decoder, n int, get func([]byte) T, size int) []T {
	p := d.take(n * size)
	if p == nil {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = get(p[i*size:])
	}
	return out
}

// tensorInfo reads and validates one tensor info record.
func (d *decoder) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	t.Name = d.str("tensor name")
	if d.err != nil {
		return t, d.err
	}
	if t.Name == "" {
		return t, fmt.Errorf("empty tensor name")
	}
	if len(t.Name) > MaxNameLen {
		return t, fmt.Errorf("tensor name %q is %d bytes, longer than %d", t.Name, len(t.Name), MaxNameLen)
	}
	nd := d.u32()
	if d.err != nil {
		return t, d.err
	}
	if nd > MaxDims {
		return t, fmt.Errorf("tensor %q has %d dimensions, more than %d", t.Name, nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	elems := uint64(1)
	for i := range t.Dims {
		t.Dims[i] = d.u64()
		if t.Dims[i] > math.MaxInt64 {
			return t, fmt.Errorf("tensor %q: dimension %d is negative", t.Name, i)
		}
		if t.Dims[i] != 0 && elems > math.MaxInt64/t.Dims[i] {
			return t, fmt.Errorf("tensor %q: dimensions %v overflow", t.Name, t.Dims)
		}
		elems *= t.Dims[i]
	}
	t.Type = quant.Type(d.u32())
	t.Offset = d.u64()
	if d.err != nil {
		return t, d.err
	}
	if !t.Type.Known() {
		return t, fmt.Errorf("tensor %q has unknown ggml type %d", t.Name, uint32(t.Type))
	}
	rowLen := uint64(1)
	if nd > 0 {
		rowLen = t.Dims[0]
	}
	if rowLen%uint64(t.Type.BlockSize()) != 0 {
		return t, fmt.Errorf("tensor %q: row of %d elements is not a multiple of the %v block size %d", t.Name, rowLen, t.Type, t.Type.BlockSize())
	}
	size, err := t.Type.RowBytes(int64(elems))
	if err != nil {
		return t, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	t.Size = size
	return t, nil
}

// checkData checks that every tensor's data is aligned, inside the file and
// apart from the others.
func (f *File) checkData() error {
	if len(f.Tensors) == 0 {
		return nil
	}
	if f.DataOffset > int64(len(f.data)) {
		return fmt.Errorf("data section at %d starts past the end of the %d-byte file", f.DataOffset, len(f.data))
	}
	avail := uint64(int64(len(f.data)) - f.DataOffset)
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := f.Tensors[a].Offset, f.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return a - b
	})
	var end uint64
	for k, i := range order {
		t := f.Tensors[i]
		if t.Offset%uint64(f.Alignment) != 0 {
			return fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if t.Offset > avail || uint64(t.Size) > avail-t.Offset {
			return fmt.Errorf("tensor %q: data [%d, %d) extends past the %d data bytes in the file (truncated file?)",
				t.Name, t.Offset, t.Offset+uint64(t.Size), avail)
		}
		if k > 0 && t.Offset < end {
			return fmt.Errorf("tensor %q: data at %d overlaps the previous tensor ending at %d", t.Name, t.Offset, end)
		}
		end = t.Offset + uint64(t.Size)
	}
	return nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// Path returns the path the file was opened from ("" for Parse).
func (f *File) Path() string { return f.path }

// Get returns the value of a metadata key.
func (f *File) Get(key string) (any, bool) {
	i, ok := f.kvIdx[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// String returns a string metadata value.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.(string)
	return s, ok
}

// Uint returns an integer metadata value of any unsigned or non-negative
// signed type.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Int returns an integer metadata value of any integer type that fits in
// an int64.
func (f *File) Int(key string) (int64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	u, ok := f.Uint(key)
	return int64(u), ok && u <= math.MaxInt64
}

// Float returns a floating-point metadata value (float32 or float64).
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Bool returns a bool metadata value.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Get(key)
	b, ok := v.(bool)
	return b, ok
}

// Strings returns a string array metadata value.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.([]string)
	return s, ok
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIdx[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.infos[i]
	t.Dims = slices.Clone(t.Dims)
	return t, true
}

// Bytes returns the raw data of the named tensor. The slice refers to the
// file's mapping: it must not be modified and is valid only until Close.
func (f *File) Bytes(name string) ([]byte, error) {
	if f.closed {
		return nil, fmt.Errorf("gguf: %s: file is closed", f.path)
	}
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: %s: no tensor %q", f.path, name)
	}
	start := f.DataOffset + int64(t.Offset)
	return f.data[start : start+t.Size : start+t.Size], nil
}

// Float32 returns the named tensor dequantized to float32 (a new slice) and
// its row-major shape. F32, F16, BF16, F64, I8, I16, I32, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, Q4_K, Q5_K and Q6_K convert.
func (f *File) Float32(name string) ([]float32, []int, error) {
	b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	t, _ := f.Tensor(name)
	out := make([]float32, t.NumElements())
	if err := quant.Dequantize(t.Type, out, b); err != nil {
		return nil, nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	return out, t.Shape(), nil
}

// Close releases the file's mapping; slices from Bytes become invalid.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.unmap != nil {
		if err := f.unmap(); err != nil {
			return fmt.Errorf("gguf: closing %s: %w", f.path, err)
		}
	}
	return nil
}

// Describe returns a short human-readable summary of a metadata value,
// abbreviating long arrays.
func Describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 60 {
			return fmt.Sprintf("%q...", x[:60])
		}
		return fmt.Sprintf("%q", x)
	case []string:
		if len(x) > 4 {
			return fmt.Sprintf("[%s ...] (%d strings)", strings.Join(quoteAll(x[:4]), " "), len(x))
		}
		return fmt.Sprintf("%q", x)
	}
	s := fmt.Sprint(v)
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
