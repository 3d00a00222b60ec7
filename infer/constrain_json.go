package infer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// TokenVocab is the byte content of every token of a vocabulary, arranged
// in a trie so that a constraint can test all tokens that share a prefix at
// once. Build it once per model; it is safe for concurrent use.
type TokenVocab struct {
	nodes []trieNode
	eos   []int32
	size  int
}

type trieNode struct {
	edges []trieEdge // sorted by byte
	ids   []int32    // tokens that end here
}

type trieEdge struct {
	b     byte
	child int32
}

// NewTokenVocab indexes tokens (tokens[id] is the token's bytes; empty for
// special tokens, which constraints never allow) and the end-of-sequence
// ids, which constraints allow once the output is complete.
func NewTokenVocab(tokens [][]byte, eos []int32) *TokenVocab {
	v := &TokenVocab{nodes: []trieNode{{}}, eos: slices.Clone(eos), size: len(tokens)}
	for id, tok := range tokens {
		if len(tok) == 0 || slices.Contains(eos, int32(id)) {
			continue
		}
		n := int32(0)
		for _, b := range tok {
			edges := v.nodes[n].edges
			i := sort.Search(len(edges), func(i int) bool { return edges[i].b >= b })
			if i < len(edges) && edges[i].b == b {
				n = edges[i].child
				continue
			}
			v.nodes = append(v.nodes, trieNode{})
			c := int32(len(v.nodes) - 1)
			v.nodes[n].edges = slices.Insert(v.nodes[n].edges, i, trieEdge{b, c})
			n = c
		}
		v.nodes[n].ids = append(v.nodes[n].ids, int32(id))
	}
	return v
}

// find returns the bytes of token id by walking the trie (for Advance).
func (v *TokenVocab) find(id int32) []byte {
	var path []byte
	var walk func(n int32) bool
	walk = func(n int32) bool {
		if slices.Contains(v.nodes[n].ids, id) {
			return true
		}
		for _, e := range v.nodes[n].edges {
			path = append(path, e.b)
			if walk(e.child) {
				return true
			}
			path = path[:len(path)-1]
		}
		return false
	}
	if walk(0) {
		return path
	}
	return nil
}

// Schema types, as bits.
const (
	tNull uint8 = 1 << iota
	tBool
	tInteger
	tNumber // any number (integers included)
	tString
	tArray
	tObject
	tAny = tNull | tBool | tInteger | tNumber | tString | tArray | tObject
)

// jsonNode is a compiled JSON schema.
type jsonNode struct {
	types      uint8
	enum       []string // allowed values as compact JSON texts (enum, const)
	props      []string // property names
	propKeys   []string // the names as JSON strings, quotes included
	propNodes  []*jsonNode
	required   uint64
	additional *jsonNode // schema of other properties; nil: none allowed
	items      *jsonNode
	minItems   int
	maxItems   int // -1: no limit
	minLen     int
	maxLen     int // -1: no limit
	anyOf      []*jsonNode
	flat       []*jsonNode // anyOf expanded to non-anyOf nodes (built on use)
}

// alternatives expands nested anyOf into the nodes a value may follow,
// dropping self-references that consume no input (left recursion).
func (n *jsonNode) alternatives() []*jsonNode {
	if n.flat == nil {
		seen := map[*jsonNode]bool{}
		var walk func(x *jsonNode)
		walk = func(x *jsonNode) {
			if seen[x] {
				return
			}
			seen[x] = true
			if len(x.anyOf) == 0 {
				n.flat = append(n.flat, x)
				return
			}
			for _, a := range x.anyOf {
				walk(a)
			}
		}
		walk(n)
		if n.flat == nil {
			n.flat = []*jsonNode{} // nothing matches
		}
	}
	return n.flat
}

var anyNode = func() *jsonNode {
	n := &jsonNode{types: tAny, maxItems: -1, maxLen: -1}
	n.additional, n.items = n, n
	return n
}()

// schemaCompiler turns a JSON schema into jsonNodes, resolving local $refs.
type schemaCompiler struct {
	root map[string]any
	refs map[string]*jsonNode
}

