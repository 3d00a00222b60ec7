package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/dist"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
)

// DefaultBucketMB is the default size of a gradient all-reduce bucket.
const DefaultBucketMB = 25

// Launch runs one rank of a training job: it opens the communicator that
// cfg.Dist names (auto: MPI when an MPI launcher started the process),
// prepares the data (rank 0 tokenizes a text folder while the others wait),
// builds the trainer, calls setup on it (when not nil), trains, and closes
// the communicator. Every rank of the job calls it.
//
// On an error in a job of several ranks it prints the error with the rank
// and aborts the whole job, so that no rank is left waiting in a
// collective; the launcher then exits non-zero. Run again with the same
// --out to resume from the last checkpoint, with any number of ranks that
// keeps the global batch.
func Launch(ctx context.Context, cfg Config, log io.Writer, setup func(*Trainer) error) (sum *Summary, err error) {
	if err := cfg.validateDist(); err != nil {
		return nil, err
	}
	comm, err := dist.Open(cfg.Dist)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var tr *Trainer
	defer func() {
		if err != nil && !errors.Is(err, ErrStopped) && comm.Size() > 1 {
			fmt.Fprintf(os.Stderr, "mai: %s: %v\n", dist.Describe(comm), err)
			dist.Abort(comm, 1) // does not return in a job of several ranks
		}
		if tr != nil {
			tr.Close()
		}
		if cerr := comm.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("train: %w", cerr)
		}
	}()
	if comm.Size() > 1 {
		slog.Info("distributed training", "comm", dist.Describe(comm))
	}
	if cfg.SFT == "" {
		// Rank 0 tokenizes a text folder once; the others then find its
		// shards.
		var shards string
		if comm.Rank() == 0 {
			if shards, err = EnsureShards(cfg.Data, filepath.Join(cfg.Out, "data"), 0); err != nil {
				return nil, err
			}
		}
		if err := comm.Barrier(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if comm.Rank() != 0 {
			if shards, err = EnsureShards(cfg.Data, filepath.Join(cfg.Out, "data"), 0); err != nil {
				return nil, err
			}
		}
		cfg.Data = shards
	}
	if tr, err = NewWithComm(cfg, log, comm); err != nil {
		return nil, err
	}
	if setup != nil {
		if err := setup(tr); err != nil {
			return nil, err
		}
	}
	return tr.Run(ctx)
}

