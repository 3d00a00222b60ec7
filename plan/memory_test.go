package plan

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/mai-llm/mai/model"
)

func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

func TestStateBytes(t *testing.T) {
	const n = 1e9
	tests := []struct {
		name      string
		dp, zero  int
		w, g, o   float64
		totalPerP float64 // bytes per parameter on one GPU
	}{
		{"plain DP: 16 bytes/param", 8, 0, 2e9, 2e9, 12e9, 16},
		{"ZeRO-1 shards optimizer state", 8, 1, 2e9, 2e9, 1.5e9, 5.5},
		{"ZeRO-2 also gradients", 8, 2, 2e9, 0.25e9, 1.5e9, 3.75},
		{"ZeRO-3 also weights", 8, 3, 0.25e9, 0.25e9, 1.5e9, 2},
		{"ZeRO-3 on 64 ranks", 64, 3, 2e9 / 64, 2e9 / 64, 12e9 / 64, 0.25},
		{"one rank: nothing to shard", 1, 3, 2e9, 2e9, 12e9, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, g, o, err := StateBytes(n, tc.dp, tc.zero)
			if err != nil {
				t.Fatal(err)
			}
			if w != tc.w || g != tc.g || o != tc.o {
				t.Errorf("got w=%g g=%g o=%g, want %g %g %g", w, g, o, tc.w, tc.g, tc.o)
			}
			if per := (w + g + o) / n; !near(per, tc.totalPerP, 1e-12) {
				t.Errorf("bytes/param = %g, want %g", per, tc.totalPerP)
			}
		})
	}
	if MixedPrecisionBytes != 16 {
		t.Errorf("mixed-precision Adam is %d bytes/param, want 16", MixedPrecisionBytes)
	}
	for _, bad := range []struct{ dp, zero int }{{0, 1}, {8, -1}, {8, 4}} {
		if _, _, _, err := StateBytes(n, bad.dp, bad.zero); err == nil {
			t.Errorf("StateBytes(dp=%d, zero=%d): want an error", bad.dp, bad.zero)
		}
	}
}

// TestKorthikantiTable2 checks the per-layer activation formulas of
// Korthikanti et al. 2022, Table 2, on GPT-3 (s=2048, h=12288, a=96, so
// 5as/h = 80), against values worked out by hand.
func TestKorthikantiTable2(t *testing.T) {
	const s, b, h, a = 2048, 1, 12288, 96
	sbh := float64(s * b * h) // 25,165,824
	tests := []struct {
		name string
		t    int
		sp   bool
		rc   Recompute
		want float64
	}{
		{"no parallelism: sbh(34+5as/h)", 1, false, RecomputeNone, sbh * 114},
		{"tensor parallel: sbh(10+24/t+5as/ht)", 8, false, RecomputeNone, sbh * 23},
		{"tensor+sequence parallel: sbh/t(34+5as/h)", 8, true, RecomputeNone, sbh / 8 * 114},
		{"tensor parallel + selective: sbh(10+24/t)", 8, false, RecomputeSelective, sbh * 13},
		{"tensor+sequence parallel + selective: 34sbh/t", 8, true, RecomputeSelective, sbh * 34 / 8},
		{"full recomputation: 2sbh", 8, true, RecomputeFull, 2 * sbh},
		{"no parallelism, selective: 34sbh", 1, false, RecomputeSelective, 34 * sbh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := KorthikantiActivationBytes(s, b, h, a, tc.t, tc.sp, tc.rc); got != tc.want {
				t.Errorf("got %.0f bytes, want %.0f", got, tc.want)
			}
		})
	}
	// The paper: selective recomputation saves 70% of activation memory for
	// GPT-3 and 65% for MT-NLG (a=128, h=20480).
	for _, m := range []struct {
		a, h int
		save float64
	}{{96, 12288, 0.70}, {128, 20480, 0.65}} {
		all := KorthikantiActivationBytes(2048, 1, m.h, m.a, 1, false, RecomputeNone)
		sel := KorthikantiActivationBytes(2048, 1, m.h, m.a, 1, false, RecomputeSelective)
		if got := 1 - sel/all; math.Abs(got-m.save) > 0.01 {
			t.Errorf("a=%d h=%d: selective saves %.3f, paper says %.2f", m.a, m.h, got, m.save)
		}
	}
}

