package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/mai-llm/mai/backend/cpu"
	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/dist"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// Metrics is one line of the metrics log (metrics.jsonl).
type Metrics struct {
	Step      int                `json:"step"`
	Loss      float64            `json:"loss"`
	CE        float64            `json:"ce"`
	LR        float64            `json:"lr"`
	GradNorm  float64            `json:"grad_norm"`
	TokensPS  float64            `json:"tokens_per_s"`
	Tokens    int64              `json:"tokens"`
	Elapsed   float64            `json:"elapsed_s"`
	ValLoss   *float64           `json:"val_loss,omitempty"`
	MoELoad   [][]float32        `json:"moe_load,omitempty"`
	Tasks     map[string]float64 `json:"tasks,omitempty"`
	Timestamp string             `json:"time"`
	// MoEDropped is, per MoE layer, the fraction of routing slots dropped
	// by the expert capacity (reported when a capacity factor is set or the
	// job has several ranks).
	MoEDropped []float64 `json:"moe_dropped,omitempty"`
	// Memory is what one rank holds for training (the largest rank's
	// figures in a distributed job).
	Memory *Memory `json:"memory,omitempty"`
}

// Summary is what a finished run reports.
type Summary struct {
	Steps    int
	Loss     float64
	ValLoss  float64
	Tokens   int64
	Elapsed  time.Duration
	ModelDir string
	Stopped  bool // stopped by the time limit before Steps
	Unigram  float64
	Rank     int // this process's rank in the job
}

// Trainer runs one training job.
type Trainer struct {
	Cfg   Config
	Model *model.Model
	Opt   *nn.AdamW
	// Log receives progress lines (one per LogEvery steps); only rank 0
	// writes them.
	Log io.Writer
	// Comm is the job's communicator (dist.Local() for one process).
	Comm dist.Comm
	// Tasks, when set, evaluates the model every Cfg.TasksEvery steps; its
	// metrics go to the metrics log and the progress line.
	Tasks func(ctx context.Context, step int, m *model.Model) (map[string]float64, error)

	pool       *cpu.Pool
	train, val *data.Dataset
	loader     *data.Loader
	step       int
	tokens     int64
	elapsed    float64
	metrics    *os.File
	tok        *tokenizer.Tokenizer // the data's tokenizer, saved with checkpoints
	tokName    string
	sft        *SFTLoader // supervised fine-tuning batches instead of loader
	sftVal     *SFTSet
	par        *model.Parallel // nil for one process without a capacity factor
	dp         *dataParallel   // nil for one process
	mem        Memory          // training memory per rank
	gpu        *deviceState    // nil: the step runs on the CPU (device.go)
	distill    *distiller      // nil without --distill-weight
}

// New prepares a trainer: opens the data, builds or resumes the model.
func New(cfg Config, log io.Writer) (*Trainer, error) {
	return NewWithComm(cfg, log, nil)
}

