package infer

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

// byteVocab is a byte-level vocabulary (ids 0-255 are bytes) with EOS 256
// and a few special ids after it.
func byteVocab(n int) *TokenVocab {
	toks := make([][]byte, n)
	for i := 0; i < 256 && i < n; i++ {
		toks[i] = []byte{byte(i)}
	}
	return NewTokenVocab(toks, []int32{256})
}

func TestJSONSchemaAcceptance(t *testing.T) {
	for _, tc := range []struct {
		schema     string
		good, bad  []string
		incomplete []string
	}{
		{``, []string{`{}`, `{"a":1}`, `{ "a" : [1, "x", null, true, {"b": -1.5e3}] }`, `{"k":"\u00e9\n"}`},
			[]string{`[]`, `1`, `{"a":}`, `{'a':1}`, `{"a":01}`, `{"a":1,}`, `{"a" 1}`, `{"a":tru}`, `{"a":"x` + "\x01" + `"}`, `{}x`},
			[]string{`{`, `{"a":1`, `{"a":"b`}},
		{`{"type":"object","properties":{"name":{"type":"string","maxLength":3},"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","ok"]}`,
			[]string{`{"name":"bob","ok":true}`, `{"age":42,"name":"","ok":false}`, `{"ok":false,"name":"é"}`},
			[]string{`{"name":"bobby","ok":true}`, "{\"name\":\"\xe9\",\"ok\":true}", "{\"name\":\"\x80\",\"ok\":true}", `{"name":"b","ok":true,"x":1}`, `{"age":4.5,"name":"b","ok":true}`, `{"name":"b"}`, `{"name":"b","name":"c","ok":true}`, `{"ok":1,"name":"b"}`},
			[]string{`{"name":"b"`}},
		{`{"type":"array","items":{"enum":["red","green",7,null]},"minItems":1,"maxItems":2}`,
			[]string{`["red"]`, `[7, null]`, `["green","red"]`},
			[]string{`[]`, `["blue"]`, `["red","red","red"]`, `[8]`},
			nil},
		{`{"anyOf":[{"type":"integer"},{"type":"string"}]}`, []string{`12`, `"x"`}, []string{`1.5`, `true`}, []string{`"`}},
		{`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}`,
			[]string{`{"v":1,"next":{"v":2,"next":null}}`}, []string{`{"v":1,"next":{"v":2}}`}, nil},
		{`{"const":{"a":[1,2]}}`, []string{`{"a":[1,2]}`}, []string{`{"a":[1,3]}`}, nil},
	} {
		c, err := NewJSONConstraint([]byte(tc.schema), byteVocab(257))
		if err != nil {
			t.Fatalf("%s: %v", tc.schema, err)
		}
		for _, s := range tc.good {
			if p, done := c.check(s); !p || !done {
				t.Errorf("schema %s: %q rejected (prefix %v, complete %v)", tc.schema, s, p, done)
			}
		}
		for _, s := range tc.bad {
			if p, done := c.check(s); p && done {
				t.Errorf("schema %s: %q accepted", tc.schema, s)
			}
		}
		for _, s := range tc.incomplete {
			if p, done := c.check(s); !p || done {
				t.Errorf("schema %s: %q should be an incomplete prefix (prefix %v, complete %v)", tc.schema, s, p, done)
			}
		}
	}
	for _, bad := range []string{`{"type":"thing"}`, `[1]`, `{"$ref":"http://x"}`, `{"$ref":"#/nope"}`, `{"properties":{"a":{}},"required":["b"]}`, `{"enum":[]}`, `{`} {
		if _, err := NewJSONConstraint([]byte(bad), byteVocab(257)); err == nil {
			t.Errorf("schema %s accepted", bad)
		}
	}
}

