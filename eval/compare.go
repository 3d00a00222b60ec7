package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Checkpoint is one saved model of a training run.
type Checkpoint struct {
	Step int
	Dir  string
}

var stepDir = regexp.MustCompile(`^step-(\d+)$`)

// Checkpoints lists the checkpoints/step-NNNNNNN folders of a training run
// in step order.
func Checkpoints(run string) ([]Checkpoint, error) {
	ents, err := os.ReadDir(filepath.Join(run, "checkpoints"))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w (want a training run directory with checkpoints/step-NNNNNNN folders)", run, err)
	}
	var cs []Checkpoint
	for _, e := range ents {
		m := stepDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(run, "checkpoints", e.Name(), "config.json")); err != nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		cs = append(cs, Checkpoint{Step: n, Dir: filepath.Join(run, "checkpoints", e.Name())})
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Step < cs[j].Step })
	if len(cs) == 0 {
		return nil, fmt.Errorf("run %s: no checkpoints (train with --keep 0 to keep them all)", run)
	}
	return cs, nil
}

// taskKey identifies what a cached task result measured.
func taskKey(t *Task, opt Options) string {
	h := crc32.NewIEEE()
	for _, it := range t.Items {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", it.ID, it.Context, it.Prompt, it.Text)
	}
	return fmt.Sprintf("%s items=%d/%08x limit=%d fewshot=%d seed=%d stride=%d samples=%d", t.Name, len(t.Items), h.Sum32(), opt.Limit, opt.NumFewshot, opt.Seed, opt.Stride, opt.Samples)
}

type cached struct {
	Key    string      `json:"key"`
	Result *TaskResult `json:"result"`
}

// EvalRun evaluates every checkpoint of a training run, keeping each task's
// result in RUN/eval/step-NNNNNNN/TASK-KEY.json (KEY: a hash of the task's
// items and the options), so that a later call evaluates only what is new:
// new checkpoints, or tasks added to the list.
func EvalRun(ctx context.Context, run string, tasks []*Task, opt Options, lo LocalOptions) ([]*Results, error) {
	cs, err := Checkpoints(run)
	if err != nil {
		return nil, err
	}
	var out []*Results
	for _, c := range cs {
		dir := filepath.Join(run, "eval", fmt.Sprintf("step-%07d", c.Step))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("eval run: %w", err)
		}
		res := &Results{Model: fmt.Sprintf("%s@%d", filepath.Base(filepath.Clean(run)), c.Step), Step: c.Step}
		var todo []*Task
		var paths []string
		got := make([]*TaskResult, len(tasks))
		for i, t := range tasks {
			key := taskKey(t, opt)
			path := filepath.Join(dir, fmt.Sprintf("%s-%08x.json", safeName(t.Name), crc32.ChecksumIEEE([]byte(key))))
			if b, err := os.ReadFile(path); err == nil {
				var cr cached
				if json.Unmarshal(b, &cr) == nil && cr.Key == key && cr.Result != nil {
					got[i] = cr.Result
					continue
				}
			}
			todo = append(todo, t)
			paths = append(paths, path)
		}
		if len(todo) > 0 {
			lo.Name = res.Model
			b, err := OpenLocal(c.Dir, lo)
			if err != nil {
				return nil, err
			}
			r, err := Run(ctx, b, todo, opt)
			if err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", c.Dir, err)
			}
			for j, tr := range r.Tasks {
				js, _ := json.MarshalIndent(cached{Key: taskKey(todo[j], opt), Result: &tr}, "", " ")
				if err := os.WriteFile(paths[j], js, 0o644); err != nil {
					return nil, fmt.Errorf("eval run: %w", err)
				}
				for i, t := range tasks {
					if t == todo[j] {
						got[i] = &r.Tasks[j]
					}
				}
			}
			res.Time = r.Time
		}
		for _, tr := range got {
			res.Tasks = append(res.Tasks, *tr)
		}
		out = append(out, res)
	}
	return out, nil
}

// safeName keeps a task name usable in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

