/* scatter_mean.cu -- routing's scatter_mean (attention/routing.c) on the GPU: the mean of a query's
 * (cluster, query) rows.  Forward (scatter): a thread per output element (b h, query n, column c)
 * adds its slots in slot order, as the CPU's loop (generic/scatter_mean_rows.h) does, so the sums
 * match; backward (gather): a thread per slot element.  index (B, H, S) int64, count (B, H, N)
 * float64, src and out contiguous. */
#include "cuda_internal.h"

template <typename T>
static __global__ void scatter_mean_kernel(const T *src, T *out, const int64_t *index, const double *count, int64_t BH,
                                           int64_t N, int64_t S, int64_t w, bool gather) {
    const int64_t total = BH * (gather ? S : N) * w;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = e % w, r = e / w, bh = r / (gather ? S : N);
        if (gather) {   /* r is the slot bh S + s */
            const int64_t row = bh * N + index[r];
            out[e] = (T)(1.0 / count[row]) * src[row * w + c];
            continue;
        }
        const int64_t n = r % N;   /* r is the row bh N + n */
        T sum = 0;
        for (int64_t s = 0; s < S; s++)
            if (index[bh * S + s] == n) sum += (T)(1.0 / count[r]) * src[(bh * S + s) * w + c];
        out[e] = sum;
    }
}

extern "C" int al_cuda_scatter_mean(const al_tensor *src, al_tensor *out, const al_tensor *index, const al_tensor *count,
                                    int64_t BH, int64_t N, int64_t S, int64_t w, bool gather) {
    const int64_t total = BH * (gather ? S : N) * w;
    if (total == 0) return 0;
    const int threads = 256;
    const int64_t *idx = (const int64_t *)al_ptr(index);
    const double *cnt = (const double *)al_ptr(count);
    if (src->dtype == AL_FLOAT32)
        scatter_mean_kernel<float><<<al_cuda_blocks(total, threads), threads, 0, al_cuda_stream()>>>(
            (const float *)al_ptr(src), (float *)al_ptr(out), idx, cnt, BH, N, S, w, gather);
    else
        scatter_mean_kernel<double><<<al_cuda_blocks(total, threads), threads, 0, al_cuda_stream()>>>(
            (const double *)al_ptr(src), (double *)al_ptr(out), idx, cnt, BH, N, S, w, gather);
    return al_cuda_ok("attention", cudaGetLastError()) ? 0 : -1;
}
