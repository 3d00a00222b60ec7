"""GPT-2 (124M) training-step benchmark in PyTorch: the baseline beside
`mai bench train --device cuda --preset gpt2-124m --batch 16 --seq 1024`.

The model is written out here (no transformers import): GPT-2 small with a
tied head, bf16 autocast, SDPA (flash) attention, fused AdamW, gradient
clipping at 1.0; one step is forward, loss, backward, clip and update on
random tokens, as MAI's benchmark runs. It times steps eagerly and under
torch.compile and prints, per mode, ms/step, tokens/s and MFU: achieved
FLOP/s, counted as MAI counts them (6 x non-embedding-lookup parameters per
token plus 6·L·T·d for attention, model.Config.FLOPsPerToken), over the
card's dense bf16 peak.

    python bench/gpt2_pytorch.py [--batch 16] [--seq 1024] [--steps 10] [--modes eager,compile] [--json]
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Dense bf16 tensor-core peaks (FLOP/s), by device name.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab=50257, ctx=1024, d=768, layers=12, heads=12):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if n.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))


def flops_per_token(vocab, ctx, d, layers, seq):
    # MAI's model.Config.FLOPsPerToken for the gpt2-124m preset.
    per_layer = 4 * d * d + 4 * d + 2 * 2 * d + (8 * d * d + 5 * d)  # attn (+biases, 2 norms) + mlp
    active = vocab * d + ctx * d + layers * per_layer + 2 * d
    non_emb = active - vocab * d - ctx * d + vocab * d  # the tied head still multiplies
    return 6 * non_emb + 6 * layers * seq * d


def run(mode, args, dev):
    torch.manual_seed(0)
    model = GPT2().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    x = torch.randint(0, 50257, (args.batch, args.seq), device=dev)
    y = torch.randint(0, 50257, (args.batch, args.seq), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for _ in range(3):  # warm-up (and compilation)
        step()
    torch.cuda.synchronize()
    warm = time.time() - t0
    times = []
    for _ in range(args.steps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        step()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    times.sort()
    t = times[len(times) // 2]
    tok = args.batch * args.seq / t
    fpt = flops_per_token(50257, 1024, 768, 12, args.seq)
    name = torch.cuda.get_device_name(dev)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    return {
        "mode": mode, "device": name, "batch": args.batch, "seq": args.seq, "ms_per_step": 1e3 * t,
        "tokens_per_s": tok, "tflops": fpt * tok / 1e12, "mfu": fpt * tok / peak if peak else None,
        "warmup_s": warm, "torch": torch.__version__,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpt2_pytorch: no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    for mode in args.modes.split(","):
        r = run(mode, args, dev)
        if args.json:
            print(json.dumps(r))
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "?"
            print(f"pytorch gpt2-124m {mode}: {r['ms_per_step']:.1f} ms/step, {r['tokens_per_s']:.0f} tokens/s, "
                  f"{r['tflops']:.0f} TFLOP/s, MFU {mfu} ({r['device']}, B={r['batch']} T={r['seq']}, torch {r['torch']})")


if __name__ == "__main__":
    main()
