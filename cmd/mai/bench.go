package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/spf13/cobra"
)

// benchCmd is the parent of the benchmark subcommands (gemm here; train and
// generate add themselves from their own files).
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Measure the speed of kernels, training and generation",
}

var benchGemmFlags struct {
	m, n, k        int
	transA, transB bool
	threads        int
	runs           int
	kernel         string
	json           bool
}

var benchGemmCmd = &cobra.Command{
	Use:   "gemm",
	Short: "Measure the CPU GEMM against the measured FMA peak",
	Long: `Measure the CPU GEMM (C = op(A)·op(B), float32, row-major) in GFLOP/s and as a
fraction of the FMA peak measured on the same threads just before.

With no size flags it runs the GEMMs of a GPT-2 124M training step at 4096
tokens (4096×768×768, 4096×768×3072, 4096×3072×768 as m×n×k) in all four
transpose variants. Times are medians of --runs runs; CPU time is shown beside
wall time because a shared machine lends its cores to other work.`,
	Args: cobra.NoArgs,
	RunE: runBenchGemm,
}

func init() {
	f := benchGemmCmd.Flags()
	f.IntVar(&benchGemmFlags.m, "m", 0, "rows of op(A) and C (0: the GPT-2 shapes)")
	f.IntVar(&benchGemmFlags.n, "n", 0, "columns of op(B) and C (0: the GPT-2 shapes)")
	f.IntVar(&benchGemmFlags.k, "k", 0, "columns of op(A), rows of op(B) (0: the GPT-2 shapes)")
	f.BoolVar(&benchGemmFlags.transA, "transa", false, "A is stored k×m (only with sizes)")
	f.BoolVar(&benchGemmFlags.transB, "transb", false, "B is stored n×k (only with sizes)")
	f.IntVar(&benchGemmFlags.threads, "threads", 0, "worker threads (0: GOMAXPROCS)")
	f.IntVar(&benchGemmFlags.runs, "runs", 5, "timed runs per shape; the median is reported")
	f.StringVar(&benchGemmFlags.kernel, "kernel", "", "microkernel to use, e.g. avx2-6x16 (default: the one Gemm picks for this CPU)")
	f.BoolVar(&benchGemmFlags.json, "json", false, "print JSON instead of a table")
	benchCmd.AddCommand(benchGemmCmd)
	rootCmd.AddCommand(benchCmd)
}

func runBenchGemm(cmd *cobra.Command, _ []string) error {
	fl := benchGemmFlags
	if fl.threads < 0 {
		return fmt.Errorf("bench gemm: --threads must be 0 or more, got %d", fl.threads)
	}
	if fl.runs < 1 {
		return fmt.Errorf("bench gemm: --runs must be at least 1, got %d", fl.runs)
	}
	var cfgs []cpu.GemmBenchConfig
	sized := cmd.Flags().Changed("m") || cmd.Flags().Changed("n") || cmd.Flags().Changed("k")
	if sized {
		if fl.m <= 0 || fl.n <= 0 || fl.k <= 0 {
			return fmt.Errorf("bench gemm: --m, --n and --k must all be positive, got %d, %d, %d", fl.m, fl.n, fl.k)
		}
		cfgs = append(cfgs, cpu.GemmBenchConfig{M: fl.m, N: fl.n, K: fl.k, TransA: fl.transA, TransB: fl.transB, Runs: fl.runs, Kernel: fl.kernel})
	} else {
		if cmd.Flags().Changed("transa") || cmd.Flags().Changed("transb") {
			return fmt.Errorf("bench gemm: --transa and --transb need --m, --n and --k")
		}
		for _, s := range [][3]int{{4096, 768, 768}, {4096, 768, 3072}, {4096, 3072, 768}} {
			for _, t := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				cfgs = append(cfgs, cpu.GemmBenchConfig{M: s[0], N: s[1], K: s[2], TransA: t[0], TransB: t[1], Runs: fl.runs, Kernel: fl.kernel})
			}
		}
	}
	p := cpu.NewPool(fl.threads)
	peak, err := cpu.MeasurePeakFor(p, fl.kernel)
	if err != nil {
		return fmt.Errorf("bench gemm: %w", err)
	}
	var results []cpu.GemmBenchResult
	for _, cfg := range cfgs {
		r, err := cpu.BenchGemm(p, cfg, peak)
		if err != nil {
			return fmt.Errorf("bench gemm: %w", err)
		}
		results = append(results, r)
		if !fl.json && len(cfgs) > 1 {
			fmt.Fprintf(os.Stderr, "\r%d/%d", len(results), len(cfgs))
		}
	}
	if !fl.json && len(cfgs) > 1 {
		fmt.Fprint(os.Stderr, "\r")
	}
	out := cmd.OutOrStdout()
	if fl.json {
		return writeBenchGemmJSON(out, results)
	}
	return writeBenchGemmTable(out, peak, results)
}

func writeBenchGemmJSON(w io.Writer, results []cpu.GemmBenchResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	var v any = results
	if len(results) == 1 {
		v = results[0]
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("bench gemm: writing JSON: %w", err)
	}
	return nil
}

func writeBenchGemmTable(w io.Writer, peak cpu.Peak, results []cpu.GemmBenchResult) error {
	fmt.Fprintf(w, "kernel %s, %d threads; FMA peak (%s): %.1f GFLOP/s all threads over wall time, %.1f over CPU time; per thread",
		results[0].Kernel, len(peak.PerThread), peak.ISA, peak.GFLOPS, peak.CPUGFLOPS)
	for _, g := range peak.PerThread {
		fmt.Fprintf(w, " %.1f", g)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "m\tn\tk\ttrans\twall ms\tcpu ms\tGFLOP/s\tof peak\tGFLOP/s (cpu)\tof peak (cpu)\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%.2f\t%.2f\t%.1f\t%.0f%%\t%.1f\t%.0f%%\t\n",
			r.M, r.N, r.K, r.Trans, r.WallSeconds*1e3, r.CPUSeconds*1e3,
			r.GFLOPS, 100*r.FractionOfPeak, r.CPUGFLOPS, 100*r.CPUFractionOfPeak)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench gemm: writing table: %w", err)
	}
	return nil
}
