package cpu

// ISAEnv names the environment variable that caps the instruction sets the
// kernels use: "avx2" runs the AVX2 kernels on an AVX-512 CPU, "go" the
// portable ones. It is for measuring what a smaller CPU would get, and for
// ruling a kernel out when chasing a bug; unset, the best the CPU has runs.
const ISAEnv = "MAI_CPU"

// ISA names the instruction set the kernels run with: "avx512", "avx512-vnni",
// "avx2" or "go".
func ISA() string {
	switch {
	case dotKernels().name == "vnni":
		return "avx512-vnni"
	case hostCPU.AVX512F:
		return "avx512"
	case hostCPU.AVX2FMA:
		return "avx2"
	}
	return "go"
}
