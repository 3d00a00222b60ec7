package train

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// SFTSet is a chat data set tokenized through a chat template and packed
// into rows of Seq+1 tokens. Only assistant tokens carry loss; packed
// conversations do not attend to each other (Start) and their positions
// restart at zero.
type SFTSet struct {
	Seq  int
	Rows []SFTRow
	// Examples, Truncated and Skipped count conversations read, cut to fit a
	// row, and skipped for having no assistant turn.
	Examples, Truncated, Skipped int
	// Trained is the number of tokens that carry loss.
	Trained int
	// Teacher holds the teacher's next-token distributions (distillation,
	// see LoadSFTDistill); nil without them.
	Teacher *TeacherSet
}

// SFTRow is one packed training row.
type SFTRow struct {
	X, Y, Pos, Start []int32 // inputs, targets (-1: no loss), positions, first visible key
	// SoftPos are the positions whose target has a teacher distribution,
	// SoftIdx its index in SFTSet.Teacher (distillation only).
	SoftPos, SoftIdx []int32
}

// LoadSFT reads chat JSONL ({"messages": [{"role", "content"}...]}) and packs
// it for sequences of seq tokens.
func LoadSFT(path string, tok *tokenizer.Tokenizer, seq int) (*SFTSet, error) {
	return loadSFT(path, tok, seq, nil)
}

// loadSFT is LoadSFT, also reading the teacher's log-probabilities of
// assistant messages when teach is not nil.
func loadSFT(path string, tok *tokenizer.Tokenizer, seq int, teach *teacherReader) (*SFTSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sft data: %w", err)
	}
	defer f.Close()
	set := &SFTSet{Seq: seq}
	var ids, soft []int32
	var mask []bool
	var docs [][2]int // [start, end) in ids of each conversation
	if teach != nil {
		set.Teacher = teach.set
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l sftLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("sft data %s:%d: %w", path, line, err)
		}
		msgs := make([]tokenizer.Message, len(l.Messages))
		for i, m := range l.Messages {
			msgs[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
		}
		cid, cmask, segs, err := encodeChat(tok, msgs)
		if err != nil {
			return nil, fmt.Errorf("sft data %s:%d: %w", path, line, err)
		}
		var csoft []int32
		if teach != nil {
			if csoft, err = teach.conversation(l.Messages, cid, segs); err != nil {
				return nil, fmt.Errorf("sft data %s:%d: %w", path, line, err)
			}
		}
		set.Examples++
		if !anyTrue(cmask) {
			set.Skipped++
			continue
		}
		if len(cid) > seq+1 {
			cid, cmask = cid[:seq+1], cmask[:seq+1]
			if csoft != nil {
				csoft = csoft[:seq+1]
			}
			set.Truncated++
		}
		docs = append(docs, [2]int{len(ids), len(ids) + len(cid)})
		ids = append(ids, cid...)
		mask = append(mask, cmask...)
		if teach != nil {
			soft = append(soft, csoft...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sft data %s: %w", path, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("sft data %s: no conversation with an assistant turn", path)
	}
	set.pack(ids, mask, soft, docs, tok.EOT())
	return set, nil
}

// pack fills rows of seq+1 tokens greedily, conversation by conversation,
// padding a row's tail with end-of-text tokens that carry no loss. soft
// (nil without a teacher) gives each token's teacher distribution index, -1
// for none.
func (s *SFTSet) pack(ids []int32, mask []bool, soft []int32, docs [][2]int, pad int) {
	if pad < 0 {
		pad = 0
	}
	n := s.Seq + 1
	var row, rsoft []int32
	var rmask []bool
	var rstart []int32
	flush := func() {
		if len(row) == 0 {
			return
		}
		for len(row) < n {
			rstart = append(rstart, int32(len(row)))
			row, rmask, rsoft = append(row, int32(pad)), append(rmask, false), append(rsoft, -1)
		}
		r := SFTRow{X: row[:s.Seq], Y: make([]int32, s.Seq), Pos: make([]int32, s.Seq), Start: rstart[:s.Seq]}
		for i := 0; i < s.Seq; i++ {
			r.Pos[i] = int32(i) - rstart[i]
			r.Y[i] = -1
			if rmask[i+1] && rstart[i+1] == rstart[i] {
				r.Y[i] = row[i+1]
				s.Trained++
				if soft != nil && rsoft[i+1] >= 0 {
					r.SoftPos, r.SoftIdx = append(r.SoftPos, int32(i)), append(r.SoftIdx, rsoft[i+1])
				}
			}
		}
		s.Rows = append(s.Rows, r)
		row, rmask, rstart, rsoft = nil, nil, nil, nil
	}
	for _, d := range docs {
		if len(row)+d[1]-d[0] > n {
			flush()
		}
		st := int32(len(row))
		for i := d[0]; i < d[1]; i++ {
			row, rmask, rstart = append(row, ids[i]), append(rmask, mask[i]), append(rstart, st)
			if soft != nil {
				rsoft = append(rsoft, soft[i])
			} else {
				rsoft = append(rsoft, -1)
			}
		}
	}
	flush()
}

// EncodeChat renders a conversation through the tokenizer's chat template
// (MAI's default template as plain text when it has none) and marks the
// tokens of assistant turns, which are the only ones trained on.
func EncodeChat(tok *tokenizer.Tokenizer, msgs []tokenizer.Message) ([]int32, []bool, error) {
	ids, mask, _, err := encodeChat(tok, msgs)
	return ids, mask, err
}

// chatSeg is the rendered text of one message (from the end of the text
// before it) and its tokens [lo, hi) in the conversation's ids. An
// assistant message's header belongs to the text before it.
type chatSeg struct {
	text   string
	lo, hi int
}

// encodeChat is EncodeChat, also returning each message's segment.
func encodeChat(tok *tokenizer.Tokenizer, msgs []tokenizer.Message) ([]int32, []bool, []chatSeg, error) {
	segs := make([]chatSeg, len(msgs))
	render := func(m []tokenizer.Message, gen bool) (string, error) {
		s, err := tok.ApplyChatTemplate(m, gen)
		if errors.Is(err, tokenizer.ErrNoChatTemplate) {
			return tokenizer.RenderChatTemplate(tokenizer.DefaultChatTemplate, m, gen, nil)
		}
		return s, err
	}
	enc := func(s string) []int { return tok.EncodeWithSpecial(s) }
	var ids []int32
	var mask []bool
	prev := ""
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant", "tool":
		default:
			return nil, nil, nil, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
		// The assistant's header belongs to the prompt, its content and end
		// marker to the target.
		if m.Role == "assistant" {
			head, err := render(msgs[:i], true)
			if err != nil {
				return nil, nil, nil, err
			}
			if len(head) < len(prev) || head[:len(prev)] != prev {
				return nil, nil, nil, fmt.Errorf("chat template is not prefix-stable at message %d", i)
			}
			for _, id := range enc(head[len(prev):]) {
				ids, mask = append(ids, int32(id)), append(mask, false)
			}
			prev = head
		}
		full, err := render(msgs[:i+1], false)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(full) < len(prev) || full[:len(prev)] != prev {
			return nil, nil, nil, fmt.Errorf("chat template is not prefix-stable at message %d", i)
		}
		segs[i] = chatSeg{text: full[len(prev):], lo: len(ids)}
		for _, id := range enc(full[len(prev):]) {
			ids, mask = append(ids, int32(id)), append(mask, m.Role == "assistant")
		}
		segs[i].hi = len(ids)
		prev = full
	}
	return ids, mask, segs, nil
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}

