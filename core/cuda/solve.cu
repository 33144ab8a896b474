/* solve.cu -- batched linear solves on the GPU (ops/matmul.c's al_solve, for the small systems of the
 * studies' baselines and probes): a thread per system, the CPU's Gaussian elimination with partial
 * pivoting in float64 (ops/solve_system.h, compiled for the device) on a copy of A; a zero pivot
 * marks the batch singular. */
#include "cuda_internal.h"
#include "ops/solve_system.h"

static __global__ void solve_kernel(double *M, double *R, int64_t n, int64_t kc, int64_t nbatch, long long *singular) {
    for (int64_t bi = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; bi < nbatch; bi += (int64_t)gridDim.x * blockDim.x)
        if (!solve_system(M + bi * n * n, R + bi * n * kc, n, kc)) *singular = 1;   /* every thread that finds one writes the same 1 */
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
