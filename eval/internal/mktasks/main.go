// Command mktasks builds MAI's built-in evaluation tasks (eval/tasks/*.jsonl)
// from text every machine here has: the King James Bible of Debian's
// bible-kjv-text package (public domain, read through its `bible` program),
// the Go standard library's source under GOROOT (BSD-3-Clause), arithmetic
// made up on the spot, and the Go coding tasks written for MAI in
// eval/testdata/gocode. Run from the repository root:
//
//	go run ./eval/internal/mktasks
//
// The Go tasks draw only on packages whose path starts with n–z, so a model
// trained on the a–m half of the standard library is scored on code it has
// not seen.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

type header struct {
	Name             string   `json:"name"`
	Kind             string   `json:"kind"`
	About            string   `json:"about"`
	Source           string   `json:"source"`
	License          string   `json:"license"`
	Description      string   `json:"description,omitempty"`
	NumFewshot       int      `json:"num_fewshot,omitempty"`
	TargetDelimiter  *string  `json:"target_delimiter,omitempty"`
	FewshotDelimiter *string  `json:"fewshot_delimiter,omitempty"`
	Until            []string `json:"until,omitempty"`
	MaxTokens        int      `json:"max_tokens,omitempty"`
	AnswerRegex      string   `json:"answer_regex,omitempty"`
	Chat             bool     `json:"chat,omitempty"`
	System           string   `json:"system,omitempty"`
	Language         string   `json:"language,omitempty"`
}

type item struct {
	ID       string   `json:"id,omitempty"`
	Split    string   `json:"split,omitempty"`
	Context  string   `json:"context,omitempty"`
	Choices  []string `json:"choices,omitempty"`
	Gold     *int     `json:"gold,omitempty"`
	Prompt   string   `json:"prompt,omitempty"`
	Answers  []string `json:"answers,omitempty"`
	Test     string   `json:"test,omitempty"`
	Solution string   `json:"solution,omitempty"`
	Text     string   `json:"text,omitempty"`
}

var out = flag.String("out", "eval/tasks", "output folder")

func main() {
	flag.Parse()
	goroot := strings.TrimSpace(run("go", "env", "GOROOT"))
	r := rand.New(rand.NewPCG(2024, 11))
	verses := kjv()
	write(kjvCloze(r, verses))
	write(kjvPPL(verses))
	files := goFiles(goroot)
	write(goDocMatch(r, goroot, files))
	write(goNextLine(r, files))
	write(goPPL(r, files))
	write(arith(r, false))
	write(arith(r, true))
	write(goCode())
	write(goTokenOrder(r, files))
}

func run(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		log.Fatalf("%s %v: %v", name, args, err)
	}
	return string(b)
}

func str(s string) *string { return &s }
func idx(i int) *int       { return &i }

func write(h header, items []item) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(map[string]any{"mai_task": h})
	for _, it := range items {
		enc.Encode(it)
	}
	path := filepath.Join(*out, h.Name+".jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %d items, %d bytes", path, len(items), b.Len())
}

type verse struct{ ref, text string }

func kjv() []verse {
	var vs []verse
	for _, line := range strings.Split(run("bible", "-f", "Gen1:1-Rev22:21"), "\n") {
		ref, text, ok := strings.Cut(line, " ")
		if ok {
			vs = append(vs, verse{ref, strings.TrimSpace(text)})
		}
	}
	if len(vs) < 30000 {
		log.Fatalf("bible printed %d verses", len(vs))
	}
	return vs
}

const kjvSource = "King James Version (1611), from Debian's bible-kjv-text package, read with its bible program"

var wordRE = regexp.MustCompile(`^[A-Za-z]+$`)

// kjvCloze: a verse without its last word; pick the word among four.
func kjvCloze(r *rand.Rand, vs []verse) (header, []item) {
	type cand struct {
		ctx, word, punct, ref string
	}
	var cs []cand
	for _, v := range vs {
		words := strings.Fields(v.text)
		if len(words) < 8 {
			continue
		}
		last := words[len(words)-1]
		w := strings.TrimRight(last, ".,;:?!")
		if !wordRE.MatchString(w) || len(w) < 3 {
			continue
		}
		cs = append(cs, cand{strings.Join(words[:len(words)-1], " "), w, last[len(w):], v.ref})
	}
	r.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	var items []item
	for i, c := range cs[:420] {
		choices := []string{c.word}
		for len(choices) < 4 {
			d := cs[r.IntN(len(cs))].word
			if !contains(choices, d) && !strings.EqualFold(d, c.word) {
				choices = append(choices, d)
			}
		}
		r.Shuffle(len(choices), func(a, b int) { choices[a], choices[b] = choices[b], choices[a] })
		gold := index(choices, c.word)
		it := item{ID: c.ref, Context: c.ctx, Choices: choices, Gold: idx(gold)}
		if i < 20 {
			it.Split = "fewshot"
		}
		items = append(items, it)
	}
	return header{Name: "kjv-cloze", Kind: "multiple_choice",
		About:  "Cloze: a verse of the King James Bible without its last word; the model picks the word among four (three are last words of other verses). 400 scored items, 20 few-shot examples. Chance is 25%.",
		Source: kjvSource, License: "public domain"}, items
}

