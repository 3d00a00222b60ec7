package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Save writes the tokenizer into dir as Hugging Face files: tokenizer.json
// and tokenizer_config.json, which Load(dir) and Hugging Face transformers
// (PreTrainedTokenizerFast) read. Files are written to temporary names and
// renamed, so a crash leaves the old files or the new ones.
func (t *Tokenizer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	tj, err := t.MarshalHF()
	if err != nil {
		return err
	}
	cfg, err := t.MarshalHFConfig()
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "tokenizer.json"), tj); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "tokenizer_config.json"), cfg)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	return nil
}

// vocabStrings returns each vocabulary id's string as tokenizer.json writes it.
func (t *Tokenizer) vocabStrings() map[int32]string {
	out := make(map[int32]string, len(t.m.vocab))
	for s, id := range t.m.vocab {
		if t.kind == kindByteLevel {
			out[id] = byteLevelEncode(s)
		} else {
			out[id] = s
		}
	}
	if t.hf != nil {
		for s, id := range t.hf.rawVocab {
			out[id] = s
		}
	}
	return out
}

// rankMerges derives the merge list of a tiktoken-style vocabulary: for each
// token, in rank order, the two parts that byte-pair merging with the lower
// ranks ends with. Tokens that no merge reaches get none.
func (t *Tokenizer) rankMerges() [][2]int32 {
	ids := make([]int32, 0, len(t.m.vocab))
	for _, id := range t.m.vocab {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out [][2]int32
	var bounds []int
	for _, id := range ids {
		tok := t.decodeTab[id]
		if len(tok) < 2 {
			continue
		}
		bounds = bounds[:0]
		for i := 0; i <= len(tok); i++ {
			bounds = append(bounds, i)
		}
		for {
			best, bestRank := -1, id
			for i := 0; i+2 < len(bounds); i++ {
				if r, ok := t.m.vocab[tok[bounds[i]:bounds[i+2]]]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			bounds = slices.Delete(bounds, best+1, best+2)
		}
		if len(bounds) != 3 {
			continue
		}
		a, okA := t.m.vocab[tok[:bounds[1]]]
		b, okB := t.m.vocab[tok[bounds[1]:]]
		if okA && okB {
			out = append(out, [2]int32{a, b})
		}
	}
	return out
}

// MarshalHF returns the tokenizer as Hugging Face tokenizer.json.
func (t *Tokenizer) MarshalHF() ([]byte, error) {
	strs := t.vocabStrings()
	merges := t.mergeList
	if t.m.merges == nil {
		merges = t.rankMerges()
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	w.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ")
	added := t.addedTokens()
	b, _ := json.Marshal(added)
	w.Write(b)

	var normalizer, pre, post, decoder json.RawMessage
	model := hfModel{Type: "BPE", IgnoreMerges: t.m.ignoreMerges}
	if t.hf != nil {
		normalizer, pre, post, decoder = t.hf.normalizer, t.hf.preTokenizer, t.hf.postProcessor, t.hf.decoder
		model = t.hf.model
	} else {
		var steps []json.RawMessage
		if t.split.kind != splitNone {
			pat, _ := json.Marshal(portablePattern(t.split.pattern))
			steps = append(steps, json.RawMessage(`{"type":"Split","pattern":{"Regex":`+string(pat)+`},"behavior":"Isolated","invert":false}`))
		}
		steps = append(steps, json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}`))
		seq, _ := json.Marshal(map[string]any{"type": "Sequence", "pretokenizers": steps})
		pre = seq
		post = json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`)
		decoder = json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`)
	}
	for _, kv := range []struct {
		name string
		raw  json.RawMessage
	}{{"normalizer", normalizer}, {"pre_tokenizer", pre}, {"post_processor", post}, {"decoder", decoder}} {
		w.WriteString(",\n  \"" + kv.name + "\": ")
		if len(kv.raw) == 0 {
			w.WriteString("null")
		} else {
			w.Write(kv.raw)
		}
	}
	model.Vocab, model.Merges = nil, nil
	head, _ := json.Marshal(model)
	head = bytes.TrimSuffix(head, []byte("}"))
	head = bytes.ReplaceAll(head, []byte(`"vocab":null,`), nil)
	head = bytes.ReplaceAll(head, []byte(`,"merges":null`), nil)
	head = bytes.ReplaceAll(head, []byte(`"merges":null,`), nil)
	w.WriteString(",\n  \"model\": ")
	w.Write(head)
	w.WriteString(",\"vocab\":{")
	ids := make([]int32, 0, len(strs))
	for id := range strs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			w.WriteByte(',')
		}
		k, _ := json.Marshal(strs[id])
		w.WriteString("\n    ")
		w.Write(k)
		w.WriteByte(':')
		w.WriteString(strconv.Itoa(int(id)))
	}
	w.WriteString("},\"merges\":[")
	for i, mg := range merges {
		if i > 0 {
			w.WriteByte(',')
		}
		a, okA := strs[mg[0]]
		b, okB := strs[mg[1]]
		if !okA || !okB {
			return nil, fmt.Errorf("tokenizer: save %s: merge of ids %d and %d that are not in the vocabulary", t.name, mg[0], mg[1])
		}
		s, _ := json.Marshal(a + " " + b)
		w.WriteString("\n    ")
		w.Write(s)
	}
	w.WriteString("]}\n}\n")
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// addedTokens lists the special and added tokens in id order.
func (t *Tokenizer) addedTokens() []hfAddedToken {
	var out []hfAddedToken
	if t.hf != nil {
		return t.hf.added
	}
	for s, id := range t.specials {
		out = append(out, hfAddedToken{ID: id, Content: s, Special: true})
	}
	slices.SortFunc(out, func(a, b hfAddedToken) int { return a.ID - b.ID })
	return out
}

// MarshalHFConfig returns the tokenizer's tokenizer_config.json.
func (t *Tokenizer) MarshalHFConfig() ([]byte, error) {
	type addedDecoder struct {
		Content    string `json:"content"`
		LStrip     bool   `json:"lstrip"`
		Normalized bool   `json:"normalized"`
		RStrip     bool   `json:"rstrip"`
		SingleWord bool   `json:"single_word"`
		Special    bool   `json:"special"`
	}
	dec := map[string]addedDecoder{}
	for _, a := range t.addedTokens() {
		dec[strconv.Itoa(a.ID)] = addedDecoder{Content: a.Content, LStrip: a.LStrip, Normalized: a.Normalized, RStrip: a.RStrip, SingleWord: a.SingleWord, Special: a.Special}
	}
	cfg := map[string]any{
		"tokenizer_class":              "PreTrainedTokenizerFast",
		"clean_up_tokenization_spaces": false,
		"added_tokens_decoder":         dec,
		"add_bos_token":                t.cfg.AddBOSToken,
		"add_eos_token":                t.cfg.AddEOSToken,
	}
	for k, v := range map[string]string{"bos_token": t.cfg.BOSToken, "eos_token": t.cfg.EOSToken, "pad_token": t.cfg.PadToken, "unk_token": t.cfg.UnkToken, "chat_template": t.cfg.ChatTemplate} {
		if v != "" {
			cfg[k] = v
		}
	}
	if t.cfg.ModelMaxLength > 0 {
		cfg["model_max_length"] = t.cfg.ModelMaxLength
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("tokenizer: save %s: %w", t.name, err)
	}
	return append(b, '\n'), nil
}
