package train

import (
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// DistillConfig are the distillation settings of an SFT run: the student
// learns from the teacher's top-k next-token log-probabilities that `mai
// synth --logprobs K` stores with each assistant message, besides the
// teacher's sampled text. See docs/synth.md.
type DistillConfig struct {
	// DistillWeight α mixes the loss: (1−α)·CE(teacher's tokens) +
	// α·KL(teacher ‖ student) on the assistant tokens that have the
	// teacher's log-probabilities. 0 is plain SFT, 1 is distillation only.
	DistillWeight float64 `json:"distill_weight,omitempty"`
	// DistillRenorm renormalizes the teacher's top-k to sum to 1 instead of
	// keeping the mass outside it as one "rest" bucket.
	DistillRenorm bool `json:"distill_renorm,omitempty"`
}

func (c *DistillConfig) validate(sft bool) error {
	switch {
	case c.DistillWeight < 0 || c.DistillWeight >= 1 || math.IsNaN(c.DistillWeight):
		// At 1 the tokens without a teacher distribution (the end of a
		// turn, tokens that did not align) would carry no loss at all.
		return fmt.Errorf("train: --distill-weight %v must be at least 0 and below 1 (tokens without the teacher's distribution, such as the end of a turn, learn only from the (1 - weight) cross-entropy)", c.DistillWeight)
	case c.DistillWeight > 0 && !sft:
		return fmt.Errorf("train: --distill-weight needs --sft chat data with the teacher's logprobs (mai synth --logprobs K)")
	}
	return nil
}

// sftLine is one line of chat JSONL; messages may carry the teacher's
// log-probabilities in the OpenAI API's form (mai synth --logprobs).
type sftLine struct {
	Messages []sftMessage `json:"messages"`
}

type sftMessage struct {
	Role     string        `json:"role"`
	Content  string        `json:"content"`
	Logprobs *chatLogprobs `json:"logprobs,omitempty"`
}

type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
}

type tokenLogprob struct {
	Token       string         `json:"token"`
	Logprob     float64        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []tokenLogprob `json:"top_logprobs"`
}

// text returns the token's bytes (its "bytes" field, else its text).
func (t *tokenLogprob) text() (string, error) {
	if t.Bytes == nil {
		return t.Token, nil
	}
	b := make([]byte, len(t.Bytes))
	for i, v := range t.Bytes {
		if v < 0 || v > 255 {
			return "", fmt.Errorf("logprobs: token %q has byte %d outside 0..255", t.Token, v)
		}
		b[i] = byte(v)
	}
	return string(b), nil
}

// TeacherSet holds the teacher's next-token distributions of a data set,
// K entries each (student token ids, -1 for an empty slot).
type TeacherSet struct {
	K    int
	IDs  []int32
	Prob []float32
	Rest []float32

	// Positions counts the assistant tokens given a distribution; Messages
	// and Unaligned count assistant messages with logprobs and those whose
	// tokens did not spell the content (left to the hard labels). Kept and
	// Dropped count top-k entries that mapped to a student token and those
	// that did not.
	Positions, Messages, Unaligned int
	Kept, Dropped                  int
}

// Len is the number of distributions.
func (s *TeacherSet) Len() int { return len(s.Rest) }

// teacherReader turns the logprobs of assistant messages into teacher
// distributions over the student's tokens.
type teacherReader struct {
	tok    *tokenizer.Tokenizer
	vocab  map[string]int32 // bytes of every ordinary student token
	renorm bool
	set    *TeacherSet
}

func newTeacherReader(tok *tokenizer.Tokenizer, renorm bool) *teacherReader {
	r := &teacherReader{tok: tok, vocab: map[string]int32{}, renorm: renorm, set: &TeacherSet{}}
	for id := range tok.VocabSize() {
		if tok.IsSpecial(id) {
			continue
		}
		if b, ok := tok.Token(id); ok {
			if _, dup := r.vocab[b]; !dup {
				r.vocab[b] = int32(id)
			}
		}
	}
	return r
}

