/* relative.cu -- the gather and scatter by clipped relative distance (attention/relative.c's
 * relative_gather and relative_scatter, the "relative" variant's index maps) on the GPU: the CPU's
 * row function (generic/relative_index_rows.h, compiled for the device too) a thread per row, so
 * the scatter's sums add in the CPU's order.  src and dst contiguous. */
#include "cuda_internal.h"

/* relative_index_row_float and relative_index_row_double */
#define GENERIC_FILE "../generic/relative_index_rows.h"
#include "generic/float_types.h"

static __device__ inline void index_row(const float *src, float *dst, int64_t n, int64_t N, int64_t M, int64_t W,
                                        int64_t shift, bool scatter) {
    relative_index_row_float(src, dst, n, N, M, W, shift, scatter);
}
static __device__ inline void index_row(const double *src, double *dst, int64_t n, int64_t N, int64_t M, int64_t W,
                                        int64_t shift, bool scatter) {
    relative_index_row_double(src, dst, n, N, M, W, shift, scatter);
}

template <typename T>
static __global__ void relative_index_kernel(const T *src, T *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                                             int64_t shift, bool scatter) {
    for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < rows; n += (int64_t)gridDim.x * blockDim.x)
        index_row(src, dst, n, N, M, W, shift, scatter);
}

extern "C" int al_cuda_relative_index(const al_tensor *src, al_tensor *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                                      int64_t shift, bool scatter) {
    const char *fn = scatter ? "relative_scatter" : "relative_gather";
    if (rows == 0) return 0;
    const int threads = 128;
    if (src->dtype == AL_FLOAT32)
        relative_index_kernel<float><<<al_cuda_blocks(rows, threads), threads, 0, al_cuda_stream()>>>(
            (const float *)al_ptr(src), (float *)al_ptr(dst), rows, N, M, W, shift, scatter);
    else
        relative_index_kernel<double><<<al_cuda_blocks(rows, threads), threads, 0, al_cuda_stream()>>>(
            (const double *)al_ptr(src), (double *)al_ptr(dst), rows, N, M, W, shift, scatter);
    return al_cuda_ok(fn, cudaGetLastError()) ? 0 : -1;
}