// partitionData gives this rank its part of every global batch. The
// loader's cursor does not depend on the rank, so a checkpoint restores it.
func (t *Trainer) partitionData() error {
	w := t.Comm.Size()
	if w == 1 {
		return nil
	}
	if t.sft != nil {
		return fmt.Errorf("train: --sft runs on one process for now, not %d ranks", w)
	}
	var err error
	if t.loader, err = data.NewLoader(t.train, data.LoaderConfig{Batch: t.Cfg.Batch, SeqLen: t.Cfg.Seq, Seed: int64(t.Cfg.Seed),
		Rank: t.Comm.Rank(), World: w}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// runTasks runs the Tasks hook on rank 0 (the others go on to the next
// step and wait for it there), after gathering the experts other ranks
// hold.
func (t *Trainer) runTasks(ctx context.Context) (map[string]float64, error) {
	if err := t.pullDevice(); err != nil {
		return nil, err
	}
	if t.dp != nil {
		m, err := t.dp.fullModel()
		if err != nil {
			return nil, err
		}
		if t.Comm.Rank() != 0 {
			return nil, nil
		}
		return t.Tasks(ctx, t.step, m)
	}
	return t.Tasks(ctx, t.step, t.Model)
}

// Close releases the communicators the trainer split from its Comm (not
// the Comm itself) and stops its background reducer.
func (t *Trainer) Close() error {
	if err := t.closeDevice(); err != nil {
		return err
	}
	if t.dp == nil {
		return nil
	}
	dp := t.dp
	t.dp = nil
	close(dp.queue)
	var first error
	for _, c := range dp.comms {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *Config) validateDist() error {
	switch c.Dist {
	case "", "auto", "local", "mpi", "nccl":
	default:
		return fmt.Errorf("train: unknown --dist %q (want auto, local or mpi)", c.Dist)
	}
	switch {
	case c.Zero < 0 || c.Zero > 3:
		return fmt.Errorf("train: --zero %d: want 0 (replicated optimizer state), 1 (sharded optimizer state), 2 (sharded optimizer state and gradients) or 3 (sharded parameters too)", c.Zero)
	case c.ExpertParallel < 0:
		return fmt.Errorf("train: --expert-parallel %d must not be negative", c.ExpertParallel)
	case c.CapacityFactor < 0 || math.IsNaN(c.CapacityFactor):
		return fmt.Errorf("train: --capacity-factor %v must be 0 (no cap) or positive", c.CapacityFactor)
	case c.BucketMB < 0 || math.IsNaN(c.BucketMB):
		return fmt.Errorf("train: --bucket-mb %v must not be negative", c.BucketMB)
	}
	return nil
}

// expertRanks returns how many ranks share one copy of the experts: the
// configured number, or the largest that divides both the world and the
// number of experts.
func expertRanks(cfg *Config, mc *model.Config, world int) (int, error) {
	if mc.Experts == 0 {
		return 1, nil
	}
	if g := cfg.ExpertParallel; g > 0 {
		if world%g != 0 || mc.Experts%g != 0 {
			return 0, fmt.Errorf("train: --expert-parallel %d must divide both the number of ranks (%d) and of experts (%d)", g, world, mc.Experts)
		}
		return g, nil
	}
	g := 1
	for d := 2; d <= world; d++ {
		if world%d == 0 && mc.Experts%d == 0 {
			g = d
		}
	}
	return g, nil
}

// setupParallel prepares the trainer for its communicator. One process
// without a capacity factor keeps the plain code path.
func (t *Trainer) setupParallel() error {
	world := t.Comm
	w, rank := world.Size(), world.Rank()
	if w == 1 {
		if t.Cfg.CapacityFactor > 0 {
			t.par = &model.Parallel{CapacityFactor: t.Cfg.CapacityFactor}
		}
		t.mem = Memory{Params: 4 * int64(len(t.Model.Params)), Grads: 4 * int64(len(t.Model.Grads)),
			Optimizer: 4 * int64(len(t.Opt.M)+len(t.Opt.V))}
		slog.Info("training memory", "params_bytes", t.mem.Params, "grads_bytes", t.mem.Grads, "optimizer_bytes", t.mem.Optimizer)
		return nil
	}
	m := t.Model
	g, err := expertRanks(&t.Cfg, &m.Cfg, w)
	if err != nil {
		return err
	}
	// Every rank starts from rank 0's weights (they agree already when
	// built from the same seed or checkpoint; this makes it certain).
	if err := world.BroadcastFloat32(m.Params, 0); err != nil {
		return fmt.Errorf("train: broadcast weights: %w", err)
	}
	dp := &dataParallel{t: t, world: world, zero: t.Cfg.Zero}
	// Split is collective: every rank makes the same calls in this order.
	grads, err := world.Split(0, rank)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	dp.comms = append(dp.comms, grads)
	var ep, edp dist.Comm
	if g > 1 {
		if ep, err = world.Split(rank/g, rank); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		if edp, err = world.Split(rank%g, rank); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		dp.comms = append(dp.comms, ep, edp)
	}
	t.par = &model.Parallel{Batch: world, Experts: ep, CapacityFactor: t.Cfg.CapacityFactor,
		GradReady: dp.unitDone, Fail: t.fatal}
	elems := 1 // ZeRO-2: one bucket per block, the smallest gradient working set
	if mb := t.Cfg.BucketMB; (mb > 0 || dp.zero < 2) && dp.zero < 3 {
		if mb == 0 {
			mb = DefaultBucketMB
		}
		elems = max(1, int(mb*(1<<20)/4))
	}
	held := dp.plan(m, t.par, grads, edp, elems)
	// This rank's buffers replace the model's full ones (and the full
	// optimizer moments of a resumed run), which are dropped.
	dp.allocate(m, held, t.Opt)
	m.Params, m.Grads = dp.params, dp.grads
	t.Opt.M, t.Opt.V = nil, nil
	if dp.zero == 3 {
		// The parameter all-gathers run on the main goroutine while the
		// reducer uses the gradient communicators: they get their own.
		var egather dist.Comm
		if edp != nil && edp.Size() > 1 {
			if egather, err = world.Split(rank%g, rank); err != nil {
				return fmt.Errorf("train: %w", err)
			}
			dp.comms = append(dp.comms, egather)
		}
		for _, b := range dp.buckets {
			b.gcomm = world
			if b.comm == edp {
				b.gcomm = egather
			}
		}
		t.par.Gather = dp.gather
	}
	dp.queue = make(chan *bucket, len(dp.buckets))
	go dp.worker()
	t.dp = dp
	mx := []float64{float64(dp.mem.Params), float64(dp.mem.Grads), float64(dp.mem.Optimizer)}
	slog.Info("training memory", "rank", rank, "params_bytes", dp.mem.Params, "grads_bytes", dp.mem.Grads, "optimizer_bytes", dp.mem.Optimizer,
		"held_params", dp.local, "kept_params", dp.kept, "model_params", dp.full, "zero", dp.zero, "expert_ranks", g)
	if err := world.AllReduceFloat64(mx, dist.Max); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	// The metrics report the largest rank's figures.
	t.mem = Memory{Params: int64(mx[0]), Grads: int64(mx[1]), Optimizer: int64(mx[2])}
	slog.Debug("data parallel", "ranks", w, "expert_ranks", g, "zero", dp.zero, "buckets", len(dp.buckets))
	return nil
}

// fatal ends the job after a collective failed where no error can be
// returned (inside the backward pass, or in the background reducer).
func (t *Trainer) fatal(err error) {
	slog.Error("collective failed; aborting the job", "comm", dist.Describe(t.Comm), "err", err)
	dist.Abort(t.Comm, 1) // returns only in a one-process job
	if t.dp != nil {
		t.dp.setErr(err)
	}
}

// shouldStop agrees over all ranks on whether to stop: the time limit was
// reached (on any rank) or the context was cancelled (an error).
func (t *Trainer) shouldStop(ctx context.Context, start time.Time) (bool, error) {
	cerr := ctx.Err()
	timeUp := t.Cfg.Minutes > 0 && time.Since(start).Minutes() >= t.Cfg.Minutes
	if t.Comm.Size() == 1 {
		return timeUp, cerr
	}
	flags := []float64{0, 0}
	if cerr != nil {
		flags[0] = 1
	}
	if timeUp {
		flags[1] = 1
	}
	if err := t.Comm.AllReduceFloat64(flags, dist.Max); err != nil {
		return false, fmt.Errorf("train: %w", err)
	}
	if cerr != nil {
		return false, cerr
	}
	if flags[0] > 0 {
		return false, errors.New("train: another rank was interrupted")
	}
	return flags[1] > 0, nil
}

// stepStats turns this rank's step results into the job's: in a
// distributed job it replaces loss and ce by their global values. It
// returns the fraction of routing slots dropped per MoE layer, or nil.
func (t *Trainer) stepStats(loss, ce *float64) ([]float64, error) {
	var routed, dropped []int64
	if t.par != nil {
		routed, dropped = t.par.Routed, t.par.Dropped
	}
	if t.dp == nil {
		return dropFractions(routed, dropped), nil
	}
	v := make([]float64, 0, 2+2*len(routed))
	v = append(v, t.dp.lossAcc, t.dp.ceAcc)
	for i := range routed {
		v = append(v, float64(routed[i]), float64(dropped[i]))
	}
	t.dp.lossAcc, t.dp.ceAcc = 0, 0
	if err := t.Comm.AllReduceFloat64(v, dist.Sum); err != nil {
		return nil, err
	}
	*loss, *ce = v[0], v[1]
	r, d := make([]int64, len(routed)), make([]int64, len(routed))
	for i := range r {
		r[i], d[i] = int64(v[2+2*i]), int64(v[3+2*i])
	}
	return dropFractions(r, d), nil
}

func dropFractions(routed, dropped []int64) []float64 {
	if len(routed) == 0 {
		return nil
	}
	f := make([]float64, len(routed))
	for i := range f {
		if routed[i] > 0 {
			f[i] = float64(dropped[i]) / float64(routed[i])
		}
	}
	return f
}

// droppedSummary reports the dropped fraction of routing slots, averaged
// over MoE layers.
func droppedSummary(f []float64) string {
	var s float64
	for _, v := range f {
		s += v
	}
	return strconv.FormatFloat(100*s/float64(len(f)), 'f', 2, 64) + "%"
}

// validateDist is Validate over all ranks: global validation batch i (the
// one a single process with batch Batch×ranks reads) is split over the
// ranks as the training loader splits a step, and its loss is the mean over
// all its counted targets. When the split is too small for one global
// batch, single sequences are dealt out round-robin instead. Every rank
// runs the same number of forward passes (repeating one with no weight
// where it has run out), because a MoE forward pass is collective.
func (t *Trainer) validateDist(n int) (float64, error) {
	w, rank := t.Comm.Size(), t.Comm.Rank()
	B, T := t.Cfg.Batch, t.Cfg.Seq
	var par *model.Parallel
	if t.par != nil {
		par = &model.Parallel{Batch: t.par.Batch, Experts: t.par.Experts, Gather: t.par.Gather, Fail: t.par.Fail}
	}
	tp := nn.NewTape(t.pool, false)
	eval := func(x, y []int32, b int) (ce float64, count int, err error) {
		_, v, _, err := t.Model.LossParallel(tp, par, x, y, b, T, nil)
		if err != nil {
			return 0, 0, fmt.Errorf("validate: %w", err)
		}
		for _, id := range y {
			if id >= 0 {
				count++
			}
		}
		return float64(v.Data[0]), count, nil
	}
	if ld, err := data.NewLoader(t.val, data.LoaderConfig{Batch: B, SeqLen: T, Sequential: true, Rank: rank, World: w}); err == nil {
		n = min(max(n, 1), int(ld.StepsPerEpoch()))
		x, y := make([]int32, B*T), make([]int32, B*T)
		sums := make([]float64, 2*n) // per batch: Σ ce·count, Σ count
		for i := range n {
			if err := ld.Next(x, y); err != nil {
				return 0, fmt.Errorf("validate: %w", err)
			}
			ce, count, err := eval(x, y, B)
			if err != nil {
				return 0, err
			}
			sums[2*i], sums[2*i+1] = ce*float64(count), float64(count)
		}
		if err := t.Comm.AllReduceFloat64(sums, dist.Sum); err != nil {
			return 0, fmt.Errorf("validate: %w", err)
		}
		var s float64
		for i := range n {
			if sums[2*i+1] > 0 {
				s += sums[2*i] / sums[2*i+1]
			}
		}
		return s / float64(n), nil
	}
	// A small validation split: one sequence per batch, as one process does.
	ld, err := data.NewLoader(t.val, data.LoaderConfig{Batch: 1, SeqLen: T, Sequential: true})
	if err != nil {
		return 0, fmt.Errorf("validate: %w", err)
	}
	n = min(max(n, 1), int(ld.StepsPerEpoch()))
	var xs, ys [][]int32
	for i := range n {
		x, y := make([]int32, T), make([]int32, T)
		if err := ld.Next(x, y); err != nil {
			return 0, fmt.Errorf("validate: %w", err)
		}
		if i%w == rank || i == 0 {
			xs, ys = append(xs, x), append(ys, y)
		}
	}
	sum := []float64{0, 0}
	for j := range (n + w - 1) / w {
		// xs[0] is batch 0, which rank 0 owns and others keep as filler.
		k, real := 0, false
		if rank == 0 {
			k, real = j, j < len(xs)
		} else if j+1 < len(xs) {
			k, real = j+1, true
		}
		ce, _, err := eval(xs[k], ys[k], 1)
		if err != nil {
			return 0, err
		}
		if real {
			sum[0] += ce
			sum[1]++
		}
	}
	if err := t.Comm.AllReduceFloat64(sum, dist.Sum); err != nil {
		return 0, fmt.Errorf("validate: %w", err)
	}
	return sum[0] / sum[1], nil
}

// saveDist gathers the sharded optimizer state and the experts held by
// other ranks, writes the checkpoint on rank 0 (the same files one process
// writes) and waits until it is complete.
func (t *Trainer) saveDist() (string, error) {
	full, err := t.dp.fullModel()
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	expAvg, expAvgSq, err := t.dp.gatherMoments()
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	dir := filepath.Join(t.Cfg.Out, "checkpoints", fmt.Sprintf("step-%07d", t.step))
	if t.Comm.Rank() == 0 {
		mine := t.Model
		t.Model = full
		dir, err = t.save(expAvg, expAvgSq)
		t.Model = mine
		if err != nil {
			return "", err
		}
	}
	if err := t.Comm.Barrier(); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return dir, nil
}

// dataParallel reduces gradients across ranks in buckets while the backward
// pass runs, and applies AdamW to each rank's part of the parameters.
//
// Parameters fall into two groups: those every rank holds (reduced over
// all ranks), and, with expert parallelism, the experts this rank holds
// (reduced over the ranks holding the same experts). A rank allocates
// parameters only for what it holds: its Model.Params is a compact buffer
// without the experts of other ranks. Each group's tensors are packed into
// buckets in the order their gradients become final (last block first); a
// bucket is reduced by a background goroutine as soon as its last block's
// gradients are final.
//
//   - Zero 0: a bucket is all-reduced; every rank keeps all gradients and
//     moments and updates everything it holds.
//   - Zero 1: a bucket is reduce-scattered (the reduced chunk goes back
//     into the gradient buffer); each rank keeps moments for its chunk
//     only, updates that chunk and the updated chunks are all-gathered. The
//     full gradient buffer remains.
//   - Zero 2: as Zero 1, but there is no full gradient buffer: the backward
//     pass writes a bucket's gradients into one of two slots (per group)
//     that are reused from bucket to bucket, every micro-batch's buckets are
//     reduce-scattered and added into this rank's chunk, and the slot is
//     released. The embeddings' bucket (tied to the output head, so written
//     at the start and the end of the backward pass) has its own slot; a
//     bucket no other rank shares is written directly into its chunk.
//   - Zero 3: as Zero 2 with one bucket per block, and a block's bucket
//     also holds only this rank's chunk of the block's parameters. Before
//     the block's forward pass, and again before its backward pass, the
//     chunks are all-gathered into the group's parameter slot (one block
//     at a time: the gathers are synchronous), always at the same place, so
//     both passes find the parameters at the memory the tape refers to; the
//     block's variables point into the slot only while it holds them (nil
//     otherwise, so a stray use fails). AdamW updates the chunk in place
//     and nothing is gathered after the update. The embeddings and the
//     final norm and head (used at both ends of every pass) and buckets no
//     other rank shares stay whole, updated as with Zero 2.
type dataParallel struct {
	t       *Trainer
	world   dist.Comm
	comms   []dist.Comm // split from world; closed by Trainer.Close
	zero    int
	layers  int
	full    int         // parameters of the whole model (the one-process flat layout)
	local   int         // parameters this rank holds
	kept    int         // of those, the ones in params (offsets [0, kept)); the rest are Zero 3 chunks
	blocks  [][]*bucket // Zero 3: the parameter-sharded buckets of each block
	buckets []*bucket
	byUnit  map[int][]*bucket // buckets to reduce when a unit's gradients are final
	byFirst map[int][]*bucket // Zero 2: slotted buckets whose gradients start being written in a unit
	always  []*bucket         // Zero 2: slotted buckets written from the start of the backward pass
	armed   bool              // the current backward pass reduces its buckets
	micro   int               // micro-batches run in this step
	queue   chan *bucket
	pending sync.WaitGroup

	params []float32    // this rank's parameters (Model.Params)
	grads  []float32    // Zero 0 and 1: this rank's gradients (Model.Grads)
	segs   []nn.Segment // Zero 0: weight decay runs of params
	m, v   []float32    // Zero 0: moments of params
	send   []float32    // Zero 0 and 1: the worker's packing buffer; Zero 1: the update's gradients and all-gather buffer
	recv   []float32    // Zero 1: the worker's reduce-scatter result
	mem    Memory

	mu  sync.Mutex
	err error

	lossAcc, ceAcc float64 // this rank's weighted share of the step's loss
}

// Memory is what one rank holds for training, in bytes: parameters (with
// Zero 3, its chunks of the blocks, what it keeps whole and the slot blocks
// are gathered into), gradients (with the buffers gradients are written,
// packed and reduced in) and optimizer moments.
type Memory struct {
	Params    int64 `json:"params"`
	Grads     int64 `json:"grads"`
	Optimizer int64 `json:"optimizer"`
}

// span is a run of parameters: off in this rank's buffers, full in the
// one-process flat layout.
type span struct{ off, full, n int }

// slot is gradient memory the backward pass writes buckets into, one bucket
// at a time (Zero 2).
type slot struct {
	buf  []float32
	free chan struct{} // holds a token while no bucket uses buf
}

// bucket is a set of spans packed into one buffer for one collective.
type bucket struct {
	comm        dist.Comm // nil: no other rank holds these parameters
	size        int       // ranks of comm
	rank        int       // this rank in comm
	spans       []span
	segs        []nn.Segment // weight-decay runs in packed coordinates
	n           int          // packed length
	chunk       int          // ceil(n / size)
	first, last int          // units: gradients are written from the start of first's backward to the end of last's
	lo, hi      int          // the packed range this rank owns (updates with Zero 1 and 2, counts in the norm)
	shard       []float32    // Zero 2: reduced gradients of [lo, hi)
	m, v        []float32    // Zero 1 and 2: AdamW moments of [lo, hi)
	slot        *slot        // Zero 2, size > 1: where the backward pass writes the bucket's gradients
	vars        []*nn.Var    // the bucket's parameters, at packed positions pos
	pos         []int
	lens        []int // the parameters' lengths (their Data is nil while a Zero 3 block is not gathered)
	fresh       bool  // Zero 2: no micro-batch of this step has been added into shard yet

	gcomm  dist.Comm  // Zero 3: the ranks of comm, for the parameter all-gathers
	pshard []float32  // Zero 3: this rank's chunk of the parameters, packed [lo, hi) and zero padding
	pslot  *paramSlot // Zero 3: where the block's parameters are gathered
}

// paramSlot is memory a block's parameters are all-gathered into (Zero 3).
type paramSlot struct {
	buf    []float32
	holder *bucket // the bucket whose parameters buf holds, nil: none
}

// unitOf returns the block a parameter belongs to: its layer, Layers for
// the final norm and output head, -1 for the embeddings.
func unitOf(name string, layers int) int {
	if rest, ok := strings.CutPrefix(name, "model.layers."); ok {
		if i := strings.IndexByte(rest, '.'); i > 0 {
			if l, err := strconv.Atoi(rest[:i]); err == nil {
				return l
			}
		}
	}
	if strings.HasPrefix(name, "model.norm.") || strings.HasPrefix(name, "lm_head.") {
		return layers
	}
	return -1
}

// expertOf returns the routed expert a parameter belongs to, if any.
func expertOf(name string) (int, bool) {
	i := strings.Index(name, ".mlp.experts.")
	if i < 0 {
		return 0, false
	}
	rest := name[i+len(".mlp.experts."):]
	j := strings.IndexByte(rest, '.')
	if j < 0 {
		return 0, false
	}
	e, err := strconv.Atoi(rest[:j])
	return e, err == nil
}

// localParam is a parameter this rank holds, at off in its buffers.
type localParam struct {
	model.Param
	off int
}

// plan decides which parameters this rank holds (all but the experts of
// other ranks), where they go in its compact buffers, and lays them out in
// buckets of about elems values. It allocates nothing.
func (dp *dataParallel) plan(m *model.Model, par *model.Parallel, grads, experts dist.Comm, elems int) []localParam {
	layers := m.Cfg.Layers
	dp.layers = layers
	lo, hi := par.LocalExperts(m.Cfg.Experts)
	sharded := par.Experts != nil && par.Experts.Size() > 1
	type group struct {
		comm  dist.Comm
		units map[int][]localParam
	}
	groups := []*group{{comm: grads, units: map[int][]localParam{}}, {comm: experts, units: map[int][]localParam{}}}
	if dp.zero == 3 {
		elems = 1 // a bucket is a block: its parameters are gathered together
	}
	type candidate struct {
		p    model.Param
		g    *group
		u    int
		keep bool // kept whole in params
	}
	var cands []candidate
	dp.full, dp.local, dp.kept = 0, 0, 0
	for _, p := range m.Tensors {
		dp.full += p.V.Len()
		g := groups[0]
		if e, ok := expertOf(p.Name); ok && sharded {
			if e < lo || e >= hi {
				continue // held by another rank
			}
			g = groups[1]
		}
		u := unitOf(p.Name, layers)
		// Zero 3 shards the blocks' parameters that other ranks share.
		keep := dp.zero < 3 || u < 0 || u >= layers || g.comm == nil || g.comm.Size() == 1
		cands = append(cands, candidate{p, g, u, keep})
	}
	// What is kept whole comes first in this rank's buffer.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		switch {
		case a.keep == b.keep:
			return 0
		case a.keep:
			return -1
		}
		return 1
	})
	var held []localParam
	for _, c := range cands {
		lp := localParam{Param: c.p, off: dp.local}
		dp.local += c.p.V.Len()
		if c.keep {
			dp.kept = dp.local
		}
		held = append(held, lp)
		c.g.units[c.u] = append(c.g.units[c.u], lp)
	}
	dp.buckets = nil
	dp.byUnit = map[int][]*bucket{}
	cur := make([]*bucket, len(groups))
	for u := layers; u >= -1; u-- {
		for gi, g := range groups {
			for _, p := range g.units[u] {
				if cur[gi] == nil {
					cur[gi] = &bucket{comm: g.comm, first: u}
				}
				cur[gi].add(p)
			}
			if b := cur[gi]; b != nil && (b.n >= elems || u == -1) {
				b.last = u
				b.size, b.rank = 1, 0
				if b.comm != nil {
					b.size, b.rank = b.comm.Size(), b.comm.Rank()
				}
				b.chunk = (b.n + b.size - 1) / b.size
				b.lo, b.hi = min(b.rank*b.chunk, b.n), min((b.rank+1)*b.chunk, b.n)
				dp.buckets = append(dp.buckets, b)
				dp.byUnit[u] = append(dp.byUnit[u], b)
				cur[gi] = nil
			}
		}
	}
	return held
}

