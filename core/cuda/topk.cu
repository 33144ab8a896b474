/* topk.cu -- topk_mask's selection (attention/topk_mask.c) on the GPU: keep = 1 where an entry's rank
 * in its line is below k, the rank counted by a thread per entry over its line in the CPU's order
 * (attention/score_order.h: the larger score first, NaN last, ties to the lower position).  O(n) a
 * thread, O(n^2) a line, where the CPU sorts; the same mask. */
#include "cuda_internal.h"
#include "attention/score_order.h"

template <typename T>
static __global__ void topk_keep_kernel(const T *scores, T *keep, int64_t lines, int64_t n, int64_t k) {
    const int64_t total = lines * n;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t line = e / n, j = e % n;
        const T *row = scores + line * n;
        int64_t rank = 0;
        for (int64_t i = 0; i < n && rank < k; i++) rank += score_precedes(row[i], i, row[j], j);
        keep[e] = rank < k ? (T)1 : (T)0;
    }
}

extern "C" int al_cuda_topk_keep(const al_tensor *scores, al_tensor *keep, int64_t lines, int64_t n, int64_t k) {
    if (lines * n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(lines * n, threads);
    if (scores->dtype == AL_FLOAT32)
        topk_keep_kernel<float><<<blocks, threads, 0, al_cuda_stream()>>>((const float *)al_ptr(scores), (float *)al_ptr(keep),
                                                                           lines, n, k);
    else
        topk_keep_kernel<double><<<blocks, threads, 0, al_cuda_stream()>>>((const double *)al_ptr(scores), (double *)al_ptr(keep),
                                                                            lines, n, k);
    return al_cuda_ok("topk_mask", cudaGetLastError()) ? 0 : -1;
}
