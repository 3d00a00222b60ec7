package train

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mai-llm/mai/data"
	"github.com/mai-llm/mai/format/safetensors"
	"github.com/mai-llm/mai/internal/atomicfile"
	"github.com/mai-llm/mai/model"
	"github.com/mai-llm/mai/nn"
	"github.com/mai-llm/mai/tokenizer"
)

// State is trainer_state.json: everything besides weights and optimizer
// moments needed to continue a run exactly.
type State struct {
	Step      int              `json:"step"`
	Tokens    int64            `json:"tokens"`
	Elapsed   float64          `json:"elapsed_s"`
	OptStep   int              `json:"optimizer_step"`
	Loader    data.LoaderState `json:"loader"`
	SFT       *SFTState        `json:"sft,omitempty"`
	Tokenizer string           `json:"tokenizer"`
	Config    Config           `json:"config"`
	// World is the number of ranks that wrote the checkpoint (absent: 1).
	// The checkpoint itself does not depend on it.
	World int `json:"world,omitempty"`
}

// Save writes a checkpoint directory atomically (temporary name, fsync,
// rename) and points Out/latest at it. It returns the checkpoint path. In a
// distributed job every rank must call it; rank 0 writes.
func (t *Trainer) Save() (string, error) {
	if err := t.pullDevice(); err != nil {
		return "", err
	}
	if t.dp != nil {
		return t.saveDist()
	}
	return t.save(t.Opt.M, t.Opt.V)
}

// save writes the checkpoint with the given optimizer moments.
func (t *Trainer) save(expAvg, expAvgSq []float32) (string, error) {
	root := filepath.Join(t.Cfg.Out, "checkpoints")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	name := fmt.Sprintf("step-%07d", t.step)
	final := filepath.Join(root, name)
	tmp := filepath.Join(root, ".tmp-"+name)
	os.RemoveAll(tmp)
	if err := t.Model.Save(tmp, "f32", 0); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	opt := []safetensors.Tensor{
		safetensors.F32Tensor("exp_avg", []int{len(expAvg)}, expAvg),
		safetensors.F32Tensor("exp_avg_sq", []int{len(expAvgSq)}, expAvgSq),
	}
	if err := safetensors.Write(filepath.Join(tmp, "optimizer.safetensors"), opt, map[string]string{"step": fmt.Sprint(t.Opt.Step)}); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	st := State{Step: t.step, Tokens: t.tokens, Elapsed: t.elapsed, OptStep: t.Opt.Step, Tokenizer: t.tokName, Config: t.Cfg}
	if w := t.Comm.Size(); w > 1 {
		st.World = w
	}
	if t.loader != nil {
		st.Loader = t.loader.State()
	}
	if t.sft != nil {
		s := t.sft.State()
		st.SFT = &s
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, "trainer_state.json"), b, 0o644); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := t.saveTokenizer(tmp); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	atomicfile.SyncDir(tmp)
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	atomicfile.SyncDir(root)
	if err := atomicfile.WriteFile(filepath.Join(t.Cfg.Out, "latest"), []byte(filepath.Join("checkpoints", name)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	t.prune(root)
	return final, nil
}

func (t *Trainer) prune(root string) {
	if t.Cfg.Keep <= 0 {
		return
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > t.Cfg.Keep {
		os.RemoveAll(filepath.Join(root, names[0]))
		names = names[1:]
	}
}

// latestCheckpoint returns the checkpoint Out/latest points to, or "".
func latestCheckpoint(out string) (string, error) {
	b, err := os.ReadFile(filepath.Join(out, "latest"))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	dir := filepath.Join(out, strings.TrimSpace(string(b)))
	if _, err := os.Stat(filepath.Join(dir, "trainer_state.json")); err != nil {
		return "", fmt.Errorf("train: %s/latest names %s, which is not a complete checkpoint: %w", out, dir, err)
	}
	return dir, nil
}

func (t *Trainer) resume(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "trainer_state.json"))
	if err != nil {
		return err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("trainer_state.json: %w", err)
	}
	was, now := max(st.World, 1), t.Comm.Size()
	if st.Config.Batch*st.Config.Accum*was != t.Cfg.Batch*t.Cfg.Accum*now || st.Config.Seq != t.Cfg.Seq || st.Config.Seed != t.Cfg.Seed {
		return fmt.Errorf("the run was started with batch %d×%d×%d ranks, seq %d, seed %d; now batch %d×%d×%d ranks, seq %d, seed %d: keep the global batch (batch × accum × ranks), seq and seed, or use a new --out",
			st.Config.Batch, st.Config.Accum, was, st.Config.Seq, st.Config.Seed, t.Cfg.Batch, t.Cfg.Accum, now, t.Cfg.Seq, t.Cfg.Seed)
	}
	m, err := model.Load(dir, true)
	if err != nil {
		return err
	}
	f, err := safetensors.Open(filepath.Join(dir, "optimizer.safetensors"))
	if err != nil {
		return err
	}
	defer f.Close()
	mm, _, err := f.Float32("exp_avg")
	if err != nil {
		return err
	}
	vv, _, err := f.Float32("exp_avg_sq")
	if err != nil {
		return err
	}
	if len(mm) != len(m.Params) || len(vv) != len(m.Params) {
		return fmt.Errorf("optimizer state has %d values, model %d parameters", len(mm), len(m.Params))
	}
	t.Opt = nn.NewAdamW(len(m.Params), t.Cfg.Beta1, t.Cfg.Beta2, t.Cfg.Eps, t.Cfg.WeightDecay)
	copy(t.Opt.M, mm)
	copy(t.Opt.V, vv)
	t.Opt.Step = st.OptStep
	if t.sft != nil {
		if st.SFT == nil {
			return fmt.Errorf("the checkpoint is not from an SFT run")
		}
		t.sft.Restore(*st.SFT)
	} else if err := t.loader.Restore(st.Loader); err != nil {
		return err
	}
	t.Model, t.step, t.tokens, t.elapsed = m, st.Step, st.Tokens, st.Elapsed
	return nil
}

// saveTokenizer writes the data's tokenizer beside the weights
// (tokenizer.json + tokenizer_config.json) and records its name.
func (t *Trainer) saveTokenizer(dir string) error {
	name := t.tokName
	if t.tok == nil && name != "byte" {
		tk, err := tokenizer.Load(name)
		if err != nil {
			slog.Warn("cannot load the data's tokenizer to save it beside the model", "tokenizer", name, "err", err)
		} else {
			t.tok = tk
		}
	}
	if t.tok != nil {
		if err := t.tok.Save(dir); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(map[string]string{"tokenizer": name})
	return atomicfile.WriteFile(filepath.Join(dir, "mai_tokenizer.json"), b, 0o644)
}
