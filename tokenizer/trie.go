package tokenizer

import "strings"

// trie finds special tokens in text: the leftmost occurrence, and of those
// starting there the longest.
type trie struct {
	nodes   []trieNode
	first   [256]bool
	entries []trieEntry
	single  int // the one byte every token starts with, or -1
}

type trieEntry struct {
	text string
	id   int32
}

type trieNode struct {
	edges []trieEdge
	id    int32 // -1 when no token ends here
}

type trieEdge struct {
	b    byte
	next int32
}

func newTrie() *trie { return &trie{nodes: []trieNode{{id: -1}}, single: -1} }

// add inserts a token; an empty text is ignored.
func (t *trie) add(text string, id int32) {
	if text == "" {
		return
	}
	t.entries = append(t.entries, trieEntry{text, id})
	t.first[text[0]] = true
	t.single = -1
	count := 0
	for b := range 256 {
		if t.first[b] {
			count++
			t.single = b
		}
	}
	if count != 1 {
		t.single = -1
	}
	n := int32(0)
	for i := 0; i < len(text); i++ {
		n = t.child(n, text[i], true)
	}
	t.nodes[n].id = id
}

func (t *trie) child(n int32, b byte, create bool) int32 {
	for _, e := range t.nodes[n].edges {
		if e.b == b {
			return e.next
		}
	}
	if !create {
		return -1
	}
	t.nodes = append(t.nodes, trieNode{id: -1})
	c := int32(len(t.nodes) - 1)
	t.nodes[n].edges = append(t.nodes[n].edges, trieEdge{b, c})
	return c
}

// matchAt returns the end and id of the longest token at s[i:], or -1.
func (t *trie) matchAt(s string, i int) (int, int32) {
	end, id := -1, int32(-1)
	n := int32(0)
	for j := i; j < len(s); j++ {
		n = t.child(n, s[j], false)
		if n < 0 {
			break
		}
		if t.nodes[n].id >= 0 {
			end, id = j+1, t.nodes[n].id
		}
	}
	return end, id
}

// find returns the start, end and id of the first token in s at or after
// from, or start -1.
func (t *trie) find(s string, from int) (int, int, int32) {
	if t == nil || len(t.entries) == 0 {
		return -1, -1, -1
	}
	single := t.single
	for i := from; i < len(s); i++ {
		if single >= 0 {
			j := strings.IndexByte(s[i:], byte(single))
			if j < 0 {
				return -1, -1, -1
			}
			i += j
		} else if !t.first[s[i]] {
			continue
		}
		if end, id := t.matchAt(s, i); end >= 0 {
			return i, end, id
		}
	}
	return -1, -1, -1
}