// kjvPPL: whole chapters of a few short books, for bits per byte.
func kjvPPL(vs []verse) (header, []item) {
	books := map[string]bool{"Ruth": true, "Jonah": true, "Jas": true}
	chapters := map[string]*strings.Builder{}
	var order []string
	chRE := regexp.MustCompile(`^([0-9]?[A-Za-z]+)(\d+):`)
	for _, v := range vs {
		m := chRE.FindStringSubmatch(v.ref)
		if m == nil || !books[m[1]] {
			continue
		}
		key := m[1] + m[2]
		if chapters[key] == nil {
			chapters[key] = &strings.Builder{}
			order = append(order, key)
		}
		chapters[key].WriteString(v.text + "\n")
	}
	var items []item
	for _, k := range order {
		items = append(items, item{ID: k, Text: chapters[k].String()})
	}
	return header{Name: "kjv-ppl", Kind: "perplexity",
		About:  "Bits per byte on the books of Ruth, Jonah and James (King James Version), one text per chapter.",
		Source: kjvSource, License: "public domain"}, items
}

// goFiles lists non-test Go files of standard-library packages whose path
// starts with n-z (no cmd, vendor, internal or testdata).
func goFiles(goroot string) []string {
	var files []string
	src := filepath.Join(goroot, "src")
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			n := d.Name()
			if n == "testdata" || n == "vendor" || n == "internal" || rel == "cmd" || (rel != "." && !strings.Contains(rel, "/") && (n[0] < 'n' || n[0] > 'z')) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files
}

const goSource = "the Go standard library's source (packages n–z: net, os, regexp, sort, strconv, strings, sync, text, time, unicode, ...) of the Go toolchain that built the task file"

