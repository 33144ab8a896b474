/* relative.cu -- the gather and scatter by clipped relative distance (attention/relative.c's
 * relative_gather and relative_scatter, the "relative" variant's index maps) on the GPU: a thread
 * per row, the CPU's loop (generic/relative_index_rows.h) line for line, so the scatter's sums add
 * in the CPU's order.  src and dst contiguous, (rows, W) and (rows, M) one way or the other. */
#include "cuda_internal.h"

template <typename T>
static __global__ void relative_index_kernel(const T *src, T *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                                             int64_t shift, bool scatter) {
    const int64_t k = (W - 1) / 2;
    for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < rows; n += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = n % N;
        if (scatter) for (int64_t c = 0; c < W; c++) dst[n * W + c] = 0;
        for (int64_t j = 0; j < M; j++) {
            int64_t x = j - i - shift;
            x = (x < -k ? -k : (x > k ? k : x)) + k;
            if (scatter) dst[n * W + x] += src[n * M + j];
            else dst[n * M + j] = src[n * W + x];
        }
    }
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
