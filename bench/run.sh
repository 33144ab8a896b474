#!/usr/bin/env bash
# bench/run.sh -- `make bench`: attnlab against the PyTorch reference, side by side, in one run.
#   bash bench/run.sh [icl] [attention] [variants] [gpt] [conv] [sgemm]     (default: all six)
#
# icl: the in-context regression training step (d=5, L=40, H=4, batch 256, 2 threads; attnlab
#   also with 1 thread, which is as fast at this size on a 2-vCPU VM) timed by bench/icl_step.lua
#   and by bench/torch_ref/icl_step.py --time-only in three PyTorch environments: "default" (as
#   installed), "tuned" (passive OpenMP waiting, malloc keeping big blocks) and "omp" (the OpenMP
#   build of OpenBLAS; the fastest PyTorch here), and "omp-fold": the model computed as attnlab's
#   MultiHeadAttention computes it at these shapes (keys and values in the context's space).
#   Each is run ROUNDS times in separate processes, interleaved; the median of the per-process
#   medians is reported -> bench/out/icl_step.md.
# attention: softmax attention forward and forward + backward on (8, 4, N, 32), causal and not
#   (workload (c)): bench/attention_kernels.lua against bench/torch_ref/attn_kernels.py
#   (naive and sdpa) in the "omp" and "default" environments, interleaved, ATTN_ROUNDS rounds ->
#   bench/out/attention_kernels.md.
# variants: every variant of the catalogue at N = 256 ... 16,384 (bench/attention_variants.lua)
#   -> bench/out/attention_variants.md.
# gpt: a GPT-2-style training step (the multiplication study's model: token and position
#   embeddings, pre-LN blocks, causal attention, GELU MLP, tied head, AdamW; batch 64 x 40 tokens)
#   at GPT_CONFIGS (default 2x128x4 and 4x256x4) and GPT_SHAPES (batch x tokens, default 64x40),
#   bench/gpt_step.lua against
#   bench/torch_ref/gpt_step.py (manual and sdpa attention) in the "omp" and "default" PyTorch
#   environments, under each OpenBLAS kernel choice of BLAS_KERNELS (below), GPT_ROUNDS rounds
#   interleaved -> bench/out/gpt_step.md.  Where nn.Linear's products run on attnlab's own AVX-512
#   kernel (core/blas_info.c), attnlab runs a second time with ATTNLAB_SGEMM=openblas beside it.
# conv: 2-D convolution forward and forward + backward on the visual-search CNN's shapes,
#   bench/conv_step.lua against bench/torch_ref/conv_step.py (F.conv2d) in the "omp" and "default"
#   environments, under each kernel choice of BLAS_KERNELS, CONV_ROUNDS rounds interleaved ->
#   bench/out/conv_step.md.
# sgemm: one thread's GFLOP/s of OpenBLAS's cblas_sgemm beside attnlab's own product on nn.Linear's
#   shapes in the gpt part's steps (bench/sgemm_rates.c), under each kernel choice of BLAS_KERNELS,
#   SGEMM_ROUNDS rounds -> bench/out/sgemm_rates.md.
# REF names the folder of the icl and attention reference scripts (default bench/torch_ref).
# Copy the tables into bench/RESULTS.md with the date.
set -euo pipefail   # a failing reference script fails the benchmark instead of losing its rows
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-1000}
ATTN_ROUNDS=${ATTN_ROUNDS:-2}
ATTN_NS=${ATTN_NS:-"512 1024 2048"}
GPT_ROUNDS=${GPT_ROUNDS:-3}
GPT_CONFIGS=${GPT_CONFIGS:-"2x128x4 4x256x4"}
GPT_SHAPES=${GPT_SHAPES:-"64x40"}   # batch x tokens: mult_transformer.py's; the study's 4 x 4 sft/aux is 128x19
CONV_ROUNDS=${CONV_ROUNDS:-3}
SGEMM_ROUNDS=${SGEMM_ROUNDS:-3}
REF=${REF:-bench/torch_ref}
PARTS=${*:-icl attention variants gpt conv sgemm}
mkdir -p bench/out

# PyTorch and the OpenMP OpenBLAS come from Debian; only the benchmark needs them.
need=""
for p in python3-torch python3-numpy libopenblas0-openmp; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
    echo "installing for the benchmark:$need"
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
fi
PY=/usr/bin/python3     # Debian's torch is visible to the system interpreter only
OMPLIB=$(dpkg -L libopenblas0-openmp 2>/dev/null | grep 'libopenblas.so.0$' | head -n 1)
MALLOC="MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=100000000000"

