package serve

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// metrics is a small Prometheus registry: counters, gauges read at scrape
// time, and histograms, all with labels, written in the text exposition
// format.
type metrics struct {
	mu       sync.Mutex
	counters map[string]*family
	hists    map[string]*histFamily
	order    []string
	gauges   []gaugeFunc
}

type family struct {
	help   string
	values map[string]float64 // rendered label set -> value
}

type histFamily struct {
	help    string
	buckets []float64
	series  map[string]*hist
}

type hist struct {
	counts []uint64 // per bucket (not cumulative)
	sum    float64
	n      uint64
}

// gaugeFunc writes gauges computed at scrape time.
type gaugeFunc struct {
	name, help string
	read       func() map[string]float64
}

func newMetrics() *metrics {
	return &metrics{counters: map[string]*family{}, hists: map[string]*histFamily{}}
}

func (m *metrics) counter(name, help string) {
	m.counters[name] = &family{help: help, values: map[string]float64{}}
	m.order = append(m.order, name)
}

func (m *metrics) histogram(name, help string, buckets []float64) {
	m.hists[name] = &histFamily{help: help, buckets: buckets, series: map[string]*hist{}}
	m.order = append(m.order, name)
}

func (m *metrics) gauge(name, help string, read func() map[string]float64) {
	m.gauges = append(m.gauges, gaugeFunc{name, help, read})
}

// labels renders label pairs ("k", "v", ...) in Prometheus syntax.
func labels(kv ...string) string {
	if len(kv) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", kv[i], kv[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func (m *metrics) add(name string, v float64, kv ...string) {
	m.mu.Lock()
	m.counters[name].values[labels(kv...)] += v
	m.mu.Unlock()
}

func (m *metrics) observe(name string, v float64, kv ...string) {
	m.mu.Lock()
	f := m.hists[name]
	l := labels(kv...)
	h := f.series[l]
	if h == nil {
		h = &hist{counts: make([]uint64, len(f.buckets)+1)}
		f.series[l] = h
	}
	i := sort.SearchFloat64s(f.buckets, v)
	h.counts[i]++
	h.sum += v
	h.n++
	m.mu.Unlock()
}

// value returns a counter's value for a label set (for tests).
func (m *metrics) value(name string, kv ...string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters[name].values[labels(kv...)]
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range m.order {
		if f, ok := m.counters[name]; ok {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, f.help, name)
			for _, l := range sortedKeys(f.values) {
				fmt.Fprintf(w, "%s%s %s\n", name, l, num(f.values[l]))
			}
			continue
		}
		f := m.hists[name]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, f.help, name)
		keys := make([]string, 0, len(f.series))
		for l := range f.series {
			keys = append(keys, l)
		}
		sort.Strings(keys)
		for _, l := range keys {
			h := f.series[l]
			inner := strings.TrimSuffix(strings.TrimPrefix(l, "{"), "}")
			sep := ""
			if inner != "" {
				sep = ","
			}
			var cum uint64
			for i, b := range f.buckets {
				cum += h.counts[i]
				fmt.Fprintf(w, "%s_bucket{%s%sle=%q} %d\n", name, inner, sep, num(b), cum)
			}
			fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", name, inner, sep, h.n)
			fmt.Fprintf(w, "%s_sum%s %s\n%s_count%s %d\n", name, l, num(h.sum), name, l, h.n)
		}
	}
	for _, g := range m.gauges {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", g.name, g.help, g.name)
		vals := g.read()
		for _, l := range sortedKeys(vals) {
			fmt.Fprintf(w, "%s%s %s\n", g.name, l, num(vals[l]))
		}
	}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%g", v)
}

// processGauges reports the Go runtime's goroutines and heap.
func processGauges() (goroutines, heap func() map[string]float64) {
	goroutines = func() map[string]float64 { return map[string]float64{"": float64(runtime.NumGoroutine())} }
	heap = func() map[string]float64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return map[string]float64{"": float64(ms.HeapAlloc)}
	}
	return goroutines, heap
}

var (
	latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	batchBuckets   = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
)
