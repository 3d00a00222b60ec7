package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the account of a run, written as JSON beside the output.
type Report struct {
	Teacher  string `json:"teacher"`
	BaseURL  string `json:"base_url,omitempty"`
	Output   string `json:"output"`
	CacheDir string `json:"cache_dir"`
	// Complete is true when every item was processed and the output written.
	Complete bool      `json:"complete"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	// Items is the number of items; Done were processed, Kept written, Dropped left
	// out on purpose (by reason), Failed gave up.
	Items   int               `json:"items"`
	Done    int               `json:"done"`
	Kept    int               `json:"kept"`
	Dropped map[string]int    `json:"dropped"`
	Failed  int               `json:"failed"`
	Errors  []ItemError       `json:"errors,omitempty"`
	ByGen   map[string]*Tally `json:"generators"`
	// CachedAtStart is the number of answers the cache held when the run began.
	CachedAtStart int          `json:"cached_at_start"`
	Requests      RequestStats `json:"requests"`
	// RequestsPerSecond is attempts sent per second of the run.
	RequestsPerSecond float64 `json:"requests_per_second"`
	Price             Price   `json:"price"`
	// CostUSD is what this run's requests cost; SavedUSD what the cache saved.
	CostUSD  float64 `json:"cost_usd"`
	SavedUSD float64 `json:"saved_usd"`
	// Dedup counts of the output.
	ExactDuplicates int `json:"exact_duplicates"`
	NearDuplicates  int `json:"near_duplicates"`
	LSHBands        int `json:"lsh_bands,omitempty"`
	LSHRows         int `json:"lsh_rows,omitempty"`

	start time.Time
}

// Tally counts the items of one generator.
type Tally struct {
	Kind    string         `json:"kind"`
	Items   int            `json:"items"`
	Kept    int            `json:"kept"`
	Dropped map[string]int `json:"dropped,omitempty"`
	Failed  int            `json:"failed"`
	// Requests counts the teacher answers the items used, Cached those from the cache.
	Requests         int   `json:"requests"`
	Cached           int   `json:"cached"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// ItemError is one failed item.
type ItemError struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func newReport(cfg *Config, items, cached int) *Report {
	rep := &Report{Teacher: cfg.Teacher.Model, BaseURL: cfg.Teacher.BaseURL, Output: cfg.Output, CacheDir: cfg.CacheDir,
		Started: time.Now().UTC().Truncate(time.Second), Items: items, Dropped: map[string]int{},
		ByGen: map[string]*Tally{}, CachedAtStart: cached, Price: cfg.Price, start: time.Now()}
	for _, name := range cfg.GeneratorNames() {
		rep.ByGen[name] = &Tally{Kind: cfg.Generators[name].Kind, Dropped: map[string]int{}}
	}
	return rep
}

func (r *Report) addItem(res result, c *Client) {
	t := r.ByGen[res.it.name]
	t.Items++
	if ir := res.ir; ir != nil {
		t.Requests += ir.calls
		t.Cached += ir.cached
		t.PromptTokens += ir.promptT
		t.CompletionTokens += ir.complT
	}
	if res.err == nil {
		r.Done++
		return
	}
	if errors.Is(res.err, context.Canceled) || errors.Is(res.err, context.DeadlineExceeded) && !strings.Contains(res.err.Error(), "attempts") {
		return // interrupted, not done
	}
	r.Done++
	if why := dropReason(res.err); why != "" {
		r.drop(res.it.name, why)
		return
	}
	r.Failed++
	t.Failed++
	if len(r.Errors) < 100 {
		r.Errors = append(r.Errors, ItemError{ID: res.it.id, Error: firstLine(res.err.Error())})
	}
}

func (r *Report) drop(gen, why string) {
	r.Dropped[why]++
	r.ByGen[gen].Dropped[why]++
	switch why {
	case "exact_duplicate":
		r.ExactDuplicates++
	case "near_duplicate":
		r.NearDuplicates++
	}
}

func (r *Report) keep(gen string) {
	r.Kept++
	r.ByGen[gen].Kept++
}

func (r *Report) finish(st RequestStats, dd *deduper) {
	r.Seconds = time.Since(r.start).Seconds()
	r.Requests = st
	if r.Seconds > 0 {
		r.RequestsPerSecond = float64(st.Attempts) / r.Seconds
	}
	r.CostUSD = r.Price.Cost(st.PromptTokens, st.CompletionTokens)
	r.SavedUSD = r.Price.Cost(st.CachedPromptTokens, st.CachedCompletionTokens)
	if dd.cfg.Near {
		r.LSHBands, r.LSHRows = dd.cfg.Bands, dd.cfg.Rows
	}
}

// progress prints one line about the run so far.
func (r *Report) progress(w io.Writer, st RequestStats) {
	el := time.Since(r.start)
	retries := int64(0)
	for _, n := range st.Errors {
		retries += n
	}
	eta := ""
	if r.Done > 0 && r.Done < r.Items {
		left := time.Duration(float64(el) / float64(r.Done) * float64(r.Items-r.Done))
		eta = " eta " + left.Round(time.Second).String()
	}
	fmt.Fprintf(w, "synth: %d/%d items (kept %d, dropped %d, failed %d) | %d requests %.1f/s, %d cached, %d errors | tokens %d in %d out | $%.4f | %s%s\n",
		r.Done, r.Items, r.Kept, r.Done-r.Kept-r.Failed, r.Failed, st.Attempts, float64(st.Attempts)/el.Seconds(),
		st.Cached, retries, st.PromptTokens, st.CompletionTokens, r.Price.Cost(st.PromptTokens, st.CompletionTokens),
		el.Round(time.Second), eta)
}

func (r *Report) save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("synth: report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("synth: report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("synth: report: %w", err)
	}
	return nil
}

