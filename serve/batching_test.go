package serve

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mai-llm/mai/infer"
)

// streamIDs streams a greedy chat completion and returns the generated
// token ids (from the logprobs' bytes: the byte model's ids are bytes).
func streamIDs(t testing.TB, url, content string, maxTokens int) []int {
	t.Helper()
	evs := sseEvents(t, url+"/v1/chat/completions", map[string]any{"model": "tiny", "temperature": 0, "max_tokens": maxTokens, "logprobs": true, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": content}}})
	var ids []int
	for _, e := range evs {
		if e == "[DONE]" {
			break
		}
		var c ChatResponse
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			if ch.Logprobs == nil {
				continue
			}
			for _, lp := range ch.Logprobs.Content {
				ids = append(ids, lp.Bytes...)
			}
		}
	}
	return ids
}

// TestContinuousBatching runs 16 streams one by one, then all at once:
// every stream must produce exactly the tokens it produced alone. It
// reports the aggregate throughput of both; with MAI_PERF_ASSERT=1 it also
// requires the batched run to be at least 4x faster (timing assertions are
// off by default: CI machines are shared).
func TestContinuousBatching(t *testing.T) {
	ts := startServer(t, Config{}, infer.EngineConfig{MaxSeqs: 16})
	const streams, maxTokens = 16, 48
	prompts := make([]string, streams)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("Stream %d: tell me something about the number %d.", i, i*37)
	}
	// Warm up (allocations, the RoPE tables).
	streamIDs(t, ts.URL, "warm up", 4)

	alone := make([][]int, streams)
	t0 := time.Now()
	total := 0
	for i, p := range prompts {
		alone[i] = streamIDs(t, ts.URL, p, maxTokens)
		total += len(alone[i])
	}
	seq := time.Since(t0)

	batched := make([][]int, streams)
	var wg sync.WaitGroup
	t1 := time.Now()
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batched[i] = streamIDs(t, ts.URL, p, maxTokens)
		}()
	}
	wg.Wait()
	par := time.Since(t1)
	t.Logf("stream 0: %q", bytesOf(alone[0]))
	t.Logf("stream 1: %q", bytesOf(alone[1]))
	for i := range prompts {
		if !slices.Equal(alone[i], batched[i]) {
			t.Errorf("stream %d: batched output differs from its output alone:\n%v\n%v", i, batched[i], alone[i])
		}
	}
	seqRate := float64(total) / seq.Seconds()
	parRate := float64(total) / par.Seconds()
	t.Logf("%d streams × %d tokens: one by one %.0f tok/s (%v), together %.0f tok/s (%v): %.1fx", streams, maxTokens, seqRate, seq.Round(time.Millisecond), parRate, par.Round(time.Millisecond), parRate/seqRate)
	if os.Getenv("MAI_PERF_ASSERT") == "1" && parRate < 4*seqRate {
		t.Errorf("batched throughput %.0f tok/s is less than 4x the sequential %.0f tok/s", parRate, seqRate)
	}
}

func bytesOf(ids []int) []byte {
	b := make([]byte, len(ids))
	for i, v := range ids {
		b[i] = byte(v)
	}
	return b
}