// ReadTrainMetrics reads a run's metrics.jsonl into step → metric → value
// for the numeric fields (loss, val_loss, ...) and any "eval" object of
// "task/metric" values a training loop logged.
func ReadTrainMetrics(path string) (map[int]map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[int]map[string]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue // a torn last line after a crash
		}
		st, ok := line["step"].(float64)
		if !ok {
			continue
		}
		m := map[string]float64{}
		for k, v := range line {
			switch x := v.(type) {
			case float64:
				if k != "step" {
					m[k] = x
				}
			case map[string]any:
				if k == "eval" {
					for ek, ev := range x {
						if f, ok := ev.(float64); ok {
							m[ek] = f
						}
					}
				}
			}
		}
		out[int(st)] = m
	}
	return out, sc.Err()
}

// Series is one metric over training steps.
type Series struct {
	Run, Metric string
	Steps       []float64
	Values      []float64
	// Chance is the score of guessing (multiple choice), drawn as a
	// dashed line; 0 for none.
	Chance float64
}

// primary lists the metrics shown by default for each task kind.
var primary = map[string][]string{
	KindMultipleChoice: {"acc", "acc_norm"},
	KindPerplexity:     {"bits_per_byte"},
	KindGenerate:       {"exact_match"},
	KindCode:           {"pass@1"},
}

// ResultSeries turns per-checkpoint results into series of their primary
// metrics.
func ResultSeries(run string, rs []*Results) []Series {
	idx := map[string]int{}
	var out []Series
	for _, r := range rs {
		for _, t := range r.Tasks {
			for _, m := range primary[t.Kind] {
				v, ok := t.Metrics[m]
				if !ok {
					continue
				}
				name := t.Task + "/" + m
				i, ok := idx[name]
				if !ok {
					i = len(out)
					idx[name] = i
					out = append(out, Series{Run: run, Metric: name})
				}
				if strings.HasPrefix(m, "acc") {
					out[i].Chance = t.Metrics["chance"]
				}
				out[i].Steps = append(out[i].Steps, float64(r.Step))
				out[i].Values = append(out[i].Values, v)
			}
		}
	}
	return out
}

// TrainSeries returns the named metrics of metrics.jsonl as series.
func TrainSeries(run string, m map[int]map[string]float64, names ...string) []Series {
	steps := make([]int, 0, len(m))
	for s := range m {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	var out []Series
	for _, n := range names {
		s := Series{Run: run, Metric: "train/" + n}
		for _, st := range steps {
			if v, ok := m[st][n]; ok && !math.IsNaN(v) {
				s.Steps = append(s.Steps, float64(st))
				s.Values = append(s.Values, v)
			}
		}
		if len(s.Steps) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// WriteTable prints one result set as a table: task, metric, value ± stderr.
func WriteTable(w io.Writer, r *Results) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "task\tkind\tn\tshots\tmetric\tvalue\tstderr\n")
	for _, t := range r.Tasks {
		keys := make([]string, 0, len(t.Metrics))
		for k := range t.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			task, kind, n, shots := t.Task, t.Kind, strconv.Itoa(t.N), strconv.Itoa(t.Fewshot)
			if i > 0 {
				task, kind, n, shots = "", "", "", ""
			}
			se := ""
			if v, ok := t.Stderr[k]; ok {
				se = fmt.Sprintf("± %.4f", v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.4f\t%s\n", task, kind, n, shots, k, t.Metrics[k], se)
		}
	}
	return tw.Flush()
}

// WriteSeriesTable prints series side by side: one row per step, one column
// per run and metric.
func WriteSeriesTable(w io.Writer, ss []Series) error {
	steps := map[float64]bool{}
	for _, s := range ss {
		for _, st := range s.Steps {
			steps[st] = true
		}
	}
	var order []float64
	for st := range steps {
		order = append(order, st)
	}
	sort.Float64s(order)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "step\t")
	runs := map[string]bool{}
	for _, s := range ss {
		runs[s.Run] = true
	}
	for _, s := range ss {
		name := s.Metric
		if len(runs) > 1 {
			name = s.Run + ":" + name
		}
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw)
	for _, st := range order {
		fmt.Fprintf(tw, "%d\t", int(st))
		for _, s := range ss {
			v := "-"
			for i, x := range s.Steps {
				if x == st {
					v = fmt.Sprintf("%.4f", s.Values[i])
				}
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
