//go:build unix

package infer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mai-llm/mai/model"
)

// BenchmarkEngineThroughput measures decode throughput (generated tokens
// per second, all streams together) for 1 to 32 concurrent greedy streams
// on randomly initialized presets. The ratio between the streams=16 and
// streams=1 figures is what continuous batching buys.
//
//	go test ./infer -run XXX -bench EngineThroughput -benchtime 3x
func BenchmarkEngineThroughput(b *testing.B) {
	for _, preset := range []string{"tiny", "small"} {
		cfg, err := model.Preset(preset)
		if err != nil {
			b.Fatal(err)
		}
		m, err := model.New(cfg, false)
		if err != nil {
			b.Fatal(err)
		}
		m.Init(1)
		for _, streams := range []int{1, 4, 16, 32} {
			b.Run(fmt.Sprintf("%s/streams=%d", preset, streams), func(b *testing.B) {
				e, err := NewEngine(m, EngineConfig{MaxSeqs: 32})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				const newTokens = 32
				tokens := 0
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					var wg sync.WaitGroup
					var mu sync.Mutex
					for s := range streams {
						wg.Add(1)
						go func() {
							defer wg.Done()
							prompt := []int32{int32(1 + s), int32(2 + i), 3, 4, 5, 6, 7, 8}
							toks, _, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: newTokens})
							if err != nil {
								b.Error(err)
							}
							mu.Lock()
							tokens += len(toks)
							mu.Unlock()
						}()
					}
					wg.Wait()
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
				// Per second of CPU (user + system, all threads): what the
				// figure would be on otherwise idle cores, less the idle time
				// of the pool's threads.
				b.ReportMetric(float64(tokens)/(cpuTime()-cpu0).Seconds(), "tok/cpu-s")
			})
		}
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEngineGGUF runs the engine on the GGUF file named by
// $MAI_BENCH_GGUF (skipped without it): each op starts `streams` requests
// of a 128-token prompt and 64 new tokens at once, as `mai bench serve`
// does through HTTP, so the engine's share can be profiled:
//
//	MAI_BENCH_GGUF=model.gguf go test ./infer -run XXX -bench EngineGGUF -benchtime 1x -cpuprofile cpu.out
func BenchmarkEngineGGUF(b *testing.B) {
	path := os.Getenv("MAI_BENCH_GGUF")
	if path == "" {
		b.Skip("set MAI_BENCH_GGUF to a .gguf file")
	}
	m, err := model.LoadGGUF(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, streams := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			e, err := NewEngine(m, EngineConfig{MaxSeqs: 32})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			const promptLen, newTokens = 128, 64
			tokens := 0
			b.ResetTimer() // not the KV cache's allocation
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				var mu sync.Mutex
				for s := range streams {
					wg.Go(func() {
						prompt := make([]int32, promptLen)
						for j := range prompt {
							prompt[j] = int32((s*7919 + i*104729 + j*31) % m.Cfg.Vocab)
						}
						toks, _, err := e.Generate(context.Background(), &Request{Prompt: prompt, MaxTokens: newTokens})
						if err != nil {
							b.Error(err)
						}
						mu.Lock()
						tokens += len(toks)
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
			b.ReportMetric(float64(tokens)/(cpuTime()-cpu0).Seconds(), "tok/cpu-s")
		})
	}
}
