package synth

import (
	"context"
	"sync"
	"time"
)

// bucket is a token bucket that may go into debt: a take larger than the burst waits
// for a full bucket and then leaves it negative, so that over any long window the
// amount taken stays within rate*window + burst.
type bucket struct {
	mu    sync.Mutex
	rate  float64 // units per second; <= 0 means unlimited
	burst float64
	avail float64
	last  time.Time
}

func newBucket(perMinute float64) *bucket {
	if perMinute <= 0 {
		return &bucket{}
	}
	r := perMinute / 60
	burst := max(1, r) // one second's worth
	return &bucket{rate: r, burst: burst, avail: burst, last: time.Now()}
}

func (b *bucket) refill(now time.Time) {
	b.avail = min(b.burst, b.avail+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// reserve takes n units if they are there and returns 0, or returns how long to wait.
func (b *bucket) reserve(n float64, now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	need := min(n, b.burst)
	if b.avail >= need {
		b.avail -= n
		return 0
	}
	return time.Duration((need - b.avail) / b.rate * float64(time.Second))
}

// give returns n units (n < 0 takes more), e.g. when an answer used fewer tokens
// than were reserved.
func (b *bucket) give(n float64) {
	if b.rate <= 0 {
		return
	}
	b.mu.Lock()
	b.refill(time.Now())
	b.avail = min(b.burst, b.avail+n)
	b.mu.Unlock()
}

// limiter bounds requests and tokens per minute and holds every request back while
// the server has asked for a pause (429 with Retry-After).
type limiter struct {
	req, tok *bucket

	mu          sync.Mutex
	pausedUntil time.Time
}

func newLimiter(rpm, tpm float64) *limiter {
	return &limiter{req: newBucket(rpm), tok: newBucket(tpm)}
}

// pause holds all requests until t.
func (l *limiter) pause(t time.Time) {
	l.mu.Lock()
	if t.After(l.pausedUntil) {
		l.pausedUntil = t
	}
	l.mu.Unlock()
}

// wait blocks until one request of about tokens tokens may be sent and takes them.
func (l *limiter) wait(ctx context.Context, tokens float64) error {
	for {
		now := time.Now()
		l.mu.Lock()
		until := l.pausedUntil
		l.mu.Unlock()
		d := until.Sub(now)
		if d <= 0 {
			if d = l.req.reserve(1, now); d == 0 {
				if d = l.tok.reserve(tokens, now); d == 0 {
					return nil
				}
				l.req.give(1)
			}
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
