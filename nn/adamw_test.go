package nn

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// refAdamWStep is one step of torch.optim.AdamW (amsgrad off) in float64,
// written from torch's _single_tensor_adamw: decoupled decay
// p *= 1 - lr·wd, then m, v moments, bias corrections 1-β^t, and
// p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps).
func refAdamWStep(p, m, v, g []float64, decay []bool, step int, lr, b1, b2, eps, wd float64) {
	bc1 := 1 - math.Pow(b1, float64(step))
	bc2 := 1 - math.Pow(b2, float64(step))
	for i := range p {
		if decay[i] {
			p[i] *= 1 - lr*wd
		}
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		p[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
	}
}

func TestAdamWMatchesTorchFormula(t *testing.T) {
	const n = 20011
	const b1, b2, eps, wd = 0.9, 0.95, 1e-8, 0.1
	segs := []Segment{{0, 9000, true}, {9000, 13, false}, {9013, 10898, true}} // last 100 untouched
	covered := 9013 + 10898
	decay := make([]bool, n)
	for _, s := range segs {
		for i := s.Off; i < s.Off+s.Len; i++ {
			decay[i] = s.Decay
		}
	}
	lrs := []float64{0.1, 0.05, 0.2} // large, so float32 rounding of p does not hide the update
	r := gcRand(11)
	p0 := gcVec(r, n, 1)
	grads := make([][]float32, len(lrs))
	for s := range grads {
		grads[s] = gcVec(r, n, 1)
		for i := s; i < n; i += 97 { // tiny gradients: eps matters
			grads[s][i] *= 1e-8
		}
		for i := s + 5; i < n; i += 89 { // zero gradients: decay only
			grads[s][i] = 0
		}
	}
	var results [][]float32
	for _, pool := range gcPools() {
		t.Run(fmt.Sprintf("threads=%d", pool.Threads()), func(t *testing.T) {
			opt := NewAdamW(n, b1, b2, eps, wd)
			params := slices.Clone(p0)
			for s, lr := range lrs {
				before := slices.Clone(params)
				p64, m64, v64 := gc64(params), gc64(opt.M), gc64(opt.V)
				g := slices.Clone(grads[s])
				opt.Update(pool, params, g, segs, lr)
				if opt.Step != s+1 {
					t.Fatalf("Step = %d, want %d", opt.Step, s+1)
				}
				if !bitsEqual(g, grads[s]) {
					t.Fatal("Update changed the gradients")
				}
				refAdamWStep(p64[:covered], m64[:covered], v64[:covered], gc64(g[:covered]), decay, s+1, lr, b1, b2, eps, wd)
				gotD, wantD := make([]float64, covered), make([]float64, covered)
				for i := range gotD {
					gotD[i] = float64(params[i]) - float64(before[i])
					wantD[i] = p64[i] - float64(before[i])
				}
				name := fmt.Sprintf("step %d", s+1)
				gcClose(t, name+" update", gotD, wantD, 1e-5)
				gcClose(t, name+" m", gc64(opt.M[:covered]), m64[:covered], 1e-6)
				gcClose(t, name+" v", gc64(opt.V[:covered]), v64[:covered], 1e-6)
				if !bitsEqual(params[covered:], p0[covered:]) || slices.ContainsFunc(opt.M[covered:], func(x float32) bool { return x != 0 }) {
					t.Errorf("%s: parameters outside every segment changed", name)
				}
			}
			results = append(results, params)
		})
	}
	// Elementwise: the thread count must not change a single bit.
	if len(results) == 2 && !bitsEqual(results[0], results[1]) {
		t.Error("AdamW results differ between 1 and 3 threads")
	}
}

func TestClipGrads(t *testing.T) {
	r := gcRand(12)
	g0 := gcVec(r, 1001, 1)
	var ss float64
	for _, v := range g0 {
		ss += float64(v) * float64(v)
	}
	norm := math.Sqrt(ss)
	for _, tc := range []struct {
		name    string
		maxNorm float64
		clip    bool
	}{
		{"below", norm * 1.5, false},
		{"above", norm / 3, true},
		{"disabled", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := slices.Clone(g0)
			got := ClipGrads(g, tc.maxNorm)
			if math.Abs(got-norm) > 1e-12*norm {
				t.Errorf("returned norm %v, want %v (before clipping)", got, norm)
			}
			if !tc.clip {
				if !bitsEqual(g, g0) {
					t.Error("gradients changed although no clipping was due")
				}
				return
			}
			// torch.nn.utils.clip_grad_norm_: g *= max_norm / (norm + 1e-6).
			c := tc.maxNorm / (norm + 1e-6)
			want := gc64(g0)
			for i := range want {
				want[i] *= c
			}
			gcClose(t, "clipped", gc64(g), want, 1e-6)
			if after := GradNorm(g); math.Abs(after-tc.maxNorm) > 1e-5*tc.maxNorm {
				t.Errorf("norm after clipping %v, want %v", after, tc.maxNorm)
			}
		})
	}
	if GradNorm(nil) != 0 {
		t.Error("GradNorm(nil) != 0")
	}
}
