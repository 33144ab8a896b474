"""PyTorch reference for bench/attention_kernels.lua: softmax attention forward and forward+backward.

Workload (c): q, k, v of (B=8, H=4, N, d=32), float32, for each N of --Ns, causal and not, in two
implementations:
  naive : S = q k^T / sqrt(d); causal -> masked_fill(-inf) above the diagonal; P = softmax(S); O = P v
  sdpa  : torch's scaled_dot_product_attention (torch >= 2.0: F.scaled_dot_product_attention;
          torch 1.13: its private math form F._scaled_dot_product_attention, no fused CPU kernel)
and two modes:
  fwd    : forward only, inputs without requires_grad, under no_grad (no autograd graph)
  fwdbwd : forward with q, k, v requiring grad, then O.backward(dO)
Each (mode, causal, impl, N) case runs in a subprocess of its own, so that the peak RSS
(getrusage's ru_maxrss) is that case's alone: peak_extra_MB = ru_maxrss after the first call minus
ru_maxrss once the inputs exist.  Timing: `warmup` calls, one more call to size the windows, then
`repeats` windows of k calls (k chosen so that a window lasts about --window seconds); ms per call =
the window's mean; reported: every window, their min and their median.  GFLOP/s counts the two
products of the forward (4 N^2 d per head) and four more for the backward, causal counted in full.

Output: a table on stdout, then one JSON object {"script", "env", "results": [one per case]},
printed after "JSON " and, with --json FILE, appended to FILE as a line of its own (bench/run.sh
passes --json /dev/stdout and keeps the lines that start with "{").

Run with Debian's interpreter, which sees python3-torch:
  /usr/bin/python3 bench/torch_ref/attn_kernels.py --Ns 512 1024 2048 --threads 2
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# Environment variables that change PyTorch's CPU speed here; recorded with every result.  The BLAS
# the process actually mapped is recorded too (by folder, e.g. openblas-pthread or openblas-openmp).
TUNING_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def max_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def blas_libraries():
    """folder/name of each BLAS library mapped into this process."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                name = os.path.basename(path)
                if name.startswith(("libopenblas", "libblas", "libmkl", "libblis")):
                    tag = os.path.basename(os.path.dirname(path)) + "/" + name
                    if tag not in found:
                        found.append(tag)
    except OSError:
        pass
    return found


def environment(torch):
    config = torch.__config__.show()
    capability = next((c for c in ("AVX512", "AVX2") if "CPU capability usage: " + c in config), "?")
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    backend = torch.__config__.parallel_info().split("ATen parallel backend:")[-1].strip().split("\n")[0]
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu, "ncpu": os.cpu_count(),
            "torch_cpu_capability": capability, "parallel_backend": backend,
            "env": {k: os.environ[k] for k in TUNING_VARS if k in os.environ}, "blas_loaded": blas_libraries()}


def attention_fn(F, impl, q, k, v, above, d):
    """(the function computing O from q, k, v, its name in the results); above: None, or the causal
    mask (True above the diagonal)."""
    causal = above is not None
    if impl == "sdpa":
        if hasattr(F, "scaled_dot_product_attention"):
            return (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)), "F.scaled_dot_product_attention"
        if hasattr(F, "_scaled_dot_product_attention"):      # torch 1.13: (q, k, v, mask, dropout, need_weights, causal)
            return (lambda: F._scaled_dot_product_attention(q, k, v, None, 0.0, False, causal)[0],
                    "F._scaled_dot_product_attention")
        raise SystemExit("attn_kernels.py: this torch has no scaled_dot_product_attention")
    if impl != "naive":
        raise SystemExit("attn_kernels.py: unknown --impl " + impl)
    scale = 1.0 / math.sqrt(d)

    def naive():
        s = (q @ k.transpose(-2, -1)) * scale
        if causal:
            s = s.masked_fill(above, float("-inf"))
        return s.softmax(-1) @ v
    return naive, "naive"


