// Package safetensors reads and writes the safetensors format of Hugging Face
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON describing each tensor
//
//	{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//	 "__metadata__": {"key": "value"}}
//
// then the tensor bytes, with offsets relative to the start of that buffer.
//
// Open maps a file read-only and validates it completely before returning, so
// every accessor afterwards works on checked offsets. Write produces files
// that Hugging Face's reader accepts: names sorted, the header padded with
// spaces to a multiple of 8 bytes, written to a temporary file, synced and
// renamed into place. OpenDir and WriteDir handle sharded checkpoints
// (model-00001-of-00003.safetensors plus model.safetensors.index.json).
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/internal/mmap"
)

// MaxHeaderSize is the largest JSON header accepted, as in Hugging Face's
// reader (100 MB). A larger claim is refused before anything is allocated.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header entry holding string metadata.
const metadataKey = "__metadata__"

// DTypeSize returns the size in bytes of one element of the safetensors dtype,
// or 0 and false when the dtype is unknown.
func DTypeSize(dtype string) (int, bool) {
	switch dtype {
	case "F64", "I64", "U64":
		return 8, true
	case "F32", "I32", "U32":
		return 4, true
	case "F16", "BF16", "I16", "U16":
		return 2, true
	case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2":
		return 1, true
	}
	return 0, false
}

