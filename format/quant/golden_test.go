package quant

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The golden files in testdata/golden hold, for one fixed input of 4096
// floats (input.f32), the blocks and the dequantized floats that ggml's
// reference C code (quantize_row_<type>_ref and dequantize_row_<type>, built
// with -ffp-contract=off) produced. See docs/formats.md for how they were
// made. They pin our codecs to ggml's, byte for byte.

var goldenTypes = []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K}

// goldenInput builds the input: 16 super-blocks, each exercising one case.
func goldenInput() []float32 {
	rng := rand.New(rand.NewPCG(42, 7))
	x := make([]float32, 16*QKK)
	for b := range 16 {
		blk := x[b*QKK : (b+1)*QKK]
		for i := range blk {
			n := float32(rng.NormFloat64())
			u := float32(rng.Float64()*2 - 1)
			var v float32
			switch b {
			case 0:
				v = n
			case 1:
				v = 0.02 * n
			case 2:
				v = u
			case 3:
				v = 0
			case 4:
				v = 0.5
			case 5:
				v = (u + 1) / 2
			case 6:
				v = -(u + 1) / 2
			case 7:
				v = n
				if i%37 == 0 {
					v *= 100
				}
			case 8:
				v = 1e-8 * n
			case 9:
				if (i/32)%2 == 0 {
					v = n
				}
			case 10:
				v = float32(int(rng.IntN(16)) - 8)
			case 11:
				v = 1e4 * n
			case 12:
				v = float32(rng.IntN(33)-16) * 0.5
			case 13:
				v = float32(math.Tan(math.Pi * (float64(u) / 2.02)))
			case 14:
				v = float32(i-128) / 64
			case 15:
				if (i/16)%3 != 0 {
					v = 1e-3 * n
				}
			}
			blk[i] = v
		}
	}
	return x
}

func readFloats(t *testing.T, b []byte) []float32 {
	t.Helper()
	out := make([]float32, len(b)/4)
	DecodeF32(out, b)
	return out
}

func TestGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/golden/input.f32")
	if err != nil {
		t.Fatal(err)
	}
	x := readFloats(t, in)
	for _, typ := range goldenTypes {
		t.Run(typ.String(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/golden", strings.ToLower(typ.String())+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			qbytes, _ := typ.RowBytes(int64(len(x)))
			wantQ, wantY := raw[:qbytes], readFloats(t, raw[qbytes:])
			// Dequantizing ggml's blocks gives ggml's floats, bit for bit.
			y := make([]float32, len(x))
			if err := Dequantize(typ, y, wantQ); err != nil {
				t.Fatal(err)
			}
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(wantY[i]) {
					t.Fatalf("dequantize[%d] = %v, ggml %v", i, y[i], wantY[i])
				}
			}
			// Quantizing gives ggml's blocks.
			q := make([]byte, qbytes)
			if err := Quantize(typ, q, x); err != nil {
				t.Fatal(err)
			}
			bs := typ.BlockBytes()
			for b := 0; b < len(q); b += bs {
				if !bytes.Equal(q[b:b+bs], wantQ[b:b+bs]) {
					t.Fatalf("block %d (input %d) differs:\n got %x\nwant %x", b/bs, b/bs*typ.BlockSize(), q[b:b+bs], wantQ[b:b+bs])
				}
			}
		})
	}
}

// TestMakeGolden regenerates testdata/golden with a harness built from ggml's
// reference code: MAI_GGML_HARNESS=/path/to/harness go test -run TestMakeGolden.
// The harness reads float32s on stdin, takes the type name ("q4_K") as its
// argument and writes the blocks, then the dequantized float32s.
func TestMakeGolden(t *testing.T) {
	harness := os.Getenv("MAI_GGML_HARNESS")
	if harness == "" {
		t.Skip("MAI_GGML_HARNESS not set")
	}
	x := goldenInput()
	in := make([]byte, 4*len(x))
	EncodeF32(in, x)
	if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/golden/input.f32", in, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range goldenTypes {
		name := strings.ToLower(typ.String())
		arg := strings.Replace(name, "_k", "_K", 1)
		cmd := exec.Command(harness, arg)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		qb, _ := typ.RowBytes(int64(len(x)))
		if want := int(qb) + 4*len(x); len(out) != want {
			t.Fatalf("%s: harness wrote %d bytes, want %d", name, len(out), want)
		}
		if err := os.WriteFile(filepath.Join("testdata/golden", name+".bin"), out, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Println("wrote", name)
	}
}
