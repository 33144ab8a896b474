/* solve.cu -- batched linear solves on the GPU (ops/matmul.c's al_solve, for the small systems of the
 * studies' baselines and probes): a thread per system, the CPU's Gaussian elimination with partial
 * pivoting in float64, line for line, on a copy of A; a zero pivot marks the batch singular. */
#include "cuda_internal.h"
#include <math.h>

static __global__ void solve_kernel(double *M, double *R, int64_t n, int64_t kc, int64_t nbatch, long long *singular) {
    for (int64_t bi = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; bi < nbatch; bi += (int64_t)gridDim.x * blockDim.x) {
        double *m = M + bi * n * n, *r = R + bi * n * kc;
        bool ok = true;
        for (int64_t col = 0; col < n && ok; col++) {
            int64_t piv = col;
            for (int64_t q = col + 1; q < n; q++) if (fabs(m[q * n + col]) > fabs(m[piv * n + col])) piv = q;
            if (m[piv * n + col] == 0) { ok = false; break; }
            if (piv != col) {
                for (int64_t c = 0; c < n; c++) { const double t = m[col * n + c]; m[col * n + c] = m[piv * n + c]; m[piv * n + c] = t; }
                for (int64_t c = 0; c < kc; c++) { const double t = r[col * kc + c]; r[col * kc + c] = r[piv * kc + c]; r[piv * kc + c] = t; }
            }
            for (int64_t q = col + 1; q < n; q++) {
                const double f = m[q * n + col] / m[col * n + col];
                for (int64_t c = col; c < n; c++) m[q * n + c] -= f * m[col * n + c];
                for (int64_t c = 0; c < kc; c++) r[q * kc + c] -= f * r[col * kc + c];
            }
        }
        if (!ok) { *singular = 1; continue; }   /* every thread that finds one writes the same 1 */
        for (int64_t col = n - 1; col >= 0; col--)
            for (int64_t c = 0; c < kc; c++) {
                double s = r[col * kc + c];
                for (int64_t q = col + 1; q < n; q++) s -= m[col * n + q] * r[q * kc + c];
                r[col * kc + c] = s / m[col * n + col];
            }
    }
}

extern "C" int al_cuda_solve(const al_tensor *A, al_tensor *work, int64_t n, int64_t kc, int64_t nbatch) {
    if (n == 0 || nbatch == 0) return 0;
    const int64_t one = 1;
    al_tensor *M = al_new_tensor_on(A->ndim, A->shape, AL_FLOAT64, AL_CUDA), *flag = al_full_on(1, &one, 0, AL_INT64, AL_CUDA);
    long long singular = 0;
    int rc = -1;
    if (M && flag && al_cuda_copy_into(M, A, A->strides, false) == 0) {
        solve_kernel<<<al_cuda_blocks(nbatch, 64), 64, 0, al_cuda_stream()>>>((double *)al_ptr(M), (double *)al_ptr(work), n, kc,
                                                                               nbatch, (long long *)al_ptr(flag));
        if (al_cuda_ok("solve", cudaGetLastError()) &&
            al_cuda_memcpy("solve", &singular, AL_CPU, al_ptr(flag), AL_CUDA, sizeof singular) == 0)
            rc = singular ? 1 : 0;
    }
    al_release(M); al_release(flag);
    return rc;
}
