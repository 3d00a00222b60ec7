package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/mai-llm/mai/format/quant"
)

// Tensor is one tensor to write. Exactly one of Data, Float32 and Source
// gives its contents.
type Tensor struct {
	// Name is the GGUF name, at most MaxNameLen bytes.
	Name string
	// Type is the storage type in the file.
	Type quant.Type
	// Shape is row-major (outermost first), at most MaxDims long; the last
	// dimension must be a multiple of Type's block size.
	Shape []int
	// Data is the content already encoded as Type.
	Data []byte
	// Float32 is the content as values, encoded to Type when written.
	Float32 []float32
	// Source produces the values when the tensor is written, so that a
	// large model need not be held in memory; it is called once.
	Source func() ([]float32, error)
}

// Writer assembles a GGUF file: metadata in insertion order, then tensors in
// the order added. It streams the data when written, one tensor at a time.
type Writer struct {
	kv      []KV
	kvIdx   map[string]int
	tensors []Tensor
	names   map[string]bool
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{kvIdx: map[string]int{}, names: map[string]bool{}}
}

// Set sets a metadata value, replacing an earlier one with the same key but
// keeping its position. Values must have one of the types KV documents
// (sized Go types: use uint32(n), not n).
func (w *Writer) Set(key string, value any) error {
	if key == "" {
		return fmt.Errorf("gguf: empty metadata key")
	}
	if _, err := valueType(value, 0); err != nil {
		return fmt.Errorf("gguf: metadata %q: %w", key, err)
	}
	if key == KeyAlignment {
		a, ok := value.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return fmt.Errorf("gguf: %s must be a uint32 power of two up to 1 MiB, got %T %v", KeyAlignment, value, value)
		}
	}
	if i, ok := w.kvIdx[key]; ok {
		w.kv[i].Value = value
		return nil
	}
	w.kvIdx[key] = len(w.kv)
	w.kv = append(w.kv, KV{Key: key, Value: value})
	return nil
}

// Get returns a metadata value set earlier.
func (w *Writer) Get(key string) (any, bool) {
	i, ok := w.kvIdx[key]
	if !ok {
		return nil, false
	}
	return w.kv[i].Value, true
}

// Add appends a tensor after validating its name, shape, type and content
// size.
func (w *Writer) Add(t Tensor) error {
	if err := checkTensor(t); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if w.names[t.Name] {
		return fmt.Errorf("gguf: duplicate tensor %q", t.Name)
	}
	w.names[t.Name] = true
	w.tensors = append(w.tensors, t)
	return nil
}

func checkTensor(t Tensor) error {
	if t.Name == "" {
		return fmt.Errorf("tensor with empty name")
	}
	if len(t.Name) > MaxNameLen {
		return fmt.Errorf("tensor name %q is %d bytes, longer than llama.cpp's %d", t.Name, len(t.Name), MaxNameLen)
	}
	if len(t.Shape) > MaxDims {
		return fmt.Errorf("tensor %q: shape %v has more than %d dimensions", t.Name, t.Shape, MaxDims)
	}
	if !t.Type.Known() {
		return fmt.Errorf("tensor %q: unknown type %v", t.Name, t.Type)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return fmt.Errorf("tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n *= int64(d)
	}
	row := 1
	if len(t.Shape) > 0 {
		row = t.Shape[len(t.Shape)-1]
	}
	if row%t.Type.BlockSize() != 0 {
		return fmt.Errorf("tensor %q: rows of %d elements are not a multiple of the %v block size %d", t.Name, row, t.Type, t.Type.BlockSize())
	}
	size, err := t.Type.RowBytes(n)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	sources := 0
	if t.Data != nil {
		sources++
		if int64(len(t.Data)) != size {
			return fmt.Errorf("tensor %q: %v shape %v needs %d bytes, Data has %d", t.Name, t.Type, t.Shape, size, len(t.Data))
		}
	}
	if t.Float32 != nil {
		sources++
		if int64(len(t.Float32)) != n {
			return fmt.Errorf("tensor %q: shape %v needs %d values, Float32 has %d", t.Name, t.Shape, n, len(t.Float32))
		}
	}
	if t.Source != nil {
		sources++
	}
	if sources != 1 && !(sources == 0 && size == 0) {
		return fmt.Errorf("tensor %q: give exactly one of Data, Float32 and Source (got %d)", t.Name, sources)
	}
	if (t.Float32 != nil || t.Source != nil) && !t.Type.CanQuantize() {
		return fmt.Errorf("tensor %q: cannot encode values as %v; supply Data", t.Name, t.Type)
	}
	return nil
}

// tensorSize is the encoded byte size of a validated tensor.
func tensorSize(t Tensor) int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	s, _ := t.Type.RowBytes(n)
	return s
}