// compileJSONSchema checks that schema (a JSON schema document) uses only
// what JSON-constrained decoding supports: type, enum, const, properties,
// required, additionalProperties, items, minItems, maxItems, minLength,
// maxLength, anyOf/oneOf, and $ref into $defs or definitions.
func compileJSONSchema(schema []byte) (*jsonNode, error) {
	root, err := decodeOrdered(schema)
	if err != nil {
		return nil, fmt.Errorf("json schema: %w", err)
	}
	obj, ok := root.(map[string]any)
	if !ok {
		if b, ok := root.(bool); ok && b {
			return anyNode, nil
		}
		return nil, fmt.Errorf("json schema must be an object")
	}
	c := &schemaCompiler{root: obj, refs: map[string]*jsonNode{}}
	return c.node(obj, 0)
}

func (c *schemaCompiler) node(s map[string]any, depth int) (*jsonNode, error) {
	if depth > 64 {
		return nil, fmt.Errorf("json schema nests too deep")
	}
	if ref, ok := s["$ref"].(string); ok {
		if n, ok := c.refs[ref]; ok {
			return n, nil
		}
		var target any = c.root
		if !strings.HasPrefix(ref, "#") {
			return nil, fmt.Errorf("json schema: $ref %q: only local references (#/...) are supported", ref)
		}
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#"), "/") {
			if part == "" {
				continue
			}
			m, ok := target.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("json schema: $ref %q does not resolve", ref)
			}
			if target, ok = m[strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")]; !ok {
				return nil, fmt.Errorf("json schema: $ref %q does not resolve", ref)
			}
		}
		ts, ok := target.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("json schema: $ref %q is not a schema", ref)
		}
		n := &jsonNode{}
		c.refs[ref] = n // recursion resolves to the node being built
		built, err := c.node(ts, depth+1)
		if err != nil {
			return nil, err
		}
		*n = *built
		return n, nil
	}
	n := &jsonNode{maxItems: -1, maxLen: -1}
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := s[key].([]any); ok {
			for _, a := range alts {
				am, ok := a.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("json schema: %s holds a non-schema", key)
				}
				an, err := c.node(am, depth+1)
				if err != nil {
					return nil, err
				}
				n.anyOf = append(n.anyOf, an)
			}
			return n, nil
		}
	}
	switch t := s["type"].(type) {
	case string:
		b, err := typeBit(t)
		if err != nil {
			return nil, err
		}
		n.types = b
	case []any:
		for _, x := range t {
			ts, _ := x.(string)
			b, err := typeBit(ts)
			if err != nil {
				return nil, err
			}
			n.types |= b
		}
	case nil:
		switch {
		case s["properties"] != nil:
			n.types = tObject
		case s["items"] != nil:
			n.types = tArray
		default:
			n.types = tAny
		}
	default:
		return nil, fmt.Errorf("json schema: type must be a string or a list")
	}
	if v, ok := s["const"]; ok {
		b, _ := json.Marshal(stripOrder(v))
		n.enum = []string{string(b)}
	}
	if vs, ok := s["enum"].([]any); ok {
		if len(vs) == 0 {
			return nil, fmt.Errorf("json schema: empty enum")
		}
		for _, v := range vs {
			b, _ := json.Marshal(stripOrder(v))
			n.enum = append(n.enum, string(b))
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		names, _ := props[orderKey].([]string)
		if len(names) > 64 {
			return nil, fmt.Errorf("json schema: at most 64 properties per object")
		}
		for _, k := range names {
			ps, ok := props[k].(map[string]any)
			var pn *jsonNode
			if b, isBool := props[k].(bool); isBool && b {
				pn, ok = anyNode, true
			} else if ok {
				var err error
				if pn, err = c.node(ps, depth+1); err != nil {
					return nil, err
				}
			}
			if !ok {
				return nil, fmt.Errorf("json schema: property %q is not a schema", k)
			}
			key, _ := json.Marshal(k)
			n.props = append(n.props, k)
			n.propKeys = append(n.propKeys, string(key))
			n.propNodes = append(n.propNodes, pn)
		}
	} else {
		n.additional = anyNode
	}
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			rs, _ := r.(string)
			i := slices.Index(n.props, rs)
			if i < 0 {
				return nil, fmt.Errorf("json schema: required property %q is not in properties", rs)
			}
			n.required |= 1 << i
		}
	}
	switch a := s["additionalProperties"].(type) {
	case bool:
		if a {
			n.additional = anyNode
		} else {
			n.additional = nil
		}
	case map[string]any:
		an, err := c.node(a, depth+1)
		if err != nil {
			return nil, err
		}
		n.additional = an
	}
	n.items = anyNode
	if it, ok := s["items"].(map[string]any); ok {
		in, err := c.node(it, depth+1)
		if err != nil {
			return nil, err
		}
		n.items = in
	}
	n.minItems = intField(s, "minItems", 0)
	n.maxItems = intField(s, "maxItems", -1)
	n.minLen = intField(s, "minLength", 0)
	n.maxLen = intField(s, "maxLength", -1)
	return n, nil
}