func (b *bucket) add(p localParam) {
	off, full, n, decay := p.off, p.Off, p.V.Len(), p.Decay
	b.vars, b.pos, b.lens = append(b.vars, p.V), append(b.pos, b.n), append(b.lens, n)
	if k := len(b.spans) - 1; k >= 0 && b.spans[k].off+b.spans[k].n == off && b.spans[k].full+b.spans[k].n == full {
		b.spans[k].n += n
	} else {
		b.spans = append(b.spans, span{off, full, n})
	}
	if k := len(b.segs) - 1; k >= 0 && b.segs[k].Decay == decay && b.segs[k].Off+b.segs[k].Len == b.n {
		b.segs[k].Len += n
	} else {
		b.segs = append(b.segs, nn.Segment{Off: b.n, Len: n, Decay: decay})
	}
	b.n += n
}

// slotted reports whether the backward pass writes the bucket into a slot
// (Zero 2, shared with other ranks).
func (b *bucket) slotted(zero int) bool { return zero >= 2 && b.size > 1 }

// shardsParams reports whether the bucket holds only this rank's chunk of
// its parameters (Zero 3: a block shared with other ranks).
func (dp *dataParallel) shardsParams(b *bucket) bool {
	return dp.zero == 3 && b.size > 1 && b.first == b.last && b.first >= 0 && b.first < dp.layers
}

