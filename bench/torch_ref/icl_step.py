"""PyTorch reference for bench/icl_step.lua: one training step of the in-context regression study
(experiments/icl_regression.lua, lua/attnlab/tasks/icl.lua), timed the same way.

Model (He, Pan, Chen, Yang 2025, arXiv 2503.12734): one layer of H softmax attention heads over
tokens z_i = [x_i; y_i] of size D = d + 1; per head full D x D query, key and value maps (bias-free
Linear layers, PyTorch's default init); the query token [x_q; 0] attends to the L context tokens
only, with logits scaled by 1/sqrt(D); an output Linear(H*D -> 1) gives the prediction.
Data: x ~ N(0, I_d), beta ~ N(0, I_d / d), y = beta^T x + noise of variance 0.1 (the query's y too);
a fresh batch of 256 tasks every step.  Loss: mean squared error against y_q.  Adam, lr 1e-3.
Timing: the batch is drawn outside the timed region; forward, loss, zero_grad, backward and the Adam
step are inside, each step timed on its own; ms_per_step_median is the median of the per-step
times after the first 50 steps (after the first half for runs of under 100 steps).
ms_per_step_wall_median also counts the batch and reading the loss back: the loop a user runs.
Without --time-only it prints the loss every steps/20 steps and, at the end, the test MSE on 10,000
fresh tasks beside ridge regression (Bayes-optimal here) and the zero predictor.  Last line: JSON.

Run with Debian's interpreter, which sees python3-torch:
  /usr/bin/python3 bench/torch_ref/icl_step.py --time-only --steps 1000 --threads 2
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn

SIGMA2 = 0.1     # noise variance of every y


class InContextAttention(nn.Module):
    def __init__(self, d, heads, fold=False):
        super().__init__()
        D = d + 1
        self.heads, self.D, self.fold = heads, D, fold
        self.q = nn.Linear(D, heads * D, bias=False)
        self.k = nn.Linear(D, heads * D, bias=False)
        self.v = nn.Linear(D, heads * D, bias=False)
        self.o = nn.Linear(heads * D, 1, bias=False)

    def forward(self, Z, zq):
        """Z (B, L, D) the examples, zq (B, 1, D) the query -> predictions (B)."""
        B, H, D = Z.shape[0], self.heads, self.D

        def per_head(t):                                    # (B, n, H*D) -> (B, H, n, D)
            return t.view(B, -1, H, D).transpose(1, 2)

        if self.fold:   # attnlab's MultiHeadAttention when the context is no wider than a head
            # q_h . (W_k,h z) = (W_k,h^T W_q,h zq) . z and W_o,h W_v,h sum_j p_j z_j: attention over Z
            # itself, one key/value head shared by every query head, with folded weights
            wk_t = self.k.weight.view(H, D, D).transpose(1, 2)                       # (H, D_in, D)
            w_qk = (wk_t @ self.q.weight.view(H, D, D)).reshape(H * D, D)            # rows h: W_k,h^T W_q,h
            qc = (zq @ w_qk.t()).view(B, 1, H, D).transpose(1, 2)                     # (B, H, 1, D_in)
            weights = torch.softmax(qc @ Z.unsqueeze(1).transpose(-1, -2) / math.sqrt(D), -1)
            oc = (weights @ Z.unsqueeze(1)).transpose(1, 2).reshape(B, H * D)        # (B, H*D_in)
            w_ov = (self.o.weight.view(1, H, D).transpose(0, 1) @ self.v.weight.view(H, D, D))   # (H, 1, D_in)
            return (oc @ w_ov.transpose(0, 1).reshape(1, H * D).t()).squeeze(-1)
        q, k, v = per_head(self.q(zq)), per_head(self.k(Z)), per_head(self.v(Z))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), -1)     # (B, H, 1, L)
        heads_out = (weights @ v).transpose(1, 2).reshape(B, H * D)
        return self.o(heads_out).squeeze(-1)


def draw_tasks(B, L, d):
    """B regression tasks of L examples and a query each: Z (B, L, d+1), zq (B, 1, d+1), yq (B),
    and the raw x (B, L+1, d), y (B, L+1) for the ridge baseline."""
    x = torch.randn(B, L + 1, d)
    beta = torch.randn(B, d, 1) / math.sqrt(d)
    y = (x @ beta).squeeze(-1) + math.sqrt(SIGMA2) * torch.randn(B, L + 1)
    Z = torch.cat([x[:, :L], y[:, :L, None]], -1)
    zq = torch.cat([x[:, L:], torch.zeros(B, 1, 1)], -1)
    return Z, zq, y[:, L], x, y


def ridge_and_zero_mse(n, L, d):
    """MSE of ridge regression (beta_hat = (X^T X + sigma2 d I)^-1 X^T y) and of predicting 0, on n
    fresh tasks."""
    _, _, yq, x, y = draw_tasks(n, L, d)
    X, Y = x[:, :L], y[:, :L, None]
    Xt = X.transpose(1, 2)
    beta_hat = torch.linalg.solve(Xt @ X + SIGMA2 * d * torch.eye(d), Xt @ Y)
    pred = (x[:, L:] @ beta_hat).reshape(n)
    return ((pred - yq) ** 2).mean().item(), (yq ** 2).mean().item()


def tail_median_ms(seconds):
    """Median in ms of the per-step times after the first 50 (the first half for short runs)."""
    return statistics.median(seconds[min(50, len(seconds) // 2):]) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--L", type=int, default=40)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1029)
    p.add_argument("--time-only", action="store_true", help="no loss trajectory and no evaluation")
    p.add_argument("--fold", action="store_true",
                   help="attend over the context itself with folded weights, as attnlab's MultiHeadAttention does here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = InContextAttention(a.d, a.heads, a.fold)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    every = max(1, a.steps // 20)
    step_s, wall_s, losses = [], [], []
    for step in range(1, a.steps + 1):
        t_wall = time.perf_counter()
        Z, zq, yq, _, _ = draw_tasks(a.batch, a.L, a.d)
        t0 = time.perf_counter()
        loss = ((model(Z, zq) - yq) ** 2).mean()
        opt.zero_grad()          # this torch's default (torch 1.13: zeroes the gradients in place)
        loss.backward()
        opt.step()
        step_s.append(time.perf_counter() - t0)
        losses.append(loss.item())
        wall_s.append(time.perf_counter() - t_wall)
        if not a.time_only and step % every == 0:
            print(f"step {step} loss(avg last window) {statistics.fmean(losses[-every:]):.4f}", flush=True)
    out = {"workload": "icl_paper", "d": a.d, "L": a.L, "heads": a.heads, "batch": a.batch, "steps": a.steps,
           "threads": a.threads, "fold": a.fold, "ms_per_step_median": round(tail_median_ms(step_s), 4),
           "ms_per_step_wall_median": round(tail_median_ms(wall_s), 4), "torch": torch.__version__}
    if not a.time_only:
        with torch.no_grad():
            Z, zq, yq, _, _ = draw_tasks(10000, a.L, a.d)
            out["test_mse"] = ((model(Z, zq) - yq) ** 2).mean().item()
            out["ridge_mse"], out["zero_mse"] = ridge_and_zero_mse(10000, a.L, a.d)
            D = a.d + 1
            kq = model.q.weight.view(a.heads, D, D).transpose(1, 2) @ model.k.weight.view(a.heads, D, D)
            # per head, the mean of the diagonal of the x-block of Wq^T Wk (omega_h of the paper)
            out["kq_diag"] = [round(kq[h, :a.d, :a.d].diagonal().mean().item(), 4) for h in range(a.heads)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
