/* grouped_softmax.cu -- softmax within groups of equal labels along the last dim (attention/
 * grouped_softmax.c) on the GPU: a thread per entry scans its line for its group's maximum and sum,
 * the entries taken in position order (the CPU sorts each line by label, then position, and sums in
 * that order), so each entry gets the CPU's value: y_j = exp(x_j - max) / sum; backward
 * dx_j = y_j (g_j - sum_{j' in group} g_j' y_j').  O(n) a thread, O(n^2) a line, where the CPU sorts. */
#include "cuda_internal.h"
#include <math.h>

template <typename T>
static __global__ void grouped_softmax_kernel(const T *x, const int64_t *labels, const T *g, T *y, int64_t lines, int64_t n,
                                              bool backward) {
    const int64_t total = lines * n;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t base = e / n * n, label = labels[e];
        if (backward) {   /* x holds the saved y */
            T dot = 0;
            for (int64_t i = base; i < base + n; i++) if (labels[i] == label) dot += g[i] * x[i];
            y[e] = x[e] * (g[e] - dot);
            continue;
        }
        T mx = -INFINITY, z = 0;
        for (int64_t i = base; i < base + n; i++) if (labels[i] == label && x[i] > mx) mx = x[i];
        if (mx == -INFINITY) mx = 0;
        for (int64_t i = base; i < base + n; i++) if (labels[i] == label) z += (T)exp((double)(x[i] - mx));
        const T inv = z > 0 ? (T)1 / z : (T)0;
        y[e] = (T)exp((double)(x[e] - mx)) * inv;
    }
}

extern "C" int al_cuda_grouped_softmax(const al_tensor *x, const al_tensor *labels, const al_tensor *g, al_tensor *y,
                                       int64_t lines, int64_t n, bool backward) {
    if (lines * n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(lines * n, threads);
    const int64_t *lab = (const int64_t *)al_ptr(labels);
    if (x->dtype == AL_FLOAT32)
        grouped_softmax_kernel<float><<<blocks, threads, 0, al_cuda_stream()>>>(
            (const float *)al_ptr(x), lab, g ? (const float *)al_ptr(g) : NULL, (float *)al_ptr(y), lines, n, backward);
    else
        grouped_softmax_kernel<double><<<blocks, threads, 0, al_cuda_stream()>>>(
            (const double *)al_ptr(x), lab, g ? (const double *)al_ptr(g) : NULL, (double *)al_ptr(y), lines, n, backward);
    return al_cuda_ok("grouped_softmax", cudaGetLastError()) ? 0 : -1;
}