// allocate builds this rank's buffers for the planned layout, moves the
// parameters of m (in the full layout) into them, points every parameter's
// data and gradient at them, and loads the optimizer moments from opt's
// full ones (nil: zero).
func (dp *dataParallel) allocate(m *model.Model, held []localParam, opt *nn.AdamW) {
	zero := dp.zero
	var mem Memory
	dp.params = make([]float32, dp.kept)
	mem.Params += int64(dp.kept)
	if zero < 2 {
		dp.grads = make([]float32, dp.local)
		mem.Grads += int64(dp.local)
	}
	full := m.Params // the one-process layout, for the Zero 3 chunks
	for _, p := range held {
		n := p.V.Len()
		if p.off < dp.kept {
			copy(dp.params[p.off:p.off+n], p.V.Data)
			p.V.Data = dp.params[p.off : p.off+n]
		} else {
			p.V.Data = nil // Zero 3: gathered before use
		}
		p.V.Grad = nil
		if dp.grads != nil {
			p.V.Grad = dp.grads[p.off : p.off+n]
		}
	}
	// The experts of other ranks: no memory at all.
	mine := make(map[*nn.Var]bool, len(held))
	for _, p := range held {
		mine[p.V] = true
	}
	for _, p := range m.Tensors {
		if !mine[p.V] {
			p.V.Data, p.V.Grad = nil, nil
		}
	}
	maxSend, maxChunk := 0, 0
	for _, b := range dp.buckets {
		if b.size > 1 {
			maxSend = max(maxSend, b.size*b.chunk)
			maxChunk = max(maxChunk, b.chunk)
		}
	}
	if zero == 0 {
		dp.m, dp.v = make([]float32, dp.local), make([]float32, dp.local)
		mem.Optimizer += 2 * int64(dp.local)
		for _, p := range held {
			dp.segs = append(dp.segs, nn.Segment{Off: p.off, Len: p.V.Len(), Decay: p.Decay})
		}
		if len(opt.M) > 0 {
			for _, b := range dp.buckets {
				for _, s := range b.spans {
					copy(dp.m[s.off:s.off+s.n], opt.M[s.full:s.full+s.n])
					copy(dp.v[s.off:s.off+s.n], opt.V[s.full:s.full+s.n])
				}
			}
		}
		dp.send = make([]float32, maxSend)
		mem.Grads += int64(maxSend)
		dp.mem = mem.bytes()
		return
	}
	if zero == 1 {
		dp.recv = make([]float32, maxChunk)
		mem.Grads += int64(maxChunk)
		dp.send = make([]float32, maxSend)
		mem.Grads += int64(maxSend)
	}
	// Zero 2: two slots per group, sized for the group's largest bucket;
	// the embeddings' bucket has its own.
	type ring struct {
		slots [2]*slot
		next  int
	}
	rings := map[dist.Comm]*ring{}
	if zero == 3 {
		// One parameter slot per group, sized for its largest block.
		sizes := map[dist.Comm]int{}
		for _, b := range dp.buckets {
			if dp.shardsParams(b) {
				sizes[b.comm] = max(sizes[b.comm], b.size*b.chunk)
			}
		}
		slots := map[dist.Comm]*paramSlot{}
		for c, n := range sizes {
			slots[c] = &paramSlot{buf: make([]float32, n)}
			mem.Params += int64(n)
		}
		dp.blocks = make([][]*bucket, dp.layers)
		for _, b := range dp.buckets {
			if !dp.shardsParams(b) {
				continue
			}
			b.pshard = make([]float32, b.chunk)
			mem.Params += int64(b.chunk)
			b.packFull(b.pshard[:b.hi-b.lo], full, b.lo, b.hi)
			b.pslot = slots[b.comm]
			dp.blocks[b.first] = append(dp.blocks[b.first], b)
		}
	}
	if zero >= 2 {
		sizes := map[dist.Comm]int{}
		for _, b := range dp.buckets {
			if b.slotted(zero) && b.last != -1 {
				sizes[b.comm] = max(sizes[b.comm], b.size*b.chunk)
			}
		}
		for c, n := range sizes {
			r := &ring{}
			for i := range r.slots {
				r.slots[i] = newSlot(n)
				mem.Grads += int64(n)
			}
			rings[c] = r
		}
		dp.byFirst = map[int][]*bucket{}
	}
	for _, b := range dp.buckets {
		k := b.hi - b.lo
		switch {
		case zero >= 2 && b.size == 1:
			// Written by the backward pass directly, accumulated over
			// micro-batches, never reduced.
			b.shard = make([]float32, b.n)
			mem.Grads += int64(b.n)
			b.point(b.shard)
		case zero >= 2:
			b.shard = make([]float32, b.chunk)
			mem.Grads += int64(b.chunk)
			if b.last == -1 {
				b.slot = newSlot(b.size * b.chunk)
				mem.Grads += int64(b.size * b.chunk)
				dp.always = append(dp.always, b)
			} else {
				r := rings[b.comm]
				b.slot = r.slots[r.next%2]
				r.next++
				if b.first == dp.layers {
					dp.always = append(dp.always, b)
				} else {
					dp.byFirst[b.first] = append(dp.byFirst[b.first], b)
				}
			}
			b.point(b.slot.buf)
		}
		b.m, b.v = make([]float32, k), make([]float32, k)
		mem.Optimizer += 2 * int64(k)
		if len(opt.M) > 0 {
			b.packFull(b.m, opt.M, b.lo, b.hi)
			b.packFull(b.v, opt.V, b.lo, b.hi)
		}
	}
	dp.mem = mem.bytes()
}

