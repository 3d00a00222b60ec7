package eval

import (
	"context"
	"strings"
)

// mcPrompt builds the context of a multiple-choice item: the description, k
// solved examples, then the item's context.
func mcPrompt(t *Task, shots []Item, it Item) string {
	var b strings.Builder
	b.WriteString(t.Description)
	for _, s := range shots {
		b.WriteString(s.Context + t.targetDelim() + s.Choices[s.Gold] + t.fewshotDelim())
	}
	b.WriteString(it.Context)
	return b.String()
}

// runMultipleChoice scores every choice by its log-likelihood after the
// context. acc picks the highest sum; acc_norm divides each sum by the
// choice's length in bytes (lm-evaluation-harness's acc_norm), which keeps
// long choices from losing only for being long.
func runMultipleChoice(ctx context.Context, b Backend, t *Task, opt Options) (*TaskResult, error) {
	its := items(t, opt)
	k := numFewshot(t, opt)
	var reqs []LLRequest
	prompts := make([]string, len(its))
	for i, it := range its {
		prompts[i] = mcPrompt(t, fewshot(t, it, i, k, opt.Seed), it)
		for _, c := range it.Choices {
			reqs = append(reqs, LLRequest{Context: prompts[i], Continuation: t.targetDelim() + c})
		}
	}
	lls, err := b.LogLikelihood(ctx, reqs)
	if err != nil {
		return nil, err
	}
	tr := &TaskResult{N: len(its), Fewshot: k}
	acc := make([]float64, len(its))
	accNorm := make([]float64, len(its))
	var chance float64
	off := 0
	for i, it := range its {
		n := len(it.Choices)
		lp := make([]float64, n)
		best, bestNorm := 0, 0
		var bestV, bestNormV float64
		for j := range n {
			lp[j] = lls[off+j].LogProb
			norm := lp[j] / float64(max(1, len(t.targetDelim()+it.Choices[j])))
			if j == 0 || lp[j] > bestV {
				best, bestV = j, lp[j]
			}
			if j == 0 || norm > bestNormV {
				bestNorm, bestNormV = j, norm
			}
		}
		off += n
		if best == it.Gold {
			acc[i] = 1
		}
		if bestNorm == it.Gold {
			accNorm[i] = 1
		}
		chance += 1 / float64(n)
		if opt.KeepSamples {
			tr.Samples = append(tr.Samples, Sample{ID: it.ID, Prompt: prompts[i], LogProbs: lp, Pred: best, Gold: it.Gold, Correct: best == it.Gold})
		}
	}
	a, ae := meanStderr(acc)
	an, ane := meanStderr(accNorm)
	tr.Metrics = map[string]float64{"acc": a, "acc_norm": an, "chance": chance / float64(len(its))}
	tr.Stderr = map[string]float64{"acc": ae, "acc_norm": ane}
	return tr, nil
}
