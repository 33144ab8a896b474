#!/usr/bin/env bash
# bench/cuda/device_check.sh -- on the GPU machine, in one call (see bench/cuda/stage.sh, which
# prepares build-cuda/carry here first).  Builds nothing.  Writes under $OUT:
#   gpu.txt     nvidia-smi, the driver and nvcc versions
#   tests.log   every tests/cuda program (make test-cuda's checks: each op on the GPU against the CPU)
#   study.log   the in-context regression study on the GPU (--device cuda), its summary beside the CPU's
#   bench.log   the GPT training step and softmax attention (float32 and bfloat16), attnlab and PyTorch
#               on the same GPU, then the multiplication study at the paper's width 768 (steps per second)
# Each part has its own time limit, so that one that hangs leaves the others their time.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/attnlab-device}
mkdir -p "$out"
carry=build-cuda/carry
export LD_LIBRARY_PATH="$PWD/$carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export ATTNLAB_HOME=$PWD
attnlab=$carry/bin/attnlab

{ nvidia-smi; nvcc --version | tail -n 2; ldd "$attnlab" | grep -E 'not found|cuda' ; } >"$out/gpu.txt" 2>&1

: >"$out/tests.log"
for t in "$carry"/bin/test_cuda*; do
    echo "== $t" >>"$out/tests.log"
    timeout 120 "$t" >>"$out/tests.log" 2>&1
    echo "exit $?" >>"$out/tests.log"
done

{
    echo "== the regression study, 20,000 steps on the GPU (docs/icl_regression.md has the CPU figures)"
    timeout 180 "$attnlab" run experiments/icl_regression.lua steps=20000 test_tasks=2000 --device cuda --out /tmp/icl-gpu
    echo "exit $?"
} >"$out/study.log" 2>&1

{
    for config in 2x128x4 4x256x4 12x768x12; do
        echo "== GPT step $config, attnlab --device cuda"
        timeout 90 "$attnlab" --device cuda bench/gpt_step.lua config=$config steps=30 warmup=10
        echo "== GPT step $config, PyTorch $(python3 -c 'import torch; print(torch.__version__)') on the same GPU"
        for attn in manual sdpa; do
            timeout 90 python3 bench/torch_ref/gpt_step.py --config "$config" --attn $attn --device cuda --steps 30 --warmup 10
        done
    done
    echo "== softmax attention forward+backward, B 8, H 16, N 4096, d 64, causal, float32 and bfloat16"
    timeout 120 "$attnlab" --device cuda bench/cuda/attention_gpu.lua
    timeout 120 python3 bench/torch_ref/attention_gpu.py
    echo "== the multiplication study, aux, 4 x 4, at the paper's width (2 layers x 768 x 4 heads), 3,000 steps"
    timeout 150 "$attnlab" run experiments/multiplication.lua mode=aux digits=4 width=768 heads=4 layers=2 steps=3000 \
        eval_every=1000 init=default tied=false loss_on=answer --device cuda --out /tmp/mult-gpu
    echo "exit $?"
} >"$out/bench.log" 2>&1
echo "device_check: logs in $out"
