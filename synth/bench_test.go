package synth

import (
	"context"
	"os"
	"testing"
)

// BenchmarkRun measures synth's own cost per item against an instant loopback
// teacher (textbook items: one request each), fresh and from the cache.
func BenchmarkRun(b *testing.B) {
	for _, mode := range []string{"fresh", "cached"} {
		b.Run(mode, func(b *testing.B) {
			t := &testing.T{}
			ft := newFakeTeacher(t)
			defer ft.srv.Close()
			cfg := DefaultConfig()
			cfg.Output = b.TempDir() + "/out.jsonl"
			cfg.Teacher = TeacherConfig{BaseURL: ft.url(), Model: "fake"}
			cfg.Concurrency = 16
			cfg.Generators["textbook"].Count = 500
			if mode == "cached" {
				if _, err := Run(context.Background(), cfg, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if mode == "fresh" {
					os.RemoveAll(cfg.Output + ".cache")
				}
				if _, err := Run(context.Background(), cfg, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