// SFTLoader yields batches of packed rows in a seeded order per epoch.
type SFTLoader struct {
	set          *SFTSet
	batch        int
	seed         uint64
	epoch, index int
	order        []int
	last         []int // rows of the last batch, in batch order
}

// SFTState is the SFT loader's resume cursor.
type SFTState struct {
	Epoch int `json:"epoch"`
	Index int `json:"index"`
}

// NewSFTLoader returns a loader of batch rows per step.
func NewSFTLoader(set *SFTSet, batch int, seed uint64) (*SFTLoader, error) {
	if len(set.Rows) < batch {
		return nil, fmt.Errorf("sft: %d packed rows, fewer than one batch of %d", len(set.Rows), batch)
	}
	l := &SFTLoader{set: set, batch: batch, seed: seed}
	l.shuffle()
	return l, nil
}

func (l *SFTLoader) shuffle() {
	rng := rand.New(rand.NewPCG(l.seed, uint64(l.epoch)))
	l.order = rng.Perm(len(l.set.Rows))
}

// Next fills x, y, pos and start (each batch*seq) with the next batch.
func (l *SFTLoader) Next(x, y, pos, start []int32) {
	if l.index+l.batch > len(l.order) {
		l.epoch, l.index = l.epoch+1, 0
		l.shuffle()
	}
	T := l.set.Seq
	l.last = l.last[:0]
	for b := 0; b < l.batch; b++ {
		l.last = append(l.last, l.order[l.index+b])
		r := l.set.Rows[l.order[l.index+b]]
		copy(x[b*T:], r.X)
		copy(y[b*T:], r.Y)
		copy(pos[b*T:], r.Pos)
		for i, s := range r.Start {
			start[b*T+i] = s
		}
	}
	l.index += l.batch
}

