package cpu

import "testing"

func TestCapCPU(t *testing.T) {
	all := cpuFeatures{AVX2FMA: true, AVX512F: true}
	tests := []struct {
		isa  string
		f    cpuFeatures
		want cpuFeatures
	}{
		{"", all, all},
		{"avx512", all, all},
		{"avx2", all, cpuFeatures{AVX2FMA: true}},
		{"go", all, cpuFeatures{}},
		{"avx512", cpuFeatures{AVX2FMA: true}, cpuFeatures{AVX2FMA: true}}, // a cap adds nothing
		{"sse9", all, all},
	}
	for _, tt := range tests {
		if got := capCPU(tt.f, tt.isa); got != tt.want {
			t.Errorf("capCPU(%+v, %q) = %+v, want %+v", tt.f, tt.isa, got, tt.want)
		}
	}
}
