package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// LoadGPT2 reads GPT-2's encoder.json (token to id) and vocab.bpe (merges).
func LoadGPT2(encoderPath, vocabBPEPath string) (*Tokenizer, error) {
	enc, err := os.ReadFile(encoderPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	bpe, err := os.ReadFile(vocabBPEPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return ParseGPT2(enc, bpe, encoderPath)
}

// ParseGPT2 builds a tokenizer from the bytes of encoder.json and vocab.bpe.
// <|endoftext|> becomes a special token when the encoder has it.
func ParseGPT2(encoderJSON, vocabBPE []byte, name string) (*Tokenizer, error) {
	if !json.Valid(encoderJSON) {
		return nil, fmt.Errorf("tokenizer: %s: encoder.json is not valid JSON", name)
	}
	var merges []string
	sc := bufio.NewScanner(bytes.NewReader(vocabBPE))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" || (line == 1 && strings.HasPrefix(l, "#version")) {
			continue
		}
		a, b, ok := strings.Cut(l, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, fmt.Errorf("tokenizer: %s: vocab.bpe line %d: want two tokens separated by one space, got %q", name, line, l)
		}
		merges = append(merges, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: vocab.bpe: %w", name, err)
	}
	mergesJSON, _ := json.Marshal(merges)
	var vocab map[string]int
	if err := json.Unmarshal(encoderJSON, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: encoder.json: %w", name, err)
	}
	f := hfFile{
		PreTokenizer: json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`),
		Decoder:      json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`),
		Model:        hfModel{Type: "BPE", Vocab: encoderJSON, Merges: mergesJSON},
	}
	if id, ok := vocab["<|endoftext|>"]; ok {
		f.AddedTokens = []hfAddedToken{{ID: id, Content: "<|endoftext|>", Special: true}}
	}
	t, err := buildHF(&f, name)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	t.finish()
	return t, nil
}
