package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// lp is a logprobs entry: tokens of the teacher (one byte each unless
// split says otherwise) with top alternatives.
func byteLogprobs(content string, top func(i int, tok string) map[string]float64) map[string]any {
	var toks []map[string]any
	for i := 0; i < len(content); i++ {
		tok := content[i : i+1]
		var alts []map[string]any
		for s, l := range top(i, tok) {
			alts = append(alts, map[string]any{"token": s, "logprob": l, "bytes": bytesOf(s)})
		}
		toks = append(toks, map[string]any{"token": tok, "logprob": math.Log(0.5), "bytes": bytesOf(tok), "top_logprobs": alts})
	}
	return map[string]any{"content": toks}
}

func bytesOf(s string) []int {
	b := make([]int, len(s))
	for i := range s {
		b[i] = int(s[i])
	}
	return b
}

func writeJSONL(t *testing.T, path string, lines []any) {
	t.Helper()
	var sb strings.Builder
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(append(b, '\n'))
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDistillAlignSameTokenizer: with the teacher's tokenizer (byte level),
// every content token of an assistant message gets the teacher's
// distribution at its own position, ids map directly, the rest bucket is
// the mass outside the top-k, and nothing else gets one.
func TestDistillAlignSameTokenizer(t *testing.T) {
	tok, err := tokenizer.Load("byte")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "d.jsonl")
	top := func(i int, tok string) map[string]float64 {
		return map[string]float64{tok: math.Log(0.5), "#": math.Log(0.25)}
	}
	writeJSONL(t, path, []any{
		map[string]any{"messages": []any{
			map[string]any{"role": "system", "content": "Be brief.", "logprobs": byteLogprobs("Be brief.", top)}, // ignored: not assistant
			map[string]any{"role": "user", "content": "abc"},
			map[string]any{"role": "assistant", "content": "xyz", "logprobs": byteLogprobs("xyz", top)},
			map[string]any{"role": "user", "content": "again"},
			map[string]any{"role": "assistant", "content": "no logprobs"},
		}},
		map[string]any{"messages": []any{
			map[string]any{"role": "user", "content": "q"},
			map[string]any{"role": "assistant", "content": "mismatch", "logprobs": byteLogprobs("other", top)},
		}},
	})
	for _, renorm := range []bool{false, true} {
		set, err := LoadSFTDistill(path, tok, 256, renorm)
		if err != nil {
			t.Fatal(err)
		}
		ts := set.Teacher
		if ts.Messages != 2 || ts.Unaligned != 1 || ts.Positions != 3 || ts.K != 2 || ts.Dropped != 0 {
			t.Fatalf("teacher set: messages %d unaligned %d positions %d K %d dropped %d", ts.Messages, ts.Unaligned, ts.Positions, ts.K, ts.Dropped)
		}
		r := set.Rows[0]
		var got []string
		for j, p := range r.SoftPos {
			if r.Y[p] < 0 {
				t.Fatalf("soft target at %d, a position without loss", p)
			}
			e := int(r.SoftIdx[j])
			ids, prob := ts.IDs[e*ts.K:(e+1)*ts.K], ts.Prob[e*ts.K:(e+1)*ts.K]
			target := tok.Decode([]int{int(r.Y[p])})
			got = append(got, target)
			// The sampled token (also the top one) and "#".
			wantRest := float32(0.25)
			if renorm {
				wantRest = 0
			}
			if ids[0] == '#' { // the order of the top-k is the file's
				ids[0], ids[1], prob[0], prob[1] = ids[1], ids[0], prob[1], prob[0]
			}
			if ids[0] != r.Y[p] || ids[1] != '#' || ts.Rest[e] != wantRest ||
				math.Abs(float64(prob[0]-2*prob[1])) > 1e-6 || math.Abs(float64(prob[0]+prob[1]+ts.Rest[e]-1)) > 1e-6 {
				t.Fatalf("position %d (%q): ids %v prob %v rest %v", p, target, ids, prob, ts.Rest[e])
			}
		}
		if strings.Join(got, "") != "xyz" {
			t.Fatalf("soft targets on %q, want the assistant content xyz", strings.Join(got, ""))
		}
	}
}