// conversation returns, per token of the conversation (ids, with segments
// segs), the index of its teacher distribution or -1.
//
// The rule: an assistant message's teacher tokens must spell its content
// exactly (else the message trains on the hard labels only). A student
// token gets the teacher's distribution at the teacher position that starts
// at the same byte of the content: both then predict the text that follows
// the same prefix. With the same tokenizer that is every token; with
// another, the tokens where the two tokenizations share a boundary. Each
// top-k entry maps to the ordinary student token with exactly its bytes;
// entries that map to none (or to special tokens, whose meaning the two
// templates need not share) are dropped, and the kept entries are scaled
// up to the mass of the whole top-k (see entry).
func (r *teacherReader) conversation(msgs []sftMessage, ids []int32, segs []chatSeg) ([]int32, error) {
	soft := make([]int32, len(ids))
	for i := range soft {
		soft[i] = -1
	}
	for mi, m := range msgs {
		if m.Role != "assistant" || m.Logprobs == nil || len(m.Logprobs.Content) == 0 {
			continue
		}
		r.set.Messages++
		seg := segs[mi]
		lps := m.Logprobs.Content
		// Teacher token starts within the content.
		starts := make(map[int]int, len(lps))
		var spelled strings.Builder
		for ti := range lps {
			b, err := lps[ti].text()
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", mi, err)
			}
			starts[spelled.Len()] = ti
			spelled.WriteString(b)
		}
		off := strings.Index(seg.text, m.Content)
		// Tokens past the content (a stop sequence some servers report)
		// are harmless when the content ends at a token boundary.
		_, boundary := starts[len(m.Content)]
		spelledOK := spelled.String() == m.Content || (boundary && strings.HasPrefix(spelled.String(), m.Content))
		if !spelledOK || m.Content == "" || off < 0 {
			r.set.Unaligned++
			continue
		}
		// Student token starts within the segment.
		at := 0
		pos := make([]int, 0, seg.hi-seg.lo)
		for _, id := range ids[seg.lo:seg.hi] {
			pos = append(pos, at)
			b, _ := r.tok.Token(int(id))
			at += len(b)
		}
		if at != len(seg.text) {
			r.set.Unaligned++ // a tokenizer whose tokens do not spell the text
			continue
		}
		for k, p := range pos {
			c := p - off
			if c < 0 || c >= len(m.Content) {
				continue
			}
			ti, ok := starts[c]
			if !ok {
				continue
			}
			idx, err := r.entry(&lps[ti])
			if err != nil {
				return nil, fmt.Errorf("message %d, token %d: %w", mi, ti, err)
			}
			soft[seg.lo+k] = idx
		}
	}
	return soft, nil
}

// entry adds the distribution at one teacher position and returns its
// index, or -1 when none of its tokens maps. The candidates are the top-k
// and the sampled token (when it is not among them); the teacher's mass
// outside them is r = 1 − Σ p. Kept entries are scaled to 1 − r together
// (so the dropped entries' mass is spread over the kept ones in proportion)
// and r is the rest bucket; with renorm they are scaled to 1 and r is 0.
func (r *teacherReader) entry(t *tokenLogprob) (int32, error) {
	type cand struct {
		id int32
		p  float64
	}
	var kept []cand
	var total, keptMass float64
	seen := map[string]bool{}
	add := func(e *tokenLogprob) error {
		b, err := e.text()
		if err != nil {
			return err
		}
		if seen[b] {
			return nil
		}
		seen[b] = true
		if math.IsNaN(e.Logprob) || e.Logprob > 1e-6 {
			return fmt.Errorf("logprob %v of %q is not a log-probability", e.Logprob, e.Token)
		}
		p := math.Exp(min(e.Logprob, 0))
		total += p
		id, ok := r.vocab[b]
		if !ok {
			r.set.Dropped++
			return nil
		}
		r.set.Kept++
		keptMass += p
		kept = append(kept, cand{id, p})
		return nil
	}
	for i := range t.TopLogprobs {
		if err := add(&t.TopLogprobs[i]); err != nil {
			return -1, err
		}
	}
	if err := add(t); err != nil {
		return -1, err
	}
	if keptMass <= 0 {
		return -1, nil
	}
	rest := max(0, 1-total)
	if r.renorm {
		rest = 0
	}
	s := r.set
	if len(kept) > s.K {
		s.grow(len(kept))
	}
	idx := int32(s.Len())
	for j := range s.K {
		if j < len(kept) {
			s.IDs = append(s.IDs, kept[j].id)
			s.Prob = append(s.Prob, float32(kept[j].p/keptMass*(1-rest)))
		} else {
			s.IDs, s.Prob = append(s.IDs, -1), append(s.Prob, 0)
		}
	}
	s.Rest = append(s.Rest, float32(rest))
	s.Positions++
	return idx, nil
}

