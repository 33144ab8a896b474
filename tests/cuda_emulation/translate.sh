#!/bin/sh
# translate.sh IN.cu OUT.cpp -- a CUDA source as C++ for the emulation (tests/cuda_emulation): the
# pieces of CUDA syntax a C++ compiler cannot parse, or would parse with another meaning, become
# macros and calls of emulated_device.h,
#   kernel<<<grid, block, shared, stream>>>(args)  ->  emulated_launch(kernel, "kernel", grid, block, shared, stream)(args)
#   extern __shared__ TYPE NAME[];                  ->  EMULATED_DYNAMIC_SHARED(TYPE, NAME);
#   __shared__ TYPE NAME[N]...;                     ->  EMULATED_STATIC_SHARED(TYPE, NAME, [N]...);
# line for line (a #line directive keeps the .cu's name and numbers in messages).  What this does
# not recognise (a launch split over lines, a __shared__ scalar) is left as it was and stops here,
# never compiles wrongly.
set -eu
in=$1 out=$2
{
    printf '#line 1 "%s"\n' "$in"
    sed -E \
        -e 's/([A-Za-z_][A-Za-z0-9_]*(<[^<>]*>)?)<<<(.*)>>>\(/emulated_launch(\1, "\1", \3)(/g' \
        -e 's/extern __shared__ (.*[^A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)\[\];/EMULATED_DYNAMIC_SHARED(\1, \2);/' \
        -e 's/^([[:space:]]*)__shared__ (.*[^A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)(\[[^;]*\]);/\1EMULATED_STATIC_SHARED(\2, \3, \4);/' \
        "$in"
} >"$out.tmp"
if grep -nE '<<<|>>>|__shared__' "$out.tmp" >&2; then
    echo "$0: $in: CUDA syntax left untranslated (above)" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv -f "$out.tmp" "$out"
