package dist

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// bindingHint warns when the launcher bound this rank to a small share of
// the node's CPUs: Go sizes GOMAXPROCS (and so MAI's worker pool) to the
// CPUs a process may run on, and mpirun binds each rank to one core by
// default. It returns "" when the binding looks deliberate or is unknown.
func bindingHint(getenv func(string) string, allowed int, online string) string {
	total := countCPUList(online)
	local, err := strconv.Atoi(getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
	if err != nil {
		local, err = strconv.Atoi(getenv("SLURM_NTASKS_PER_NODE"))
	}
	if err != nil || local < 1 || total <= 0 || allowed <= 0 {
		return ""
	}
	if local*allowed*2 > total {
		return ""
	}
	return fmt.Sprintf("this rank may run on %d of the node's %d CPUs with %d ranks on the node, so GOMAXPROCS is %d; "+
		"mpirun binds each rank to one core by default: pass --bind-to none (one rank per node) or "+
		"--map-by ppr:%d:node:PE=%d (Slurm: --cpus-per-task=%d)",
		allowed, total, local, runtime.GOMAXPROCS(0), local, max(1, total/local), max(1, total/local))
}

// countCPUList counts the CPUs in a Linux CPU list such as "0-3,8,10-11".
func countCPUList(s string) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		if a < 0 || b >= 1<<20 { // far beyond any machine: not a CPU list
			return 0
		}
		n += b - a + 1
	}
	return n
}

// onlineCPUs reads the node's online CPU list, or "" where there is none.
func onlineCPUs() string {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return ""
	}
	return string(b)
}
