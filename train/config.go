// Package train is MAI's trainer: the step loop, learning-rate schedule,
// gradient accumulation, clipping, periodic validation, metrics, and atomic
// checkpoints with exact resume.
package train

import (
	"fmt"
	"math"
)

// Config is everything a training run needs. Field names double as CLI flag
// names and YAML keys (see `mai train --config run.yaml`).
type Config struct {
	Preset string `json:"preset"` // model preset when starting fresh
	Init   string `json:"init"`   // start from this HF/MAI model folder instead
	Data   string `json:"data"`   // shard directory (from `mai data prepare`)
	// SFT is a chat JSONL file: supervised fine-tuning on assistant turns.
	SFT string `json:"sft,omitempty"`
	// Tokenizer encodes SFT data (default: the --init model's tokenizer, else byte).
	Tokenizer string  `json:"tokenizer,omitempty"`
	Out       string  `json:"out"`      // run directory: checkpoints, metrics
	Batch     int     `json:"batch"`    // sequences per micro-batch
	Seq       int     `json:"seq"`      // tokens per sequence
	Accum     int     `json:"accum"`    // micro-batches per optimizer step
	Steps     int     `json:"steps"`    // optimizer steps in the run (schedule length)
	Minutes   float64 `json:"minutes"`  // stop early after this wall time (0: no limit)
	LR        float64 `json:"lr"`       // peak learning rate
	MinLR     float64 `json:"min_lr"`   // final learning rate
	Warmup    int     `json:"warmup"`   // linear warmup steps
	Schedule  string  `json:"schedule"` // cosine or wsd
	// DecayFrac is the fraction of steps spent decaying in the WSD schedule.
	DecayFrac   float64 `json:"decay_frac"`
	WeightDecay float64 `json:"weight_decay"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	Clip        float64 `json:"clip"` // global gradient-norm clip (0: off)
	EvalEvery   int     `json:"eval_every"`
	EvalBatches int     `json:"eval_batches"`
	// Tasks lists evaluation tasks run every TasksEvery steps through
	// Trainer.Tasks (mai train --tasks; see mai eval).
	Tasks      string `json:"tasks,omitempty"`
	TasksEvery int    `json:"tasks_every,omitempty"`
	TasksLimit int    `json:"tasks_limit,omitempty"`
	SaveEvery  int    `json:"save_every"`
	Keep       int    `json:"keep"` // checkpoints kept (older ones are deleted)
	LogEvery   int    `json:"log_every"`
	Seed       uint64 `json:"seed"`
	Threads    int    `json:"threads"`
	// Device runs the step on cpu, cuda, or auto (cuda when a GPU opens
	// and the model is supported, else cpu); empty means cpu.
	Device string `json:"device,omitempty"`
	// StopAfter ends the process after this step without a final
	// checkpoint, as if it had been killed (for resume tests).
	StopAfter int `json:"stop_after"`

	// Distributed training (see docs/distributed-training.md). Batch is per
	// rank: the global batch is Batch × Accum × ranks.
	Dist           string  `json:"dist,omitempty"`            // communicator: auto (MPI when launched by mpirun/srun), local or mpi
	Zero           int     `json:"zero,omitempty"`            // 0: replicated; 1: sharded optimizer state (ZeRO-1); 2: sharded gradients too (ZeRO-2); 3: and block parameters (ZeRO-3)
	ExpertParallel int     `json:"expert_parallel,omitempty"` // ranks that share one copy of the experts (0: the most that divide ranks and experts)
	CapacityFactor float64 `json:"capacity_factor,omitempty"` // MoE expert capacity per rank (0: no cap, no dropped tokens)
	BucketMB       float64 `json:"bucket_mb,omitempty"`       // gradient reduction bucket size in MiB (0: 25; ZeRO-2: one per block)

	// Distillation from the teacher's logprobs in the SFT data (train/distill.go).
	DistillConfig
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{Preset: "tiny", Out: "runs/mai", Batch: 8, Seq: 128, Accum: 1, Steps: 1000,
		LR: 3e-3, MinLR: 3e-4, Warmup: 50, Schedule: "cosine", DecayFrac: 0.2, WeightDecay: 0.1,
		Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Clip: 1, EvalEvery: 100, EvalBatches: 8, SaveEvery: 200,
		Keep: 2, LogEvery: 10, Seed: 1}
}

// Validate checks the configuration and says which field is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Data == "" && c.SFT == "":
		return fmt.Errorf("train: no data: set --data to a shard directory (mai data prepare) or a text corpus, or --sft to chat JSONL")
	case c.Out == "":
		return fmt.Errorf("train: --out must name a run directory")
	case c.Batch <= 0 || c.Seq <= 0 || c.Accum <= 0:
		return fmt.Errorf("train: batch (%d), seq (%d) and accum (%d) must be positive", c.Batch, c.Seq, c.Accum)
	case c.Steps <= 0:
		return fmt.Errorf("train: steps must be positive, got %d", c.Steps)
	case c.LR <= 0 || c.MinLR < 0:
		return fmt.Errorf("train: lr must be positive and min_lr non-negative")
	case c.Schedule != "cosine" && c.Schedule != "wsd":
		return fmt.Errorf("train: unknown schedule %q (want cosine or wsd)", c.Schedule)
	}
	return c.validateDist()
}

// LRAt returns the learning rate for optimizer step s (0-based): linear warmup,
// then cosine decay to MinLR, or warmup-stable-decay with a linear decay over
// the last DecayFrac of the run.
func (c *Config) LRAt(s int) float64 {
	if s < c.Warmup {
		return c.LR * float64(s+1) / float64(c.Warmup)
	}
	if c.Schedule == "wsd" {
		decay := int(math.Ceil(c.DecayFrac * float64(c.Steps)))
		start := c.Steps - decay
		if s < start || decay == 0 {
			return c.LR
		}
		f := float64(s-start+1) / float64(decay)
		return c.LR + (c.MinLR-c.LR)*min(f, 1)
	}
	span := max(1, c.Steps-c.Warmup)
	f := min(1, float64(s-c.Warmup)/float64(span))
	return c.MinLR + 0.5*(c.LR-c.MinLR)*(1+math.Cos(math.Pi*f))
}
