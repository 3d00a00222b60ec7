package data

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints one status line per stage: units done of total, bytes and rate.
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	name  string
	total int
	done  int
	bytes int64
	t0    time.Time
	last  time.Time
}

func (p *progress) start(name string, total, already int, _ int64) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.done, p.bytes = name, total, already, 0
	p.t0, p.last = time.Now(), time.Now()
	if p.tty {
		p.printLocked(false)
	}
}

func (p *progress) add(units int, bytes int64) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += units
	p.bytes += bytes
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if time.Since(p.last) >= every {
		p.printLocked(false)
	}
}

func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printLocked(true)
}

func (p *progress) printLocked(final bool) {
	p.last = time.Now()
	el := time.Since(p.t0).Seconds()
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	const width = 24
	fill := int(pct / 100 * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < fill {
			bar[i] = '='
		}
	}
	rate := ""
	if p.bytes > 0 && el > 0 {
		rate = fmt.Sprintf(" %.1f MB/s", float64(p.bytes)/1e6/el)
	}
	line := fmt.Sprintf("%-12s [%s] %5.1f%% %d/%d%s %.1fs", p.name, bar, pct, p.done, p.total, rate, el)
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}
