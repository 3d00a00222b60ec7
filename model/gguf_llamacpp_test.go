package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mai-llm/mai/format/quant"
	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/nn"
)

// The llama.cpp check runs GGUF files that MAI writes in llama.cpp itself,
// through the npm package node-llama-cpp (prebuilt llama.cpp), and compares
// its full next-token distributions with MAI's. scripts/deps.sh installs
// node-llama-cpp into <user cache dir>/mai/node-llama-cpp; $MAI_NODE_LLAMA_CPP
// names another install. The test is skipped when node or the package is
// missing, and in -short mode.

// logprobScript evaluates each job's tokens in one llama.cpp context (f32 KV
// cache, no flash attention) and writes, per position, the next-token
// probabilities (sampling options that leave the distribution whole:
// temperature 1, topK 0, topP 1, minP 0) and the raw logits.
const logprobScript = `
const [, , pkg, jobsPath, outPath] = process.argv;
const fs = await import("node:fs");
const { getLlama, LlamaLogLevel } = await import(pkg);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const results = [];
for (const job of JSON.parse(fs.readFileSync(jobsPath, "utf8"))) {
	const model = await llama.loadModel({ modelPath: job.model });
	const context = await model.createContext({ contextSize: job.ctx, batchSize: job.ctx, flashAttention: false,
		experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" });
	const seq = context.getSequence();
	const options = { temperature: 1, topK: 0, topP: 1, minP: 0 };
	const out = await seq.controlledEvaluate(job.tokens.map((t) => [t, { generateNext: { probabilities: true, logits: true, options } }]));
	const probs = [], logits = [];
	for (let i = 0; i < job.tokens.length; i++) {
		const p = new Array(job.vocab).fill(0), l = new Array(job.vocab).fill(0);
		for (const [tok, v] of out[i].next.probabilities) p[tok] = v;
		for (const [tok, v] of out[i].next.logits) l[tok] = v;
		probs.push(p);
		logits.push(l);
	}
	results.push({ probs, logits });
	await context.dispose();
	await model.dispose();
}
fs.writeFileSync(outPath, JSON.stringify(results));
await llama.dispose();
`

func nodeLlamaCppEntry(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("llama.cpp check skipped in -short mode")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	dir := os.Getenv("MAI_NODE_LLAMA_CPP")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Skip("no user cache dir")
		}
		dir = filepath.Join(cache, "mai", "node-llama-cpp")
	}
	entry := filepath.Join(dir, "node_modules", "node-llama-cpp", "dist", "index.js")
	if _, err := os.Stat(entry); err != nil {
		t.Skipf("node-llama-cpp is not installed in %s (scripts/deps.sh installs it)", dir)
	}
	return entry
}

type lcppJob struct {
	Model  string  `json:"model"`
	Ctx    int     `json:"ctx"`
	Vocab  int     `json:"vocab"`
	Tokens []int32 `json:"tokens"`
}

type lcppResult struct {
	Probs  [][]float64 `json:"probs"`
	Logits [][]float64 `json:"logits"`
}

func runLlamaCpp(t *testing.T, entry string, jobs []lcppJob) []lcppResult {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "logprobs.mjs")
	if err := os.WriteFile(script, []byte(logprobScript), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(jobs)
	jobsPath, outPath := filepath.Join(dir, "jobs.json"), filepath.Join(dir, "out.json")
	if err := os.WriteFile(jobsPath, j, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, "file://"+entry, jobsPath, outPath)
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node-llama-cpp: %v\n%s", err, out)
	}
	b, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var res []lcppResult
	if err := json.Unmarshal(b, &res); err != nil || len(res) != len(jobs) {
		t.Fatalf("node-llama-cpp output: %v (%d results for %d jobs)", err, len(res), len(jobs))
	}
	return res
}

// logSoftmax64 is the log-softmax of a row in float64.
func logSoftmax64(row []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range row {
		s += math.Exp(v - mx)
	}
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = v - mx - math.Log(s)
	}
	return out
}