// stripOrder removes the key-order entries decodeOrdered added.
func stripOrder(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if k != orderKey {
				out[k] = stripOrder(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = stripOrder(x)
		}
		return out
	}
	return v
}

func intField(s map[string]any, key string, def int) int {
	if v, ok := s[key].(float64); ok && v >= 0 && v == math.Trunc(v) {
		return int(v)
	}
	return def
}

func typeBit(t string) (uint8, error) {
	switch t {
	case "null":
		return tNull, nil
	case "boolean":
		return tBool, nil
	case "integer":
		return tInteger, nil
	case "number":
		return tNumber | tInteger, nil
	case "string":
		return tString, nil
	case "array":
		return tArray, nil
	case "object":
		return tObject, nil
	}
	return 0, fmt.Errorf("json schema: unknown type %q", t)
}

// Frames of the JSON parser's stack.
const (
	fValue  = iota // a value of node is expected
	fObject        // inside {...}
	fArray         // inside [...]
	fString        // inside "..."
	fNumber
	fLit  // true, false, null: lit holds the rest
	fEnum // one of node.enum: lit holds the text so far
)

// Object phases.
const (
	oStart    = iota // after '{'
	oKey             // inside a constrained key (key holds its text)
	oColon           // after a key
	oValue           // a value was pushed
	oAfter           // after a value
	oNextKey         // after ','
	oFreeKey         // a free key string was pushed
	maxWS     = 8
	maxDigits = 24
)

type frame struct {
	kind  uint8
	phase uint8
	ws    uint8
	node  *jsonNode
	n     int32  // array items, string characters, number characters
	seen  uint64 // object properties seen
	key   string // object key text (JSON, quotes included); fString: raw text when a key
	lit   string
	isKey bool
}

// jsonState is the set of parser stacks still alive (several when anyOf
// leaves more than one reading open).
type jsonState [][]frame

// maxStacks bounds the readings kept alive at once (ambiguous anyOf
// schemas could otherwise multiply them).
const maxStacks = 64

// feed returns the stacks that accept b, or nil.
func (st jsonState) feed(b byte) jsonState {
	var out jsonState
	for _, s := range st {
		out = feedStack(out, s, b)
		if len(out) > maxStacks {
			out = out[:maxStacks]
		}
	}
	return out
}

