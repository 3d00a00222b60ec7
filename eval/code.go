package eval

import (
	"context"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// goStop ends a completion at the first closing brace in column 0: the end
// of the function the model was asked to write.
var goStop = []string{"\n}"}

// assembleGo joins a Go prompt and a completion into a source file: the
// completion is cut where the function ends, the brace restored, and imports
// fixed (standard-library packages the code uses are added and unused ones
// dropped), so a model is not failed for its import list.
func assembleGo(prompt, completion string) string {
	for _, s := range goStop {
		if i := strings.Index(completion, s); i >= 0 {
			completion = completion[:i]
		}
	}
	return fixImports(prompt + completion + "\n}\n")
}

// stdImports maps the package names models use to their import paths.
var stdImports = map[string]string{
	"bufio": "bufio", "bytes": "bytes", "cmp": "cmp", "errors": "errors", "fmt": "fmt", "io": "io",
	"maps": "maps", "math": "math", "bits": "math/bits", "rand": "math/rand", "os": "os", "regexp": "regexp",
	"slices": "slices", "sort": "sort", "strconv": "strconv", "strings": "strings", "time": "time",
	"unicode": "unicode", "utf8": "unicode/utf8", "big": "math/big", "heap": "container/heap",
	"list": "container/list", "sync": "sync", "hex": "encoding/hex", "json": "encoding/json",
	"net": "net", "http": "net/http", "filepath": "path/filepath", "path": "path", "atomic": "sync/atomic",
}

// fixImports adds imports for standard packages referenced but not imported
// and removes imports nothing uses. Source that does not parse is returned
// unchanged (the compiler will say what is wrong).
func fixImports(src string) string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "solution.go", src, parser.ParseComments)
	if err != nil {
		return src
	}
	declared := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch d := n.(type) {
		case *ast.Ident:
			if d.Obj != nil { //nolint:staticcheck // enough to tell locals from packages here
				declared[d.Name] = true
			}
		}
		return true
	})
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if s, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := s.X.(*ast.Ident); ok && id.Obj == nil { //nolint:staticcheck
				used[id.Name] = true
			}
		}
		return true
	})
	have := map[string]bool{}
	var keep []string
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		name := filepath.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		have[name] = true
		if used[name] || name == "_" || name == "." {
			keep = append(keep, im.Path.Value)
		}
	}
	var add []string
	for name := range used {
		if p, ok := stdImports[name]; ok && !have[name] && !declared[name] {
			add = append(add, strconv.Quote(p))
		}
	}
	if len(add) == 0 && len(keep) == len(f.Imports) {
		return src
	}
	all := append(keep, add...)
	sort.Strings(all)
	// Rebuild: package clause, new import block, then the declarations that
	// are not imports.
	tf := fset.File(f.Pos())
	off := func(p token.Pos) int { return tf.Offset(p) }
	var b strings.Builder
	b.WriteString(src[:off(f.Name.End())])
	b.WriteString("\n")
	if len(all) > 0 {
		b.WriteString("\nimport (\n")
		for _, p := range all {
			b.WriteString("\t" + p + "\n")
		}
		b.WriteString(")\n")
	}
	rest := off(f.Name.End())
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.IMPORT {
			b.WriteString(src[rest:off(g.Pos())])
			rest = off(g.End())
		}
	}
	b.WriteString(src[rest:])
	if out, err := format.Source([]byte(b.String())); err == nil {
		return string(out)
	}
	return b.String()
}

// PassAtK is the unbiased estimator of pass@k from n samples of which c
// passed (Chen et al., 2021): 1 - C(n-c, k) / C(n, k).
func PassAtK(n, c, k int) float64 {
	if n-c < k {
		return 1
	}
	p := 1.0
	for i := n - c + 1; i <= n; i++ {
		p *= 1 - float64(k)/float64(i)
	}
	return 1 - p
}

// CodeResult is the outcome of running one completion's tests.
type CodeResult struct {
	Passed   bool
	TimedOut bool
	Output   string // build or test output, capped
}

