package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// hfFile is Hugging Face's tokenizer.json.
type hfFile struct {
	Version       string          `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         hfModel         `json:"model"`
}

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// hfComponent is any normalizer, pre-tokenizer, post-processor or decoder.
type hfComponent struct {
	Type           string            `json:"type"`
	Normalizers    []hfComponent     `json:"normalizers"`
	Pretokenizers  []hfComponent     `json:"pretokenizers"`
	Decoders       []hfComponent     `json:"decoders"`
	Processors     []hfComponent     `json:"processors"`
	Pattern        *hfPattern        `json:"pattern"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	Content        json.RawMessage   `json:"content"`
	Prepend        string            `json:"prepend"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	Split          *bool             `json:"split"`
	Start          int               `json:"start"`
	Stop           int               `json:"stop"`
	Single         []json.RawMessage `json:"single"`
	Lowercase      bool              `json:"lowercase"`
	Left           bool              `json:"left"`
	Right          bool              `json:"right"`
}

type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// normStep is one text normalization (Hugging Face normalizers).
type normStep struct {
	kind     string // prepend, replace, nfc, nfd, nfkc, nfkd, lowercase
	from, to string
}

// metaspace is SentencePiece-style pre-tokenization: spaces become ▁, a ▁
// is prepended (scheme "always", or "first" for the start of the text), and
// with split each ▁ starts a new piece.
type metaspace struct {
	replacement string
	scheme      string
	split       bool
}

// hfSource keeps the components of a loaded tokenizer.json for Save.
type hfSource struct {
	normalizer, preTokenizer, postProcessor, decoder json.RawMessage
	model                                            hfModel
	added                                            []hfAddedToken
	// rawVocab holds byte-level vocabulary entries that are not byte strings.
	rawVocab map[string]int32
}

func applyNorm(dst []byte, steps []normStep, s string) []byte {
	cur := s
	for _, st := range steps {
		switch st.kind {
		case "prepend":
			if cur != "" {
				cur = st.from + cur
			}
		case "replace":
			cur = strings.ReplaceAll(cur, st.from, st.to)
		case "nfc":
			cur = norm.NFC.String(cur)
		case "nfd":
			cur = norm.NFD.String(cur)
		case "nfkc":
			cur = norm.NFKC.String(cur)
		case "nfkd":
			cur = norm.NFKD.String(cur)
		case "lowercase":
			cur = strings.ToLower(cur)
		}
	}
	return append(dst, cur...)
}

// byteToUnicode is GPT-2's map from bytes to printable characters, in which
// byte-level vocabularies are written.
var byteToUnicode, unicodeToByte = func() ([256]rune, map[rune]byte) {
	var b2u [256]rune
	u2b := make(map[rune]byte, 256)
	n := 0
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			b2u[b] = rune(b)
		} else {
			b2u[b] = rune(256 + n)
			n++
		}
		u2b[b2u[b]] = byte(b)
	}
	return b2u, u2b
}()

// byteLevelDecode turns a byte-level vocabulary string into its bytes.
func byteLevelDecode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range s {
		c, ok := unicodeToByte[r]
		if !ok {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// byteLevelEncode writes bytes in GPT-2's printable form.
func byteLevelEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToUnicode[s[i]])
	}
	return b.String()
}

// parseVocab reads model.vocab.
func parseVocab(raw json.RawMessage) ([]string, []int, error) {
	var m map[string]int
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("model.vocab: %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return m[a] - m[b] })
	ids := make([]int, len(keys))
	for i, k := range keys {
		ids[i] = m[k]
	}
	return keys, ids, nil
}

// parseMerges reads model.merges as "a b" strings or [a, b] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" {
				return nil, fmt.Errorf("model.merges[%d] = %q: want two tokens separated by a space", i, s)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want a list of \"a b\" strings or [\"a\", \"b\"] pairs: %w", err)
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: want 2 tokens, got %d", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

func component(raw json.RawMessage) (*hfComponent, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func flatten(c *hfComponent) []hfComponent {
	if c == nil {
		return nil
	}
	if c.Type == "Sequence" {
		var out []hfComponent
		for _, list := range [][]hfComponent{c.Normalizers, c.Pretokenizers, c.Decoders, c.Processors} {
			for i := range list {
				out = append(out, flatten(&list[i])...)
			}
		}
		return out
	}
	return []hfComponent{*c}
}

func contentString(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// ParseHF builds a tokenizer from the bytes of a Hugging Face tokenizer.json
// and, if not nil, tokenizer_config.json. Byte-level BPE (GPT-2, Llama 3,
// Qwen) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral)
// are supported; other models are an error that names what is missing.
func ParseHF(tokenizerJSON, configJSON []byte, name string) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a tokenizer.json: %w", name, err)
	}
	t, err := buildHF(&f, name)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	if configJSON != nil {
		if err := t.applyConfig(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: tokenizer_config.json: %w", name, err)
		}
	}
	t.finish()
	return t, nil
}

func buildHF(f *hfFile, name string) (*Tokenizer, error) {
	m := &f.Model
	if m.Type == "" && len(m.Merges) > 0 {
		m.Type = "BPE"
	}
	if m.Type != "BPE" {
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" || m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, errors.New("BPE with continuing_subword_prefix or end_of_word_suffix is not supported")
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, errors.New("BPE dropout is not supported")
	}
	t := &Tokenizer{name: name, hf: &hfSource{
		normalizer: f.Normalizer, preTokenizer: f.PreTokenizer, postProcessor: f.PostProcessor, decoder: f.Decoder,
		model: *m, added: f.AddedTokens,
	}}
	t.hf.model.Vocab, t.hf.model.Merges = nil, nil

	// Pipeline components.
	normC, err := component(f.Normalizer)
	if err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	for _, c := range flatten(normC) {
		switch c.Type {
		case "Prepend":
			t.norm = append(t.norm, normStep{kind: "prepend", from: c.Prepend})
		case "Replace":
			if c.Pattern == nil || c.Pattern.String == nil {
				return nil, errors.New("normalizer Replace with a regex pattern is not supported")
			}
			t.norm = append(t.norm, normStep{kind: "replace", from: *c.Pattern.String, to: contentString(c.Content)})
		case "NFC", "NFD", "NFKC", "NFKD":
			t.norm = append(t.norm, normStep{kind: strings.ToLower(c.Type)})
		case "Lowercase":
			t.norm = append(t.norm, normStep{kind: "lowercase"})
		default:
			return nil, fmt.Errorf("normalizer %q is not supported", c.Type)
		}
	}
	preC, err := component(f.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	byteLevel := false
	var patterns []string
	for _, c := range flatten(preC) {
		switch c.Type {
		case "ByteLevel":
			byteLevel = true
			if c.UseRegex == nil || *c.UseRegex {
				patterns = append(patterns, PatternGPT2)
			}
			if c.AddPrefixSpace != nil && *c.AddPrefixSpace {
				t.bytePrefixSpace = true
			}
		case "Split":
			if c.Pattern == nil {
				return nil, errors.New("pre_tokenizer Split without a pattern")
			}
			if c.Invert || (c.Behavior != "Isolated" && c.Behavior != "") {
				return nil, fmt.Errorf("pre_tokenizer Split with behavior %q invert %v is not supported (only Isolated)", c.Behavior, c.Invert)
			}
			if c.Pattern.Regex != nil {
				patterns = append(patterns, *c.Pattern.Regex)
			} else if c.Pattern.String != nil {
				patterns = append(patterns, regexpQuote(*c.Pattern.String))
			}
		case "Metaspace":
			ms := &metaspace{replacement: c.Replacement, scheme: c.PrependScheme, split: c.Split == nil || *c.Split}
			if ms.scheme == "" {
				ms.scheme = "always"
				if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
					ms.scheme = "never"
				}
			}
			t.metaspace = ms
		case "Digits", "Punctuation", "Whitespace", "WhitespaceSplit", "BertPreTokenizer", "CharDelimiterSplit", "UnicodeScripts":
			return nil, fmt.Errorf("pre_tokenizer %q is not supported", c.Type)
		default:
			return nil, fmt.Errorf("pre_tokenizer %q is not supported", c.Type)
		}
	}
	decC, err := component(f.Decoder)
	if err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	for _, c := range flatten(decC) {
		switch c.Type {
		case "ByteLevel":
			byteLevel = true
		case "Strip":
			if contentString(c.Content) == " " && c.Start > 0 {
				t.stripLeadingSpace = true
			}
		case "Metaspace":
			if c.PrependScheme != "never" && (c.AddPrefixSpace == nil || *c.AddPrefixSpace) {
				t.stripLeadingSpace = true
			}
		}
	}
	if byteLevel && t.metaspace != nil {
		return nil, errors.New("pre_tokenizer mixes ByteLevel and Metaspace")
	}
	if byteLevel {
		t.kind = kindByteLevel
	} else {
		t.kind = kindSentencePiece
		if len(patterns) > 0 {
			return nil, errors.New("a Split pre-tokenizer without ByteLevel is not supported")
		}
	}
	t.split, err = newChainSplitter(patterns)
	if err != nil {
		return nil, err
	}

	// Vocabulary.
	keys, ids, err := parseVocab(m.Vocab)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, id := range ids {
		if id < 0 || id >= 1<<30 {
			return nil, fmt.Errorf("model.vocab: id %d out of range", id)
		}
		size = max(size, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= 1<<30 {
			return nil, fmt.Errorf("added_tokens: id %d out of range", a.ID)
		}
		size = max(size, a.ID+1)
	}
	if err := checkIDSpace(size, len(keys)+len(f.AddedTokens)); err != nil {
		return nil, err
	}
	t.decodeTab = make([]string, size)
	t.used = make([]bool, size)
	t.m.vocab = make(map[string]int32, len(keys))
	t.m.ignoreMerges = m.IgnoreMerges
	t.m.fuseUnk = m.FuseUnk
	t.m.unk = -1
	for i := range t.m.byteIDs {
		t.m.byteIDs[i] = -1
	}
	vocabStr := make(map[string]int32, len(keys)) // vocabulary strings as written
	for i, k := range keys {
		id := ids[i]
		if t.used[id] {
			return nil, fmt.Errorf("model.vocab: id %d given to both %q and %q", id, t.decodeTab[id], k)
		}
		vocabStr[k] = int32(id)
		t.used[id] = true
		if byteLevel {
			raw, ok := byteLevelDecode(k)
			if !ok {
				t.decodeTab[id] = k // not a byte string (an added token's text): decode as written
				if t.hf.rawVocab == nil {
					t.hf.rawVocab = map[string]int32{}
				}
				t.hf.rawVocab[k] = int32(id)
				continue
			}
			t.decodeTab[id] = raw
			t.m.vocab[raw] = int32(id)
			if len(raw) == 1 {
				t.m.byteIDs[raw[0]] = int32(id)
			}
			continue
		}
		t.m.vocab[k] = int32(id)
		t.decodeTab[id] = strings.ReplaceAll(k, "▁", " ")
		if len(k) == 6 && strings.HasPrefix(k, "<0x") && k[5] == '>' {
			if b, err := strconv.ParseUint(k[3:5], 16, 8); err == nil {
				t.decodeTab[id] = string([]byte{byte(b)})
				if m.ByteFallback {
					t.m.byteIDs[b] = int32(id)
				}
			}
		}
	}
	if byteLevel {
		for b := range 256 {
			if t.m.byteIDs[b] < 0 {
				return nil, fmt.Errorf("model.vocab has no token for byte 0x%02x (%q), so some text could not be encoded", b, string(byteToUnicode[b]))
			}
		}
	}
	if m.UnkToken != nil {
		if id, ok := vocabStr[*m.UnkToken]; ok {
			t.m.unk = id
		}
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	t.m.merges = make(map[uint64]uint64, len(merges))
	t.mergeList = make([][2]int32, 0, len(merges))
	for rank, mg := range merges {
		a, okA := vocabStr[mg[0]]
		b, okB := vocabStr[mg[1]]
		z, okZ := vocabStr[mg[0]+mg[1]]
		if !okA || !okB || !okZ {
			return nil, fmt.Errorf("model.merges[%d] = %q %q: token not in the vocabulary", rank, mg[0], mg[1])
		}
		k := pairKey(a, b)
		if _, dup := t.m.merges[k]; dup {
			continue // the first (lowest) rank wins, as in Hugging Face
		}
		t.m.merges[k] = uint64(rank)<<32 | uint64(uint32(z))
		t.mergeList = append(t.mergeList, [2]int32{a, b})
	}

	// Added tokens.
	specials := map[string]int{}
	for _, a := range f.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("added_tokens: empty content for id %d", a.ID)
		}
		if a.Special {
			specials[a.Content] = a.ID
			continue
		}
		if t.addedTrie == nil {
			t.addedTrie = newTrie()
		}
		t.addedTrie.add(a.Content, int32(a.ID))
		t.decodeTab[a.ID], t.used[a.ID] = a.Content, true
	}
	for s, id := range specials {
		// A special token may also sit in model.vocab under its own text.
		if t.used[id] && t.decodeTab[id] != s {
			if raw, ok := byteLevelDecode(s); !(byteLevel && ok && raw == t.decodeTab[id]) && strings.ReplaceAll(s, "▁", " ") != t.decodeTab[id] {
				return nil, fmt.Errorf("added token %q has id %d, which model.vocab gives to %q", s, id, t.decodeTab[id])
			}
		}
		t.used[id] = false
		t.decodeTab[id] = ""
	}
	if err := t.addSpecials(specials); err != nil {
		return nil, err
	}

	// Post-processor: tokens added around each sequence.
	if pp, err := component(f.PostProcessor); err == nil {
		for _, c := range flatten(pp) {
			if c.Type == "TemplateProcessing" {
				t.postPrefix, t.postSuffix = templateTokens(c.Single, t.specials, t.m.vocab)
			}
		}
	}
	return t, nil
}

// templateTokens reads TemplateProcessing's single template: the special
// tokens before and after the sequence.
func templateTokens(items []json.RawMessage, specials map[string]int, vocab map[string]int32) (pre, post []int) {
	seen := false
	for _, it := range items {
		var v struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct{} `json:"Sequence"`
		}
		if json.Unmarshal(it, &v) != nil {
			continue
		}
		if v.Sequence != nil {
			seen = true
			continue
		}
		if v.SpecialToken == nil {
			continue
		}
		id, ok := specials[v.SpecialToken.ID]
		if !ok {
			if vid, ok2 := vocab[v.SpecialToken.ID]; ok2 {
				id, ok = int(vid), true
			}
		}
		if !ok {
			continue
		}
		if seen {
			post = append(post, id)
		} else {
			pre = append(pre, id)
		}
	}
	return pre, post
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$#`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hfConfig is the part of tokenizer_config.json MAI reads.
type hfConfig struct {
	BOSToken       json.RawMessage `json:"bos_token"`
	EOSToken       json.RawMessage `json:"eos_token"`
	PadToken       json.RawMessage `json:"pad_token"`
	UnkToken       json.RawMessage `json:"unk_token"`
	ChatTemplate   json.RawMessage `json:"chat_template"`
	AddBOSToken    *bool           `json:"add_bos_token"`
	AddEOSToken    *bool           `json:"add_eos_token"`
	ModelMaxLength *float64        `json:"model_max_length"`
}

// tokenName reads a token given as a string or as an AddedToken object.
func tokenName(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

func (t *Tokenizer) applyConfig(data []byte) error {
	var c hfConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	t.cfg.BOSToken = tokenName(c.BOSToken)
	t.cfg.EOSToken = tokenName(c.EOSToken)
	t.cfg.PadToken = tokenName(c.PadToken)
	t.cfg.UnkToken = tokenName(c.UnkToken)
	if len(c.ChatTemplate) > 0 {
		var s string
		if json.Unmarshal(c.ChatTemplate, &s) == nil {
			t.cfg.ChatTemplate = s
		} else {
			var list []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err := json.Unmarshal(c.ChatTemplate, &list); err != nil {
				return fmt.Errorf("chat_template is neither a string nor a list of named templates")
			}
			for _, e := range list {
				if e.Name == "default" || t.cfg.ChatTemplate == "" {
					t.cfg.ChatTemplate = e.Template
				}
			}
		}
	}
	if c.AddBOSToken != nil {
		t.cfg.AddBOSToken = *c.AddBOSToken
	}
	if c.AddEOSToken != nil {
		t.cfg.AddEOSToken = *c.AddEOSToken
	}
	if c.ModelMaxLength != nil && *c.ModelMaxLength > 0 && *c.ModelMaxLength < 1<<40 {
		t.cfg.ModelMaxLength = int(*c.ModelMaxLength)
	}
	for _, name := range []string{t.cfg.BOSToken, t.cfg.EOSToken, t.cfg.PadToken, t.cfg.UnkToken} {
		if name == "" {
			continue
		}
		if _, ok := t.specials[name]; ok {
			continue
		}
		// A token the config names special but tokenizer.json keeps in the vocabulary.
		if id, ok := t.m.vocab[name]; ok && t.kind == kindSentencePiece {
			t.specials[name] = int(id)
		}
	}
	return nil
}

// LoadHF reads a Hugging Face tokenizer.json and, when configPath names an
// existing file, its tokenizer_config.json.
func LoadHF(path, configPath string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var cfg []byte
	if configPath != "" {
		cfg, err = os.ReadFile(configPath)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	return ParseHF(data, cfg, path)
}

// encodeSentencePiece encodes one segment SentencePiece-style: normalize,
// then merge characters, with byte fallback for the unknown ones.
func (t *Tokenizer) encodeSentencePiece(st *encState, dst []int, text string, atStart bool) []int {
	b := applyNorm(st.norm[:0], t.norm, text)
	if ms := t.metaspace; ms != nil {
		s := strings.ReplaceAll(string(b), " ", ms.replacement)
		if s != "" && (ms.scheme == "always" || (ms.scheme == "first" && atStart)) && !strings.HasPrefix(s, ms.replacement) {
			s = ms.replacement + s
		}
		b = append(b[:0], s...)
	}
	st.norm = b
	s := string(b)
	if t.metaspace != nil && t.metaspace.split {
		rep := t.metaspace.replacement
		start := 0
		for i := len(rep); i <= len(s); {
			j := strings.Index(s[i:], rep)
			if j < 0 {
				break
			}
			dst = t.encodeWord(st, dst, s[start:i+j])
			start = i + j
			i = start + len(rep)
		}
		return t.encodeWord(st, dst, s[start:])
	}
	return t.encodeWord(st, dst, s)
}

// encodeWord merges the characters of one SentencePiece word.
func (t *Tokenizer) encodeWord(st *encState, dst []int, w string) []int {
	if w == "" {
		return dst
	}
	m := &t.m
	if m.ignoreMerges {
		if id, ok := m.table.get(w); ok {
			return append(dst, int(id))
		}
	}
	parts := st.parts[:0]
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		if id, ok := m.table.get(w[i : i+size]); ok {
			parts = append(parts, part{start: int32(i), id: id})
			i += size
			continue
		}
		fallback := true
		for j := i; j < i+size; j++ {
			if m.byteIDs[w[j]] < 0 {
				fallback = false
			}
		}
		if fallback {
			for j := i; j < i+size; j++ {
				parts = append(parts, part{start: int32(j), id: m.byteIDs[w[j]]})
			}
		} else if m.unk >= 0 {
			if !(m.fuseUnk && len(parts) > 0 && parts[len(parts)-1].id == m.unk) {
				parts = append(parts, part{start: int32(i), id: m.unk})
			}
		}
		i += size
	}
	parts = append(parts, part{start: int32(len(w)), id: -1})
	st.parts = parts
	return m.mergeParts(st, w, parts, dst)
}

// AddSpecialTokens wraps ids in the tokens the model expects around a
// sequence (the post-processor of tokenizer.json, e.g. Llama 2's <s>), as
// Hugging Face's encode(add_special_tokens=True) does.
func (t *Tokenizer) AddSpecialTokens(ids []int) []int {
	if len(t.postPrefix) == 0 && len(t.postSuffix) == 0 {
		return ids
	}
	out := make([]int, 0, len(t.postPrefix)+len(ids)+len(t.postSuffix))
	out = append(out, t.postPrefix...)
	out = append(out, ids...)
	return append(out, t.postSuffix...)
}
