package tokenizer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// tinySentencePiece is a minimal Llama-2-style tokenizer.json.
func tinySentencePiece() string {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	next := 259
	for _, tok := range []string{"▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world"} {
		vocab[tok] = next
		next++
	}
	v, _ := json.Marshal(vocab)
	return `{"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
"pre_tokenizer":null,
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":` + string(v) + `,
"merges":["▁ h","l l","▁h e","▁he ll","▁hell o","▁ w","o r","▁w or","▁wor l","▁worl d"]}}`
}

func TestSentencePieceTiny(t *testing.T) {
	tok, err := ParseHF([]byte(tinySentencePiece()), nil, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	name := func(ids []int) []string {
		var out []string
		for _, id := range ids {
			s, _ := tok.Token(id)
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		text string
		want []string
	}{
		{"hello world", []string{" hello", " world"}},
		{"hello ✓", []string{" hello", " ", "\xe2", "\x9c", "\x93"}},
		{"", nil},
	}
	for _, tt := range tests {
		ids := tok.Encode(tt.text)
		if got := name(ids); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %q, want %q", tt.text, got, tt.want)
		}
		if dec := tok.Decode(ids); dec != tt.text {
			t.Errorf("Decode(Encode(%q)) = %q", tt.text, dec)
		}
	}
	if got := tok.AddSpecialTokens(tok.EncodeWithSpecial("hello</s>")); !slices.Equal(name(got), []string{"<s>", " hello", "</s>"}) {
		t.Errorf("with specials: %q", name(got))
	}
	if tok.BOS() != 1 || tok.EOT() != 2 {
		t.Errorf("BOS %d EOS %d", tok.BOS(), tok.EOT())
	}
}

func TestParseHFErrors(t *testing.T) {
	good := tinySentencePiece()
	tests := map[string]string{
		"not json":        `{"model":`,
		"wordpiece":       `{"model":{"type":"WordPiece","vocab":{}}}`,
		"bad vocab":       `{"model":{"type":"BPE","vocab":[1,2],"merges":[]}}`,
		"negative id":     `{"model":{"type":"BPE","vocab":{"a":-1},"merges":[]}}`,
		"bad merge":       strings.Replace(good, `"l l"`, `"l"`, 1),
		"unknown merge":   strings.Replace(good, `"l l"`, `"l q"`, 1),
		"merge type":      strings.Replace(good, `"merges":[`, `"merges":[7,`, 1),
		"normalizer":      strings.Replace(good, `"type":"Prepend"`, `"type":"Precompiled"`, 1),
		"pre-tokenizer":   strings.Replace(good, `"pre_tokenizer":null`, `"pre_tokenizer":{"type":"BertPreTokenizer"}`, 1),
		"byte-level hole": `{"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`,
		"dup id":          strings.Replace(good, `"▁":259`, `"▁":260`, 1),
		"added empty":     strings.Replace(good, `"content":"</s>"`, `"content":""`, 1),
		"dropout":         strings.Replace(good, `"type":"BPE",`, `"type":"BPE","dropout":0.1,`, 1),
		"sparse ids":      strings.Replace(good, `"▁":259`, `"▁":99999999`, 1),
	}
	for name, in := range tests {
		_, err := ParseHF([]byte(in), nil, "test.json")
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "test.json") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	if _, err := ParseHF([]byte(good), []byte(`{"chat_template": 5}`), "test.json"); err == nil {
		t.Error("bad tokenizer_config.json: no error")
	}
}

func TestGPT2Files(t *testing.T) {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteToUnicode[b])] = b
	}
	vocab["Ġh"], vocab["Ġhi"], vocab["<|endoftext|>"] = 256, 257, 258
	enc, _ := json.Marshal(vocab)
	tok, err := ParseGPT2(enc, []byte("#version: 0.2\nĠ h\nĠh i\n"), "gpt2-test")
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.EncodeWithSpecial(" hi<|endoftext|>"); !slices.Equal(got, []int{257, 258}) {
		t.Errorf("encode = %v", got)
	}
	for _, bad := range []string{"Ġ h x\n", "Ġ\n", "Ġ zz\n"} {
		if _, err := ParseGPT2(enc, []byte(bad), "gpt2-test"); err == nil {
			t.Errorf("vocab.bpe %q: no error", bad)
		}
	}
	if _, err := ParseGPT2([]byte("{"), nil, "gpt2-test"); err == nil {
		t.Error("bad encoder.json: no error")
	}
}

func FuzzParseHF(f *testing.F) {
	f.Add([]byte(tinySentencePiece()), []byte(`{"bos_token":"<s>","chat_template":"{{ messages[0]['content'] }}"}`))
	tj, _ := mustLoad(f, "byte").MarshalHF()
	f.Add(tj, []byte(`{}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\s+"}},{"type":"ByteLevel","use_regex":false}]},"model":{"type":"BPE","vocab":{},"merges":[]}}`), []byte(nil))
	f.Fuzz(func(t *testing.T, tokJSON, cfgJSON []byte) {
		tok, err := ParseHF(tokJSON, cfgJSON, "fuzz")
		if err != nil {
			return
		}
		for _, s := range []string{"hello world", "\xff<s>x", ""} {
			tok.Decode(tok.EncodeWithSpecial(s))
		}
		tok.ApplyChatTemplate([]Message{{Role: "user", Content: "hi"}}, true)
	})
}