// encoder writes little-endian values and counts bytes.
type encoder struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) bytes(p []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(p)
	e.n += int64(k)
}

func (e *encoder) u8(v uint8)   { e.buf[0] = v; e.bytes(e.buf[:1]) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.bytes(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.bytes(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.bytes(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.bytes([]byte(s)) }

func (e *encoder) pad(align int64) {
	var zero [64]byte
	for e.n%align != 0 && e.err == nil {
		k := min(int64(len(zero)), align-e.n%align)
		e.bytes(zero[:k])
	}
}

// valueType returns the GGUF type of a Go metadata value.
func valueType(v any, depth int) (ValueType, error) {
	switch x := v.(type) {
	case uint8:
		return TypeUint8, nil
	case int8:
		return TypeInt8, nil
	case uint16:
		return TypeUint16, nil
	case int16:
		return TypeInt16, nil
	case uint32:
		return TypeUint32, nil
	case int32:
		return TypeInt32, nil
	case float32:
		return TypeFloat32, nil
	case bool:
		return TypeBool, nil
	case string:
		return TypeString, nil
	case uint64:
		return TypeUint64, nil
	case int64:
		return TypeInt64, nil
	case float64:
		return TypeFloat64, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64:
		return TypeArray, nil
	case []any:
		if depth >= maxArrayDepth {
			return 0, fmt.Errorf("arrays nested deeper than %d", maxArrayDepth)
		}
		var first ValueType
		for i, e := range x {
			t, err := valueType(e, depth+1)
			if err != nil {
				return 0, err
			}
			if t != TypeArray {
				return 0, fmt.Errorf("element %d of a nested array is %T, not an array", i, e)
			}
			et := arrayElemType(e)
			if i == 0 {
				first = et
			} else if et != first {
				return 0, fmt.Errorf("nested array mixes %v and %v arrays", first, et)
			}
		}
		return TypeArray, nil
	}
	return 0, fmt.Errorf("unsupported value type %T (use a sized type such as uint32)", v)
}

// arrayElemType returns the element type of a slice value.
func arrayElemType(v any) ValueType {
	switch v.(type) {
	case []uint8:
		return TypeUint8
	case []int8:
		return TypeInt8
	case []uint16:
		return TypeUint16
	case []int16:
		return TypeInt16
	case []uint32:
		return TypeUint32
	case []int32:
		return TypeInt32
	case []float32:
		return TypeFloat32
	case []bool:
		return TypeBool
	case []string:
		return TypeString
	case []uint64:
		return TypeUint64
	case []int64:
		return TypeInt64
	case []float64:
		return TypeFloat64
	}
	return TypeArray
}

func (e *encoder) value(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		e.array(v)
	}
}

func (e *encoder) array(v any) {
	et := arrayElemType(v)
	e.u32(uint32(et))
	switch x := v.(type) {
	case []uint8:
		e.u64(uint64(len(x)))
		e.bytes(x)
	case []any:
		e.u64(uint64(len(x)))
		for _, a := range x {
			e.array(a)
		}
	default:
		arrayItems(e, x)
	}
}

func arrayItems(e *encoder, v any) {
	switch x := v.(type) {
	case []int8:
		writeAll(e, x)
	case []uint16:
		writeAll(e, x)
	case []int16:
		writeAll(e, x)
	case []uint32:
		writeAll(e, x)
	case []int32:
		writeAll(e, x)
	case []float32:
		writeAll(e, x)
	case []bool:
		writeAll(e, x)
	case []string:
		writeAll(e, x)
	case []uint64:
		writeAll(e, x)
	case []int64:
		writeAll(e, x)
	case []float64:
		writeAll(e, x)
	}
}

func writeAll[T any](e *encoder, x []T) {
	e.u64(uint64(len(x)))
	for _, v := range x {
		e.value(v)
	}
}

// alignment returns the data alignment the writer will use.
func (w *Writer) alignment() int64 {
	if v, ok := w.Get(KeyAlignment); ok {
		return int64(v.(uint32))
	}
	return DefaultAlignment
}

// Encode writes the whole file to out, tensors' data streamed in order.
func (w *Writer) Encode(out io.Writer) error {
	align := w.alignment()
	e := &encoder{w: out}
	e.bytes([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		t, _ := valueType(kv.Value, 0)
		e.u32(uint32(t))
		e.value(kv.Value)
	}
	var off uint64
	for _, t := range w.tensors {
		e.str(t.Name)
		dims := max(1, len(t.Shape))
		e.u32(uint32(dims))
		if len(t.Shape) == 0 {
			e.u64(1)
		}
		for i := len(t.Shape) - 1; i >= 0; i-- {
			e.u64(uint64(t.Shape[i]))
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off += alignUp(uint64(tensorSize(t)), uint64(align))
	}
	if e.err != nil {
		return fmt.Errorf("gguf: writing header: %w", e.err)
	}
	e.pad(align)
	for _, t := range w.tensors {
		data, err := encodeTensor(t)
		if err != nil {
			return fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		e.bytes(data)
		e.pad(align)
		if e.err != nil {
			return fmt.Errorf("gguf: writing tensor %q: %w", t.Name, e.err)
		}
	}
	return nil
}

// encodeTensor returns the tensor's bytes, encoding values if needed.
func encodeTensor(t Tensor) ([]byte, error) {
	if t.Data != nil {
		return t.Data, nil
	}
	vals := t.Float32
	if t.Source != nil {
		var err error
		if vals, err = t.Source(); err != nil {
			return nil, err
		}
	}
	size := tensorSize(t)
	if vals == nil && size == 0 {
		return nil, nil
	}
	if want := size / int64(t.Type.BlockBytes()) * int64(t.Type.BlockSize()); int64(len(vals)) != want {
		return nil, fmt.Errorf("source gave %d values, shape %v needs %d", len(vals), t.Shape, want)
	}
	out := make([]byte, size)
	if err := QuantizeParallel(t.Type, out, vals); err != nil {
		return nil, err
	}
	return out, nil
}

// QuantizeParallel is quant.Quantize spread over GOMAXPROCS goroutines in
// chunks of whole blocks; the result is the same as the serial one.
func QuantizeParallel(t quant.Type, dst []byte, src []float32) error {
	bs, bb := t.BlockSize(), t.BlockBytes()
	workers := runtime.GOMAXPROCS(0)
	if bs == 0 || len(src) < 1<<16 || workers == 1 {
		return quant.Quantize(t, dst, src)
	}
	if len(src)%bs != 0 {
		return quant.Quantize(t, dst, src) // reports the error
	}
	blocks := len(src) / bs
	per := (blocks + workers - 1) / workers
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		lo, hi := i*per, min(blocks, (i+1)*per)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = quant.Quantize(t, dst[lo*bb:hi*bb], src[lo*bs:hi*bs])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes the file to path atomically: into a temporary file in
// the same directory, synced, then renamed over path.
func (w *Writer) WriteFile(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := w.Encode(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gguf: writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: syncing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gguf: closing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
