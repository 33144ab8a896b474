#!/bin/sh
# translate.sh IN.cu OUT.cpp -- a CUDA source as C++ for the emulation (tests/cuda_emulation): the
# two pieces of CUDA syntax a C++ compiler cannot parse become calls of emulated_device.h,
#   kernel<<<grid, block, shared, stream>>>(args)  ->  emulated_launch(kernel, "kernel", grid, block, shared, stream)(args)
#   extern __shared__ TYPE NAME[];                  ->  EMULATED_DYNAMIC_SHARED(TYPE, NAME);
# line for line (a #line directive keeps the .cu's name and numbers in messages).  A launch this
# does not recognise (one split over lines) is left as it was and stops here, never compiles wrongly.
set -eu
in=$1 out=$2
{
    printf '#line 1 "%s"\n' "$in"
    sed -E \
        -e 's/([A-Za-z_][A-Za-z0-9_]*(<[^<>]*>)?)<<<(.*)>>>\(/emulated_launch(\1, "\1", \3)(/g' \
        -e 's/extern __shared__ (.*[^A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)\[\];/EMULATED_DYNAMIC_SHARED(\1, \2);/' \
        "$in"
} >"$out.tmp"
if grep -nE '<<<|>>>|extern +__shared__' "$out.tmp" >&2; then
    echo "$0: $in: CUDA syntax left untranslated (above)" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv -f "$out.tmp" "$out"