// TestDistillAlignOtherTokenizer: a student whose tokenizer differs from
// the teacher's gets the teacher's distribution only where a student token
// starts at a teacher token's start, with the entries that are exactly one
// student token, renormalized over the kept ones.
func TestDistillAlignOtherTokenizer(t *testing.T) {
	tok, err := tokenizer.Load("gpt2")
	if err != nil {
		t.Fatal(err)
	}
	content := "hello world"
	ids := tok.Encode(content)
	if len(ids) != 2 {
		t.Fatalf("gpt2 splits %q into %d tokens, the test wants 2", content, len(ids))
	}
	// Teacher tokens: "hel" "lo" " world" — a boundary at 0 and at 5.
	teacher := []string{"hel", "lo", " world"}
	var toks []map[string]any
	for _, s := range teacher {
		toks = append(toks, map[string]any{"token": s, "logprob": math.Log(0.4), "bytes": bytesOf(s), "top_logprobs": []map[string]any{
			{"token": s, "logprob": math.Log(0.4), "bytes": bytesOf(s)},
			{"token": "\xff\xfe", "logprob": math.Log(0.2), "bytes": []int{0xff, 0xfe}}, // no such gpt2 token
			{"token": " there", "logprob": math.Log(0.2), "bytes": bytesOf(" there")},
		}})
	}
	path := filepath.Join(t.TempDir(), "d.jsonl")
	writeJSONL(t, path, []any{map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": "hi"},
		map[string]any{"role": "assistant", "content": content, "logprobs": map[string]any{"content": toks}},
	}}})
	set, err := LoadSFTDistill(path, tok, 64, false)
	if err != nil {
		t.Fatal(err)
	}
	ts, r := set.Teacher, set.Rows[0]
	// "hel" is no gpt2 token on its own... but position 0 maps only if the
	// student's first token starts there: it does ("hello"), and the
	// entries "hel" and " there" map, "\xff\xfe" does not.
	if len(r.SoftPos) != 2 {
		t.Fatalf("%d soft targets, want 2 (at hello and at world)", len(r.SoftPos))
	}
	if ts.Dropped != 2 || ts.Kept != 4 {
		t.Fatalf("kept %d dropped %d entries, want 4 and 2", ts.Kept, ts.Dropped)
	}
	for j := range r.SoftPos {
		e := int(r.SoftIdx[j])
		prob := ts.Prob[e*ts.K : (e+1)*ts.K]
		// Top-k mass 0.8: rest 0.2; kept 0.4 and 0.2 scaled to 0.8 together.
		if math.Abs(float64(ts.Rest[e])-0.2) > 1e-6 || math.Abs(float64(prob[0])-0.8*2/3) > 1e-6 || math.Abs(float64(prob[1])-0.8/3) > 1e-6 {
			t.Fatalf("entry %d: prob %v rest %v", e, prob, ts.Rest[e])
		}
	}
	if w, _ := tok.Token(int(set.Teacher.IDs[int(r.SoftIdx[1])*ts.K])); w != " world" {
		t.Fatalf("second target's first entry is %q, want \" world\"", w)
	}
}