// feedStack appends to out every stack that results from s consuming b.
func feedStack(out jsonState, s []frame, b byte) jsonState {
	if len(s) == 0 {
		return out // the value is complete: nothing more may follow
	}
	top := s[len(s)-1]
	// push/replace build new stacks without touching s (shared by siblings).
	replace := func(f frame) []frame {
		ns := make([]frame, len(s), len(s)+2)
		copy(ns, s)
		ns[len(ns)-1] = f
		return ns
	}
	switch top.kind {
	case fValue:
		n := top.node
		if len(n.anyOf) > 0 {
			for _, alt := range n.alternatives() {
				f := top
				f.node = alt
				out = feedStack(out, replace(f), b)
			}
			return out
		}
		if isWS(b) {
			if top.ws >= maxWS {
				return out
			}
			top.ws++
			return append(out, replace(top))
		}
		if n.enum != nil {
			return feedStack(out, replace(frame{kind: fEnum, node: n}), b)
		}
		switch {
		case b == '{' && n.types&tObject != 0:
			return append(out, replace(frame{kind: fObject, node: n}))
		case b == '[' && n.types&tArray != 0:
			return append(out, replace(frame{kind: fArray, node: n}))
		case b == '"' && n.types&tString != 0:
			return append(out, replace(frame{kind: fString, node: n}))
		case (b == '-' || isDigit(b)) && n.types&(tNumber|tInteger) != 0:
			return feedStack(out, replace(frame{kind: fNumber, node: n}), b)
		case b == 't' && n.types&tBool != 0:
			return append(out, replace(frame{kind: fLit, lit: "rue"}))
		case b == 'f' && n.types&tBool != 0:
			return append(out, replace(frame{kind: fLit, lit: "alse"}))
		case b == 'n' && n.types&tNull != 0:
			return append(out, replace(frame{kind: fLit, lit: "ull"}))
		}
		return out
	case fLit:
		if b != top.lit[0] {
			return out
		}
		if len(top.lit) == 1 {
			return append(out, pop(s))
		}
		top.lit = top.lit[1:]
		return append(out, replace(top))
	case fEnum:
		text := top.lit + string(b)
		for _, e := range top.node.enum {
			if strings.HasPrefix(e, text) {
				top.lit = text
				return append(out, replace(top))
			}
		}
		if slices.Contains(top.node.enum, top.lit) {
			return feedStack(out, pop(s), b) // complete: b belongs to the parent
		}
		return out
	case fNumber:
		if ns, ok := numberStep(top, b); ok {
			return append(out, replace(ns))
		}
		if numberDone(top) {
			return feedStack(out, pop(s), b)
		}
		return out
	case fString:
		return stringStep(out, s, top, b, replace)
	case fArray:
		return arrayStep(out, s, top, b, replace)
	case fObject:
		return objectStep(out, s, top, b, replace)
	}
	return out
}

// pop removes the top frame, handing a finished key string to its object.
func pop(s []frame) []frame {
	top := s[len(s)-1]
	ns := slices.Clone(s[:len(s)-1])
	if top.kind == fString && top.isKey && len(ns) > 0 {
		ns[len(ns)-1].key = top.key
		ns[len(ns)-1].phase = oColon
	}
	return ns
}

func push(s []frame, f frame) []frame {
	ns := make([]frame, len(s), len(s)+1)
	copy(ns, s)
	return append(ns, f)
}