# The gpt and conv parts time both sides under each OpenBLAS kernel choice in BLAS_KERNELS: "env",
# as this environment sets OPENBLAS_CORETYPE, and "own", the variable removed so that OpenBLAS picks
# its kernel for the CPU (on an AVX-512 machine pinned to Haswell, the two differ by up to 1.8x in
# the products).  Where the variable is not set the two are the same, and "own" is not run twice.
BLAS_KERNELS=${BLAS_KERNELS:-"env own"}
[ -z "${OPENBLAS_CORETYPE:-}" ] && BLAS_KERNELS=${BLAS_KERNELS/own/}
blas_env() { if [ "$1" = own ]; then echo "env -u OPENBLAS_CORETYPE"; else echo "env"; fi; }
# tag ENV KERNEL: prefixes each JSON line with the environment and the kernel choice it ran under
tag() { sed "s/^{/{\"env\": \"$1\", \"blas\": \"$2\", /"; }

icl() {
    out=bench/out/icl_step.jsonl
    : > "$out"
    for round in $(seq "$ROUNDS"); do
        echo "round $round/$ROUNDS"
        ./attnlab --threads 2 bench/icl_step.lua steps="$STEPS" | sed "s/^{/{\"env\": \"attnlab\", /" >> "$out"
        ./attnlab --threads 1 bench/icl_step.lua steps="$STEPS" | sed "s/^{/{\"env\": \"attnlab-1-thread\", /" >> "$out"
        env "$PY" "$REF/icl_step.py" --time-only --steps "$STEPS" --threads 2 | tail -n 1 \
            | sed "s/^{/{\"env\": \"torch-default\", /" >> "$out"
        env OMP_WAIT_POLICY=PASSIVE $MALLOC "$PY" "$REF/icl_step.py" --time-only --steps "$STEPS" --threads 2 \
            | tail -n 1 | sed "s/^{/{\"env\": \"torch-tuned\", /" >> "$out"
        if [ -n "$OMPLIB" ]; then
            env LD_LIBRARY_PATH="${OMPLIB%/*}" $MALLOC "$PY" "$REF/icl_step.py" --time-only --steps "$STEPS" \
                --threads 2 | tail -n 1 | sed "s/^{/{\"env\": \"torch-omp\", /" >> "$out"
            # the same model computed as attnlab's MultiHeadAttention computes it here (keys and values
            # in the context's space), so that the comparison is of implementations, not of algebra
            env LD_LIBRARY_PATH="${OMPLIB%/*}" $MALLOC "$PY" "$REF/icl_step.py" --time-only --fold --steps "$STEPS" \
                --threads 2 | tail -n 1 | sed "s/^{/{\"env\": \"torch-omp-fold\", /" >> "$out"
        fi
    done

    # median of the per-process medians, per environment; the ratio against attnlab
    awk -v rounds="$ROUNDS" -v steps="$STEPS" '
        function median(list, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j] < list[j-1]; j--) { t = list[j]; list[j] = list[j-1]; list[j-1] = t }
            return n % 2 ? list[(n+1)/2] : (list[n/2] + list[n/2+1]) / 2
        }
        {
            match($0, /"env": "[^"]*"/); env = substr($0, RSTART + 8, RLENGTH - 9)
            match($0, /"ms_per_step_median": [0-9.]+/); ms = substr($0, RSTART + 22, RLENGTH - 22) + 0
            n[env]++; v[env, n[env]] = ms
            if (!(env in seen)) { seen[env] = 1; order[++k] = env }
        }
        END {
            for (e in n) { for (i = 1; i <= n[e]; i++) l[i] = v[e, i]; med[e] = median(l, n[e]) }
            printf "| implementation | ms/step (median of %d processes, %d steps each) | attnlab speed-up |\n", rounds, steps
            printf "|---|---|---|\n"
            for (i = 1; i <= k; i++) { e = order[i]; printf "| %s | %.3f | %.2fx |\n", e, med[e], med[e] / med["attnlab"] }
        }' "$out" | tee bench/out/icl_step.md
}

attention() {
    out=bench/out/attention_kernels.jsonl
    : > "$out"
    for round in $(seq "$ATTN_ROUNDS"); do
        echo "attention round $round/$ATTN_ROUNDS"
        ns=$(echo $ATTN_NS | tr ' ' ,)
        ./attnlab --threads 2 bench/attention_kernels.lua Ns="$ns" | sed 's/^{/{"setup": "attnlab", /' >> "$out"
        if [ -n "$OMPLIB" ]; then
            env LD_LIBRARY_PATH="${OMPLIB%/*}" $MALLOC "$PY" "$REF/attn_kernels.py" --Ns $ATTN_NS --threads 2 \
                --json /dev/stdout | grep '^{' | sed 's/^{/{"setup": "torch-omp", /' >> "$out"
        fi
        "$PY" "$REF/attn_kernels.py" --Ns $ATTN_NS --threads 2 --json /dev/stdout | grep '^{' \
            | sed 's/^{/{"setup": "torch-default", /' >> "$out"
    done
    ./attnlab bench/attention_table.lua file="$out" | tee bench/out/attention_kernels.md
}