// NewWithComm is New for one rank of a distributed job over comm (nil means
// dist.Local()). Every rank of comm must call it.
func NewWithComm(cfg Config, log io.Writer, comm dist.Comm) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.DistillConfig.validate(cfg.SFT != ""); err != nil {
		return nil, err
	}
	if comm == nil {
		comm = dist.Local()
	}
	if comm.Rank() != 0 {
		log = nil
	}
	t := &Trainer{Cfg: cfg, Log: log, Comm: comm, pool: cpu.NewPool(cfg.Threads)}
	var err error
	if cfg.SFT != "" {
		if err := t.openSFT(); err != nil {
			return nil, err
		}
	} else if err := t.openShards(); err != nil {
		return nil, err
	}
	if err := t.partitionData(); err != nil {
		return nil, err
	}
	ck, err := latestCheckpoint(cfg.Out)
	if err != nil {
		return nil, err
	}
	if ck != "" {
		if err := t.resume(ck); err != nil {
			return nil, fmt.Errorf("train: resume from %s: %w", ck, err)
		}
		slog.Info("resumed", "checkpoint", ck, "step", t.step)
	} else if err := t.fresh(); err != nil {
		return nil, err
	}
	if v, _ := t.vocab(); t.Model.Cfg.Vocab < v {
		return nil, fmt.Errorf("train: the data's vocabulary (%d, tokenizer %q) is larger than the model's (%d)", v, t.tokName, t.Model.Cfg.Vocab)
	}
	if cfg.Seq > t.Model.Cfg.MaxSeq {
		return nil, fmt.Errorf("train: seq %d exceeds the model's context length %d", cfg.Seq, t.Model.Cfg.MaxSeq)
	}
	t.Model.Pool = t.pool
	if err := t.setupParallel(); err != nil {
		return nil, err
	}
	if err := t.openDevice(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Trainer) fresh() error {
	var m *model.Model
	var err error
	if t.Cfg.Init != "" {
		var dir string
		if dir, err = model.ResolveDir(t.Cfg.Init); err == nil {
			m, err = model.Load(dir, true)
		}
	} else {
		var c model.Config
		if c, err = model.Preset(t.Cfg.Preset); err == nil {
			v, eot := t.vocab()
			if v > 0 && c.Vocab != v {
				c.Vocab = v // a preset adapts to the data's tokenizer
			}
			if eot >= 0 {
				c.EOS = eot
			}
			// The ranks of a distributed job allocate their own gradients.
			m, err = model.New(c, t.Comm.Size() == 1)
		}
		if err == nil {
			m.Init(t.Cfg.Seed)
		}
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.Model = m
	n := len(m.Params)
	if t.Comm.Size() > 1 {
		n = 0 // the ranks allocate the moments of their own shards
	}
	t.Opt = nn.NewAdamW(n, t.Cfg.Beta1, t.Cfg.Beta2, t.Cfg.Eps, t.Cfg.WeightDecay)
	return nil
}

// Run trains until Steps (or the time limit) and writes a final checkpoint.
func (t *Trainer) Run(ctx context.Context) (*Summary, error) {
	cfg := &t.Cfg
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var err error
	if t.Comm.Rank() == 0 {
		if t.metrics, err = openMetrics(filepath.Join(cfg.Out, "metrics.jsonl"), t.step); err != nil {
			return nil, err
		}
		defer t.metrics.Close()
	}

	B, T := cfg.Batch, cfg.Seq
	x, y := make([]int32, B*T), make([]int32, B*T)
	var pk *model.Packed
	if t.sft != nil {
		pk = &model.Packed{Pos: make([]int32, B*T), Start: make([]int32, B*T)}
	}
	tp := nn.NewTape(t.pool, true)
	start := time.Now()
	base := t.elapsed
	sum := &Summary{}
	lastLog, lastTokens := time.Now(), t.tokens
	for t.step < cfg.Steps {
		stop, err := t.shouldStop(ctx, start)
		if err != nil {
			return nil, err
		}
		if stop {
			sum.Stopped = true
			break
		}
		t.Model.ZeroGrad()
		if t.par != nil {
			t.par.ResetCounts()
		}
		var lossSum, ceSum float64
		var load [][]float32
		for k := range cfg.Accum {
			if t.sft != nil {
				t.sft.Next(x, y, pk.Pos, pk.Start)
			} else if err := t.loader.Next(x, y); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
			if t.gpu != nil { // the step runs on the device (device.go)
				l, ce, ld, err := t.gpu.microBatch(k, x, y, B, T, pk, cfg.Accum)
				if err != nil {
					return nil, fmt.Errorf("train: step %d: %w", t.step, err)
				}
				lossSum, ceSum, load = lossSum+l, ceSum+ce, ld
				continue
			}
			tp.Reset()
			loss, ce, out, err := t.Model.LossParallel(tp, t.par, x, y, B, T, pk)
			if err == nil && t.distill != nil {
				loss, err = t.distill.mix(tp, loss, ce, t.sft.last, T)
			}
			if err != nil {
				return nil, fmt.Errorf("train: step %d: %w", t.step, err)
			}
			var scaled *nn.Var
			if t.dp == nil {
				scaled = tp.WeightedSum([]*nn.Var{loss}, []float32{1 / float32(cfg.Accum)})
			} else if scaled, err = t.dp.scale(tp, y, ce, out.Aux, k == cfg.Accum-1); err != nil {
				return nil, fmt.Errorf("train: step %d: %w", t.step, err)
			}
			if err := tp.Backward(scaled); err != nil {
				return nil, fmt.Errorf("train: step %d: %w", t.step, err)
			}
			if t.dp != nil {
				if err := t.dp.backwardDone(); err != nil {
					return nil, fmt.Errorf("train: step %d: %w", t.step, err)
				}
			}
			lossSum += float64(loss.Data[0])
			ceSum += float64(ce.Data[0])
			load = out.Load
		}
		loss, ceMean := lossSum/float64(cfg.Accum), ceSum/float64(cfg.Accum)
		dropped, err := t.stepStats(&loss, &ceMean)
		if err != nil {
			return nil, fmt.Errorf("train: step %d: %w", t.step, err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("train: loss is %v at step %d; lower --lr or check the data (the last checkpoint is intact)", loss, t.step)
		}
		var gnorm float64
		if t.gpu != nil {
			if gnorm, err = t.gpu.model.ClipGrads(cfg.Clip); err != nil {
				return nil, fmt.Errorf("train: step %d: %w", t.step, err)
			}
		} else if t.dp == nil {
			gnorm = nn.ClipGrads(t.Model.Grads, cfg.Clip)
		} else if gnorm, err = t.dp.reduce(); err != nil {
			return nil, fmt.Errorf("train: step %d: %w", t.step, err)
		}
		if math.IsNaN(gnorm) || math.IsInf(gnorm, 0) {
			return nil, fmt.Errorf("train: gradient norm is %v at step %d; lower --lr (the last checkpoint is intact)", gnorm, t.step)
		}
		lr := cfg.LRAt(t.step)
		if t.gpu != nil {
			if err := t.gpu.update(lr); err != nil {
				return nil, fmt.Errorf("train: step %d: %w", t.step, err)
			}
		} else if t.dp == nil {
			t.Opt.Update(t.pool, t.Model.Params, t.Model.Grads, t.Model.Segments(), lr)
		} else if err := t.dp.update(lr); err != nil {
			return nil, fmt.Errorf("train: step %d: %w", t.step, err)
		}
		t.step++
		t.tokens += int64(B * T * cfg.Accum * t.Comm.Size())
		t.elapsed = base + time.Since(start).Seconds()

		m := Metrics{Step: t.step, Loss: loss, CE: ceMean, LR: lr, GradNorm: gnorm, MoEDropped: dropped, Memory: &t.mem,
			Tokens: t.tokens, Elapsed: t.elapsed, MoELoad: load, Timestamp: time.Now().UTC().Format(time.RFC3339)}
		if dt := time.Since(lastLog).Seconds(); dt > 0 {
			m.TokensPS = float64(t.tokens-lastTokens) / dt
		}
		if (t.val != nil || t.sftVal != nil) && cfg.EvalEvery > 0 && (t.step%cfg.EvalEvery == 0 || t.step == cfg.Steps) {
			v, err := t.Validate(cfg.EvalBatches)
			if err != nil {
				return nil, err
			}
			m.ValLoss = &v
			sum.ValLoss = v
		}
		if t.Tasks != nil && cfg.TasksEvery > 0 && (t.step%cfg.TasksEvery == 0 || t.step == cfg.Steps) {
			if m.Tasks, err = t.runTasks(ctx); err != nil {
				return nil, fmt.Errorf("train: evaluation at step %d: %w", t.step, err)
			}
		}
		sum.Loss = loss
		if err := t.writeMetrics(&m); err != nil {
			return nil, err
		}
		if cfg.LogEvery > 0 && (t.step%cfg.LogEvery == 0 || t.step == cfg.Steps || m.ValLoss != nil) {
			t.progress(&m, start)
			lastLog, lastTokens = time.Now(), t.tokens
		}
		if cfg.SaveEvery > 0 && t.step%cfg.SaveEvery == 0 && t.step < cfg.Steps {
			if _, err := t.Save(); err != nil {
				return nil, err
			}
		}
		if cfg.StopAfter > 0 && t.step == cfg.StopAfter {
			return nil, ErrStopped
		}
	}
	dir, err := t.Save()
	if err != nil {
		return nil, err
	}
	sum.Steps, sum.Tokens, sum.Elapsed, sum.ModelDir = t.step, t.tokens, time.Since(start), dir
	sum.Rank = t.Comm.Rank()
	return sum, nil
}

// ErrStopped is returned when StopAfter ends a run early on purpose.
var ErrStopped = errors.New("train: stopped by --stop-after")

// Validate returns the mean validation loss over n batches read in order.
func (t *Trainer) Validate(n int) (float64, error) {
	if t.gpu != nil && t.sftVal == nil {
		return t.validateDevice(n) // device.go
	}
	if err := t.pullDevice(); err != nil {
		return 0, err
	}
	if t.sftVal != nil {
		return t.validateSFT(n)
	}
	if t.val == nil {
		return 0, fmt.Errorf("validate: no validation split")
	}
	if t.dp != nil {
		return t.validateDist(n)
	}
	tp := nn.NewTape(t.pool, false)
	return t.validateBatches(n, func(x, y []int32, B, T int) (float64, error) {
		_, ce, _, err := t.Model.Loss(tp, x, y, B, T)
		if err != nil {
			return 0, err
		}
		return float64(ce.Data[0]), nil
	})
}

// validateBatches is the mean of loss over the first n batches of the
// validation split, read in order (one sequence per batch when the split
// is too small for a full one).
func (t *Trainer) validateBatches(n int, loss func(x, y []int32, B, T int) (float64, error)) (float64, error) {
	if t.val == nil {
		return 0, fmt.Errorf("validate: no validation split")
	}
	B, T := t.Cfg.Batch, t.Cfg.Seq
	ld, err := data.NewLoader(t.val, data.LoaderConfig{Batch: B, SeqLen: T, Sequential: true})
	if err != nil {
		// A small validation split: fall back to one sequence per batch.
		if ld, err = data.NewLoader(t.val, data.LoaderConfig{Batch: 1, SeqLen: T, Sequential: true}); err != nil {
			return 0, fmt.Errorf("validate: %w", err)
		}
		B = 1
	}
	n = min(max(n, 1), int(ld.StepsPerEpoch()))
	x, y := make([]int32, B*T), make([]int32, B*T)
	var s float64
	for range n {
		if err := ld.Next(x, y); err != nil {
			return 0, err
		}
		l, err := loss(x, y, B, T)
		if err != nil {
			return 0, err
		}
		s += l
	}
	return s / float64(n), nil
}

func (t *Trainer) progress(m *Metrics, start time.Time) {
	if t.Log == nil {
		return
	}
	done := t.step
	eta := "?"
	if rate := time.Since(start).Seconds() / float64(max(1, done-t.startStep())); rate > 0 {
		left := time.Duration(float64(t.Cfg.Steps-done)*rate) * time.Second
		if t.Cfg.Minutes > 0 {
			left = min(left, time.Duration(t.Cfg.Minutes*60-time.Since(start).Seconds())*time.Second)
		}
		eta = left.Round(time.Second).String()
	}
	line := fmt.Sprintf("step %5d/%d | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | ETA %s",
		done, t.Cfg.Steps, m.Loss, m.LR, m.GradNorm, m.TokensPS, eta)
	if m.ValLoss != nil {
		line += fmt.Sprintf(" | val %.4f", *m.ValLoss)
	}
	if len(m.MoELoad) > 0 {
		line += " | load " + loadSummary(m.MoELoad)
	}
	if len(m.MoEDropped) > 0 {
		line += " | dropped " + droppedSummary(m.MoEDropped)
	}
	for _, k := range sortedKeys(m.Tasks) {
		line += fmt.Sprintf(" | %s %.3f", k, m.Tasks[k])
	}
	fmt.Fprintln(t.Log, line)
}

func (t *Trainer) startStep() int { return 0 }

// TokenizerName names the tokenizer of the training data.
func (t *Trainer) TokenizerName() string { return t.tokName }

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loadSummary reports max/min expert load relative to uniform, averaged over
// layers (1.00 is perfectly balanced).
func loadSummary(load [][]float32) string {
	var hi, lo float64
	for _, l := range load {
		mx, mn := 0.0, math.Inf(1)
		for _, f := range l {
			mx, mn = math.Max(mx, float64(f)), math.Min(mn, float64(f))
		}
		u := 1 / float64(len(l))
		hi += mx / u
		lo += mn / u
	}
	n := float64(len(load))
	return fmt.Sprintf("max %.2f min %.2f", hi/n, lo/n)
}

func (t *Trainer) writeMetrics(m *Metrics) error {
	if t.metrics == nil { // not rank 0
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := t.metrics.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: write metrics: %w", err)
	}
	return nil
}

// openMetrics opens metrics.jsonl for appending, first dropping lines past
// step (written after the checkpoint being resumed), so the log reads as one
// uninterrupted run.
func openMetrics(path string, step int) (*os.File, error) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("train: read metrics: %w", err)
	}
	var keep []byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		line := b[:i]
		if i < len(b) {
			i++
		}
		b = b[i:]
		var m struct {
			Step int `json:"step"`
		}
		if json.Unmarshal(line, &m) == nil && m.Step <= step {
			keep = append(append(keep, line...), '\n')
		}
	}
	if err := os.WriteFile(path, keep, 0o644); err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	return f, nil
}
