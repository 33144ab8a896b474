/* threads.c -- how many threads the core uses, for OpenMP regions and OpenBLAS alike.
 * One setting for both, so that `--threads N` means N cores busy, not N + N spinning. */
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int n);

void al_set_num_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int al_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#ifndef AL_WITH_CUDA
int al_cuda_available(void) { return 0; }
#endif