func (m Memory) bytes() Memory {
	return Memory{Params: 4 * m.Params, Grads: 4 * m.Grads, Optimizer: 4 * m.Optimizer}
}

func newSlot(n int) *slot {
	s := &slot{buf: make([]float32, n), free: make(chan struct{}, 1)}
	s.free <- struct{}{}
	return s
}

// point makes the gradients of the bucket's parameters views of buf in
// packed order.
func (b *bucket) point(buf []float32) {
	for i, v := range b.vars {
		v.Grad = buf[b.pos[i] : b.pos[i]+b.lens[i]]
	}
}

// spansIn calls fn for the part of each span inside packed positions
// [from, to): n values at i in a buffer holding [from, to), at off in this
// rank's flat layout and at full in the one-process layout.
func (b *bucket) spansIn(from, to int, fn func(i, off, full, n int)) {
	pos := 0
	for _, s := range b.spans {
		if lo, hi := max(from, pos), min(to, pos+s.n); lo < hi {
			fn(lo-from, s.off+lo-pos, s.full+lo-pos, hi-lo)
		}
		pos += s.n
	}
}

// pack copies packed positions [from, to) of the bucket from flat (this
// rank's layout) into dst[0 : to-from].
func (b *bucket) pack(dst, flat []float32, from, to int) {
	b.spansIn(from, to, func(i, off, _, n int) { copy(dst[i:i+n], flat[off:off+n]) })
}