func TestJSONMaskMultiByteTokens(t *testing.T) {
	toks := [][]byte{[]byte(`{"`), []byte(`a`), []byte(`":`), []byte(`true`), []byte(`}`), []byte(`tr`), []byte(` `), []byte(`{}`), nil, []byte(`[`)}
	v := NewTokenVocab(toks, []int32{8})
	c, err := NewJSONConstraint([]byte(`{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"]}`), v)
	if err != nil {
		t.Fatal(err)
	}
	allowedNow := func() []int {
		l := make([]float32, len(toks))
		c.Mask(l)
		var out []int
		for i, x := range l {
			if !math.IsInf(float64(x), -1) {
				out = append(out, i)
			}
		}
		return out
	}
	steps := []struct {
		allowed []int
		take    int32
	}{
		{[]int{0, 6}, 0}, // {"  or whitespace; {} lacks the required a
		{[]int{1}, 1},
		{[]int{2}, 2},
		{[]int{3, 5, 6}, 3},
		{[]int{4, 6}, 4},
	}
	for i, st := range steps {
		if got := allowedNow(); !slices.Equal(got, st.allowed) {
			t.Fatalf("step %d: allowed %v, want %v", i, got, st.allowed)
		}
		if err := c.Advance(st.take); err != nil {
			t.Fatal(err)
		}
	}
	if !c.Done() {
		t.Fatal("not done after }")
	}
	if err := c.Advance(9); err == nil {
		t.Fatal("a token after the end was accepted")
	}
}

// TestEngineJSONConstraint samples from a random model under a schema: the
// output must be valid JSON that follows it, or, when the context runs out
// first (a random model pads with whitespace), a prefix of such JSON.
func TestEngineJSONConstraint(t *testing.T) {
	m, _, _ := loadFixture(t, "llama")
	e := newEngine(t, m, EngineConfig{})
	vocab := byteVocab(m.Cfg.Vocab)
	schema := `{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"n":{"type":"integer"},"ok":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":2}},"required":["color","n","ok","tags"]}`
	complete := 0
	for seed := uint64(1); seed <= 6; seed++ {
		c, err := NewJSONConstraint([]byte(schema), vocab)
		if err != nil {
			t.Fatal(err)
		}
		toks, f, err := e.Generate(context.Background(), &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 400, EOS: []int32{256},
			Sampling: Sampling{Temperature: 1, Seed: seed}, Constraint: c})
		if err != nil {
			t.Fatal(err)
		}
		text := ByteCodec{}.Decode(toInts(ids(toks)))
		if f.FinishReason == "length" {
			fresh, _ := NewJSONConstraint([]byte(schema), vocab)
			if ok, _ := fresh.check(text); !ok {
				t.Errorf("seed %d: %q is not a prefix of valid output", seed, text)
			}
			continue
		}
		complete++
		var v struct {
			Color *string
			N     *json.Number
			OK    *bool
			Tags  []string
		}
		dec := json.NewDecoder(strings.NewReader(text))
		if f.FinishReason != "stop" || dec.Decode(&v) != nil || v.Color == nil || v.N == nil || v.OK == nil || v.Tags == nil {
			t.Errorf("seed %d: %q (%s)", seed, text, f.FinishReason)
			continue
		}
		if !slices.Contains([]string{"red", "green", "blue"}, *v.Color) || len(v.Tags) > 2 {
			t.Errorf("seed %d: %q breaks the schema", seed, text)
		}
	}
	if complete < 3 {
		t.Errorf("only %d of 6 outputs completed", complete)
	}
}

func toInts(x []int32) []int {
	out := make([]int, len(x))
	for i, v := range x {
		out[i] = int(v)
	}
	return out
}

// FuzzJSONConstraint feeds arbitrary schemas and texts: compiling and
// checking must never panic.
func FuzzJSONConstraint(f *testing.F) {
	f.Add([]byte(`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}`), `{"a":1}`)
	f.Add([]byte(`{"anyOf":[{"$ref":"#"},{"type":"null"}]}`), `null`)
	f.Add([]byte(`{"enum":[1,"x",[2]]}`), `[2]`)
	f.Add([]byte(``), `{"k":[true,false,null,-0.5e+3]}`)
	vocab := byteVocab(257)
	f.Fuzz(func(t *testing.T, schema []byte, text string) {
		c, err := NewJSONConstraint(schema, vocab)
		if err != nil {
			return
		}
		c.check(text)
		l := make([]float32, 257)
		c.Mask(l)
	})
}
