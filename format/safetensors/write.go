package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mai-llm/mai/format/quant"
)

// Tensor is one tensor to write: little-endian bytes of the given dtype,
// either held in Data or produced by WriteData when the file is written.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
	// WriteData, when Data is nil, writes the tensor's bytes (exactly the
	// size the dtype and shape imply) at write time, so that large tensors
	// need not be copied into memory first (see F32Stream).
	WriteData func(w io.Writer) error
}

// Size returns the tensor's byte size implied by its dtype and shape
// (0 for an unknown dtype).
func (t Tensor) Size() int64 {
	size, _ := DTypeSize(t.DType)
	n := int64(size)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// F32Stream returns a float32 tensor that encodes data in small chunks when
// written instead of copying it up front; data must not change until then.
func F32Stream(name string, shape []int, data []float32) Tensor {
	return Tensor{Name: name, DType: "F32", Shape: slices.Clone(shape), WriteData: func(w io.Writer) error {
		buf := make([]byte, 4*min(len(data), 1<<18))
		for rest := data; len(rest) > 0; {
			n := min(len(rest), len(buf)/4)
			quant.EncodeF32(buf, rest[:n])
			if _, err := w.Write(buf[:4*n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	}}
}

// F32Tensor returns a float32 tensor holding data.
func F32Tensor(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 4*len(data))
	quant.EncodeF32(b, data)
	return Tensor{Name: name, DType: "F32", Shape: slices.Clone(shape), Data: b}
}

// F16Tensor returns a float16 tensor holding data rounded to nearest even.
func F16Tensor(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 2*len(data))
	quant.EncodeF16(b, data)
	return Tensor{Name: name, DType: "F16", Shape: slices.Clone(shape), Data: b}
}

// BF16Tensor returns a bfloat16 tensor holding data rounded to nearest even.
func BF16Tensor(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 2*len(data))
	quant.EncodeBF16(b, data)
	return Tensor{Name: name, DType: "BF16", Shape: slices.Clone(shape), Data: b}
}

// I32Tensor returns an int32 tensor holding data.
func I32Tensor(name string, shape []int, data []int32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return Tensor{Name: name, DType: "I32", Shape: slices.Clone(shape), Data: b}
}

// I64Tensor returns an int64 tensor holding data.
func I64Tensor(name string, shape []int, data []int64) Tensor {
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return Tensor{Name: name, DType: "I64", Shape: slices.Clone(shape), Data: b}
}

// checkTensor validates a tensor before it is written.
func checkTensor(t Tensor) error {
	if t.Name == "" {
		return fmt.Errorf("tensor with empty name")
	}
	if t.Name == metadataKey {
		return fmt.Errorf("tensor name %q is reserved", t.Name)
	}
	size, ok := DTypeSize(t.DType)
	if !ok {
		return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		n *= int64(d)
	}
	if t.Data == nil && t.WriteData != nil {
		return nil
	}
	if t.Data != nil && t.WriteData != nil {
		return fmt.Errorf("tensor %q: both Data and WriteData set", t.Name)
	}
	if want := n * int64(size); int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: %s shape %v needs %d bytes, got %d", t.Name, t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// sortedTensors validates tensors and returns them sorted by name.
func sortedTensors(tensors []Tensor) ([]Tensor, error) {
	ts := slices.Clone(tensors)
	slices.SortFunc(ts, func(a, b Tensor) int { return strings.Compare(a.Name, b.Name) })
	for i, t := range ts {
		if err := checkTensor(t); err != nil {
			return nil, err
		}
		if i > 0 && ts[i-1].Name == t.Name {
			return nil, fmt.Errorf("duplicate tensor %q", t.Name)
		}
	}
	return ts, nil
}

// marshal encodes v as JSON without HTML escaping.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only strings, ints and maps of strings are encoded here.
		panic(fmt.Sprintf("safetensors: encoding header: %v", err))
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// header builds the padded JSON header for tensors sorted by name.
func header(ts []Tensor, meta map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(meta) > 0 {
		b.WriteString(`"__metadata__":`)
		b.Write(marshal(meta)) // maps encode with sorted keys
		first = false
	}
	var off int64
	for _, t := range ts {
		if !first {
			b.WriteByte(',')
		}
		first = false
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		b.Write(marshal(t.Name))
		fmt.Fprintf(&b, `:{"dtype":%s,"shape":%s,"data_offsets":[%d,%d]}`,
			marshal(t.DType), marshal(shape), off, off+t.Size())
		off += t.Size()
	}
	b.WriteByte('}')
	for (8+b.Len())%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// Encode writes tensors (sorted by name) and metadata to w in safetensors
// format, streaming the tensor data.
func Encode(w io.Writer, tensors []Tensor, meta map[string]string) error {
	ts, err := sortedTensors(tensors)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	h := header(ts, meta)
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(h)))
	if _, err := w.Write(prefix[:]); err != nil {
		return fmt.Errorf("safetensors: writing header: %w", err)
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("safetensors: writing header: %w", err)
	}
	for _, t := range ts {
		if t.Data != nil || t.WriteData == nil {
			if _, err := w.Write(t.Data); err != nil {
				return fmt.Errorf("safetensors: writing tensor %q: %w", t.Name, err)
			}
			continue
		}
		cw := &countingWriter{w: w}
		if err := t.WriteData(cw); err != nil {
			return fmt.Errorf("safetensors: writing tensor %q: %w", t.Name, err)
		}
		if cw.n != t.Size() {
			return fmt.Errorf("safetensors: tensor %q: WriteData wrote %d bytes, %s shape %v needs %d", t.Name, cw.n, t.DType, t.Shape, t.Size())
		}
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Write writes tensors and metadata to path atomically: to a temporary file
// in the same directory, synced, then renamed over path.
func Write(path string, tensors []Tensor, meta map[string]string) error {
	return atomicWrite(path, func(w io.Writer) error { return Encode(w, tensors, meta) })
}

// atomicWrite writes a file through fill into a temporary file beside path,
// syncs it and renames it to path, then syncs the directory.
func atomicWrite(path string, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: syncing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: closing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable where the platform supports syncing
// directories; failures are ignored because some platforms refuse it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