// unpack is the inverse of pack.
func (b *bucket) unpack(flat, src []float32, from, to int) {
	b.spansIn(from, to, func(i, off, _, n int) { copy(flat[off:off+n], src[i:i+n]) })
}

// packFull is pack from the one-process flat layout.
func (b *bucket) packFull(dst, full []float32, from, to int) {
	b.spansIn(from, to, func(i, _, f, n int) { copy(dst[i:i+n], full[f:f+n]) })
}

// unpackFull is unpack into the one-process flat layout.
func (b *bucket) unpackFull(full, src []float32, from, to int) {
	b.spansIn(from, to, func(i, _, f, n int) { copy(full[f:f+n], src[i:i+n]) })
}

// sumSquares returns the sum of squares of packed positions [from, to) of
// flat (this rank's layout).
func (b *bucket) sumSquares(flat []float32, from, to int) float64 {
	var sq float64
	b.spansIn(from, to, func(_, off, _, n int) {
		for _, v := range flat[off : off+n] {
			sq += float64(v) * float64(v)
		}
	})
	return sq
}

// grad returns the reduced gradients of the range this rank updates (Zero
// 2).
func (b *bucket) grad() []float32 { return b.shard[:b.hi-b.lo] }

func (dp *dataParallel) setErr(err error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.err == nil {
		dp.err = err
	}
}

func (dp *dataParallel) firstErr() error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.err
}

// scale weights this rank's micro-batch loss so that the sum over ranks and
// micro-batches is the step's loss: cross-entropy by this rank's share of
// the global micro-batch's counted targets (over accum micro-batches), the
// auxiliary MoE losses (means over rows) by 1/(accum·ranks). last arms the
// gradient reduction for this micro-batch's backward pass (with Zero 2
// every backward pass reduces).
func (dp *dataParallel) scale(tp *nn.Tape, targets []int32, ce, aux *nn.Var, last bool) (*nn.Var, error) {
	var n int
	for _, y := range targets {
		if y >= 0 {
			n++
		}
	}
	total := []float64{float64(n)}
	if err := dp.world.AllReduceFloat64(total, dist.Sum); err != nil {
		return nil, err
	}
	accum, w := dp.t.Cfg.Accum, dp.world.Size()
	var wce float32
	if total[0] > 0 {
		wce = float32(n) / (float32(accum) * float32(total[0]))
	}
	xs, ws := []*nn.Var{ce}, []float32{wce}
	dp.lossAcc += float64(wce) * float64(ce.Data[0])
	dp.ceAcc += float64(wce) * float64(ce.Data[0])
	if aux != nil {
		waux := 1 / float32(accum*w)
		xs, ws = append(xs, aux), append(ws, waux)
		dp.lossAcc += float64(waux) * float64(aux.Data[0])
	}
	dp.armed = last
	if dp.zero >= 2 {
		if dp.micro == 0 {
			for _, b := range dp.buckets {
				b.fresh = true
				if b.size == 1 {
					clear(b.shard)
				}
			}
		}
		dp.armed = true
		dp.acquire(dp.always)
	}
	dp.micro++
	return tp.WeightedSum(xs, ws), nil
}