// grow widens every stored distribution to k entries.
func (s *TeacherSet) grow(k int) {
	n := s.Len()
	ids, prob := make([]int32, 0, n*k), make([]float32, 0, n*k)
	for i := range n {
		ids = append(ids, s.IDs[i*s.K:(i+1)*s.K]...)
		prob = append(prob, s.Prob[i*s.K:(i+1)*s.K]...)
		for range k - s.K {
			ids, prob = append(ids, -1), append(prob, 0)
		}
	}
	s.K, s.IDs, s.Prob = k, ids, prob
}

// LoadSFTDistill is LoadSFT that also reads the teacher's log-probabilities
// of assistant messages (mai synth --logprobs K) into Teacher, mapped onto
// tok's tokens (see teacherReader.conversation for the rule). renorm drops
// the rest bucket.
func LoadSFTDistill(path string, tok *tokenizer.Tokenizer, seq int, renorm bool) (*SFTSet, error) {
	return loadSFT(path, tok, seq, newTeacherReader(tok, renorm))
}

// distiller mixes the distillation loss into a training step.
type distiller struct {
	alpha float32
	set   *SFTSet
	t     nn.DistillTargets
}

// targets fills d.t for the batch of rows (row b of the batch is
// set.Rows[rows[b]]) of seq positions each.
func (d *distiller) targets(rows []int, seq int) *nn.DistillTargets {
	ts := d.set.Teacher
	t := &d.t
	t.K = ts.K
	t.Rows, t.IDs, t.Prob, t.Rest = t.Rows[:0], t.IDs[:0], t.Prob[:0], t.Rest[:0]
	for b, ri := range rows {
		r := &d.set.Rows[ri]
		for j, p := range r.SoftPos {
			e := int(r.SoftIdx[j])
			t.Rows = append(t.Rows, int32(b*seq)+p)
			t.IDs = append(t.IDs, ts.IDs[e*ts.K:(e+1)*ts.K]...)
			t.Prob = append(t.Prob, ts.Prob[e*ts.K:(e+1)*ts.K]...)
			t.Rest = append(t.Rest, ts.Rest[e])
		}
	}
	return t
}

// mix returns loss − α·ce + α·KL: the model's loss (ce plus any auxiliary
// loss) with the hard-label cross-entropy ce weighted 1−α and the KL to the
// teacher on the batch's rows weighted α. The KL shares the forward pass:
// it runs on the hidden states that ce's fused classifier saw.
func (d *distiller) mix(tp *nn.Tape, loss, ce *nn.Var, rows []int, seq int) (*nn.Var, error) {
	x, w, ok := tp.ClassifierInput(ce)
	if !ok {
		return nil, fmt.Errorf("distill: the model's loss is not the fused classifier (a quantized model cannot be trained)")
	}
	kl, err := tp.LinearDistill(x, w, d.targets(rows, seq))
	if err != nil {
		return nil, fmt.Errorf("distill: %w", err)
	}
	return tp.WeightedSum([]*nn.Var{loss, ce, kl}, []float32{1, -d.alpha, d.alpha}), nil
}

// openDistill loads the SFT data with the teacher's distributions.
func openDistill(cfg *Config, tok *tokenizer.Tokenizer) (*SFTSet, error) {
	set, err := LoadSFTDistill(cfg.SFT, tok, cfg.Seq, cfg.DistillRenorm)
	if err != nil {
		return nil, err
	}
	ts := set.Teacher
	slog.Info("distillation data", "weight", cfg.DistillWeight, "messages_with_logprobs", ts.Messages,
		"unaligned", ts.Unaligned, "positions", ts.Positions, "top_k", ts.K, "entries_kept", ts.Kept, "entries_dropped", ts.Dropped)
	if ts.Positions == 0 {
		return nil, fmt.Errorf("train: --distill-weight: %s has no assistant token with the teacher's logprobs that maps to the student's tokenizer (generate it with mai synth --logprobs K)", cfg.SFT)
	}
	return set, nil
}
