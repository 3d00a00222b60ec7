package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mai-llm/mai/eval"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/train"
)

func init() {
	c := train.Defaults()
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Pretrain a model on token shards (or a text folder, tokenized byte-level)",
		Example: `  mai train --preset tiny --data shards/ --out runs/tiny --steps 2000
  mai train --config run.yaml
  mai train --init runs/base --sft chats.jsonl --out runs/sft --steps 300 --lr 3e-4
  mai train --init runs/base --sft teacher.jsonl --distill-weight 0.5 --out runs/distilled --steps 300
  mpirun --bind-to none -np 4 mai train --preset tiny-moe --data shards/ --out runs/moe --batch 2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sum, err := train.Launch(cmd.Context(), c, os.Stderr, func(tr *train.Trainer) (err error) {
				if c.Tasks != "" {
					tr.Tasks, err = taskHook(c, tr.TokenizerName())
				}
				return err
			})
			if errors.Is(err, train.ErrStopped) {
				return nil
			}
			if err != nil {
				return err
			}
			if sum.Rank == 0 {
				fmt.Printf("done: %d steps, loss %.4f, val %.4f, model in %s\n", sum.Steps, sum.Loss, sum.ValLoss, sum.ModelDir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Preset, "preset", c.Preset, "model preset (see mai info --presets)")
	f.StringVar(&c.Init, "init", c.Init, "start from this model folder instead of a fresh preset")
	f.StringVar(&c.Data, "data", c.Data, "shard directory (mai data prepare) or a folder of text/source files")
	f.StringVar(&c.SFT, "sft", c.SFT, "supervised fine-tuning on chat JSONL ({\"messages\": [...]}); loss on assistant turns only")
	f.StringVar(&c.Tokenizer, "tokenizer", c.Tokenizer, "tokenizer for --sft data (default: the --init model's)")
	f.Float64Var(&c.DistillWeight, "distill-weight", c.DistillWeight, "with --sft: weight α of the KL to the teacher's top-k logprobs stored in the data (mai synth --logprobs K); the loss on the teacher's tokens gets 1−α (0: plain SFT; below 1)")
	f.BoolVar(&c.DistillRenorm, "distill-renorm", c.DistillRenorm, "with --distill-weight: renormalize the teacher's top-k to 1 instead of keeping the mass outside it as one bucket")
	f.StringVar(&c.Out, "out", c.Out, "run directory: checkpoints, metrics.jsonl; an existing run resumes")
	f.IntVar(&c.Batch, "batch", c.Batch, "sequences per micro-batch")
	f.IntVar(&c.Seq, "seq", c.Seq, "tokens per sequence")
	f.IntVar(&c.Accum, "accum", c.Accum, "micro-batches per optimizer step")
	f.IntVar(&c.Steps, "steps", c.Steps, "optimizer steps")
	f.Float64Var(&c.Minutes, "minutes", c.Minutes, "stop after this many minutes (0: no limit)")
	f.Float64Var(&c.LR, "lr", c.LR, "peak learning rate")
	f.Float64Var(&c.MinLR, "min-lr", c.MinLR, "final learning rate")
	f.IntVar(&c.Warmup, "warmup", c.Warmup, "warmup steps")
	f.StringVar(&c.Schedule, "schedule", c.Schedule, "cosine or wsd (warmup-stable-decay)")
	f.Float64Var(&c.DecayFrac, "decay-frac", c.DecayFrac, "fraction of steps spent decaying (wsd)")
	f.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "AdamW decoupled weight decay")
	f.Float64Var(&c.Beta1, "beta1", c.Beta1, "AdamW beta1")
	f.Float64Var(&c.Beta2, "beta2", c.Beta2, "AdamW beta2")
	f.Float64Var(&c.Eps, "eps", c.Eps, "AdamW epsilon")
	f.Float64Var(&c.Clip, "clip", c.Clip, "global gradient-norm clip (0: off)")
	f.IntVar(&c.EvalEvery, "eval-every", c.EvalEvery, "validate every N steps")
	f.IntVar(&c.EvalBatches, "eval-batches", c.EvalBatches, "validation batches")
	f.StringVar(&c.Tasks, "tasks", c.Tasks, "evaluation tasks run during training, comma-separated (see mai eval --list)")
	f.IntVar(&c.TasksEvery, "tasks-every", 200, "run --tasks every N steps")
	f.IntVar(&c.TasksLimit, "tasks-limit", 100, "items per task during training (0: all)")
	f.IntVar(&c.SaveEvery, "save-every", c.SaveEvery, "checkpoint every N steps")
	f.IntVar(&c.Keep, "keep", c.Keep, "checkpoints to keep")
	f.IntVar(&c.LogEvery, "log-every", c.LogEvery, "progress line every N steps")
	f.Uint64Var(&c.Seed, "seed", c.Seed, "seed for initialization and data order")
	f.IntVar(&c.Threads, "threads", c.Threads, "CPU threads (0: all cores)")
	f.StringVar(&c.Device, "device", "auto", "where the step runs: cpu, cuda, or auto (cuda when a GPU opens and the model is supported, else cpu; the choice is logged)")
	f.StringVar(&c.Dist, "dist", "auto", "communicator: auto (MPI when started by mpirun or srun), local or mpi")
	f.IntVar(&c.Zero, "zero", c.Zero, "0: every rank keeps all gradients and optimizer state; 1: shard the optimizer state over ranks (ZeRO-1); 2: shard gradients too (ZeRO-2); 3: shard the parameters too, gathered block by block in the forward and backward passes (ZeRO-3)")
	f.IntVar(&c.ExpertParallel, "expert-parallel", c.ExpertParallel, "ranks sharing one copy of the MoE experts (0: the most that divide ranks and experts)")
	f.Float64Var(&c.CapacityFactor, "capacity-factor", c.CapacityFactor, "MoE expert capacity factor per rank (0: no cap, no dropped tokens)")
	f.Float64Var(&c.BucketMB, "bucket-mb", c.BucketMB, "gradient reduction bucket size in MiB (0: 25; with --zero 2, one bucket per block; --zero 3 always uses one bucket per block)")
	f.IntVar(&c.StopAfter, "stop-after", c.StopAfter, "exit after this step without a final checkpoint (testing)")
	f.MarkHidden("stop-after")
	configFlag(cmd)
	rootCmd.AddCommand(cmd)
}

// taskHook evaluates the model being trained on tasks through the eval
// package (train cannot import eval: it sits above train).
func taskHook(c train.Config, tok string) (func(context.Context, int, *model.Model) (map[string]float64, error), error) {
	tasks, err := eval.LoadTasks(c.Tasks)
	if err != nil {
		return nil, err
	}
	codec, err := eval.OpenCodec(tok)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, step int, m *model.Model) (map[string]float64, error) {
		r, err := eval.Run(ctx, eval.NewLocal(m, codec, eval.LocalOptions{Name: "train"}), tasks, eval.Options{Limit: c.TasksLimit, Seed: c.Seed})
		if err != nil {
			return nil, err
		}
		return r.Flat(), nil
	}, nil
}