// TestDistillMasking: user and system tokens carry zero loss in both terms.
// With α = 0.5 the hidden state of every position whose target is not an
// assistant token gets exactly zero gradient from the combined loss, and
// every assistant position a nonzero one; the KL alone (α = 1) touches only
// the positions with teacher distributions.
func TestDistillMasking(t *testing.T) {
	tok, _ := tokenizer.Load("byte")
	path := filepath.Join(t.TempDir(), "d.jsonl")
	top := func(i int, tok string) map[string]float64 { return map[string]float64{tok: -0.1, "q": -3} }
	writeJSONL(t, path, []any{map[string]any{"messages": []any{
		map[string]any{"role": "system", "content": "sys", "logprobs": byteLogprobs("sys", top)},
		map[string]any{"role": "user", "content": "user text", "logprobs": byteLogprobs("user text", top)},
		map[string]any{"role": "assistant", "content": "reply", "logprobs": byteLogprobs("reply", top)},
		map[string]any{"role": "user", "content": "more"},
		map[string]any{"role": "assistant", "content": "ok"},
	}}})
	set, err := LoadSFTDistill(path, tok, 128, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := model.Preset("tiny")
	m, err := model.New(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	r := set.Rows[0]
	T := set.Seq
	soft := map[int32]bool{}
	for _, p := range r.SoftPos {
		soft[p] = true
	}
	for _, alpha := range []float32{0.5, 1} {
		tp := nn.NewTape(nil, true)
		loss, ce, _, err := m.LossPacked(tp, r.X, r.Y, 1, T, &model.Packed{Pos: r.Pos, Start: r.Start})
		if err != nil {
			t.Fatal(err)
		}
		h, _, ok := tp.ClassifierInput(ce)
		if !ok {
			t.Fatal("no fused classifier")
		}
		d := &distiller{alpha: alpha, set: set}
		mixed, err := d.mix(tp, loss, ce, []int{0}, T)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Backward(mixed); err != nil {
			t.Fatal(err)
		}
		D := h.Cols()
		for i := range T {
			var g float64
			for _, v := range h.Grad[i*D : (i+1)*D] {
				g += math.Abs(float64(v))
			}
			want := r.Y[i] >= 0
			if alpha == 1 {
				want = soft[int32(i)]
			}
			if (g != 0) != want {
				t.Fatalf("α=%v position %d (target %d, soft %v): |grad| %g", alpha, i, r.Y[i], soft[int32(i)], g)
			}
		}
	}
	if len(r.SoftPos) != len("reply") {
		t.Fatalf("%d soft targets, want %d (the first assistant reply)", len(r.SoftPos), len("reply"))
	}
}

// TestDistillRun trains a tiny student on a teacher's distributions: the
// run works end to end through the trainer, and the KL to the teacher falls
// faster with α > 0 than with plain SFT on the same text.
func TestDistillRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	// The teacher answers a letter with the next one, and is unsure between
	// the next and the one after (0.6 / 0.3; 0.1 elsewhere).
	var lines []any
	for i := range 300 {
		a := byte('a' + i%20)
		ans := string([]byte{a + 1, a + 1, a + 1})
		top := func(j int, tok string) map[string]float64 {
			return map[string]float64{tok: math.Log(0.6), string(rune(a + 2)): math.Log(0.3)}
		}
		lp := byteLogprobs(ans, top)
		for _, e := range lp["content"].([]map[string]any) {
			e["logprob"] = math.Log(0.6)
		}
		lines = append(lines, map[string]any{"messages": []any{
			map[string]any{"role": "user", "content": fmt.Sprintf("%c%d", a, i)},
			map[string]any{"role": "assistant", "content": ans, "logprobs": lp},
		}})
	}
	writeJSONL(t, path, lines)
	kl := func(alpha float64) float64 {
		cfg := Defaults()
		cfg.SFT, cfg.Preset, cfg.Out = path, "tiny", filepath.Join(dir, fmt.Sprint(alpha))
		cfg.Batch, cfg.Seq, cfg.Steps, cfg.Warmup, cfg.LR = 4, 128, 30, 3, 3e-3
		cfg.EvalEvery, cfg.SaveEvery, cfg.LogEvery, cfg.Threads = 0, 0, 0, 2
		cfg.DistillWeight = alpha
		tr, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		// KL to the teacher over the first 8 rows.
		set, err := LoadSFTDistill(path, mustTok(t), 128, false)
		if err != nil {
			t.Fatal(err)
		}
		d := &distiller{alpha: 1, set: set}
		tp := nn.NewTape(nil, true)
		var s float64
		for ri := range 8 {
			r := set.Rows[ri]
			_, ce, _, err := tr.Model.LossPacked(tp, r.X, r.Y, 1, 128, &model.Packed{Pos: r.Pos, Start: r.Start})
			if err != nil {
				t.Fatal(err)
			}
			x, w, _ := tp.ClassifierInput(ce)
			v, err := tp.LinearDistill(x, w, d.targets([]int{ri}, 128))
			if err != nil {
				t.Fatal(err)
			}
			s += float64(v.Data[0])
			tp.Reset()
		}
		return s / 8
	}
	sft, dis := kl(0), kl(0.8)
	t.Logf("KL to the teacher after 30 steps: plain SFT %.4f, distillation (α=0.8) %.4f", sft, dis)
	if !(dis < sft-0.05) {
		t.Fatalf("distillation KL %.4f is not below plain SFT's %.4f by 0.05", dis, sft)
	}
}

func mustTok(t *testing.T) *tokenizer.Tokenizer {
	tok, err := tokenizer.Load("byte")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDistillConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		c    DistillConfig
		sft  bool
		want string
	}{
		{DistillConfig{DistillWeight: 1.5}, true, "below 1"},
		{DistillConfig{DistillWeight: 1}, true, "end of a turn"},
		{DistillConfig{DistillWeight: -0.1}, true, "at least 0"},
		{DistillConfig{DistillWeight: 0.5}, false, "needs --sft"},
	} {
		if err := tc.c.validate(tc.sft); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v sft=%v: error %v, want %q", tc.c, tc.sft, err, tc.want)
		}
	}
	// SFT data without logprobs: a clear error.
	dir := t.TempDir()
	path := filepath.Join(dir, "plain.jsonl")
	writeJSONL(t, path, []any{map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": "hi"}, map[string]any{"role": "assistant", "content": "hello"}}}})
	cfg := Defaults()
	cfg.SFT, cfg.Out, cfg.Batch, cfg.Seq, cfg.DistillWeight = path, filepath.Join(dir, "run"), 1, 64, 0.5
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "mai synth --logprobs") {
		t.Fatalf("error %v, want one naming mai synth --logprobs", err)
	}
	// Bad logprobs: an error naming the line.
	bad := filepath.Join(dir, "bad.jsonl")
	writeJSONL(t, bad, []any{map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": "hi"},
		map[string]any{"role": "assistant", "content": "h", "logprobs": map[string]any{"content": []any{
			map[string]any{"token": "h", "logprob": 2.0, "bytes": []int{104}}}}}}}})
	if _, err := LoadSFTDistill(bad, mustTok(t), 64, false); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("error %v, want one naming line 1", err)
	}
}