def run_case(a):
    """One case, in this (child) process: prints "CHILD " and its result as JSON."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rss_startup = max_rss_kb()
    grad, causal = a.mode == "fwdbwd", bool(a.causal)
    shape = (a.B, a.H, a.N, a.d)
    q, k, v = (torch.randn(shape, requires_grad=grad) for _ in range(3))
    dO = torch.randn(shape)
    # the mask is built for sdpa too, so that both implementations start from the same baseline RSS
    above = torch.ones(a.N, a.N, dtype=torch.bool).triu(1) if causal else None
    attend, impl_fn = attention_fn(F, a.impl, q, k, v, above, a.d)

    if grad:
        def call():
            q.grad = k.grad = v.grad = None
            attend().backward(dO)
    else:
        def call():
            with torch.no_grad():
                attend()

    rss_base = max_rss_kb()
    t0 = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - t0) * 1e3
    rss_first = max_rss_kb()
    for _ in range(a.warmup):
        call()
    t0 = time.perf_counter()
    call()
    calls = max(1, int(a.window / max(time.perf_counter() - t0, 1e-6)))
    windows = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        windows.append((time.perf_counter() - t0) * 1e3 / calls)
    flop = a.B * a.H * 4.0 * a.N * a.N * a.d * (3 if grad else 1)
    print("CHILD " + json.dumps({
        "impl": a.impl, "impl_fn": impl_fn, "causal": causal, "mode": a.mode,
        "B": a.B, "H": a.H, "N": a.N, "d": a.d, "threads": a.threads,
        "ms_windows": [round(w, 4) for w in windows],
        "ms_min": round(min(windows), 4), "ms_median": round(statistics.median(windows), 4),
        "calls_per_window": calls, "first_call_ms": round(first_ms, 3),
        "gflops_at_min": round(flop / (min(windows) / 1e3) / 1e9, 2),
        "rss_base_MB": round(rss_base / 1024, 1), "rss_startup_MB": round(rss_startup / 1024, 1),
        "peak_extra_MB": round((rss_first - rss_base) / 1024, 1),
        "scores_matrix_MB": round(a.B * a.H * a.N * a.N * 4 / 2 ** 20, 1),
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--Ns", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    p.add_argument("--impls", nargs="+", default=["sdpa", "naive"], choices=["sdpa", "naive"])
    p.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--causals", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--window", type=float, default=0.5, help="seconds per timing window")
    p.add_argument("--json", default=None, help="append the JSON line to this file")
    p.add_argument("--quick", action="store_true", help="N = 128 and 512, short windows: a smoke test")
    # one case, in a child process (the parent passes these)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="naive", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="fwd", help=argparse.SUPPRESS)
    p.add_argument("--causal", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--N", type=int, default=128, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        run_case(a)
        return
    if a.quick:
        a.Ns, a.window, a.warmup, a.repeats = [128, 512], 0.1, 1, 2

    import torch
    results = []
    print("%-5s %-6s %-6s %5s | %9s %9s %8s | %9s %9s" % (
        "impl", "causal", "mode", "N", "min ms", "median ms", "GFLOP/s", "peak+ MB", "S MB"), flush=True)
    for mode in a.modes:
        for causal in a.causals:
            for impl in a.impls:
                for N in a.Ns:
                    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--impl", impl, "--mode", mode,
                           "--causal", str(causal), "--N", str(N), "--B", str(a.B), "--H", str(a.H), "--d", str(a.d),
                           "--threads", str(a.threads), "--warmup", str(a.warmup), "--repeats", str(a.repeats),
                           "--window", str(a.window)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    found = [ln[len("CHILD "):] for ln in proc.stdout.splitlines() if ln.startswith("CHILD ")]
                    if proc.returncode != 0 or not found:
                        print("FAILED", impl, mode, causal, N, proc.stderr[-500:], flush=True)
                        results.append({"impl": impl, "mode": mode, "causal": bool(causal), "N": N,
                                        "error": proc.stderr[-300:]})
                        continue
                    r = json.loads(found[0])
                    results.append(r)
                    print("%-5s %-6s %-6s %5d | %9.3f %9.3f %8.1f | %9.1f %9.1f" % (
                        impl, causal, mode, N, r["ms_min"], r["ms_median"], r["gflops_at_min"],
                        r["peak_extra_MB"], r["scores_matrix_MB"]), flush=True)
    line = json.dumps({"script": "attn_kernels", "env": environment(torch), "results": results},
                      separators=(",", ":"))
    print("JSON " + line, flush=True)      # flushed first: --json /dev/stdout must get a line of its own
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