// Info describes one tensor of a file.
type Info struct {
	// Name is the tensor's key in the header.
	Name string
	// DType is the element type: "F32", "F16", "BF16", "F64", "I64", "I32",
	// "I16", "I8", "U8", "BOOL" (also "U16", "U32", "U64", "F8_E4M3", "F8_E5M2").
	DType string
	// Shape is the tensor's dimensions, outermost first; empty for a scalar.
	Shape []int
	// Offsets are the byte range [begin, end) of the data, relative to the
	// start of the data buffer that follows the header.
	Offsets [2]int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (in Info) NumElements() int64 {
	n := int64(1)
	for _, d := range in.Shape {
		n *= int64(d)
	}
	return n
}

// File is an open safetensors file. Its methods are safe for concurrent use
// until Close.
type File struct {
	path   string
	data   []byte // the whole file (mapped or read)
	buf    []byte // the tensor data buffer, after the header
	infos  map[string]Info
	names  []string
	meta   map[string]string
	unmap  func() error
	closed bool
}

// Open opens and validates the safetensors file at path. The file is mapped
// read-only where the platform allows it and read into memory otherwise.
func Open(path string) (*File, error) {
	data, unmap, err := mmap.Map(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := parse(data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f.path = path
	f.unmap = unmap
	return f, nil
}

// Parse validates data as a safetensors file held in memory. The returned
// File refers to data, which must not change while the File is in use.
func Parse(data []byte) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return f, nil
}

// rawInfo is one tensor entry of the JSON header.
type rawInfo struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

func parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("header length %d exceeds the %d bytes after the length prefix (truncated file?)", n, len(data)-8)
	}
	if n < 2 {
		return nil, fmt.Errorf("header length %d is too short for a JSON object", n)
	}
	header := data[8 : 8+n]
	if !utf8.Valid(header) {
		return nil, fmt.Errorf("header is not valid UTF-8")
	}
	if header[0] != '{' {
		return nil, fmt.Errorf("header does not start with '{'")
	}
	f := &File{
		data:  data,
		buf:   data[8+n:],
		infos: make(map[string]Info),
	}
	if err := f.parseHeader(header); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// parseHeader decodes the JSON header entry by entry, so that duplicate keys
// are caught rather than silently overwritten.
func (f *File) parseHeader(header []byte) error {
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil { // '{', checked by the caller
		return fmt.Errorf("header JSON: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("header JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("header JSON: expected a key, got %v", tok)
		}
		if name == metadataKey {
			if f.meta != nil {
				return fmt.Errorf("header JSON: duplicate %q", metadataKey)
			}
			var meta map[string]string
			if err := dec.Decode(&meta); err != nil {
				return fmt.Errorf("header %s: %w", metadataKey, err)
			}
			if meta == nil {
				meta = map[string]string{}
			}
			f.meta = meta
			continue
		}
		if _, dup := f.infos[name]; dup {
			return fmt.Errorf("header JSON: duplicate tensor %q", name)
		}
		var raw rawInfo
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		info, err := checkInfo(name, raw)
		if err != nil {
			return err
		}
		f.infos[name] = info
		f.names = append(f.names, name)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("header JSON: %w", err)
	}
	// Only padding may follow the object.
	if rest := header[dec.InputOffset():]; len(bytes.TrimRight(rest, " \t\r\n\x00")) != 0 {
		return fmt.Errorf("header JSON: trailing data after the object")
	}
	slices.Sort(f.names)
	if f.meta == nil {
		f.meta = map[string]string{}
	}
	return nil
}

// checkInfo validates one header entry on its own.
func checkInfo(name string, raw rawInfo) (Info, error) {
	size, ok := DTypeSize(raw.DType)
	if !ok {
		return Info{}, fmt.Errorf("tensor %q: unknown dtype %q", name, raw.DType)
	}
	if raw.Shape == nil {
		return Info{}, fmt.Errorf("tensor %q: missing shape", name)
	}
	if len(raw.DataOffsets) != 2 {
		return Info{}, fmt.Errorf("tensor %q: data_offsets has %d entries, want 2", name, len(raw.DataOffsets))
	}
	begin, end := raw.DataOffsets[0], raw.DataOffsets[1]
	if begin < 0 || end < begin {
		return Info{}, fmt.Errorf("tensor %q: bad data_offsets [%d, %d]", name, begin, end)
	}
	shape := make([]int, len(raw.Shape))
	elems := int64(1)
	for i, d := range raw.Shape {
		if d < 0 || int64(int(d)) != d {
			return Info{}, fmt.Errorf("tensor %q: bad dimension %d in shape %v", name, d, raw.Shape)
		}
		if d != 0 && elems > math.MaxInt64/8/d {
			return Info{}, fmt.Errorf("tensor %q: shape %v overflows", name, raw.Shape)
		}
		elems *= d
		shape[i] = int(d)
	}
	if want := elems * int64(size); end-begin != want {
		return Info{}, fmt.Errorf("tensor %q: %s shape %v needs %d bytes, data_offsets [%d, %d] hold %d",
			name, raw.DType, raw.Shape, want, begin, end, end-begin)
	}
	return Info{Name: name, DType: raw.DType, Shape: shape, Offsets: [2]int64{begin, end}}, nil
}

// validate checks that the tensors tile the data buffer exactly: sorted by
// offset, each begins where the previous ended, and the last ends at the end
// of the file.
func (f *File) validate() error {
	order := make([]Info, 0, len(f.infos))
	for _, in := range f.infos {
		order = append(order, in)
	}
	slices.SortFunc(order, func(a, b Info) int {
		if c := cmpInt64(a.Offsets[0], b.Offsets[0]); c != 0 {
			return c
		}
		if c := cmpInt64(a.Offsets[1], b.Offsets[1]); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	var pos int64
	for _, in := range order {
		if in.Offsets[0] != pos {
			if in.Offsets[0] < pos {
				return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap the previous tensor (ending at %d)",
					in.Name, in.Offsets[0], in.Offsets[1], pos)
			}
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] leave a gap after offset %d",
				in.Name, in.Offsets[0], in.Offsets[1], pos)
		}
		pos = in.Offsets[1]
	}
	if pos != int64(len(f.buf)) {
		if pos > int64(len(f.buf)) {
			return fmt.Errorf("tensor data needs %d bytes but the file holds %d after the header (truncated file?)", pos, len(f.buf))
		}
		return fmt.Errorf("tensor data ends at %d but the file holds %d bytes after the header", pos, len(f.buf))
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Path returns the path the file was opened from ("" for Parse).
func (f *File) Path() string { return f.path }

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the description of the named tensor.
func (f *File) Info(name string) (Info, bool) {
	in, ok := f.infos[name]
	if ok {
		in.Shape = slices.Clone(in.Shape)
	}
	return in, ok
}

// Metadata returns a copy of the header's __metadata__ (empty if absent).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// Bytes returns the raw little-endian bytes of the named tensor. The slice
// refers to the file's mapping: it must not be modified and is valid only
// until Close.
func (f *File) Bytes(name string) ([]byte, error) {
	if f.closed {
		return nil, fmt.Errorf("safetensors: %s: file is closed", f.path)
	}
	in, ok := f.infos[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.path, name)
	}
	return f.buf[in.Offsets[0]:in.Offsets[1]:in.Offsets[1]], nil
}

// Float32 returns the named tensor converted to float32 (a new slice) and its
// shape. Every numeric dtype converts; integers convert as by a Go
// conversion, so values beyond 2^24 may round.
func (f *File) Float32(name string) ([]float32, []int, error) {
	b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	in := f.infos[name]
	out, err := ToFloat32(in.DType, b)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	return out, slices.Clone(in.Shape), nil
}

// Int32 returns the named integer tensor as int32 (a new slice) and its shape.
// I32, I16, I8, U8, U16 and BOOL convert exactly; I64, U32 and U64 convert
// when every value fits in an int32, and give an error otherwise.
func (f *File) Int32(name string) ([]int32, []int, error) {
	b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	in := f.infos[name]
	out, err := ToInt32(in.DType, b)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	return out, slices.Clone(in.Shape), nil
}

// Close releases the file's mapping. Slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.buf, f.data = nil, nil
	if f.unmap != nil {
		if err := f.unmap(); err != nil {
			return fmt.Errorf("safetensors: closing %s: %w", f.path, err)
		}
	}
	return nil
}