// acquire waits until the buckets' slots are free, and clears them for the
// backward pass to accumulate into.
func (dp *dataParallel) acquire(bs []*bucket) {
	for _, b := range bs {
		<-b.slot.free
		clear(b.slot.buf[:b.size*b.chunk])
	}
}

// unitDone starts reducing the buckets whose gradients became final (and,
// with Zero 2, readies the slots of the buckets the next block writes).
func (dp *dataParallel) unitDone(u int) {
	if !dp.armed {
		return
	}
	for _, b := range dp.byUnit[u] {
		if dp.zero >= 2 && b.size == 1 {
			continue
		}
		dp.pending.Add(1)
		dp.queue <- b
	}
	if dp.zero >= 2 && u >= 0 {
		dp.acquire(dp.byFirst[u-1])
	}
}

// backwardDone is called after each backward pass: after the step's last,
// the embeddings' gradients are final too.
func (dp *dataParallel) backwardDone() error {
	if dp.armed {
		dp.unitDone(-1)
		dp.armed = false
	}
	return dp.firstErr()
}

func (dp *dataParallel) worker() {
	for b := range dp.queue {
		if err := dp.reduceBucket(b); err != nil {
			dp.t.fatal(fmt.Errorf("gradient reduction: %w", err))
		}
		dp.pending.Done()
	}
}

func (dp *dataParallel) reduceBucket(b *bucket) error {
	switch dp.zero {
	case 0:
		if b.size == 1 {
			return nil
		}
		buf := dp.send[:b.n]
		b.pack(buf, dp.grads, 0, b.n)
		if err := b.comm.AllReduce(buf, dist.Sum); err != nil {
			return err
		}
		b.unpack(dp.grads, buf, 0, b.n)
		return nil
	case 1:
		if b.size == 1 {
			return nil
		}
		buf, recv := dp.send[:b.size*b.chunk], dp.recv[:b.chunk]
		b.pack(buf, dp.grads, 0, b.n)
		clear(buf[b.n:])
		if err := b.comm.ReduceScatter(buf, recv, dist.Sum); err != nil {
			return err
		}
		b.unpack(dp.grads, recv, b.lo, b.hi)
		return nil
	}
	defer func() { b.slot.free <- struct{}{} }()
	send := b.slot.buf[:b.size*b.chunk]
	if !b.fresh {
		// Accumulate over micro-batches: this rank's earlier sum joins the
		// reduction as part of its own contribution to its chunk.
		mine := send[b.rank*b.chunk : (b.rank+1)*b.chunk]
		for i, v := range b.shard {
			mine[i] += v
		}
	}
	b.fresh = false
	return b.comm.ReduceScatter(send, b.shard, dist.Sum)
}

// reduce waits for every bucket, then returns the global gradient norm
// and clips the reduced gradients to Cfg.Clip, as nn.ClipGrads does.
func (dp *dataParallel) reduce() (float64, error) {
	dp.pending.Wait()
	dp.micro = 0
	if err := dp.firstErr(); err != nil {
		return 0, err
	}
	// Each value is counted on exactly one rank: the one owning its chunk.
	var sq float64
	for _, b := range dp.buckets {
		if dp.zero < 2 {
			sq += b.sumSquares(dp.grads, b.lo, b.hi)
			continue
		}
		for _, v := range b.grad() {
			sq += float64(v) * float64(v)
		}
	}
	s := []float64{sq}
	if err := dp.world.AllReduceFloat64(s, dist.Sum); err != nil {
		return 0, fmt.Errorf("gradient norm: %w", err)
	}
	norm := math.Sqrt(s[0])
	if maxNorm := dp.t.Cfg.Clip; maxNorm > 0 && norm > maxNorm {
		c := float32(maxNorm / (norm + 1e-6))
		for i := range dp.grads { // Zero 0 and 1
			dp.grads[i] *= c
		}
		for _, b := range dp.buckets {
			if dp.zero < 2 {
				break
			}
			g := b.grad()
			for i := range g {
				g[i] *= c
			}
		}
	}
	return norm, nil
}

// update applies AdamW with learning rate lr to this rank's ranges and
// brings every rank's parameters up to date.
func (dp *dataParallel) update(lr float64) error {
	t := dp.t
	step := t.Opt.Step
	hp := func(m, v []float32) *nn.AdamW {
		return &nn.AdamW{Beta1: t.Opt.Beta1, Beta2: t.Opt.Beta2, Eps: t.Opt.Eps, WeightDecay: t.Opt.WeightDecay,
			M: m, V: v, Step: step}
	}
	if dp.zero == 0 {
		hp(dp.m, dp.v).Update(t.pool, dp.params, dp.grads, dp.segs, lr)
		t.Opt.Step = step + 1
		return nil
	}
	for _, b := range dp.buckets {
		if b.size == 1 {
			dp.updateLocal(b, hp(b.m, b.v), lr)
			continue
		}
		k := b.hi - b.lo
		if b.pshard != nil {
			// Zero 3: the chunk is all the rank keeps; the next pass
			// gathers it.
			hp(b.m, b.v).Update(t.pool, b.pshard[:k], b.shard[:k], clipSegs(b.segs, b.lo, b.hi), lr)
			continue
		}
		// The chunk is updated where the all-gather (in place) expects it.
		all := dp.send
		if dp.zero >= 2 {
			all = b.slot.buf // free: every reduction is done
		}
		all = all[:b.size*b.chunk]
		mine := all[b.rank*b.chunk : (b.rank+1)*b.chunk]
		p := mine[:k]
		b.pack(p, dp.params, b.lo, b.hi)
		if dp.zero >= 2 {
			hp(b.m, b.v).Update(t.pool, p, b.shard[:k], clipSegs(b.segs, b.lo, b.hi), lr)
		} else {
			dp.updateChunk(b, hp(b.m, b.v), p, lr)
		}
		clear(mine[k:])
		if err := b.comm.AllGather(mine, all); err != nil {
			return fmt.Errorf("parameter all-gather: %w", err)
		}
		b.unpack(dp.params, all, 0, b.n)
	}
	t.Opt.Step = step + 1
	dp.evict()
	return nil
}

