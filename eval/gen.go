package eval

import (
	"context"
	"regexp"
	"strings"
)

// genRequest builds the request for a generation item: plain text (the
// description, solved examples and the prompt), or with Chat a conversation
// for the model's chat template.
func genRequest(t *Task, shots []Item, it Item, opt Options) GenRequest {
	r := GenRequest{Until: t.Until, MaxTokens: t.MaxTokens, Seed: opt.Seed}
	if opt.MaxTokens > 0 {
		r.MaxTokens = opt.MaxTokens
	}
	if r.MaxTokens <= 0 {
		r.MaxTokens = 64
	}
	if opt.Temperature != nil {
		r.Temperature = *opt.Temperature
	}
	if t.Chat {
		if sys := strings.TrimSpace(t.System + "\n" + t.Description); sys != "" {
			r.Messages = append(r.Messages, Message{Role: "system", Content: sys})
		}
		for _, s := range shots {
			r.Messages = append(r.Messages, Message{Role: "user", Content: s.Prompt}, Message{Role: "assistant", Content: s.Answers[0]})
		}
		r.Messages = append(r.Messages, Message{Role: "user", Content: it.Prompt})
		return r
	}
	var b strings.Builder
	b.WriteString(t.Description)
	for _, s := range shots {
		b.WriteString(s.Prompt + t.targetDelim() + s.Answers[0] + t.fewshotDelim())
	}
	b.WriteString(it.Prompt)
	r.Prompt = b.String()
	return r
}

// extract returns the answer in a model's output: the first match of the
// task's answer_regex (its first group when it has one), else the output.
func extract(re *regexp.Regexp, out string) string {
	if re == nil {
		return out
	}
	m := re.FindStringSubmatch(out)
	switch {
	case m == nil:
		return ""
	case len(m) > 1:
		return m[1]
	}
	return m[0]
}

// normalize trims space and a final period, and folds case when asked.
func normalize(s string, fold bool) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	s = strings.TrimSpace(s)
	if fold {
		s = strings.ToLower(s)
	}
	return s
}

// runGenerate generates an answer for each item and scores exact_match of
// the extracted answer against any accepted answer.
func runGenerate(ctx context.Context, b Backend, t *Task, opt Options) (*TaskResult, error) {
	its := items(t, opt)
	k := numFewshot(t, opt)
	var re *regexp.Regexp
	if t.AnswerRegex != "" {
		re = regexp.MustCompile(t.AnswerRegex) // checked by Validate
	}
	reqs := make([]GenRequest, len(its))
	for i, it := range its {
		reqs[i] = genRequest(t, fewshot(t, it, i, k, opt.Seed), it, opt)
	}
	outs, err := b.Generate(ctx, reqs)
	if err != nil {
		return nil, err
	}
	tr := &TaskResult{N: len(its), Fewshot: k}
	em := make([]float64, len(its))
	for i, it := range its {
		pred := normalize(extract(re, outs[i]), t.IgnoreCase)
		for _, a := range it.Answers {
			if pred != "" && pred == normalize(a, t.IgnoreCase) {
				em[i] = 1
			}
		}
		if opt.KeepSamples {
			prompt := reqs[i].Prompt
			if prompt == "" && len(reqs[i].Messages) > 0 {
				prompt = reqs[i].Messages[len(reqs[i].Messages)-1].Content
			}
			tr.Samples = append(tr.Samples, Sample{ID: it.ID, Prompt: prompt, Output: []string{outs[i]}, Correct: em[i] == 1})
		}
	}
	m, se := meanStderr(em)
	tr.Metrics = map[string]float64{"exact_match": m}
	tr.Stderr = map[string]float64{"exact_match": se}
	return tr, nil
}