// TestLayerShapeMatchesKorthikanti checks that the generalised per-layer count
// reduces to the paper's for the paper's layer, with and without TP.
func TestLayerShapeMatchesKorthikanti(t *testing.T) {
	const s, b, h, a = 2048, 2, 12288, 96
	gpt := LayerShape{Hidden: h, Heads: a, QDim: h, KVDim: h, FFN: 4 * h, Dropout: true}
	for _, tp := range []int{1, 2, 8} {
		for _, rc := range []Recompute{RecomputeNone, RecomputeSelective} {
			got := gpt.LayerActivationBytes(s, b, tp, rc)
			want := KorthikantiActivationBytes(s, b, h, a, tp, true, rc)
			if !near(got, want, 1e-12) {
				t.Errorf("t=%d %s: got %.0f, want %.0f", tp, rc, got, want)
			}
		}
	}
	if got, want := gpt.LayerActivationBytes(s, b, 1, RecomputeFull), KorthikantiActivationBytes(s, b, h, a, 1, false, RecomputeFull); got != want {
		t.Errorf("full recomputation: got %.0f, want %.0f", got, want)
	}
	// Llama 3.1 405B layer (GQA, SwiGLU, no dropout), by hand: attention
	// 2h+2h+2q+4kv+2q = 135,168 and MLP 2h+2h+6f = 385,024 bytes per token.
	llama := LayerShape{Hidden: 16384, Heads: 128, QDim: 16384, KVDim: 1024, FFN: 53248, Gated: true}
	if got := llama.ActivationBytesPerToken(8192, RecomputeSelective); got != 135168+385024 {
		t.Errorf("Llama 405B selective bytes/token = %.0f, want %d", got, 135168+385024)
	}
	if got := llama.ActivationBytesPerToken(8192, RecomputeNone) - llama.ActivationBytesPerToken(8192, RecomputeSelective); got != 2*128*8192 {
		t.Errorf("Llama 405B attention-score bytes/token = %.0f, want 2as = %d", got, 2*128*8192)
	}
	// Recomputation never increases memory.
	for _, ls := range []LayerShape{gpt, llama} {
		n, sel, full := ls.ActivationBytesPerToken(4096, RecomputeNone), ls.ActivationBytesPerToken(4096, RecomputeSelective), ls.ActivationBytesPerToken(4096, RecomputeFull)
		if !(n > sel && sel > full) {
			t.Errorf("%+v: want none > selective > full, got %.0f %.0f %.0f", ls, n, sel, full)
		}
	}
}

// TestSplitParamsMatchesModel checks that the planner's partition of the
// parameters adds up to model.Config.Params and its FLOPs to FLOPsPerToken.
func TestSplitParamsMatchesModel(t *testing.T) {
	cfgs := map[string]model.Config{}
	for _, name := range model.Presets() {
		c, err := model.Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[name] = c
	}
	files, _ := filepath.Glob("testdata/*.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := ParseHFConfig(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cfgs[f] = c
	}
	for name, c := range cfgs {
		for _, seq := range []int{1, 2048, 8192} {
			p := splitParams(&c, seq)
			total, active := c.Params()
			if got := p.total(); !near(got, float64(total), 1e-12) {
				t.Errorf("%s: split total %.0f, model %d", name, got, total)
			}
			act := p.embed + p.finalNorm + p.dense + p.expertActive
			if !p.tiedHead {
				act += p.head
			}
			if !near(act, float64(active), 1e-12) {
				t.Errorf("%s: split active %.0f, model %d", name, act, active)
			}
			if got, want := p.layerFLOPs()+p.headFLOPs(), c.FLOPsPerToken(seq); !near(got, want, 1e-12) {
				t.Errorf("%s seq %d: split FLOPs %.6g, model %.6g", name, seq, got, want)
			}
		}
	}
}

func TestDivisors(t *testing.T) {
	for n, want := range map[int][]int{1: {1}, 12: {1, 2, 3, 4, 6, 12}, 192: {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192}, 49: {1, 7, 49}} {
		got := divisors(n)
		if len(got) != len(want) {
			t.Errorf("divisors(%d) = %v, want %v", n, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("divisors(%d) = %v, want %v", n, got, want)
				break
			}
		}
	}
}
