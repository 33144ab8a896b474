/* pool.cu -- max and average pooling on the GPU: ops/pool2d.c's CUDA path, forward and backward, with
 * the CPU's geometry and window rule (ops/pool2d_window.h, compiled here for the device).
 *
 * A thread per output element in the forwards (max keeps its argmax, iy W + ix within the plane: the
 * first on ties, NaN wins, -1 and -inf for a window with no input cell, as the CPU); a thread per
 * input element in the backwards, gathering from the outputs whose window covers it (tap_source,
 * cuda_internal.h), so no atomics: max adds dy where the output's argmax is this cell, average adds
 * dy / divisor of every covering window. */
#include "cuda_internal.h"
#include "ops/pool2d_window.h"
#include <math.h>

template <typename T>
static __global__ void max_forward_kernel(pool_geometry g, const T *x, T *y, long long *idx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        const T *xp = x + plane * g.H * g.W;
        const int64_t h0 = oy * g.sh - g.ph, w0 = ox * g.sw - g.pw;
        T best = -(T)INFINITY;
        int64_t arg = -1;
        for (int64_t i = 0; i < g.kh; i++) {
            const int64_t iy = h0 + i * g.dh;
            if (iy < 0 || iy >= g.H) continue;
            for (int64_t j = 0; j < g.kw; j++) {
                const int64_t ix = w0 + j * g.dw;
                if (ix < 0 || ix >= g.W) continue;
                const T v = xp[iy * g.W + ix];
                if (arg < 0 || v > best || v != v) { best = v; arg = iy * g.W + ix; }
            }
        }
        y[e] = best;
        idx[e] = arg;
    }
}

template <typename T>
static __global__ void max_backward_kernel(pool_geometry g, const T *dy, const long long *idx, T *dx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ix = e % g.W, iy = e / g.W % g.H, plane = e / (g.W * g.H), cell = iy * g.W + ix;
        const int64_t out0 = plane * g.Ho * g.Wo;
        T acc = 0;
        for (int64_t i = 0; i < g.kh; i++) {
            const int64_t oy = tap_source(iy, g.ph, i, g.dh, g.sh, g.Ho);
            if (oy < 0) continue;
            for (int64_t j = 0; j < g.kw; j++) {
                const int64_t ox = tap_source(ix, g.pw, j, g.dw, g.sw, g.Wo);
                if (ox >= 0 && idx[out0 + oy * g.Wo + ox] == cell) acc += dy[out0 + oy * g.Wo + ox];
            }
        }
        dx[e] = acc;
    }
}

template <typename T>
static __global__ void avg_forward_kernel(pool_geometry g, const T *x, T *y, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        const T *xp = x + plane * g.H * g.W;
        int64_t h0, h1, w0, w1;
        const double div = avg_window(&g, oy, ox, &h0, &h1, &w0, &w1);
        double sum = 0;
        for (int64_t iy = h0; iy < h1; iy++)
            for (int64_t ix = w0; ix < w1; ix++) sum += (double)xp[iy * g.W + ix];
        y[e] = (T)(div > 0 ? sum / div : 0);
    }
}

template <typename T>
static __global__ void avg_backward_kernel(pool_geometry g, const T *dy, T *dx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ix = e % g.W, iy = e / g.W % g.H, plane = e / (g.W * g.H);
        const int64_t out0 = plane * g.Ho * g.Wo;
        T acc = 0;
        for (int64_t i = 0; i < g.kh; i++) {
            const int64_t oy = tap_source(iy, g.ph, i, 1, g.sh, g.Ho);
            if (oy < 0) continue;
            for (int64_t j = 0; j < g.kw; j++) {
                const int64_t ox = tap_source(ix, g.pw, j, 1, g.sw, g.Wo);
                if (ox < 0) continue;
                int64_t h0, h1, w0, w1;
                const double div = avg_window(&g, oy, ox, &h0, &h1, &w0, &w1);
                if (div > 0) acc += (T)(dy[out0 + oy * g.Wo + ox] / div);
            }
        }
        dx[e] = acc;
    }
}

template <typename T>
static int max_forward_typed(const pool_geometry *g, const al_tensor *x, al_tensor *y, al_tensor *idx) {
    const int64_t n = al_numel(y);
    if (n == 0) return 0;
    max_forward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(x), (T *)al_ptr(y),
                                                                                (long long *)al_ptr(idx), n);
    return al_cuda_ok("max_pool2d", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_max_pool2d(const pool_geometry *g, const al_tensor *x, al_tensor *y, al_tensor *idx) {
    return x->dtype == AL_FLOAT32 ? max_forward_typed<float>(g, x, y, idx) : max_forward_typed<double>(g, x, y, idx);
}

template <typename T>
static int max_backward_typed(const pool_geometry *g, const al_tensor *dy, const al_tensor *idx, al_tensor *dx) {
    const int64_t n = al_numel(dx);
    if (n == 0) return 0;
    max_backward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(dy),
                                                                                 (const long long *)al_ptr(idx), (T *)al_ptr(dx), n);
    return al_cuda_ok("max_pool2d: backward", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_max_pool2d_backward(const pool_geometry *g, const al_tensor *dy, const al_tensor *idx, al_tensor *dx) {
    return dx->dtype == AL_FLOAT32 ? max_backward_typed<float>(g, dy, idx, dx) : max_backward_typed<double>(g, dy, idx, dx);
}

template <typename T> static int avg_forward_typed(const pool_geometry *g, const al_tensor *x, al_tensor *y) {
    const int64_t n = al_numel(y);
    if (n == 0) return 0;
    avg_forward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(x), (T *)al_ptr(y), n);
    return al_cuda_ok("avg_pool2d", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_avg_pool2d(const pool_geometry *g, const al_tensor *x, al_tensor *y) {
    return x->dtype == AL_FLOAT32 ? avg_forward_typed<float>(g, x, y) : avg_forward_typed<double>(g, x, y);
}

template <typename T> static int avg_backward_typed(const pool_geometry *g, const al_tensor *dy, al_tensor *dx) {
    const int64_t n = al_numel(dx);
    if (n == 0) return 0;
    avg_backward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(dy), (T *)al_ptr(dx), n);
    return al_cuda_ok("avg_pool2d: backward", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_avg_pool2d_backward(const pool_geometry *g, const al_tensor *dy, al_tensor *dx) {
    return dx->dtype == AL_FLOAT32 ? avg_backward_typed<float>(g, dy, dx) : avg_backward_typed<double>(g, dy, dx);
}
