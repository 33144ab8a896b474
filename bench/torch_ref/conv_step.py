"""bench/torch_ref/conv_step.py -- the PyTorch half of bench/conv_step.lua: ms of F.conv2d forward,
and forward + backward (input, weight and bias gradients), on the same shapes, the median of `reps`
timed calls after `warmup`.  One JSON line per shape.
    /usr/bin/python3 bench/torch_ref/conv_step.py [--reps 20] [--warmup 5] [--threads 2] [--shapes all]"""
import argparse
import json
import re
import statistics
import time

import torch
import torch.nn.functional as F

from blas_kernel import blas_kernel   # bench/torch_ref/blas_kernel.py, beside this script

ap = argparse.ArgumentParser()
ap.add_argument("--reps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--shapes", default="all")
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(1)
SHAPES = ["8x1x128x128-16x5-p2", "8x16x64x64-32x3-p1", "8x32x32x32-64x3-p1", "16x64x32x32-64x3-p1"]
if args.shapes != "all":
    SHAPES = args.shapes.split(",")
for spec in SHAPES:
    m = re.match(r"^(\d+)x(\d+)x(\d+)x(\d+)-(\d+)x(\d+)", spec)
    N, C, H, W, O, K = (int(g) for g in m.groups())
    s = re.search(r"-s(\d+)", spec)
    p = re.search(r"-p(\d+)", spec)
    stride, padding = int(s.group(1)) if s else 1, int(p.group(1)) if p else 0
    x = torch.randn(N, C, H, W, requires_grad=True)
    w = (torch.randn(O, C, K, K) / (C * K * K) ** 0.5).requires_grad_()
    b = torch.zeros(O, requires_grad=True)
    fwd, both = [], []
    for r in range(args.warmup + args.reps):
        t0 = time.perf_counter()
        with torch.no_grad():
            y = F.conv2d(x, w, b, stride=stride, padding=padding)
        t1 = time.perf_counter()
        x.grad = w.grad = b.grad = None
        t2 = time.perf_counter()
        F.conv2d(x, w, b, stride=stride, padding=padding).sum().backward()
        t3 = time.perf_counter()
        if r >= args.warmup:
            fwd.append((t1 - t0) * 1e3)
            both.append((t3 - t2) * 1e3)
    print(json.dumps({"impl": "torch", "shape": spec, "threads": args.threads, "forward_ms": round(statistics.median(fwd), 3),
                      "forward_backward_ms": round(statistics.median(both), 3), "blas_kernel": blas_kernel()}), flush=True)
