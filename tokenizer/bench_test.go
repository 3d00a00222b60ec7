package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	peer "github.com/tiktoken-go/tokenizer"
)

// benchTexts is the benchmark corpus: the Go files of net/http from the Go
// source tree (about 2 MB) and the multilingual test text.
func benchTexts(b *testing.B) ([]string, int64) {
	b.Helper()
	files := goSourceFiles(b)
	var texts []string
	var n int64
	for _, f := range files {
		if !strings.Contains(filepath.ToSlash(f), "/src/net/http/") || !strings.HasSuffix(f, ".go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil || !utf8.Valid(data) {
			continue
		}
		texts = append(texts, string(data))
		n += int64(len(data))
	}
	if ml, err := os.ReadFile("testdata/multilingual.txt"); err == nil {
		for range 20 {
			texts = append(texts, string(ml))
			n += int64(len(ml))
		}
	}
	return texts, n
}

// reportCPU adds the throughput per CPU-second, which other processes on a
// shared machine disturb less than wall time.
func reportCPU(b *testing.B, start time.Duration, n int64) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(n)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkEncode compares single-threaded encoding with the peer
// github.com/tiktoken-go/tokenizer on the same text (MB/s is the figure).
func BenchmarkEncode(b *testing.B) {
	texts, n := benchTexts(b)
	for _, enc := range []struct {
		name string
		peer peer.Encoding
	}{{"cl100k_base", peer.Cl100kBase}, {"o200k_base", peer.O200kBase}} {
		tok := mustLoad(b, enc.name)
		nocache := tok.clone()
		nocache.cacheSize = -1
		b.Run("mai/"+enc.name, func(b *testing.B) {
			b.SetBytes(n)
			var dst []int
			start := cpuTime()
			for b.Loop() {
				for _, s := range texts {
					dst = tok.AppendEncode(dst[:0], s)
				}
			}
			reportCPU(b, start, n)
		})
		b.Run("mai-nocache/"+enc.name, func(b *testing.B) {
			b.SetBytes(n)
			var dst []int
			start := cpuTime()
			for b.Loop() {
				for _, s := range texts {
					dst = nocache.AppendEncode(dst[:0], s)
				}
			}
			reportCPU(b, start, n)
		})
		b.Run("peer/"+enc.name, func(b *testing.B) {
			c := peerCodec(b, enc.peer)
			b.SetBytes(n)
			start := cpuTime()
			for b.Loop() {
				for _, s := range texts {
					if _, _, err := c.Encode(s); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportCPU(b, start, n)
		})
	}
}

// BenchmarkEncodeBatch measures EncodeBatch on 1, 2, ... workers.
func BenchmarkEncodeBatch(b *testing.B) {
	texts, n := benchTexts(b)
	tok := mustLoad(b, "o200k_base")
	for _, w := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.SetBytes(n)
			start := cpuTime()
			for b.Loop() {
				tok.EncodeBatchWorkers(texts, w)
			}
			reportCPU(b, start, n)
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	texts, n := benchTexts(b)
	tok := mustLoad(b, "o200k_base")
	ids := tok.EncodeBatch(texts)
	b.SetBytes(n)
	var buf []byte
	for b.Loop() {
		for _, x := range ids {
			buf = tok.AppendDecode(buf[:0], x)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := loadOpenAI("o200k_base", openAIEncodings["o200k_base"]); err != nil {
			b.Fatal(err)
		}
	}
}