// RunGoTest writes prompt+completion and the test into a temporary module
// and runs `go test` on it in the sandbox.
func RunGoTest(ctx context.Context, prompt, completion, test string, o SandboxOptions) (*CodeResult, error) {
	o.defaults()
	return runGoTest(ctx, prompt, completion, test, &o, 0)
}

func runGoTest(ctx context.Context, prompt, completion, test string, o *SandboxOptions, slot int) (*CodeResult, error) {
	dir, err := os.MkdirTemp("", "mai-eval-code-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	files := map[string]string{
		"go.mod":           "module sandbox\n\ngo 1.22\n",
		"solution.go":      assembleGo(prompt, completion),
		"solution_test.go": test,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	r, err := goTest(ctx, o, dir, slot)
	if err != nil {
		return nil, err
	}
	return &CodeResult{Passed: r.ok, TimedOut: r.timedOut, Output: r.output}, nil
}

// runCode samples completions for each code item and runs their tests.
func runCode(ctx context.Context, b Backend, t *Task, opt Options) (*TaskResult, error) {
	sb := opt.Sandbox
	sb.defaults()
	tr := &TaskResult{}
	if w := SandboxIsolation().Warning; w != "" {
		opt.Log.Warn("code sandbox", "isolation", SandboxIsolation().Level, "warning", w)
		tr.Warnings = append(tr.Warnings, w)
	}
	its := items(t, opt)
	n := max(1, opt.Samples)
	temp := 0.0
	if n > 1 {
		temp = 0.8
	}
	if opt.Temperature != nil {
		temp = *opt.Temperature
	}
	until := t.Until
	if len(until) == 0 {
		until = goStop
	}
	maxTok := t.MaxTokens
	if opt.MaxTokens > 0 {
		maxTok = opt.MaxTokens
	}
	if maxTok <= 0 {
		maxTok = 256
	}
	var reqs []GenRequest
	for i, it := range its {
		for s := range n {
			reqs = append(reqs, GenRequest{Prompt: t.Description + it.Prompt, Until: until, MaxTokens: maxTok,
				Temperature: temp, Seed: opt.Seed + uint64(i*n+s)})
		}
	}
	outs, err := b.Generate(ctx, reqs)
	if err != nil {
		return nil, err
	}
	results := make([]*CodeResult, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := range sb.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				it := its[j/n]
				results[j], errs[j] = runGoTest(ctx, t.Description+it.Prompt, outs[j], it.Test, &sb, w)
			}
		}()
	}
	for j := range reqs {
		if j == 0 {
			// Build one alone first: a cold cache compiles the standard
			// library once instead of once per worker.
			results[0], errs[0] = runGoTest(ctx, t.Description+its[0].Prompt, outs[0], its[0].Test, &sb, 0)
			continue
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	ks := opt.Ks
	if len(ks) == 0 {
		ks = []int{1, 10}
	}
	tr.N, tr.Metrics, tr.Stderr = len(its), map[string]float64{}, map[string]float64{}
	per := map[int][]float64{}
	for i, it := range its {
		c := 0
		var s Sample
		for j := i * n; j < (i+1)*n; j++ {
			if results[j].Passed {
				c++
			}
			if opt.KeepSamples {
				s.Output = append(s.Output, outs[j])
				s.Passed = append(s.Passed, results[j].Passed)
				if !results[j].Passed && s.Diagnostic == "" {
					s.Diagnostic = results[j].Output
				}
			}
		}
		for _, k := range ks {
			if k <= n {
				per[k] = append(per[k], PassAtK(n, c, k))
			}
		}
		if opt.KeepSamples {
			s.ID, s.Prompt, s.Correct = it.ID, it.Prompt, c > 0
			tr.Samples = append(tr.Samples, s)
		}
	}
	for k, xs := range per {
		m, se := meanStderr(xs)
		tr.Metrics["pass@"+strconv.Itoa(k)] = m
		tr.Stderr["pass@"+strconv.Itoa(k)] = se
	}
	tr.Metrics["samples"] = float64(n)
	return tr, nil
}
