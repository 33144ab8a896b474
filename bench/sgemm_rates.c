/* bench/sgemm_rates.c -- GFLOP/s of one thread's float products on the shapes nn.Linear multiplies in
 * bench/gpt_step.lua's steps: OpenBLAS's cblas_sgemm (with whatever kernel OPENBLAS_CORETYPE or the
 * CPU selects, held to one thread) beside attnlab's own product (core/ops/sgemm_avx512.c), the two
 * called alternately on the same operands, best of `reps` calls each.  One JSON line per shape,
 * with the largest difference between the two results.  bench/run.sh's sgemm part builds and runs it.
 *   build/bench/sgemm_rates [reps]
 * Shapes: (rows, out, in) of the forward (x W^T: A untransposed, B transposed), dx (g W) and dW
 * (g^T x: A transposed) for 2x128 (64 x 40 rows: half of 2,560 per thread) and 4x256. */
#include "attnlab.h"
#include "internal.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

extern void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 60;
    openblas_set_num_threads(1);
    /* m, n, k, a transposed, b transposed */
    static const int shapes[][5] = {{1280, 384, 128, 0, 1}, {1280, 128, 384, 0, 0}, {384, 128, 2560, 1, 0},
                                    {1280, 512, 128, 0, 1}, {1280, 128, 512, 0, 0}, {256, 128, 2560, 1, 0},
                                    {1280, 768, 256, 0, 1}, {1280, 256, 768, 0, 0}, {384, 256, 2560, 1, 0},
                                    {1280, 1024, 256, 0, 1}, {1280, 256, 1024, 0, 0}, {512, 256, 2560, 1, 0}};
    if (!al_sgemm_own_available()) { fprintf(stderr, "sgemm_rates: this build has no AVX-512 product\n"); return 1; }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
        float *a = malloc(sizeof(float) * (size_t)m * (size_t)k), *b = malloc(sizeof(float) * (size_t)k * (size_t)n);
        float *c1 = malloc(sizeof(float) * (size_t)m * (size_t)n), *c2 = malloc(sizeof(float) * (size_t)m * (size_t)n);
        unsigned state = 12345u;
        for (long i = 0; i < (long)m * k; i++) { state = state * 1664525u + 1013904223u; a[i] = (float)(state >> 8) / 16777216.0f - 0.5f; }
        for (long i = 0; i < (long)k * n; i++) { state = state * 1664525u + 1013904223u; b[i] = (float)(state >> 8) / 16777216.0f - 0.5f; }
        double best_blas = 1e30, best_own = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
                        ta ? m : k, b, tb ? k : n, 0.0f, c1, n);
            double t1 = now();
            al_sgemm_own(ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, 0.0f, c2, n);
            double t2 = now();
            if (t1 - t0 < best_blas) best_blas = t1 - t0;
            if (t2 - t1 < best_own) best_own = t2 - t1;
        }
        double diff = 0;
        for (long i = 0; i < (long)m * n; i++) diff = fmax(diff, fabs((double)c1[i] - (double)c2[i]));
        const double flop = 2.0 * m * n * k;
        printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"a_trans\": %d, \"b_trans\": %d, \"blas_kernel\": \"%s\", "
               "\"openblas_gflops\": %.1f, \"attnlab_gflops\": %.1f, \"max_abs_diff\": %.3g}\n",
               m, n, k, ta, tb, al_blas_kernel(), flop / best_blas / 1e9, flop / best_own / 1e9, diff);
        free(a); free(b); free(c1); free(c2);
    }
    return 0;
}
