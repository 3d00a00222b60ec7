package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/nn"
)

// The quantization-quality fixture: testdata/quant/tiny is a small
// byte-level MAI model (dim 256 so that every matrix splits into Q4_K's
// 256-value super-blocks) trained on Go source from
// GOROOT (not the strings package) for 300 steps of 8×64 bytes, saved in bf16; heldout.txt is text it
// never saw (the start of GOROOT's strings/builder.go and reader.go).
// Regenerate with MAI_MAKE_QUANT_FIXTURE=1 go test -run TestMakeQuantFixture ./model
// (about fifteen minutes on two busy cores).

var quantFixtureDir = filepath.Join("testdata", "quant", "tiny")

func quantFixtureConfig() Config {
	c := maiBase()
	c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.MaxSeq = 257, 256, 2, 4, 2, 64, 512, 256
	c.Tied = true
	return c
}

// goCorpus returns Go source from GOROOT outside the strings package.
func goCorpus(t *testing.T, maxBytes int) []byte {
	var out []byte
	for _, pkg := range []string{"bytes", "fmt", "strconv", "sort", "bufio", "unicode/utf8", "path", "errors", "io", "container/list", "text/tabwriter", "encoding/csv"} {
		files, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", pkg, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err == nil {
				out = append(out, b...)
			}
			if len(out) >= maxBytes {
				return out[:maxBytes]
			}
		}
	}
	if len(out) < 100_000 {
		t.Skip("not enough Go source in GOROOT")
	}
	return out
}

func TestMakeQuantFixture(t *testing.T) {
	if os.Getenv("MAI_MAKE_QUANT_FIXTURE") == "" {
		t.Skip("set MAI_MAKE_QUANT_FIXTURE=1 to retrain the fixture")
	}
	corpus := goCorpus(t, 4<<20)
	m, err := New(quantFixtureConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	const steps, batch, seq = 300, 8, 64
	opt := nn.NewAdamW(len(m.Params), 0.9, 0.95, 1e-8, 0.1)
	rng := rand.New(rand.NewPCG(1, 1))
	ids, targets := make([]int32, batch*seq), make([]int32, batch*seq)
	tp := nn.NewTape(m.Pool, true)
	for step := range steps {
		for b := range batch {
			off := rng.IntN(len(corpus) - seq - 1)
			for i := range seq {
				ids[b*seq+i], targets[b*seq+i] = int32(corpus[off+i]), int32(corpus[off+i+1])
			}
		}
		lr := 4e-3 * math.Min(1, float64(step+1)/30) * (0.1 + 0.9*0.5*(1+math.Cos(math.Pi*float64(step)/steps)))
		m.ZeroGrad()
		loss, _, _, err := m.Loss(tp, ids, targets, batch, seq)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
		opt.Update(m.Pool, m.Params, m.Grads, m.Segments(), lr)
		if step%20 == 0 || step == steps-1 {
			t.Logf("step %d loss %.4f", step, loss.Data[0])
		}
	}
	if err := m.Save(quantFixtureDir, "bf16", 0); err != nil {
		t.Fatal(err)
	}
}

// heldOutLoss is the mean next-byte cross-entropy of the model over the
// held-out text, in windows of 256 bytes, without gradients (so quantized
// weights run through the quantized kernels).
func heldOutLoss(t testing.TB, m *Model, text []byte) float64 {
	const seq = 256
	var sum float64
	var n int
	tp := nn.NewTape(m.Pool, false)
	for off := 0; off+seq+1 <= len(text); off += seq {
		ids, targets := make([]int32, seq), make([]int32, seq)
		for i := range seq {
			ids[i], targets[i] = int32(text[off+i]), int32(text[off+i+1])
		}
		_, ce, _, err := m.Loss(tp, ids, targets, 1, seq)
		if err != nil {
			t.Fatal(err)
		}
		sum += float64(ce.Data[0]) * seq
		n += seq
	}
	return sum / float64(n)
}

// TestQuantizedPerplexity: on held-out text, q8_0 keeps the trained model's
// perplexity within 1%, q4_0 and q4_K within 10%.
func TestQuantizedPerplexity(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("testdata", "quant", "heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := Load(quantFixtureDir, false)
	if err != nil {
		t.Fatal(err)
	}
	ppl0 := math.Exp(heldOutLoss(t, base, text))
	t.Logf("f32: perplexity %.4f (%.4f bits per byte)", ppl0, math.Log2(ppl0))
	if ppl0 > 16 {
		t.Fatalf("the fixture model is barely trained: perplexity %.2f", ppl0)
	}
	for _, c := range []struct {
		typ   quant.Type
		limit float64
	}{{quant.Q8_0, 0.01}, {quant.Q4_0, 0.10}, {quant.Q4_K, 0.10}} {
		t.Run(c.typ.String(), func(t *testing.T) {
			m, err := Load(quantFixtureDir, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Quantize(QuantizeOptions{Type: c.typ}); err != nil {
				t.Fatal(err)
			}
			ppl := math.Exp(heldOutLoss(t, m, text))
			rel := ppl/ppl0 - 1
			t.Logf("%v: perplexity %.4f (%+.2f%% vs f32), weights %s, %s", c.typ, ppl, 100*rel, fmtBytes(m.WeightBytes()), FormatMix(m.DTypeMix()))
			if math.Abs(rel) > c.limit {
				t.Errorf("%v perplexity %.4f is %.2f%% from f32's %.4f (limit %.0f%%)", c.typ, ppl, 100*rel, ppl0, 100*c.limit)
			}
		})
	}
}

func fmtBytes(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
