package eval

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mai-llm/mai/infer"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// LocalOptions configures a local backend.
type LocalOptions struct {
	// Name labels results (default "local").
	Name string
	// BatchTokens bounds the tokens of one forward pass (default 4096).
	BatchTokens int
	// Chat renders a conversation into prompt text; nil uses ChatML, MAI's
	// default template.
	Chat func(msgs []Message) (string, error)
}

// NewLocal returns a backend that runs m in this process, tokenizing with
// codec. It does not change m, so a trainer can evaluate its model between
// steps (not concurrently with one).
func NewLocal(m *model.Model, codec infer.Codec, opt LocalOptions) Backend {
	if opt.Name == "" {
		opt.Name = "local"
	}
	if opt.BatchTokens <= 0 {
		opt.BatchTokens = 4096
	}
	if opt.Chat == nil {
		opt.Chat = ChatML
	}
	return &tokenBackend{m: &localModel{m: m, codec: codec, opt: opt}}
}

// OpenLocal loads a model folder (MAI or Hugging Face, or a training run
// directory through its latest checkpoint) or a GGUF file (quantized weights
// stay quantized) with its tokenizer.
func OpenLocal(path string, opt LocalOptions) (Backend, error) {
	src, err := resolveModel(path)
	if err != nil {
		return nil, err
	}
	m, err := src.load()
	if err != nil {
		return nil, err
	}
	codec, chat, err := src.codec()
	if err != nil {
		return nil, err
	}
	if opt.Chat == nil {
		opt.Chat = chat
	}
	if opt.Name == "" {
		opt.Name = src.name()
	}
	return NewLocal(m, codec, opt), nil
}

// modelSource is a model on disk: a folder or a GGUF file.
type modelSource struct {
	path string
	gguf bool
}

// resolveModel finds the model a user names: a GGUF file, a model folder,
// or a run directory's latest checkpoint.
func resolveModel(path string) (modelSource, error) {
	if model.IsGGUF(path) {
		return modelSource{path: path, gguf: true}, nil
	}
	dir, err := model.ResolveDir(path)
	if err != nil {
		return modelSource{}, err
	}
	return modelSource{path: dir}, nil
}

func (s modelSource) load() (*model.Model, error) {
	if s.gguf {
		return model.LoadGGUF(s.path)
	}
	return model.Load(s.path, false)
}

func (s modelSource) name() string {
	return strings.TrimSuffix(filepath.Base(filepath.Clean(s.path)), ".gguf")
}

// codec opens the tokenizer: a folder's files, or a GGUF file's
// tokenizer.ggml.* metadata written out as those files (see
// model.WriteGGUFTokenizer).
func (s modelSource) codec() (infer.Codec, func([]Message) (string, error), error) {
	if !s.gguf {
		return localCodec(s.path)
	}
	var (
		c      infer.Codec
		render func([]Message) (string, error)
	)
	err := model.WithGGUFTokenizer(s.path, func(dir string) error {
		var err error
		c, render, err = localCodec(dir)
		return err
	})
	return c, render, err
}

// ChatML renders a conversation with MAI's default chat template
// (<|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n).
func ChatML(msgs []Message) (string, error) {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
	}
	b.WriteString("<|im_start|>assistant\n")
	return b.String(), nil
}

type localModel struct {
	m     *model.Model
	codec infer.Codec
	opt   LocalOptions
}

func (l *localModel) name() string { return l.opt.Name }
func (l *localModel) maxLen() int  { return l.m.Cfg.MaxSeq }

func (l *localModel) encode(text string) ([]int32, error) {
	if l.codec == nil {
		return nil, fmt.Errorf("model %s has no tokenizer: only token ids can be scored", l.opt.Name)
	}
	ids := l.codec.Encode(text)
	out := make([]int32, len(ids))
	for i, v := range ids {
		if v < 0 || v >= l.m.Cfg.Vocab {
			return nil, fmt.Errorf("tokenizer gave id %d outside the model's vocabulary [0,%d)", v, l.m.Cfg.Vocab)
		}
		out[i] = int32(v)
	}
	return out, nil
}

func (l *localModel) prefix() int32 {
	c := &l.m.Cfg
	switch {
	case c.BOS >= 0 && c.BOS < c.Vocab:
		return int32(c.BOS)
	case l.codec != nil && l.codec.EOT() >= 0 && l.codec.EOT() < c.Vocab:
		return int32(l.codec.EOT())
	case c.EOS >= 0 && c.EOS < c.Vocab:
		return int32(c.EOS)
	}
	return -1
}

