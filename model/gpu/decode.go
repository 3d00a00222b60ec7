package gpu

import (
	"errors"
	"fmt"

	"github.com/mai-llm/mai/backend/cuda"
)

// Cache holds the keys and values of past positions on the device for
// incremental decoding, as model.KVCache does on the host: per layer
// [B, Max, KVHeads*HeadDim]; every sequence of the batch has Len positions.
type Cache struct {
	B, Max, Len int
	k, v        []*cuda.Buffer
	dev         *cuda.Device
}

// NewCache allocates a cache for b sequences of up to maxLen positions
// (at most the model's context length).
func (g *Model) NewCache(b, maxLen int) (*Cache, error) {
	c := &g.Cfg
	if b <= 0 || maxLen <= 0 || maxLen > c.MaxSeq {
		return nil, fmt.Errorf("gpu: cache for %d sequences of %d positions (context %d)", b, maxLen, c.MaxSeq)
	}
	kc := &Cache{B: b, Max: maxLen, dev: g.Dev}
	w := c.KVHeads * c.HeadDim
	for range c.Layers {
		for _, dst := range []*[]*cuda.Buffer{&kc.k, &kc.v} {
			buf, err := g.Dev.Alloc(cuda.F32, b*maxLen*w)
			if err != nil {
				kc.Free()
				return nil, fmt.Errorf("gpu: cache: %w", err)
			}
			*dst = append(*dst, buf)
		}
	}
	return kc, nil
}

// Free releases the cache's device memory.
func (kc *Cache) Free() error {
	err := kc.dev.Free(append(kc.k, kc.v...)...)
	kc.k, kc.v = nil, nil
	return err
}

// append copies layer l's keys and values of a b×t batch (rows [b*t, w])
// into the cache after its Len positions.
func (kc *Cache) append(dev *cuda.Device, l int, k, v *cuda.Buffer, b, t int) error {
	w := k.Len() / (b * t)
	for i := 0; i < b; i++ {
		for _, p := range [2][2]*cuda.Buffer{{kc.k[l], k}, {kc.v[l], v}} {
			dst, err := p[0].View((i*kc.Max+kc.Len)*w, t*w)
			if err != nil {
				return err
			}
			src, err := p[1].View(i*t*w, t*w)
			if err != nil {
				return err
			}
			if err := dev.Copy(dst, src); err != nil {
				return err
			}
		}
	}
	return nil
}

// Forward runs ids [b*t] after the cache's Len positions, appends their
// keys and values, and returns the logits of each sequence's last position
// ([b, V], row-major): model.Model.Forward with a cache and lastOnly, on
// the device (prefill with t > 1, decode with t == 1).
func (g *Model) Forward(ids []int32, b, t int, kc *Cache) ([]float32, error) {
	c := &g.Cfg
	if kc == nil {
		return nil, errors.New("gpu: forward needs a cache")
	}
	if b != kc.B || t <= 0 || len(ids) != b*t {
		return nil, fmt.Errorf("gpu: %d ids for batch %d×%d with a cache of %d sequences", len(ids), b, t, kc.B)
	}
	if kc.Len+t > kc.Max {
		return nil, fmt.Errorf("gpu: %d positions exceed the cache size %d", kc.Len+t, kc.Max)
	}
	a, err := g.ensureActs(b, t)
	if err != nil {
		return nil, err
	}
	bt, err := g.upload(a, ids, nil, nil, kc)
	if err != nil {
		return nil, err
	}
	defer bt.free()
	defer a.releaseMoE(g.Dev)
	if err := g.forward(a, bt); err != nil {
		return nil, err
	}
	kc.Len += t
	// The last position of each sequence (its final-norm output row), then
	// the head.
	rows := make([]int32, b)
	for i := range rows {
		rows[i] = int32(i*t + t - 1)
	}
	last, err := g.Dev.NewEmbedIndex(rows, a.n)
	if err != nil {
		return nil, err
	}
	defer last.Free()
	d, v := c.Dim, c.Vocab
	h, err := a.dh.View(0, b*d)
	if err != nil {
		return nil, err
	}
	var e errs
	e.do(g.Dev.EmbeddingForward(h, a.hf, last, d))
	out, err := g.Dev.Alloc(cuda.F32, b*v)
	if err != nil {
		return nil, err
	}
	defer g.Dev.Free(out)
	e.do(g.Dev.Gemm(false, true, b, v, d, 1, g.operand(&e, a, h, 1), d, g.weight(g.head), d, 0, out, v))
	logits := make([]float32, b*v)
	if e.err == nil {
		e.do(g.Dev.Download(logits, out))
	}
	if e.err != nil {
		return nil, fmt.Errorf("gpu: forward: %w", e.err)
	}
	return logits, nil
}
