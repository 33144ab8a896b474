/* ecc_pool.cu -- eccentricity pooling on the GPU: ops/ecc_pool2d.c's CUDA path.  The ring sizes come
 * from the host (one (Ho, Wo) map per fixation, computed by the CPU's rule and moved here), the
 * windows from ops/ecc_pool2d_window.h, compiled for the device.  A thread per output cell: the
 * average sums its window directly (in double; the CPU reads a summed-area table, so the two agree to
 * rounding), the maximum scans it and keeps the argmax (NaN wins, as on the CPU).  The backwards add
 * with atomics, a thread per output cell: max its gradient at the argmax, average its share to every
 * cell of its window. */
#include "cuda_internal.h"
#include "ops/ecc_pool2d_window.h"

/* the window size of output e's cell, from the map of its image's fixation */
static __device__ inline int64_t size_of(const ecc_geometry &g, const long long *sizes, int64_t n_fix, int64_t e) {
    const int64_t per_fix = g.Ho * g.Wo, plane = e / per_fix;
    return sizes[(n_fix == 1 ? 0 : plane / g.C) * per_fix + e % per_fix];
}

template <typename T>
static __global__ void forward_kernel(ecc_geometry g, const T *x, const long long *sizes, int64_t n_fix, bool is_max, T *y,
                                      long long *idx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        const T *xp = x + plane * g.H * g.W;
        int64_t h0, h1, w0, w1;
        window_of(&g, oy, ox, size_of(g, sizes, n_fix, e), &h0, &h1, &w0, &w1);
        if (is_max) {
            int64_t arg = h0 * g.W + w0;   /* never empty: the window holds the cell's own first row and column */
            T best = xp[arg];
            for (int64_t iy = h0; iy < h1; iy++)
                for (int64_t ix = w0; ix < w1; ix++) {
                    const T v = xp[iy * g.W + ix];
                    if (v > best || v != v) { best = v; arg = iy * g.W + ix; }
                }
            y[e] = best;
            idx[e] = arg;
        } else {
            double sum = 0;
            for (int64_t iy = h0; iy < h1; iy++)
                for (int64_t ix = w0; ix < w1; ix++) sum += (double)xp[iy * g.W + ix];
            y[e] = (T)(sum / (double)((h1 - h0) * (w1 - w0)));
        }
    }
}

template <typename T>
static __global__ void backward_kernel(ecc_geometry g, const T *dy, const long long *sizes, int64_t n_fix, const long long *idx,
                                       bool is_max, T *dx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        T *dp = dx + plane * g.H * g.W;
        if (is_max) { atomicAdd(dp + idx[e], dy[e]); continue; }
        int64_t h0, h1, w0, w1;
        window_of(&g, oy, ox, size_of(g, sizes, n_fix, e), &h0, &h1, &w0, &w1);
        const T share = (T)((double)dy[e] / (double)((h1 - h0) * (w1 - w0)));
        for (int64_t iy = h0; iy < h1; iy++)
            for (int64_t ix = w0; ix < w1; ix++) atomicAdd(dp + iy * g.W + ix, share);
    }
}

template <typename T>
static int forward_typed(const ecc_geometry *g, const al_tensor *x, const al_tensor *sizes, bool is_max, al_tensor *y, al_tensor *idx) {
    const int64_t n = al_numel(y);
    if (n == 0) return 0;
    forward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(
        *g, (const T *)al_ptr(x), (const long long *)al_ptr(sizes), sizes->shape[0], is_max, (T *)al_ptr(y),
        idx ? (long long *)al_ptr(idx) : NULL, n);
    return al_cuda_ok("ecc_pool2d", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_ecc_pool2d(const ecc_geometry *g, const al_tensor *x, const al_tensor *sizes, bool is_max, al_tensor *y,
                                  al_tensor *idx) {
    return x->dtype == AL_FLOAT32 ? forward_typed<float>(g, x, sizes, is_max, y, idx) : forward_typed<double>(g, x, sizes, is_max, y, idx);
}

template <typename T>
static int backward_typed(const ecc_geometry *g, const al_tensor *dy, const al_tensor *sizes, const al_tensor *idx, bool is_max,
                          al_tensor *dx) {
    const int64_t n = al_numel(dy);
    if (n == 0) return 0;
    backward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(
        *g, (const T *)al_ptr(dy), (const long long *)al_ptr(sizes), sizes->shape[0], idx ? (const long long *)al_ptr(idx) : NULL,
        is_max, (T *)al_ptr(dx), n);
    return al_cuda_ok("ecc_pool2d: backward", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_ecc_pool2d_backward(const ecc_geometry *g, const al_tensor *dy, const al_tensor *sizes, const al_tensor *idx,
                                           bool is_max, al_tensor *dx) {
    return dx->dtype == AL_FLOAT32 ? backward_typed<float>(g, dy, sizes, idx, is_max, dx)
                                   : backward_typed<double>(g, dy, sizes, idx, is_max, dx);
}
