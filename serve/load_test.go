package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mai-llm/mai/infer"
)

// loadCounts is what the load-test clients counted.
type loadCounts struct {
	requests         map[string]int // by endpoint
	failed           int
	promptTokens     int
	completionTokens int
}

// TestLoad runs clients against the server for a fixed time (by default
// 64 clients for 8 s; MAI_LOAD_CLIENTS and MAI_LOAD_SECONDS change it, e.g.
// 64 and 60 for the full run) with a mix of chat, streamed chat, completions
// and embeddings. No request may fail, goroutines and heap must come back
// to where they were, and /metrics must count what the clients counted.
func TestLoad(t *testing.T) {
	clients, seconds := envInt("MAI_LOAD_CLIENTS", 64), envInt("MAI_LOAD_SECONDS", 8)
	if testing.Short() {
		seconds = 2
	}
	ts := startServer(t, Config{}, infer.EngineConfig{MaxSeqs: 32})
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	// Warm up, then take the baseline.
	warm := doLoadRequest(t, hc, ts.URL, 0, rand.New(rand.NewPCG(0, 0)))
	goroutines0, heap0 := settle(hc)

	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var mu sync.Mutex
	total := loadCounts{requests: map[string]int{}}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for i := 0; time.Now().Before(deadline); i++ {
				got := doLoadRequest(t, hc, ts.URL, c*100000+i, rng)
				mu.Lock()
				for k, v := range got.requests {
					total.requests[k] += v
				}
				total.failed += got.failed
				total.promptTokens += got.promptTokens
				total.completionTokens += got.completionTokens
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, v := range total.requests {
		n += v
	}
	t.Logf("%d clients, %d s: %d requests %v, %d prompt and %d completion tokens, %d failed", clients, seconds, n, total.requests, total.promptTokens, total.completionTokens, total.failed)
	if total.failed > 0 {
		t.Errorf("%d requests failed", total.failed)
	}

	// /metrics agrees with the clients (the warm-up request included),
	// once the last handlers have finished their bookkeeping: a client has
	// its response before the handler that wrote it returns.
	met := scrape(t, ts.URL)
	for deadline := time.Now().Add(5 * time.Second); met[`mai_requests_in_flight`] > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		met = scrape(t, ts.URL)
	}
	for endpoint, want := range total.requests {
		if endpoint == "completions" {
			want++ // the warm-up
		}
		if got := met[fmt.Sprintf(`mai_requests_total{endpoint=%q,code="200"}`, endpoint)]; got != float64(want) {
			t.Errorf("metrics count %v %s requests, clients %d", got, endpoint, want)
		}
	}
	if got := met[`mai_generation_tokens_total{model="tiny"}`]; got != float64(total.completionTokens+warm.completionTokens) {
		t.Errorf("metrics count %v generated tokens, clients %d", got, total.completionTokens+warm.completionTokens)
	}
	if got := met[`mai_prompt_tokens_total{model="tiny"}`]; got != float64(total.promptTokens+warm.promptTokens) {
		t.Errorf("metrics count %v prompt tokens, clients %d", got, total.promptTokens+warm.promptTokens)
	}
	if met[`mai_queue_depth{model="tiny"}`] != 0 || met[`mai_running_sequences{model="tiny"}`] != 0 || met[`mai_requests_in_flight`] != 0 {
		t.Errorf("not idle after the load: queue %v running %v in flight %v", met[`mai_queue_depth{model="tiny"}`], met[`mai_running_sequences{model="tiny"}`], met[`mai_requests_in_flight`])
	}

	goroutines1, heap1 := settle(hc)
	t.Logf("goroutines %d -> %d, heap %.1f -> %.1f MiB", goroutines0, goroutines1, float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	if goroutines1 > goroutines0+4 {
		t.Errorf("goroutines grew from %d to %d", goroutines0, goroutines1)
	}
	if heap1 > heap0+32<<20 {
		t.Errorf("heap grew from %d to %d bytes", heap0, heap1)
	}
}

// doLoadRequest sends one request of a random kind and reports what it
// counted (id 0, the warm-up, is a completion).
func doLoadRequest(t testing.TB, hc *http.Client, url string, id int, rng *rand.Rand) loadCounts {
	out := loadCounts{requests: map[string]int{}}
	kind := rng.IntN(4)
	prompt := fmt.Sprintf("q%04d", id%10000)
	maxTokens := 4 + rng.IntN(12)
	if id == 0 {
		kind = 2
	}
	var body map[string]any
	var path, endpoint string
	switch kind {
	case 0, 1:
		path, endpoint = "/v1/chat/completions", "chat"
		body = map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "user", "content": prompt}}, "max_tokens": maxTokens, "temperature": 0.8, "seed": id}
		if kind == 1 {
			body["stream"] = true
			body["stream_options"] = map[string]bool{"include_usage": true}
		}
	case 2:
		path, endpoint = "/v1/completions", "completions"
		body = map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": maxTokens, "temperature": 0}
	case 3:
		path, endpoint = "/v1/embeddings", "embeddings"
		body = map[string]any{"model": "tiny", "input": prompt}
	}
	b, _ := json.Marshal(body)
	resp, err := hc.Post(url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		out.failed++
		return out
	}
	defer resp.Body.Close()
	out.requests[endpoint]++
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		t.Errorf("%s: %d %s", path, resp.StatusCode, data)
		out.failed++
		return out
	}
	var usage *Usage
	if kind == 1 {
		sc := bufio.NewScanner(resp.Body)
		done := false
		for sc.Scan() {
			d, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			if d == "[DONE]" {
				done = true
				break
			}
			var c ChatResponse
			if err := json.Unmarshal([]byte(d), &c); err != nil {
				t.Errorf("stream event %q: %v", d, err)
				out.failed++
				return out
			}
			if c.Usage != nil {
				usage = c.Usage
			}
		}
		if !done {
			t.Errorf("stream ended without [DONE]: %v", sc.Err())
			out.failed++
			return out
		}
	} else {
		var r struct {
			Usage *Usage `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Errorf("%s: %v", path, err)
			out.failed++
			return out
		}
		usage = r.Usage
	}
	if usage == nil {
		t.Errorf("%s: no usage", path)
		out.failed++
		return out
	}
	out.promptTokens += usage.PromptTokens
	out.completionTokens += usage.CompletionTokens
	return out
}

// settle lets idle connections and finished goroutines go, then measures.
func settle(hc *http.Client) (goroutines int, heap uint64) {
	hc.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	httpClient.CloseIdleConnections()
	var ms runtime.MemStats
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		if g := runtime.NumGoroutine(); g == goroutines {
			break
		} else {
			goroutines = g
		}
	}
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}

// scrape reads /metrics into series -> value.
func scrape(t testing.TB, url string) map[string]float64 {
	resp, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
