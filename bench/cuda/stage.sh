#!/usr/bin/env bash
# bench/cuda/stage.sh -- here, before a call to the GPU machine: builds the CUDA programs (make
# CUDA=1: the attnlab program and every tests/cuda program) and gathers them, with the Debian
# libraries they link that the GPU machine lacks, into build-cuda/carry/ (about 45 MB), the one
# folder that the call carries.  The GPU machine has CUDA 13 (cudart, cuBLAS) and a newer glibc
# than Debian 12's, so those stay behind.  Then, on the device tool:
#   run(command = "bash bench/cuda/device_check.sh", carry = ["build-cuda/carry"], timeout_s = 540)
set -euo pipefail
cd "$(dirname "$0")/../.."
make --no-print-directory -j"$(nproc)" CUDA=1 all $(ls tests/cuda/test_*.c | sed 's|tests/cuda/\(.*\)\.c|build-cuda/tests/\1|')
make --no-print-directory -j"$(nproc)" all >/dev/null   # ./attnlab back on the CPU build for this machine
carry=build-cuda/carry
rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib"
cp build-cuda/attnlab build-cuda/tests/test_cuda* "$carry/bin/"
# the libraries from Debian packages (not CUDA's, not glibc's or the compiler runtime's own, which the
# GPU machine has in newer versions)
ldd "$carry"/bin/* | awk '/=> \// {print $3}' | sort -u | grep -v '^/usr/local/cuda' \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s)\.so' | while read -r lib; do
    cp -L "$lib" "$carry/lib/"
done
du -sh "$carry"
ls "$carry/bin" "$carry/lib"
