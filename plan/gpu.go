package plan

import (
	"fmt"
	"sort"
	"strings"
)

// GPU describes one accelerator model as the planner sees it. Bandwidths are
// per GPU and per direction, in 10^9 bytes per second; memory is in 10^9 bytes
// (the nominal capacity, which is slightly conservative: an "80 GB" H100 holds
// 80 GiB, part of which the driver reserves).
type GPU struct {
	Name        string  `json:"name"`
	PeakTFLOPS  float64 `json:"peak_tflops"`   // dense BF16 tensor-core peak, no sparsity
	MemoryGB    float64 `json:"memory_gb"`     // HBM capacity
	HBMGBs      float64 `json:"hbm_gbs"`       // HBM bandwidth
	NVLinkGBs   float64 `json:"nvlink_gbs"`    // intra-node bandwidth per GPU, one direction
	NetGBs      float64 `json:"net_gbs"`       // inter-node (InfiniBand/RoCE) bandwidth per GPU, one direction
	GPUsPerNode int     `json:"gpus_per_node"` // GPUs that share one NVLink domain
	PriceUSD    float64 `json:"price_usd"`     // default rental price per GPU-hour
	Source      string  `json:"source"`        // where the figures come from
}

// gpus is the GPU registry. Figures are NVIDIA's SXM datasheet numbers: BF16
// dense peak (the datasheets quote sparse figures at twice these), HBM size and
// bandwidth, NVLink bandwidth halved to one direction, and one 400 Gb/s
// (50 GB/s) NIC per GPU for Hopper and Blackwell, 200 Gb/s (25 GB/s) for A100
// (DGX A100 / Selene). Prices are assumptions for multi-month reserved capacity
// and exist to be overridden with --price; the H800 price is the one the
// DeepSeek-V3 report used ($2 per GPU-hour).
var gpus = map[string]GPU{
	"h100": {Name: "h100", PeakTFLOPS: 989, MemoryGB: 80, HBMGBs: 3350, NVLinkGBs: 450, NetGBs: 50, GPUsPerNode: 8, PriceUSD: 2.50,
		Source: "NVIDIA H100 SXM5 datasheet: 989 TFLOP/s BF16 dense, 80 GB HBM3 at 3.35 TB/s, NVLink 4 900 GB/s; 400 Gb/s NIC per GPU"},
	"h200": {Name: "h200", PeakTFLOPS: 989, MemoryGB: 141, HBMGBs: 4800, NVLinkGBs: 450, NetGBs: 50, GPUsPerNode: 8, PriceUSD: 3.50,
		Source: "NVIDIA H200 SXM datasheet: 989 TFLOP/s BF16 dense, 141 GB HBM3e at 4.8 TB/s, NVLink 4 900 GB/s; 400 Gb/s NIC per GPU"},
	"h800": {Name: "h800", PeakTFLOPS: 989, MemoryGB: 80, HBMGBs: 3350, NVLinkGBs: 200, NetGBs: 50, GPUsPerNode: 8, PriceUSD: 2.00,
		Source: "H800 SXM: H100 compute and memory, NVLink cut to 400 GB/s; 400 Gb/s IB per GPU as in the DeepSeek-V3 report; $2/GPU-hour as assumed there"},
	"a100": {Name: "a100", PeakTFLOPS: 312, MemoryGB: 80, HBMGBs: 2039, NVLinkGBs: 300, NetGBs: 25, GPUsPerNode: 8, PriceUSD: 1.80,
		Source: "NVIDIA A100 80GB SXM datasheet: 312 TFLOP/s BF16 dense, 80 GB HBM2e at 2.0 TB/s, NVLink 3 600 GB/s; 200 Gb/s HDR IB per GPU (DGX A100)"},
	"a100-40": {Name: "a100-40", PeakTFLOPS: 312, MemoryGB: 40, HBMGBs: 1555, NVLinkGBs: 300, NetGBs: 25, GPUsPerNode: 8, PriceUSD: 1.30,
		Source: "NVIDIA A100 40GB SXM datasheet: 312 TFLOP/s BF16 dense, 40 GB HBM2 at 1.56 TB/s, NVLink 3 600 GB/s; 200 Gb/s HDR IB per GPU"},
	"b200": {Name: "b200", PeakTFLOPS: 2250, MemoryGB: 180, HBMGBs: 8000, NVLinkGBs: 900, NetGBs: 50, GPUsPerNode: 8, PriceUSD: 5.00,
		Source: "NVIDIA HGX B200 datasheet: 2.25 PFLOP/s BF16 dense, 180 GB HBM3e at 8 TB/s, NVLink 5 1.8 TB/s; 400 Gb/s NIC per GPU"},
}

// gpuAliases maps accepted spellings to registry names.
var gpuAliases = map[string]string{
	"a100-80": "a100", "a100-80gb": "a100", "a100-40gb": "a100-40",
	"h100-80gb": "h100", "h100-sxm": "h100", "h200-141gb": "h200",
}

// GPUs returns the names of the known GPUs, sorted.
func GPUs() []string {
	names := make([]string, 0, len(gpus))
	for n := range gpus {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupGPU returns the specification of a named GPU (case-insensitive).
func LookupGPU(name string) (GPU, error) {
	key := strings.ToLower(strings.TrimSpace(name))
	if a, ok := gpuAliases[key]; ok {
		key = a
	}
	g, ok := gpus[key]
	if !ok {
		return GPU{}, fmt.Errorf("unknown GPU %q (known: %s)", name, strings.Join(GPUs(), ", "))
	}
	return g, nil
}

// MFUDefault is an assumed model-FLOPs utilization with the published run it
// comes from.
type MFUDefault struct {
	MFU    float64 `json:"mfu"`
	Source string  `json:"source"`
}

// DefaultMFU returns the MFU assumed for a GPU and a dense or MoE model when
// the caller gives none. MFU here counts model FLOPs only (6 per active
// parameter per token plus attention), never recomputation, against the dense
// BF16 peak, over the whole run.
func DefaultMFU(g GPU, moe bool) MFUDefault {
	blackwell := g.Name == "b200"
	ampere := strings.HasPrefix(g.Name, "a100")
	switch {
	case !moe && blackwell:
		return MFUDefault{0.35, "assumption: Hopper's 40% lowered, since B200 doubles peak FLOP/s but not the per-GPU network; no large published BF16 B200 run yet"}
	case !moe && ampere:
		return MFUDefault{0.40, "Narayanan et al. 2021 (Megatron-LM, SC21): 140-163 TFLOP/s per A100 counted with full recomputation (8TP FLOPs) = 34-39% MFU; Korthikanti et al. 2022: 54.2% MFU for 530B on 2240 A100s with selective recomputation"}
	case !moe:
		return MFUDefault{0.40, "Llama 3 report (Meta 2024, Table 4): Llama 3.1 405B at 38-43% BF16 MFU on 8K-16K H100s"}
	case blackwell:
		return MFUDefault{0.25, "assumption: the Hopper MoE figure lowered for B200's higher FLOP/s per byte of network"}
	default:
		return MFUDefault{0.30, "MoE runs sit lower: Megatron-Core Qwen3-235B-A22B on 256 H100s, 276 BF16 TFLOP/s per GPU = 28% (Megatron-MoE-ModelZoo); DeepSeek-V3, 2.664M H800-hours for 14.8T tokens = ~35% of BF16 peak for 6x37B FLOPs/token, reached with FP8 GEMMs"}
	}
}
