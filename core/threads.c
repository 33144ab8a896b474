/* threads.c -- one thread pool for everything: OpenMP.
 *
 * OpenBLAS (Debian's default build) brings its own pthread pool.  With both pools alive on two
 * cores, each spins while the other works, and a toy-task training step gets 5x slower (measured:
 * 11.7 vs 1.8 ms).  So OpenBLAS is kept single-threaded, and the core splits large products across
 * its OpenMP threads itself (ops/matmul.c).  `--threads N` then means N busy cores, no more. */
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int n);

__attribute__((constructor)) static void single_threaded_blas(void) { openblas_set_num_threads(1); }

void al_set_num_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(1);
}

int al_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