// TestLlamaCppLogprobs writes GGUF files with Model.SaveGGUF (the HF llama
// and mixtral fixtures, the trained byte-level fixture in f32 and q8_0, a
// qwen2moe-architecture MAI MoE) and checks that llama.cpp's next-token
// log-probabilities match MAI's at every position.
//
// Tolerances: for float32 files both sides compute in float32 (f32 KV cache
// in llama.cpp) and differ only in summation order and the exp/log
// implementations, which on models this small moves log-probabilities by
// about 1e-6..1e-5; 1e-4 leaves margin while a wrong permutation, norm or
// RoPE variant moves them by 0.1 or more. For q8_0 both run the same
// weights, but llama.cpp rounds the 8-bit activation scales to float16 and
// MAI keeps them in float32 (and the two round activations to 8 bits
// differently at ties), so each matmul differs by up to ~1e-3 relative and
// log-probabilities by a few 1e-2: the check allows 0.05 and requires the
// difference to stay under half of what q8_0 quantization itself moves them
// (measured against the float32 model).
func TestLlamaCppLogprobs(t *testing.T) {
	entry := nodeLlamaCppEntry(t)
	type check struct {
		name  string
		m     *Model
		tol   float64
		ids   []int32
		probs bool
		f32   *Model // for a quantized model: the float32 model it came from
	}
	var checks []check
	for _, name := range []string{"llama", "mixtral"} {
		dir := filepath.Join("testdata", "hf", name)
		m, err := Load(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		ids, shape, _ := ref.Int32("input_ids")
		ref.Close()
		checks = append(checks, check{name: name + "/f32", m: m, tol: 1e-4, ids: ids[:shape[1]]})
	}
	text, err := os.ReadFile(filepath.Join("testdata", "quant", "heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, 48)
	for i := range ids {
		ids[i] = int32(text[i])
	}
	trained, err := Load(quantFixtureDir, false)
	if err != nil {
		t.Fatal(err)
	}
	checks = append(checks, check{name: "trained/f32", m: trained, tol: 1e-4, ids: ids})
	q8, err := Load(quantFixtureDir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := q8.Quantize(QuantizeOptions{Type: quant.Q8_0}); err != nil {
		t.Fatal(err)
	}
	checks = append(checks, check{name: "trained/q8_0", m: q8, tol: 0.05, ids: ids, f32: trained})
	moeCfg, _ := Preset("tiny-moe")
	moeCfg.Layers = 2
	moeCfg.NormTopK = false // llama.cpp's qwen2moe never renormalizes the top-k weights
	moe, err := New(moeCfg, false)
	if err != nil {
		t.Fatal(err)
	}
	moe.Init(5)
	for i := range moe.Params {
		moe.Params[i] *= 3 // spread the logits and the routing
	}
	checks = append(checks, check{name: "mai-moe(qwen2moe)/f32", m: moe, tol: 1e-4, ids: ids[:32]})

	var jobs []lcppJob
	for i, c := range checks {
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := c.m.SaveGGUF(path, GGUFOptions{Name: c.name}); err != nil {
			t.Fatal(err)
		}
		checks[i].probs = true
		jobs = append(jobs, lcppJob{Model: path, Ctx: 64, Vocab: c.m.Cfg.Vocab, Tokens: c.ids})
	}
	res := runLlamaCpp(t, entry, jobs)
	for i, c := range checks {
		out, err := c.m.Forward(nn.NewTape(nil, false), c.ids, 1, len(c.ids), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var f32Logits []float32
		if c.f32 != nil {
			o, err := c.f32.Forward(nn.NewTape(nil, false), c.ids, 1, len(c.ids), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			f32Logits = o.Logits.Data
		}
		v := c.m.Cfg.Vocab
		var worstL, worstP, shift float64
		for pos := range c.ids {
			row := make([]float64, v)
			for j := range v {
				row[j] = float64(out.Logits.Data[pos*v+j])
			}
			mai := logSoftmax64(row)
			if f32Logits != nil {
				for j := range v {
					row[j] = float64(f32Logits[pos*v+j])
				}
				for j, lp := range logSoftmax64(row) {
					shift = math.Max(shift, math.Abs(lp-mai[j]))
				}
			}
			lc := logSoftmax64(res[i].Logits[pos])
			for j := range v {
				worstL = math.Max(worstL, math.Abs(mai[j]-lc[j]))
				// llama.cpp's probabilities are float32: compare the
				// log where they carry enough digits.
				if p := res[i].Probs[pos][j]; p > 1e-5 {
					worstP = math.Max(worstP, math.Abs(mai[j]-math.Log(p)))
				}
			}
		}
		t.Logf("%s: %d positions × %d tokens: max |Δ log p| %.2e from logits, %.2e from llama.cpp's probabilities", c.name, len(c.ids), v, worstL, worstP)
		if c.f32 != nil {
			t.Logf("%s: quantization itself moves MAI's log-probabilities by up to %.2e", c.name, shift)
			if worstL > shift/2 {
				t.Errorf("%s: llama.cpp and MAI differ by %.3g, not well below the quantization error %.3g", c.name, worstL, shift)
			}
		}
		if worstL > c.tol || worstP > c.tol {
			t.Errorf("%s: llama.cpp's next-token log-probabilities differ from MAI's by %.3g (logits) / %.3g (probabilities), tolerance %g", c.name, worstL, worstP, c.tol)
		}
	}
}
