"""PyTorch reference for bench/gpt_step.lua: one training step of a GPT-2-style decoder on
4 x 4-digit multiplication (no chain of thought), timed the same way.

Model (nanoGPT's layout): token + learned position embeddings; L pre-LN blocks [LN -> causal
multi-head attention (one fused qkv Linear with bias, 1/sqrt(head_dim), output Linear) -> residual;
LN -> Linear(d, 4d) -> GELU (tanh form) -> Linear(4d, d) -> residual]; final LN; the head tied to
the token embedding.  AdamW(lr 1e-3, betas (0.9, 0.95), weight decay 0.1 on the matrices only).
Data: "[BOS] a0..a3 * b0..b3 = c0..c7 [EOS] [PAD]...", least significant digit first, T = 40,
batch 64, loss on c0..c7 and EOS only; a pool of 8 batches drawn beforehand.
Attention: "manual" (matmul, masked_fill, softmax, matmul) or "sdpa" (the fused op where this
torch has one).  Timing: `warmup` untimed steps, then `steps` steps each timed on its own; the
median is reported, with the peak RSS of the process before and after the model trained.

Run with Debian's interpreter, which sees python3-torch:
  /usr/bin/python3 bench/torch_ref/gpt_step.py --config 2x128x4 --attn manual
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from blas_kernel import blas_kernel   # bench/torch_ref/blas_kernel.py, beside this script

VOCAB = 16
STAR, EQ, EOS, PAD, BOS = 10, 11, 12, 13, 14


def fused_sdpa():
    if hasattr(F, "scaled_dot_product_attention"):
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if hasattr(F, "_scaled_dot_product_attention"):      # torch 1.13's private form
        return lambda q, k, v: F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]
    return None


class Block(nn.Module):
    def __init__(self, d, heads, T, attn):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.sdpa = fused_sdpa() if attn == "sdpa" else None
        self.register_buffer("causal", torch.ones(T, T).tril().bool(), persistent=False)

    def attend(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))
        if self.sdpa is not None:
            y = self.sdpa(q, k, v)
        else:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
            y = s.masked_fill(~self.causal[:T, :T], float("-inf")).softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attend(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers, d, heads, T, attn):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(Block(d, heads, T, attn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                scaled = name.endswith("proj.weight") or name.endswith("fc2.weight")
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers) if scaled else 0.02)
            elif name.endswith("bias") and ".ln" not in name:
                nn.init.zeros_(p)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)


def batch(size, T, gen):
    x = torch.full((size, T), PAD, dtype=torch.long)
    y = torch.full((size, T), -100, dtype=torch.long)
    for i in range(size):
        a, b = (int(v) for v in torch.randint(1000, 10000, (2,), generator=gen))
        s = [BOS] + [a // 10 ** j % 10 for j in range(4)] + [STAR] + [b // 10 ** j % 10 for j in range(4)] + [EQ]
        s += [a * b // 10 ** j % 10 for j in range(8)] + [EOS]
        s += [PAD] * (T + 1 - len(s))
        x[i] = torch.tensor(s[:T])
        y[i, 10:19] = torch.tensor(s[11:20])       # c0..c7 and EOS
    return x, y


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="2x128x4", help="LAYERSxWIDTHxHEADS")
    p.add_argument("--attn", default="manual", choices=["manual", "sdpa"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: the same step on the GPU (bench/cuda/device_check.sh), timed after a synchronize")
    a = p.parse_args()
    if a.attn == "sdpa" and fused_sdpa() is None:
        raise SystemExit("gpt_step.py: this torch has no scaled_dot_product_attention")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    layers, width, heads = (int(v) for v in a.config.split("x"))
    gen = torch.Generator().manual_seed(a.seed + 1)
    pool = [tuple(t.to(a.device) for t in batch(a.batch, a.T, gen)) for _ in range(8)]
    rss_before = rss_mb()
    model = GPT(layers, width, heads, a.T, a.attn).to(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    times, loss = [], None
    for i in range(a.warmup + a.steps):
        x, y = pool[i % len(pool)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"workload": "gpt_step", "impl": "torch-" + a.attn, "config": a.config, "batch": a.batch,
                      "T": a.T, "params": sum(p.numel() for p in model.parameters()), "threads": a.threads,
                      "steps": a.steps, "ms_per_step_median": round(statistics.median(times), 3),
                      "ms_min": round(min(times), 3), "final_loss": round(float(loss), 4),
                      "rss_peak_mb": round(rss_mb(), 1), "rss_before_model_mb": round(rss_before, 1),
                      "torch": torch.__version__, "device": a.device,
                      "blas_kernel": blas_kernel() if a.device == "cpu" else None}))


if __name__ == "__main__":
    main()
