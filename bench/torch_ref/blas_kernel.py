"""The OpenBLAS kernel that this process's PyTorch runs its products on ("Haswell", "SkylakeX"...),
read from the OpenBLAS library the process has loaded, so that a benchmark line says which kernel
the reference ran beside attnlab's (bench/run.sh runs both under the same OPENBLAS_CORETYPE)."""
import ctypes


def blas_kernel():
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line and line.rstrip().endswith((".so.0", ".so.3"))}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS"
