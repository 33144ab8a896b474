#!/bin/sh
# test_studies_on_emulated_cuda.sh -- "every script runs unchanged with --device cuda", checked
# without a GPU: the regression and multiplication studies, in small configurations, run by the
# attnlab program built on the emulated CUDA backend (build/cuda-emulated/attnlab: the real kernels
# of core/cuda run on the CPU, docs/cuda.md "Testing without a GPU") with --device cuda, and by the
# CPU program; their summaries must agree to rounding (the kernels sum in other orders).  The data,
# the parameters, the optimiser state, the evaluation and the published records all live on the
# device in the first run, so this covers the Lua side of devices end to end.
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-build}
EMU=$BUILD/cuda-emulated/attnlab
CPU=${ATTNLAB:-$BUILD/attnlab}
passed=0; failed=0
if [ ! -x "$EMU" ]; then
    echo "SKIP 2 checks: no $EMU (the CUDA emulation is built on x86-64 only)"
    echo "studies_on_emulated_cuda: 0 passed, 0 failed, 2 skipped; 0 compare numbers"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ATTNLAB_HOME=$PWD

# compare KEY... : the listed numbers of the two summary.json files, relative difference at most 1e-4
compare() {
    name=$1; shift
    if luajit - "$tmp/$name-gpu/summary.json" "$tmp/$name-cpu/summary.json" "$@" <<'LUA'
local function read(p) local f = assert(io.open(p)); local s = f:read("*a"); f:close(); return s end
local a, b = read(arg[1]), read(arg[2])
for i = 3, #arg do
  local pat = '"' .. arg[i] .. '":%s*(-?[%d.eE+-]+)'
  local x, y = tonumber(a:match(pat)), tonumber(b:match(pat))
  if not x or not y or math.abs(x - y) > 1e-4 * (1 + math.abs(y)) then
    io.stderr:write(string.format("%s: %s on the emulated GPU %s, on the CPU %s\n", arg[1], arg[i], tostring(x), tostring(y)))
    os.exit(1)
  end
end
LUA
    then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

run_both() {
    name=$1; shift
    if "$EMU" --threads 1 run "$@" --device cuda --out "$tmp/$name-gpu" >"$tmp/$name-gpu.log" 2>&1 &&
       "$CPU" --threads 1 run "$@" --out "$tmp/$name-cpu" >"$tmp/$name-cpu.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); echo "$name: a run failed:"; tail -n 5 "$tmp/$name-gpu.log" "$tmp/$name-cpu.log"
    fi
}

run_both icl experiments/icl_regression.lua steps=40 batch=16 test_tasks=64 eval_lengths=10,20 L=10 log_every=20
compare icl test_mse ridge debiased_gd single_head
run_both mult experiments/multiplication.lua quick=true steps=20 batch=8 test_size=16 probe_size=64 attribution_size=8 eval_every=10
compare mult exact_match c0 c1 c2 c3

echo "studies_on_emulated_cuda: $passed passed, $failed failed, 0 skipped; $((passed / 2)) compare numbers"
[ "$failed" -eq 0 ]