// gather brings block l's parameters into the slots (Zero 3; the model's
// Parallel.Gather). A slot that still holds them (the last block of the
// forward pass, at the start of the backward pass; the first block, at the
// start of the next micro-batch) is not gathered again. Every rank makes
// the same calls, so they agree on what to skip.
func (dp *dataParallel) gather(l int) error {
	for _, b := range dp.blocks[l] {
		s := b.pslot
		if s.holder == b {
			continue
		}
		dp.release(s)
		all := s.buf[:b.size*b.chunk]
		if err := b.gcomm.AllGather(b.pshard, all); err != nil {
			return fmt.Errorf("parameter all-gather: %w", err)
		}
		for i, v := range b.vars {
			v.Data = all[b.pos[i] : b.pos[i]+b.lens[i]]
		}
		s.holder = b
	}
	return nil
}

// release empties a parameter slot: the variables of the block it held
// lose their memory, so that a stray use fails instead of reading another
// block's values.
func (dp *dataParallel) release(s *paramSlot) {
	if s.holder == nil {
		return
	}
	for _, v := range s.holder.vars {
		v.Data = nil
	}
	s.holder = nil
}

// evict empties every parameter slot (after an update, the values they
// hold are stale).
func (dp *dataParallel) evict() {
	for _, bs := range dp.blocks {
		for _, b := range bs {
			dp.release(b.pslot)
		}
	}
}

// owned copies the packed parameters [lo, hi) this rank owns of the bucket
// into dst.
func (dp *dataParallel) owned(b *bucket, dst []float32) {
	if b.pshard != nil {
		copy(dst, b.pshard[:b.hi-b.lo])
		return
	}
	b.pack(dst, dp.params, b.lo, b.hi)
}

// updateChunk applies AdamW to this rank's chunk p (packed) of a bucket
// with the gradients in the gradient buffer (Zero 1), span by span.
func (dp *dataParallel) updateChunk(b *bucket, o *nn.AdamW, p []float32, lr float64) {
	step := o.Step
	pos := 0
	for _, s := range b.spans {
		if lo, hi := max(b.lo, pos), min(b.hi, pos+s.n); lo < hi {
			o.M, o.V, o.Step = b.m[lo-b.lo:hi-b.lo], b.v[lo-b.lo:hi-b.lo], step
			o.Update(dp.t.pool, p[lo-b.lo:hi-b.lo], dp.grads[s.off+lo-pos:s.off+hi-pos], clipSegs(b.segs, lo, hi), lr)
		}
		pos += s.n
	}
}

// updateLocal applies AdamW to a bucket no other rank shares, span by span
// in place.
func (dp *dataParallel) updateLocal(b *bucket, o *nn.AdamW, lr float64) {
	step := o.Step
	pos := 0
	for _, s := range b.spans {
		var g []float32
		if dp.zero == 1 {
			g = dp.grads[s.off : s.off+s.n]
		} else {
			g = b.shard[pos : pos+s.n] // written by the backward pass in packed order
		}
		o.M, o.V, o.Step = b.m[pos:pos+s.n], b.v[pos:pos+s.n], step
		o.Update(dp.t.pool, dp.params[s.off:s.off+s.n], g, clipSegs(b.segs, pos, pos+s.n), lr)
		pos += s.n
	}
}

// clipSegs returns the segments' parts inside [from, to), shifted to start
// at 0.
func clipSegs(segs []nn.Segment, from, to int) []nn.Segment {
	var out []nn.Segment
	for _, s := range segs {
		lo, hi := max(s.Off, from), min(s.Off+s.Len, to)
		if lo < hi {
			out = append(out, nn.Segment{Off: lo - from, Len: hi - lo, Decay: s.Decay})
		}
	}
	return out
}

// gatherParams fills full with the current value of every parameter of the
// model, including the experts other ranks hold, in the one-process flat
// layout (on every rank: each value comes from the one rank that owns it,
// by a sum over all ranks in which the others contribute zeros).
func (dp *dataParallel) gatherParams(full []float32) error {
	clear(full)
	for _, b := range dp.buckets {
		if b.lo >= b.hi {
			continue
		}
		p := dp.tmpChunk(b)
		dp.owned(b, p)
		b.unpackFull(full, p, b.lo, b.hi)
	}
	return dp.world.AllReduce(full, dist.Sum)
}

func (dp *dataParallel) tmpChunk(b *bucket) []float32 { return make([]float32, b.hi-b.lo) }

// gatherMoments returns the full AdamW moments in the one-process flat
// layout, assembled as gatherParams does.
func (dp *dataParallel) gatherMoments() (expAvg, expAvgSq []float32, err error) {
	expAvg, expAvgSq = make([]float32, dp.full), make([]float32, dp.full)
	for _, b := range dp.buckets {
		if b.lo >= b.hi {
			continue
		}
		m, v := b.m, b.v
		if dp.zero == 0 {
			m, v = dp.tmpChunk(b), make([]float32, b.hi-b.lo)
			b.pack(m, dp.m, b.lo, b.hi)
			b.pack(v, dp.v, b.lo, b.hi)
		}
		b.unpackFull(expAvg, m, b.lo, b.hi)
		b.unpackFull(expAvgSq, v, b.lo, b.hi)
	}
	for _, buf := range [][]float32{expAvg, expAvgSq} {
		if err := dp.world.AllReduce(buf, dist.Sum); err != nil {
			return nil, nil, err
		}
	}
	return expAvg, expAvgSq, nil
}

// fullModel returns, on rank 0, a model with every parameter (a rank holds
// only its own experts; checkpoints and evaluations use this one), and nil
// on the other ranks, which take part in assembling it. Collective.
func (dp *dataParallel) fullModel() (*model.Model, error) {
	if dp.world.Rank() != 0 {
		return nil, dp.gatherParams(make([]float32, dp.full))
	}
	m, err := model.New(dp.t.Model.Cfg, false)
	if err != nil {
		return nil, err
	}
	if err := dp.gatherParams(m.Params); err != nil {
		return nil, err
	}
	m.Pool = dp.t.pool
	return m, nil
}