// goDocMatch: a doc comment of an exported function, then "func"; the model
// picks the signature it documents among four from the same package.
func goDocMatch(r *rand.Rand, goroot string, files []string) (header, []item) {
	type fn struct{ pkg, doc, sig string }
	byPkg := map[string][]fn{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			continue
		}
		pkg, _ := filepath.Rel(filepath.Join(goroot, "src"), filepath.Dir(f))
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !fd.Name.IsExported() || fd.Doc == nil || fd.Type.TypeParams != nil {
				continue
			}
			doc := strings.TrimSpace(fd.Doc.Text())
			if len(doc) < 40 || len(doc) > 600 || strings.Contains(doc, "Deprecated") {
				continue
			}
			var sb bytes.Buffer
			fd2 := *fd
			fd2.Body, fd2.Doc = nil, nil
			printer.Fprint(&sb, fset, &fd2)
			sig := strings.TrimPrefix(sb.String(), "func")
			if strings.Contains(sig, "\n") || len(sig) > 160 {
				continue
			}
			var lines []string
			for _, l := range strings.Split(doc, "\n") {
				lines = append(lines, strings.TrimRight("// "+l, " "))
			}
			byPkg[pkg] = append(byPkg[pkg], fn{pkg, strings.Join(lines, "\n"), sig})
		}
	}
	var pkgs []string
	for p, fs := range byPkg {
		if len(fs) >= 4 {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	var all []fn
	for _, p := range pkgs {
		all = append(all, byPkg[p]...)
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var items []item
	for i, f := range all {
		if len(items) == 320 {
			break
		}
		choices := []string{f.sig}
		same := byPkg[f.pkg]
		for tries := 0; len(choices) < 4 && tries < 100; tries++ {
			d := same[r.IntN(len(same))].sig
			if !contains(choices, d) {
				choices = append(choices, d)
			}
		}
		if len(choices) < 4 {
			continue
		}
		r.Shuffle(4, func(a, b int) { choices[a], choices[b] = choices[b], choices[a] })
		it := item{ID: fmt.Sprintf("%s#%d", f.pkg, i), Context: "package " + filepath.Base(f.pkg) + "\n\n" + f.doc + "\nfunc", Choices: choices, Gold: idx(index(choices, f.sig))}
		if len(items) < 20 {
			it.Split = "fewshot"
		}
		items = append(items, it)
	}
	return header{Name: "go-doc-match", Kind: "multiple_choice",
		About:  "A doc comment of an exported Go function and the keyword func; the model picks the signature the comment documents among four functions of the same package. 300 scored items, 20 few-shot examples. Chance is 25%.",
		Source: goSource, License: "BSD-3-Clause (Copyright The Go Authors)"}, items
}

// goNextLine: a dozen lines of Go; the model picks the line that follows
// among four with the same indentation.
func goNextLine(r *rand.Rand, files []string) (header, []item) {
	type line struct {
		file int
		n    int
		text string
	}
	var byIndent = map[string][]line{}
	var contents [][]string
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ls := strings.Split(string(b), "\n")
		contents = append(contents, ls)
		for n, l := range ls {
			t := strings.TrimSpace(l)
			if n < 40 || len(t) < 12 || len(l) > 100 || strings.HasPrefix(t, "//") {
				continue
			}
			ind := l[:len(l)-len(strings.TrimLeft(l, "\t"))]
			byIndent[ind] = append(byIndent[ind], line{len(contents) - 1, n, l})
		}
		_ = i
	}
	var items []item
	for len(items) < 420 {
		f := contents[r.IntN(len(contents))]
		if len(f) < 60 {
			continue
		}
		n := 40 + r.IntN(len(f)-40)
		l := f[n]
		t := strings.TrimSpace(l)
		if len(t) < 12 || len(l) > 100 || strings.HasPrefix(t, "//") {
			continue
		}
		ind := l[:len(l)-len(strings.TrimLeft(l, "\t"))]
		pool := byIndent[ind]
		if len(pool) < 100 {
			continue
		}
		choices := []string{l + "\n"}
		for len(choices) < 4 {
			d := pool[r.IntN(len(pool))].text + "\n"
			if !contains(choices, d) {
				choices = append(choices, d)
			}
		}
		r.Shuffle(4, func(a, b int) { choices[a], choices[b] = choices[b], choices[a] })
		ctx := strings.Join(f[max(0, n-12):n], "\n") + "\n"
		it := item{ID: fmt.Sprint(len(items)), Context: ctx, Choices: choices, Gold: idx(index(choices, l+"\n"))}
		if len(items) < 20 {
			it.Split = "fewshot"
		}
		items = append(items, it)
	}
	return header{Name: "go-next-line", Kind: "multiple_choice", TargetDelimiter: str(""), FewshotDelimiter: str("\n\n"),
		About:  "Twelve lines of Go source; the model picks the next line among four with the same indentation (three are lines from elsewhere in the library). 400 scored items, 20 few-shot examples. Chance is 25%.",
		Source: goSource, License: "BSD-3-Clause (Copyright The Go Authors)"}, items
}

var goTokRE = regexp.MustCompile("[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\"[^\"]*\"|`[^`]*`|\\S")

// goTokenOrder: a few lines of Go; the model picks the next line among the
// real one and three with the same tokens in another order (the spacing kept
// in place), a minimal-pair test of Go syntax that a model passes early in
// training.
func goTokenOrder(r *rand.Rand, files []string) (header, []item) {
	var items []item
	for len(items) < 320 {
		b, err := os.ReadFile(files[r.IntN(len(files))])
		if err != nil {
			continue
		}
		ls := strings.Split(string(b), "\n")
		if len(ls) < 60 {
			continue
		}
		n := 40 + r.IntN(len(ls)-40)
		l := ls[n]
		body := strings.TrimLeft(l, "\t")
		ind := l[:len(l)-len(body)]
		if len(body) < 12 || len(l) > 100 || strings.HasPrefix(body, "//") {
			continue
		}
		locs := goTokRE.FindAllStringIndex(body, -1)
		if len(locs) < 5 {
			continue
		}
		var toks, seps []string
		for i, lc := range locs {
			toks = append(toks, body[lc[0]:lc[1]])
			end := len(body)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			seps = append(seps, body[lc[1]:end])
		}
		choices := []string{l + "\n"}
		for tries := 0; len(choices) < 4 && tries < 50; tries++ {
			var sb strings.Builder
			sb.WriteString(ind)
			for i, k := range r.Perm(len(toks)) {
				sb.WriteString(toks[k] + seps[i])
			}
			if c := sb.String() + "\n"; !contains(choices, c) {
				choices = append(choices, c)
			}
		}
		if len(choices) < 4 {
			continue
		}
		r.Shuffle(4, func(a, b int) { choices[a], choices[b] = choices[b], choices[a] })
		it := item{ID: fmt.Sprint(len(items)), Context: strings.Join(ls[n-6:n], "\n") + "\n", Choices: choices, Gold: idx(index(choices, l+"\n"))}
		if len(items) < 20 {
			it.Split = "fewshot"
		}
		items = append(items, it)
	}
	return header{Name: "go-token-order", Kind: "multiple_choice", TargetDelimiter: str(""),
		About:  "Six lines of Go source; the model picks the next line among the real one and three with the same tokens shuffled (spacing kept in place): Go syntax as minimal pairs, which a model learns early. 300 scored items, 20 few-shot examples. Chance is 25%.",
		Source: goSource, License: "BSD-3-Clause (Copyright The Go Authors)"}, items
}

// goPPL: held-out Go files for bits per byte.
func goPPL(r *rand.Rand, files []string) (header, []item) {
	var items []item
	total := 0
	for _, i := range r.Perm(len(files)) {
		b, err := os.ReadFile(files[i])
		if err != nil || len(b) > 8000 || len(b) < 1500 {
			continue
		}
		items = append(items, item{ID: filepath.Base(files[i]), Text: string(b)})
		total += len(b)
		if total > 120000 {
			break
		}
	}
	return header{Name: "go-ppl", Kind: "perplexity",
		About:  "Bits per byte on about 120 KB of Go source files drawn from the n–z half of the standard library.",
		Source: goSource, License: "BSD-3-Clause (Copyright The Go Authors)"}, items
}

// arith: sums and differences of small numbers, answered in digits.
func arith(r *rand.Rand, chat bool) (header, []item) {
	var items []item
	for i := range 220 {
		a, b := r.IntN(50), r.IntN(50)
		op, v := "+", a+b
		if r.IntN(2) == 1 {
			op, v = "-", a-b
		}
		q := fmt.Sprintf("Question: What is %d %s %d?\nAnswer:", a, op, b)
		if chat {
			q = fmt.Sprintf("What is %d %s %d? Answer with the number only.", a, op, b)
		}
		it := item{ID: fmt.Sprint(i), Prompt: q, Answers: []string{fmt.Sprint(v)}}
		if i < 20 {
			it.Split = "fewshot"
		}
		items = append(items, it)
	}
	h := header{Name: "arith", Kind: "generate", NumFewshot: 3, Until: []string{"\n"}, MaxTokens: 8, AnswerRegex: `-?\d+`,
		About:  "Generation: additions and subtractions of two numbers below 50, three solved examples first; the first integer of the answer must equal the result. 200 scored items.",
		Source: "made up by mktasks", License: "public domain"}
	if chat {
		h.Name, h.Chat, h.NumFewshot, h.Until, h.MaxTokens = "arith-chat", true, 2, nil, 16
		h.System = "You are a careful calculator."
		h.About = "arith through the model's chat template: each question a user turn, the solved examples earlier turns. 200 scored items."
	}
	return h, items
}

// goCode reads eval/testdata/gocode/*.txt: sections "-- prompt --",
// "-- solution --" and "-- test --".
func goCode() (header, []item) {
	paths, _ := filepath.Glob("eval/testdata/gocode/*.txt")
	sort.Strings(paths)
	var items []item
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			log.Fatal(err)
		}
		sec := map[string]string{}
		var cur string
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.HasPrefix(l, "-- ") && strings.HasSuffix(strings.TrimSpace(l), " --") {
				cur = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "-- "), " --")
				continue
			}
			sec[cur] += l
		}
		if sec["prompt"] == "" || sec["test"] == "" || sec["solution"] == "" {
			log.Fatalf("%s: want prompt, solution and test sections", p)
		}
		items = append(items, item{ID: strings.TrimSuffix(filepath.Base(p), ".txt"), Prompt: sec["prompt"], Solution: sec["solution"], Test: sec["test"]})
	}
	return header{Name: "go-code", Kind: "code", Language: "go",
		About:  "Go functions to complete: a package clause, a doc comment and a signature; the completion is the body, run against tests written for MAI with go test in the sandbox. Scored by pass@k.",
		Source: "written for MAI (eval/testdata/gocode)", License: "same as MAI"}, items
}

func contains(xs []string, s string) bool { return index(xs, s) >= 0 }

func index(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
}
