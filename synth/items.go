package synth

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"iter"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// item is one unit of work: one record of output (or one drop), made by one or
// more teacher requests.
type item struct {
	idx  int
	id   string
	name string // generator name
	gen  *Generator
	vars map[string]any // template variables; also written to meta
	// turns (chat) is the number of user turns.
	turns int
	// doc (rewrite) is the source document's chunk.
	doc     string
	seed    uint64
	sources map[string]string // meta about the source document
}

// requestSeed derives the sampling seed of step of an item (31 bits: some servers
// keep seeds in 32-bit integers).
func (it *item) requestSeed(step int) int64 {
	return int64(mix64(it.seed^uint64(step+1)*0x9e3779b97f4a7c15) & (1<<31 - 1))
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// countItems is the number of items the configuration makes (reading rewrite inputs).
func countItems(c *Config) (int, error) {
	n := 0
	for it, err := range c.items() {
		if err != nil {
			return 0, err
		}
		_ = it
		n++
	}
	return n, nil
}

// items yields every item in order: generators by kind then name, each's items by
// index. The choices are a pure function of the seed and the configuration.
func (c *Config) items() iter.Seq2[*item, error] {
	return func(yield func(*item, error) bool) {
		idx := 0
		emit := func(it *item) bool {
			it.idx = idx
			idx++
			return yield(it, nil)
		}
		for _, name := range c.GeneratorNames() {
			g := c.Generators[name]
			gseed := mix64(c.Seed ^ hashString(name))
			rng := rand.New(rand.NewPCG(gseed, 0x6d6169))
			pick := func(list []string) string { return list[rng.IntN(len(list))] }
			newItem := func(i int) *item {
				return &item{id: fmt.Sprintf("%s-%06d", name, i), name: name, gen: g,
					seed: mix64(gseed + uint64(i)*0x9e3779b97f4a7c15), vars: map[string]any{}}
			}
			if g.Kind == "rewrite" {
				if !c.rewriteItems(name, g, gseed, newItem, emit, yield) {
					return
				}
				continue
			}
			// Topics (and leaves) are taken in a shuffled cycle so that every one
			// is used before any is used twice; the rest is drawn at random.
			var order []int
			switch g.Kind {
			case "textbook":
				order = rng.Perm(len(g.leaves))
			default:
				order = rng.Perm(len(g.topics(c)))
			}
			for i := range g.Count {
				it := newItem(i)
				switch g.Kind {
				case "instruct":
					it.vars["Topic"] = g.topics(c)[order[i%len(order)]]
					it.vars["Persona"] = pick(g.personas(c))
					it.vars["Task"] = pick(g.Tasks)
				case "chat":
					it.vars["Topic"] = g.topics(c)[order[i%len(order)]]
					it.vars["Persona"] = pick(g.personas(c))
					it.turns = g.MinTurns + rng.IntN(g.MaxTurns-g.MinTurns+1)
				case "textbook":
					leaf := g.leaves[order[i%len(order)]]
					it.vars["Topic"] = leaf.Topic
					it.vars["Path"] = leaf.Path
					it.vars["Audience"] = pick(g.Audiences)
					it.vars["Style"] = pick(g.Styles)
				case "code":
					it.vars["Topic"] = g.Topics[order[i%len(order)]]
					it.vars["Difficulty"] = pick(g.Difficulties)
				}
				if !emit(it) {
					return
				}
			}
		}
	}
}

// rewriteItems yields one item per chunk and style of every input document.
func (c *Config) rewriteItems(name string, g *Generator, gseed uint64, newItem func(int) *item,
	emit func(*item) bool, yield func(*item, error) bool) bool {
	n := 0
	for _, path := range g.Inputs {
		for doc, err := range readDocs(path) {
			if err != nil {
				return yield(nil, err)
			}
			if len(strings.TrimSpace(doc.Text)) < g.MinChars {
				continue
			}
			chunks := chunkText(doc.Text, g.MaxChars)
			for ci, chunk := range chunks {
				// The styles of a chunk: a seeded choice per document, so that a
				// document keeps its styles when others are added to the inputs.
				rng := rand.New(rand.NewPCG(gseed^hashString(doc.ID), uint64(ci)))
				styles := rng.Perm(len(g.Styles))[:g.StylesPerDoc]
				for _, s := range styles {
					if g.Count > 0 && n >= g.Count {
						return true
					}
					it := newItem(n)
					n++
					it.doc = chunk
					it.vars["Style"] = g.Styles[s]
					it.sources = map[string]string{"source_id": doc.ID}
					if len(chunks) > 1 {
						it.sources["chunk"] = strconv.Itoa(ci)
					}
					if !emit(it) {
						return false
					}
				}
			}
		}
	}
	return true
}

// sourceDoc is one input document of the rewrite generator.
type sourceDoc struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// readDocs yields the {"id","text"} documents of a JSONL file (.gz and .zst are
// decompressed). A line without text is an error naming the file and line; a
// document without id gets path:line.
func readDocs(path string) iter.Seq2[sourceDoc, error] {
	return func(yield func(sourceDoc, error) bool) {
		f, err := os.Open(path)
		if err != nil {
			yield(sourceDoc{}, fmt.Errorf("synth: rewrite input: %w", err))
			return
		}
		defer f.Close()
		var r io.Reader = f
		switch {
		case strings.HasSuffix(path, ".gz"):
			gz, err := gzip.NewReader(f)
			if err != nil {
				yield(sourceDoc{}, fmt.Errorf("synth: rewrite input %s: %w", path, err))
				return
			}
			defer gz.Close()
			r = gz
		case strings.HasSuffix(path, ".zst"):
			zr, err := zstd.NewReader(f)
			if err != nil {
				yield(sourceDoc{}, fmt.Errorf("synth: rewrite input %s: %w", path, err))
				return
			}
			defer zr.Close()
			r = zr
		}
		for d, err := range parseDocs(r, path) {
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// parseDocs reads JSONL documents from r; name is for errors.
func parseDocs(r io.Reader, name string) iter.Seq2[sourceDoc, error] {
	return func(yield func(sourceDoc, error) bool) {
		br := bufio.NewReaderSize(r, 1<<20)
		for line := 1; ; line++ {
			b, err := br.ReadBytes('\n')
			if len(strings.TrimSpace(string(b))) > 0 {
				var raw struct {
					ID   json.RawMessage `json:"id"`
					Text *string         `json:"text"`
				}
				if jerr := json.Unmarshal(b, &raw); jerr != nil {
					yield(sourceDoc{}, fmt.Errorf("synth: %s:%d: not a JSON object: %v", name, line, jerr))
					return
				}
				if raw.Text == nil {
					yield(sourceDoc{}, fmt.Errorf("synth: %s:%d: no \"text\" field", name, line))
					return
				}
				d := sourceDoc{Text: *raw.Text}
				var s string
				var num json.Number
				switch {
				case len(raw.ID) == 0 || string(raw.ID) == "null":
					d.ID = name + ":" + strconv.Itoa(line)
				case json.Unmarshal(raw.ID, &s) == nil:
					d.ID = s
				case json.Unmarshal(raw.ID, &num) == nil:
					d.ID = num.String()
				default:
					yield(sourceDoc{}, fmt.Errorf("synth: %s:%d: \"id\" is neither a string nor a number", name, line))
					return
				}
				if !yield(d, nil) {
					return
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(sourceDoc{}, fmt.Errorf("synth: %s: %w", name, err))
				return
			}
		}
	}
}

// chunkText cuts text into pieces of at most max bytes, at paragraph breaks where
// it can, else at line breaks, else at spaces, else anywhere (on a rune boundary).
func chunkText(text string, max int) []string {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	if len(text) <= max {
		return []string{text}
	}
	var out []string
	for len(text) > max {
		cut := -1
		for _, sep := range []string{"\n\n", "\n", " "} {
			if i := strings.LastIndex(text[:max], sep); i > max/4 {
				cut = i
				break
			}
		}
		if cut < 0 {
			cut = max
			for cut > 0 && text[cut]&0xC0 == 0x80 {
				cut--
			}
		}
		if c := strings.TrimSpace(text[:cut]); c != "" {
			out = append(out, c)
		}
		text = strings.TrimSpace(text[cut:])
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}
