package cpu

import (
	"fmt"
	"log/slog"
	"os"
)

// cpuid executes the CPUID instruction for leaf eaxArg, subleaf ecxArg.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// xgetbv reads extended control register 0 (which register states the OS saves).
func xgetbv() (eax, edx uint32)

// cpuFeatures are the instruction-set extensions the kernels select on.
type cpuFeatures struct {
	AVX2FMA bool // AVX2 and FMA3, with YMM state enabled by the OS
	AVX512F bool // AVX-512 Foundation, with ZMM state enabled by the OS
}

// hostCPU holds what this CPU supports, detected once at start-up and
// capped by $MAI_CPU.
var hostCPU = capCPU(detectCPU(), os.Getenv(ISAEnv))

// capCPU returns f without the extensions above isa ("avx512", "avx2" or
// "go"; empty keeps f). An unknown name is logged and ignored, so a typo
// costs speed, never a failed start.
func capCPU(f cpuFeatures, isa string) cpuFeatures {
	switch isa {
	case "", "avx512":
	case "avx2":
		f.AVX512F = false
	case "go":
		f = cpuFeatures{}
	default:
		slog.Warn(fmt.Sprintf("%s=%q is not one of avx512, avx2, go: ignored", ISAEnv, isa))
	}
	return f
}

func detectCPU() cpuFeatures {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return cpuFeatures{}
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
	)
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return cpuFeatures{}
	}
	xcr0, _ := xgetbv()
	const (
		ymmState = 0b110      // SSE and AVX state
		zmmState = 0b11100110 // plus opmask, ZMM0-15 upper, ZMM16-31
	)
	if xcr0&ymmState != ymmState {
		return cpuFeatures{}
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return cpuFeatures{
		AVX2FMA: ebx7&(1<<5) != 0,
		AVX512F: ebx7&(1<<16) != 0 && xcr0&zmmState == zmmState,
	}
}
