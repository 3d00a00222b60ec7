package eval

import (
	"context"
	"testing"

	"github.com/mai-llm/mai/infer"
)

// BenchmarkMultipleChoice scores a multiple-choice task on the llama
// fixture: items/s through the local path (shared contexts in the KV cache).
func BenchmarkMultipleChoice(b *testing.B) {
	m := loadLlama(b)
	be := NewLocal(m, infer.ByteCodec{}, LocalOptions{})
	task := mcTask()
	task.NumFewshot = 0
	for b.Loop() {
		if _, err := Run(context.Background(), be, []*Task{task}, Options{Log: discard()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(task.Items))/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkPerplexity scores 2 KB of text in windows of the context.
func BenchmarkPerplexity(b *testing.B) {
	m := loadLlama(b)
	be := NewLocal(m, infer.ByteCodec{}, LocalOptions{})
	text := make([]byte, 2048)
	for i := range text {
		text[i] = byte('a' + i*7%26)
	}
	for b.Loop() {
		if _, err := PerplexityTexts(context.Background(), be, []string{string(text)}, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(text))/b.Elapsed().Seconds(), "bytes/s")
}