// FuzzLoadSFTDistill: any chat JSONL with any logprobs loads or fails with
// an error, never a panic, and what loads is consistent.
func FuzzLoadSFTDistill(f *testing.F) {
	f.Add(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ab","logprobs":{"content":[{"token":"a","logprob":-0.1,"bytes":[97],"top_logprobs":[{"token":"b","logprob":-2,"bytes":[98]}]},{"token":"b","logprob":-0.2}]}}]}`)
	f.Add(`{"messages":[{"role":"assistant","content":"é","logprobs":{"content":[{"token":"\u00e9","logprob":0,"bytes":[195,169]}]}}]}`)
	f.Add(`{"messages":[{"role":"assistant","content":"x","logprobs":{"content":[{"token":"x","logprob":-1,"bytes":[300]}]}}]}`)
	f.Add(`{"messages":[{"role":"assistant","content":"xy<","logprobs":{"content":[{"token":"xy","logprob":-1},{"token":"<|im_end|>","logprob":-1}]}}]}`)
	f.Add(`{"messages":[{"role":"tool","content":""},{"role":"assistant","content":"","logprobs":{"content":[]}}]}`)
	tok, err := tokenizer.Load("byte")
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(dir, "f.jsonl")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := LoadSFTDistill(path, tok, 32, false)
		if err != nil {
			return
		}
		ts := set.Teacher
		if err := (&nn.DistillTargets{K: ts.K, Rows: make([]int32, ts.Len()), IDs: ts.IDs, Prob: ts.Prob, Rest: ts.Rest}).Validate(1, tok.VocabSize()); err != nil {
			t.Fatalf("loaded teacher distributions are invalid: %v", err)
		}
		for _, r := range set.Rows {
			for j, p := range r.SoftPos {
				if r.Y[p] < 0 || int(r.SoftIdx[j]) >= ts.Len() {
					t.Fatalf("soft target at %d (target %d, index %d of %d)", p, r.Y[p], r.SoftIdx[j], ts.Len())
				}
			}
		}
	})
}