// WriteTable prints the report for a terminal.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "generator\tkind\titems\tkept\tdropped\tfailed\trequests\tcached\tin tokens\tout tokens\t\n")
	var tot Tally
	for _, name := range slices.Sorted(maps.Keys(r.ByGen)) {
		t := r.ByGen[name]
		if t.Items == 0 {
			continue
		}
		d := 0
		for _, n := range t.Dropped {
			d += n
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, t.Kind, t.Items, t.Kept, d, t.Failed, t.Requests, t.Cached, t.PromptTokens, t.CompletionTokens)
		tot.Items += t.Items
		tot.Kept += t.Kept
		tot.Dropped = nil
		tot.Failed += t.Failed
		tot.Requests += t.Requests
		tot.Cached += t.Cached
		tot.PromptTokens += t.PromptTokens
		tot.CompletionTokens += t.CompletionTokens
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", tot.Items, tot.Kept, tot.Items-tot.Kept-tot.Failed, tot.Failed, tot.Requests, tot.Cached, tot.PromptTokens, tot.CompletionTokens)
	tw.Flush()
	if len(r.Dropped) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Dropped)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Dropped[k]))
		}
		fmt.Fprintf(w, "dropped: %s\n", strings.Join(parts, ", "))
	}
	st := r.Requests
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(st.Errors)) {
		errs = append(errs, fmt.Sprintf("%s %d", k, st.Errors[k]))
	}
	if len(errs) == 0 {
		errs = []string{"none"}
	}
	fmt.Fprintf(w, "requests: %d sent (%.2f/s), %d answered, %d from cache, %d gave up; errors: %s; Retry-After honoured %d; latency p50 %.2fs p95 %.2fs\n",
		st.Attempts, r.RequestsPerSecond, st.Succeeded, st.Cached, st.Failed, strings.Join(errs, ", "), st.RetryAfterHonoured, st.LatencyP50, st.LatencyP95)
	est := ""
	if st.EstimatedUsage > 0 {
		est = fmt.Sprintf(" (%d answers without usage: estimated)", st.EstimatedUsage)
	}
	fmt.Fprintf(w, "tokens: %d in, %d out this run%s; %d in, %d out from the cache\n",
		st.PromptTokens, st.CompletionTokens, est, st.CachedPromptTokens, st.CachedCompletionTokens)
	fmt.Fprintf(w, "cost: $%.4f (at $%g / $%g per 1M in/out tokens); the cache saved $%.4f\n",
		r.CostUSD, r.Price.InputPerMillion, r.Price.OutputPerMillion, r.SavedUSD)
	status := "complete"
	if !r.Complete {
		status = "INCOMPLETE"
	}
	fmt.Fprintf(w, "%s: %d records in %s, %.1fs\n", status, r.Kept, r.Output, r.Seconds)
	for i, e := range r.Errors {
		if i == 5 {
			fmt.Fprintf(w, "... %d more failed items in the JSON report\n", r.Failed-5)
			break
		}
		fmt.Fprintf(w, "failed %s: %s\n", e.ID, e.Error)
	}
}