func isWS(b byte) bool    { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isHex(b byte) bool   { return isDigit(b) || (b|0x20 >= 'a' && b|0x20 <= 'f') }

// Number phases: 0 start, 1 after '-', 2 after a leading 0, 3 integer
// digits, 4 after '.', 5 fraction digits, 6 after 'e', 7 after the
// exponent's sign, 8 exponent digits.
func numberStep(f frame, b byte) (frame, bool) {
	if f.n >= maxDigits {
		return f, false
	}
	integer := f.node.types&tNumber == 0
	next := -1
	switch f.phase {
	case 0:
		switch {
		case b == '-':
			next = 1
		case b == '0':
			next = 2
		case isDigit(b):
			next = 3
		}
	case 1:
		switch {
		case b == '0':
			next = 2
		case isDigit(b):
			next = 3
		}
	case 2, 3:
		switch {
		case f.phase == 3 && isDigit(b):
			next = 3
		case b == '.' && !integer:
			next = 4
		case (b == 'e' || b == 'E') && !integer:
			next = 6
		}
	case 4, 5:
		switch {
		case isDigit(b):
			next = 5
		case f.phase == 5 && (b == 'e' || b == 'E'):
			next = 6
		}
	case 6:
		switch {
		case b == '+' || b == '-':
			next = 7
		case isDigit(b):
			next = 8
		}
	case 7, 8:
		if isDigit(b) {
			next = 8
		}
	}
	if next < 0 {
		return f, false
	}
	f.phase = uint8(next)
	f.n++
	return f, true
}

func numberDone(f frame) bool { return f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8 }

// String phases: 0 characters, 1 after '\', 2..5 reading \uXXXX digits.
func stringStep(out jsonState, s []frame, f frame, b byte, replace func(frame) []frame) jsonState {
	if f.isKey {
		f.key += string(b)
	}
	switch {
	case f.phase == 1:
		switch b {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			f.phase = 0
		case 'u':
			f.phase = 2
		default:
			return out
		}
		return append(out, replace(f))
	case f.phase >= 2:
		if !isHex(b) {
			return out
		}
		f.phase++
		if f.phase == 6 {
			f.phase = 0
		}
		return append(out, replace(f))
	}
	switch {
	case b == '"':
		if f.lit != "" || (int(f.n) < f.node.minLen && !f.isKey) {
			return out
		}
		return append(out, pop(replace(f)))
	case b < 0x20:
		return out // raw control characters are not allowed in JSON strings
	}
	// Only valid UTF-8: lit counts the continuation bytes still due.
	switch {
	case b&0xC0 == 0x80:
		if f.lit == "" {
			return out
		}
		f.lit = f.lit[1:]
		return append(out, replace(f))
	case f.lit != "":
		return out // a character was cut short
	case b >= 0xF5 || b == 0xC0 || b == 0xC1:
		return out
	case b >= 0xF0:
		f.lit = "..."
	case b >= 0xE0:
		f.lit = ".."
	case b >= 0xC0:
		f.lit = "."
	}
	if f.node.maxLen >= 0 && int(f.n) >= f.node.maxLen && !f.isKey {
		return out
	}
	f.n++
	if b == '\\' {
		f.phase = 1
	}
	return append(out, replace(f))
}

func arrayStep(out jsonState, s []frame, f frame, b byte, replace func(frame) []frame) jsonState {
	n := f.node
	if isWS(b) {
		if f.ws >= maxWS {
			return out
		}
		f.ws++
		return append(out, replace(f))
	}
	f.ws = 0
	switch f.phase {
	case 0, 2: // after '[' or ','
		if b == ']' && f.phase == 0 && n.minItems == 0 {
			return append(out, pop(s))
		}
		if n.maxItems >= 0 && int(f.n) >= n.maxItems {
			return out
		}
		f.n++
		f.phase = 1
		return feedStack(out, push(replace(f), frame{kind: fValue, node: n.items}), b)
	case 1: // after a value
		switch {
		case b == ',' && (n.maxItems < 0 || int(f.n) < n.maxItems):
			f.phase = 2
			return append(out, replace(f))
		case b == ']' && int(f.n) >= n.minItems:
			return append(out, pop(s))
		}
	}
	return out
}

func objectStep(out jsonState, s []frame, f frame, b byte, replace func(frame) []frame) jsonState {
	n := f.node
	if f.phase == oKey {
		text := f.key + string(b)
		for i, k := range n.propKeys {
			if f.seen&(1<<i) == 0 && strings.HasPrefix(k, text) {
				f.key = text
				if len(text) == len(k) {
					f.phase = oColon
				}
				return append(out, replace(f))
			}
		}
		return out
	}
	if isWS(b) {
		if f.ws >= maxWS {
			return out
		}
		f.ws++
		return append(out, replace(f))
	}
	f.ws = 0
	allSeen := len(n.props) > 0 && f.seen == (uint64(1)<<len(n.props))-1
	canClose := f.seen&n.required == n.required
	moreKeys := n.additional != nil || (len(n.props) > 0 && !allSeen)
	switch f.phase {
	case oStart, oNextKey:
		switch {
		case b == '}' && f.phase == oStart && canClose:
			return append(out, pop(s))
		case b == '"' && moreKeys:
			if n.additional != nil {
				f.phase = oFreeKey
				return append(out, push(replace(f), frame{kind: fString, node: anyNode, isKey: true, key: `"`}))
			}
			f.phase, f.key = oKey, `"`
			return append(out, replace(f))
		}
	case oColon:
		if b != ':' {
			return out
		}
		vn := n.additional
		if i := slices.Index(n.propKeys, f.key); i >= 0 {
			if f.seen&(1<<i) != 0 {
				return out // no duplicate keys
			}
			f.seen |= 1 << i
			vn = n.propNodes[i]
		}
		if vn == nil {
			return out
		}
		f.phase = oAfter
		return append(out, push(replace(f), frame{kind: fValue, node: vn}))
	case oAfter:
		switch {
		case b == ',' && moreKeys:
			f.phase = oNextKey
			return append(out, replace(f))
		case b == '}' && canClose:
			return append(out, pop(s))
		}
	}
	return out
}

// JSONConstraint restricts generation to one JSON value that matches a
// schema: tokens are allowed when all their bytes keep the output a prefix
// of such a value, and end-of-sequence once the value is complete.
// Whitespace runs are limited, so that a model cannot pad forever.
type JSONConstraint struct {
	vocab   *TokenVocab
	state   jsonState
	allowed []bool
}

// NewJSONConstraint returns a constraint for schema (a JSON schema; nil or
// empty means any JSON object, as response_format json_object asks).
func NewJSONConstraint(schema []byte, vocab *TokenVocab) (*JSONConstraint, error) {
	root := &jsonNode{types: tObject, additional: anyNode, maxItems: -1, maxLen: -1, items: anyNode}
	if len(bytes.TrimSpace(schema)) > 0 {
		var err error
		if root, err = compileJSONSchema(schema); err != nil {
			return nil, err
		}
	}
	return &JSONConstraint{vocab: vocab, state: jsonState{{{kind: fValue, node: root}}}}, nil
}

// orderKey is where decodeOrdered keeps an object's key order.
const orderKey = "\x00order"

// decodeOrdered decodes JSON like json.Unmarshal into any, and records in
// every object the order of its keys under orderKey (Go maps forget it,
// and a schema's property order is the order the model should write).
func decodeOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > 128 {
		return nil, fmt.Errorf("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			var order []string
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				if _, dup := m[k]; !dup {
					order = append(order, k)
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			m[orderKey] = order
			return m, nil
		case '[':
			var list []any
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return list, nil
		}
	}
	return tok, nil
}

// Mask implements Constraint.
func (c *JSONConstraint) Mask(logits []float32) {
	if cap(c.allowed) < len(logits) {
		c.allowed = make([]bool, len(logits))
	}
	allowed := c.allowed[:len(logits)]
	clear(allowed)
	any := c.walk(0, c.state, allowed)
	if c.canEnd() || !any {
		// With nothing left to allow, end rather than loop.
		for _, id := range c.vocab.eos {
			if int(id) < len(allowed) {
				allowed[id] = true
			}
		}
	}
	for i, ok := range allowed {
		if !ok {
			logits[i] = float32(math.Inf(-1))
		}
	}
}

func (c *JSONConstraint) walk(n int32, st jsonState, allowed []bool) bool {
	found := false
	for _, e := range c.vocab.nodes[n].edges {
		ns := st.feed(e.b)
		if len(ns) == 0 {
			continue
		}
		child := &c.vocab.nodes[e.child]
		for _, id := range child.ids {
			if int(id) < len(allowed) {
				allowed[id] = true
				found = true
			}
		}
		if len(child.edges) > 0 && c.walk(e.child, ns, allowed) {
			found = true
		}
	}
	return found
}

// canEnd reports whether the output may end here: a value is complete, or
// only a number (or enum) that could go on but need not remains.
func (c *JSONConstraint) canEnd() bool {
	for _, s := range c.state {
		if len(s) == 0 {
			return true
		}
		if len(s) == 1 {
			f := s[0]
			if (f.kind == fNumber && numberDone(f)) || (f.kind == fEnum && slices.Contains(f.node.enum, f.lit)) {
				return true
			}
		}
	}
	return false
}

// Advance implements Constraint.
func (c *JSONConstraint) Advance(id int32) error {
	tok := c.vocab.find(id)
	if tok == nil {
		return fmt.Errorf("json constraint: token %d cannot appear in JSON", id)
	}
	st := c.state
	for _, b := range tok {
		if st = st.feed(b); len(st) == 0 {
			return fmt.Errorf("json constraint: token %d (%q) breaks the JSON", id, tok)
		}
	}
	c.state = st
	return nil
}

// Done implements Constraint: the JSON value is complete and nothing may
// follow.
func (c *JSONConstraint) Done() bool {
	for _, s := range c.state {
		if len(s) == 0 {
			return true
		}
	}
	return false
}

// check reports whether text can begin a value that matches the
// constraint's schema, and whether it is a complete one (for tests).
func (c *JSONConstraint) check(text string) (prefix, complete bool) {
	st := c.state
	for i := 0; i < len(text); i++ {
		if st = st.feed(text[i]); len(st) == 0 {
			return false, false
		}
	}
	cc := &JSONConstraint{state: st}
	return true, cc.canEnd()
}