// score runs sequences that share a long context (the choices of a
// multiple-choice item) through a KV cache of that context, and the rest in
// batches.
func (l *localModel) score(ctx context.Context, seqs []scoreSeq) ([][]tokScore, error) {
	out := make([][]tokScore, len(seqs))
	groups := map[string][]int{}
	var keys []string
	var rest []int
	for i, s := range seqs {
		if s.from < 32 || len(s.ids)-s.from > s.from/2 {
			rest = append(rest, i)
			continue
		}
		k := idsKey(s.ids[:s.from])
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range keys {
		g := groups[k]
		if len(g) < 2 {
			rest = append(rest, g...)
			continue
		}
		if err := l.scoreShared(ctx, seqs, g, out); err != nil {
			return nil, err
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	sub := make([]scoreSeq, len(rest))
	for i, k := range rest {
		sub[i] = seqs[k]
	}
	res, err := l.scoreBatched(ctx, sub)
	if err != nil {
		return nil, err
	}
	for i, k := range rest {
		out[k] = res[i]
	}
	return out, nil
}

func idsKey(ids []int32) string {
	b := make([]byte, 4*len(ids))
	for i, v := range ids {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return string(b)
}

// scoreShared scores sequences with the same context ids[:from]: the
// context runs once into a KV cache, then each continuation after it.
func (l *localModel) scoreShared(ctx context.Context, seqs []scoreSeq, group []int, out [][]tokScore) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v := l.m.Cfg.Vocab
	first := seqs[group[0]]
	prefix := first.ids[:first.from]
	longest := 0
	for _, k := range group {
		longest = max(longest, len(seqs[k].ids))
	}
	cache := l.m.NewCache(1, longest)
	tp := nn.NewTape(l.m.Pool, false)
	o, err := l.m.Forward(tp, prefix, 1, len(prefix), cache, true)
	if err != nil {
		return err
	}
	last := append([]float32(nil), o.Logits.Data[:v]...)
	for _, k := range group {
		s := seqs[k]
		res := []tokScore{logSoftmaxAt(last, s.ids[s.from])}
		if n := len(s.ids) - 1 - s.from; n > 0 {
			cache.Len = len(prefix)
			tp.Reset()
			o, err := l.m.Forward(tp, s.ids[s.from:len(s.ids)-1], 1, n, cache, false)
			if err != nil {
				return err
			}
			for p := range n {
				res = append(res, logSoftmaxAt(o.Logits.Data[p*v:(p+1)*v], s.ids[s.from+1+p]))
			}
		}
		out[k] = res
	}
	return nil
}

// scoreBatched runs the sequences in batches of similar length, padded on
// the right (causal attention keeps padding from changing earlier positions).
func (l *localModel) scoreBatched(ctx context.Context, seqs []scoreSeq) ([][]tokScore, error) {
	out := make([][]tokScore, len(seqs))
	order := make([]int, len(seqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(seqs[b].ids) - len(seqs[a].ids) })
	v := l.m.Cfg.Vocab
	maxRows := max(1, min(l.opt.BatchTokens, (32<<20)/v))
	tp := nn.NewTape(l.m.Pool, false)
	for start := 0; start < len(order); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := len(seqs[order[start]].ids) - 1
		if t < 1 {
			out[order[start]] = nil
			start++
			continue
		}
		if t > l.m.Cfg.MaxSeq {
			return nil, fmt.Errorf("score: %d tokens exceed the context length %d", t, l.m.Cfg.MaxSeq)
		}
		n := 1
		for start+n < len(order) && (n+1)*t <= maxRows && len(seqs[order[start+n]].ids) >= 2 {
			n++
		}
		batch := order[start : start+n]
		in := make([]int32, n*t)
		for i, k := range batch {
			copy(in[i*t:], seqs[k].ids[:len(seqs[k].ids)-1])
		}
		tp.Reset()
		o, err := l.m.Forward(tp, in, n, t, nil, false)
		if err != nil {
			return nil, err
		}
		logits := o.Logits.Data
		for i, k := range batch {
			s := seqs[k]
			res := make([]tokScore, 0, len(s.ids)-s.from)
			for p := s.from; p < len(s.ids); p++ {
				row := logits[(i*t+p-1)*v : (i*t+p)*v]
				res = append(res, logSoftmaxAt(row, s.ids[p]))
			}
			out[k] = res
		}
		start += n
	}
	return out, nil
}

// logSoftmaxAt returns log softmax(row)[target] in float64 and whether target
// is the row's argmax.
func logSoftmaxAt(row []float32, target int32) tokScore {
	mx := row[0]
	arg := 0
	for j, x := range row {
		if x > mx {
			mx, arg = x, j
		}
	}
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x - mx))
	}
	lse := math.Log(sum)
	lp := float64(row[target]-mx) - lse
	return tokScore{lp: lp, top: -lse, greedy: arg == int(target) || row[target] == mx}
}

func (l *localModel) generate(ctx context.Context, reqs []GenRequest) ([]string, error) {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		prompt := r.Prompt
		if len(r.Messages) > 0 {
			var err error
			if prompt, err = l.opt.Chat(r.Messages); err != nil {
				return nil, fmt.Errorf("chat template: %w", err)
			}
		}
		ids, err := l.encode(prompt)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			if p := l.prefix(); p >= 0 {
				ids = []int32{p}
			} else {
				return nil, fmt.Errorf("generate: empty prompt")
			}
		}
		maxNew := r.MaxTokens
		if maxNew <= 0 {
			maxNew = 256
		}
		maxNew = min(maxNew, l.m.Cfg.MaxSeq-1)
		if keep := l.m.Cfg.MaxSeq - maxNew; len(ids) > keep {
			ids = ids[len(ids)-keep:] // keep the end of a long prompt, as harnesses do
		}
		opt := infer.Options{MaxTokens: maxNew, Stop: r.Until,
			Sampling: infer.Sampling{Temperature: r.Temperature, Seed: r.Seed, TopP: 1, RepetitionPenalty: 1}}
		if e := l.m.Cfg.EOS; e >= 0 {
			opt.EOS = append(opt.EOS, int32(e))
		}
		if l.codec != nil {
			if e := l.codec.EOT(); e >= 0 && e != l.m.Cfg.EOS {
				opt.EOS = append(opt.EOS, int32(e))
			}
			opt.Decode = func(ids []int32) string {
				x := make([]int, len(ids))
				for i, v := range ids {
					x[i] = int(v)
				}
				return l.codec.Decode(x)
			}
		}
		res, err := infer.Generate(ctx, l.m, ids, opt, nil)
		if err != nil {
			return nil, err
		}
		out[i] = res.Text
	}
	return out, nil
}