variants() {
    ./attnlab --threads 2 bench/attention_variants.lua out=bench/out/attention_variants.md 2> bench/out/attention_variants.jsonl
}

gpt() {
    out=bench/out/gpt_step.jsonl
    : > "$out"
    # the kernel choices under which nn.Linear's products run on attnlab's own kernel (asked once)
    own_linear=""
    for kernel in $BLAS_KERNELS; do
        if [ "$($(blas_env "$kernel") ./attnlab -e 'io.write(select(3, lab.blas_kernel()))')" = attnlab-avx512 ]; then
            own_linear="$own_linear $kernel"
        fi
    done
    for round in $(seq "$GPT_ROUNDS"); do
        for cfg in $GPT_CONFIGS; do
          for shape in $GPT_SHAPES; do
            batch=${shape%x*} T=${shape#*x}
            for kernel in $BLAS_KERNELS; do
                echo "gpt round $round/$GPT_ROUNDS, $cfg, batch $batch x $T tokens, OpenBLAS kernel: $kernel"
                $(blas_env "$kernel") ./attnlab --threads 2 bench/gpt_step.lua config="$cfg" batch="$batch" T="$T" \
                    | tag attnlab "$kernel" >> "$out"
                # where nn.Linear's products run on attnlab's own kernel, the same build on OpenBLAS's
                if [[ " $own_linear " == *" $kernel "* ]]; then
                    $(blas_env "$kernel") ATTNLAB_SGEMM=openblas ./attnlab --threads 2 bench/gpt_step.lua config="$cfg" \
                        batch="$batch" T="$T" | tag attnlab-openblas "$kernel" >> "$out"
                fi
                for attn in manual sdpa; do
                    if [ -n "$OMPLIB" ]; then
                        $(blas_env "$kernel") LD_LIBRARY_PATH="${OMPLIB%/*}" $MALLOC "$PY" bench/torch_ref/gpt_step.py \
                            --config "$cfg" --batch "$batch" --T "$T" --attn "$attn" | tag torch-omp "$kernel" >> "$out"
                    fi
                    if [ "$kernel" = env ]; then   # as installed: this machine's environment as it is
                        "$PY" bench/torch_ref/gpt_step.py --config "$cfg" --batch "$batch" --T "$T" --attn "$attn" \
                            | tag torch-default env >> "$out"
                    fi
                done
            done
          done
        done
    done
    ./attnlab bench/gpt_table.lua file="$out" | tee bench/out/gpt_step.md
}

conv() {
    out=bench/out/conv_step.jsonl
    : > "$out"
    for round in $(seq "$CONV_ROUNDS"); do
        for kernel in $BLAS_KERNELS; do
            echo "conv round $round/$CONV_ROUNDS, OpenBLAS kernel: $kernel"
            $(blas_env "$kernel") ./attnlab --threads 2 bench/conv_step.lua | tag attnlab "$kernel" >> "$out"
            if [ -n "$OMPLIB" ]; then
                $(blas_env "$kernel") LD_LIBRARY_PATH="${OMPLIB%/*}" $MALLOC "$PY" bench/torch_ref/conv_step.py --threads 2 \
                    | tag torch-omp "$kernel" >> "$out"
            fi
            if [ "$kernel" = env ]; then
                "$PY" bench/torch_ref/conv_step.py --threads 2 | tag torch-default env >> "$out"
            fi
        done
    done
    ./attnlab bench/conv_table.lua file="$out" | tee bench/out/conv_step.md
}

sgemm() {
    out=bench/out/sgemm_rates.jsonl
    : > "$out"
    make -s build/bench/sgemm_rates
    for round in $(seq "$SGEMM_ROUNDS"); do
        for kernel in $BLAS_KERNELS; do
            echo "sgemm round $round/$SGEMM_ROUNDS, OpenBLAS kernel: $kernel"
            $(blas_env "$kernel") build/bench/sgemm_rates | tag attnlab "$kernel" >> "$out"
        done
    done
    ./attnlab bench/sgemm_table.lua file="$out" | tee bench/out/sgemm_rates.md
}

for part in $PARTS; do
    case $part in
        icl|attention|variants|gpt|conv|sgemm) $part ;;
        *) echo "bench/run.sh: unknown part '$part' (icl, attention, variants, gpt, conv, sgemm)" >&2; exit 2 ;;
    esac
done