// State returns the cursor.
func (l *SFTLoader) State() SFTState { return SFTState{Epoch: l.epoch, Index: l.index} }

// Restore moves the cursor to s.
func (l *SFTLoader) Restore(s SFTState) {
	l.epoch, l.index = s.Epoch, s.Index
	l.shuffle()
}

// openShards opens pretraining shards and their loader.
func (t *Trainer) openShards() error {
	var err error
	cfg := &t.Cfg
	if t.train, err = data.OpenShards(cfg.Data, "train"); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if t.val, err = data.OpenShards(cfg.Data, "val"); err != nil {
		slog.Warn("no validation split; validation loss is off", "data", cfg.Data, "err", err)
		t.val = nil
	}
	if t.loader, err = data.NewLoader(t.train, data.LoaderConfig{Batch: cfg.Batch, SeqLen: cfg.Seq, Seed: int64(cfg.Seed)}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.tokName = t.train.Tokenizer()
	return nil
}

// openSFT tokenizes chat data with the model's tokenizer (the --init
// model's, else --tokenizer, else byte-level) and packs it; every 20th row
// is held out for validation.
func (t *Trainer) openSFT() error {
	name := t.Cfg.Tokenizer
	if name == "" && t.Cfg.Init != "" {
		if dir, err := model.ResolveDir(t.Cfg.Init); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
				name = dir
			} else if b, err := os.ReadFile(filepath.Join(dir, "mai_tokenizer.json")); err == nil {
				var v struct {
					Tokenizer string `json:"tokenizer"`
				}
				if json.Unmarshal(b, &v) == nil {
					name = v.Tokenizer
				}
			}
		}
	}
	if name == "" {
		name = "byte"
	}
	tok, err := tokenizer.Load(name)
	if err != nil {
		return fmt.Errorf("train --sft: %w", err)
	}
	var set *SFTSet
	if t.Cfg.DistillWeight > 0 {
		if t.Comm.Size() > 1 {
			return fmt.Errorf("train: --distill-weight runs in one process for now (this job has %d ranks)", t.Comm.Size())
		}
		set, err = openDistill(&t.Cfg, tok)
		if err == nil {
			t.distill = &distiller{alpha: float32(t.Cfg.DistillWeight), set: set}
		}
	} else {
		set, err = LoadSFT(t.Cfg.SFT, tok, t.Cfg.Seq)
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	slog.Info("sft data", "conversations", set.Examples, "rows", len(set.Rows), "trained_tokens", set.Trained,
		"truncated", set.Truncated, "skipped_no_assistant", set.Skipped)
	if len(set.Rows) >= 20 {
		val := &SFTSet{Seq: set.Seq}
		var keep []SFTRow
		for i, r := range set.Rows {
			if i%20 == 19 {
				val.Rows = append(val.Rows, r)
			} else {
				keep = append(keep, r)
			}
		}
		set.Rows, t.sftVal = keep, val
	}
	if t.sft, err = NewSFTLoader(set, t.Cfg.Batch, t.Cfg.Seed); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.tok, t.tokName = tok, name
	if name == "byte" {
		t.tok = nil // byte-level models record the name only
	}
	return nil
}

// vocab returns the vocabulary size and end-of-text id of the training data.
func (t *Trainer) vocab() (int, int) {
	if t.train != nil {
		return t.train.VocabSize(), t.train.EOT()
	}
	if t.sft != nil {
		tok, err := tokenizer.Load(t.tokName)
		if err == nil {
			return tok.VocabSize(), tok.EOT()
		}
	}
	return 0, -1
}

// validateSFT returns the mean loss over up to n held-out SFT batches.
func (t *Trainer) validateSFT(n int) (float64, error) {
	B, T := t.Cfg.Batch, t.Cfg.Seq
	rows := t.sftVal.Rows
	if len(rows) < B {
		B = len(rows)
	}
	x, y := make([]int32, B*T), make([]int32, B*T)
	pk := &model.Packed{Pos: make([]int32, B*T), Start: make([]int32, B*T)}
	tp := nn.NewTape(t.pool, false)
	var s float64
	batches := 0
	for i := 0; i+B <= len(rows) && batches < max(n, 1); i += B {
		for b := 0; b < B; b++ {
			r := rows[i+b]
			copy(x[b*T:], r.X)
			copy(y[b*T:], r.Y)
			copy(pk.Pos[b*T:], r.Pos)
			copy(pk.Start[b*T:], r.Start)
		}
		_, ce, _, err := t.Model.LossPacked(tp, x, y, B, T, pk)
		if err != nil {
			return 0, err
		}
		s += float64(ce.Data[0])
		batches++
	}
	return s / float64(batches), nil
}
