package serve

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// textStream turns generated ids into text deltas. It holds back the bytes
// that may be the start of a stop string or of an unfinished UTF-8
// character, and cuts the text at the first stop string.
type textStream struct {
	decode  func([]int32) string
	stops   []string
	ids     []int32
	starts  []int  // where each of ids starts in text
	text    string // the text of ids, cut at a stop string once one is found
	sent    int    // bytes of text already returned
	stopped bool
	// freeze holds back everything from the first occurrence of one of
	// these markers on (tool calls, parsed at the end).
	freeze []string
}

func newTextStream(decode func([]int32) string, stops []string) *textStream {
	var keep []string
	for _, s := range stops {
		if s != "" {
			keep = append(keep, s)
		}
	}
	return &textStream{decode: decode, stops: keep}
}

// push adds a token and returns the text that is now safe to emit.
func (s *textStream) push(id int32) string {
	if s.stopped {
		return ""
	}
	s.starts = append(s.starts, len(s.text))
	s.ids = append(s.ids, id)
	s.text = s.decode(s.ids)
	if cut := s.firstStop(); cut >= 0 {
		s.text = s.text[:cut]
		s.stopped = true
		return s.take(len(s.text))
	}
	safe := len(s.text) - held(s.text, s.stops)
	safe = utf8Boundary(s.text, safe)
	return s.take(min(safe, s.frozenAt()))
}

// inText is how many pushed tokens start within the first n bytes of the
// text: the tokens whose logprobs belong to that much content. A stop
// string's tokens and an end-of-text token start past the content, so they
// are not reported, as OpenAI's API leaves them out.
func (s *textStream) inText(n int) int {
	return sort.Search(len(s.starts), func(i int) bool { return s.starts[i] >= n })
}

// flush returns whatever is left (at the end of generation), up to a
// freeze marker.
func (s *textStream) flush() string { return s.take(min(len(s.text), s.frozenAt())) }

// frozenAt is where output must stop for the freeze markers: the first
// marker, or a suffix that may start one.
func (s *textStream) frozenAt() int {
	if len(s.freeze) == 0 {
		return len(s.text)
	}
	at := len(s.text) - held(s.text, s.freeze)
	for _, f := range s.freeze {
		if i := strings.Index(s.text, f); i >= 0 {
			at = min(at, i)
		}
	}
	return at
}

func (s *textStream) take(upto int) string {
	if upto <= s.sent {
		return ""
	}
	d := s.text[s.sent:upto]
	s.sent = upto
	return d
}

func (s *textStream) firstStop() int {
	cut := -1
	for _, st := range s.stops {
		// Only a match ending in new text can be new, but the whole text is
		// small next to decoding it; search from what may overlap.
		from := max(0, s.sent-len(st)+1)
		if i := strings.Index(s.text[from:], st); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	return cut
}

// held is the length of the longest suffix of text that is a proper prefix
// of one of marks.
func held(text string, marks []string) int {
	h := 0
	for _, st := range marks {
		for n := min(len(st)-1, len(text)); n > h; n-- {
			if strings.HasSuffix(text, st[:n]) {
				h = n
				break
			}
		}
	}
	return h
}

// utf8Boundary moves end back over an unfinished UTF-8 character at its end.
func utf8Boundary(text string, end int) int {
	if end <= 0 {
		return 0
	}
	start := end - 1
	for start > 0 && end-start < utf8.UTFMax && !utf8.RuneStart(text[start]) {
		start--
	}
	if !utf8.FullRuneInString(text[start:end]) {
		return start
	}
	return end
}