// ToFloat32 converts little-endian tensor bytes of the given dtype to float32.
func ToFloat32(dtype string, b []byte) ([]float32, error) {
	size, ok := DTypeSize(dtype)
	if !ok {
		return nil, fmt.Errorf("unknown dtype %q", dtype)
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s elements", len(b), dtype)
	}
	n := len(b) / size
	out := make([]float32, n)
	le := binary.LittleEndian
	switch dtype {
	case "F32":
		quant.DecodeF32(out, b)
	case "F16":
		quant.DecodeF16(out, b)
	case "BF16":
		quant.DecodeBF16(out, b)
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case "I64":
		for i := range out {
			out[i] = float32(int64(le.Uint64(b[8*i:])))
		}
	case "U64":
		for i := range out {
			out[i] = float32(le.Uint64(b[8*i:]))
		}
	case "I32":
		for i := range out {
			out[i] = float32(int32(le.Uint32(b[4*i:])))
		}
	case "U32":
		for i := range out {
			out[i] = float32(le.Uint32(b[4*i:]))
		}
	case "I16":
		for i := range out {
			out[i] = float32(int16(le.Uint16(b[2*i:])))
		}
	case "U16":
		for i := range out {
			out[i] = float32(le.Uint16(b[2*i:]))
		}
	case "I8":
		for i := range out {
			out[i] = float32(int8(b[i]))
		}
	case "U8", "BOOL":
		for i := range out {
			out[i] = float32(b[i])
		}
	case "F8_E4M3":
		for i := range out {
			out[i] = f8e4m3ToF32(b[i])
		}
	case "F8_E5M2":
		for i := range out {
			out[i] = quant.F16ToF32(uint16(b[i]) << 8)
		}
	default:
		return nil, fmt.Errorf("dtype %s does not convert to float32", dtype)
	}
	return out, nil
}

// f8e4m3ToF32 decodes the OCP FP8 E4M3FN format (bias 7, no infinities,
// S.1111.111 is NaN).
func f8e4m3ToF32(v byte) float32 {
	sign := float32(1)
	if v&0x80 != 0 {
		sign = -1
	}
	exp := int(v>>3) & 0xf
	mant := float32(v & 7)
	switch {
	case exp == 0xf && v&7 == 7:
		return float32(math.NaN())
	case exp == 0:
		return sign * mant / 8 * float32(math.Ldexp(1, -6))
	}
	return sign * (1 + mant/8) * float32(math.Ldexp(1, exp-7))
}

// ToInt32 converts little-endian integer tensor bytes of the given dtype to
// int32, failing on values that do not fit.
func ToInt32(dtype string, b []byte) ([]int32, error) {
	size, ok := DTypeSize(dtype)
	if !ok {
		return nil, fmt.Errorf("unknown dtype %q", dtype)
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s elements", len(b), dtype)
	}
	out := make([]int32, len(b)/size)
	le := binary.LittleEndian
	switch dtype {
	case "I32":
		for i := range out {
			out[i] = int32(le.Uint32(b[4*i:]))
		}
	case "I64":
		for i := range out {
			v := int64(le.Uint64(b[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("I64 value %d at index %d does not fit in int32", v, i)
			}
			out[i] = int32(v)
		}
	case "U64":
		for i := range out {
			v := le.Uint64(b[8*i:])
			if v > math.MaxInt32 {
				return nil, fmt.Errorf("U64 value %d at index %d does not fit in int32", v, i)
			}
			out[i] = int32(v)
		}
	case "U32":
		for i := range out {
			v := le.Uint32(b[4*i:])
			if v > math.MaxInt32 {
				return nil, fmt.Errorf("U32 value %d at index %d does not fit in int32", v, i)
			}
			out[i] = int32(v)
		}
	case "I16":
		for i := range out {
			out[i] = int32(int16(le.Uint16(b[2*i:])))
		}
	case "U16":
		for i := range out {
			out[i] = int32(le.Uint16(b[2*i:]))
		}
	case "I8":
		for i := range out {
			out[i] = int32(int8(b[i]))
		}
	case "U8", "BOOL":
		for i := range out {
			out[i] = int32(b[i])
		}
	default:
		return nil, fmt.Errorf("dtype %s is not an integer type", dtype)
	}
	return out, nil
}

// errClosed is returned by Set methods after Close.
var errClosed = errors.New("safetensors: set is closed")
