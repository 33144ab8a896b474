/* reduce.cu -- sums, means, max/min/argmax along one dimension on the GPU, and max's backward.
 *
 * Data arrive as ops/reduce.c lays them out: contiguous (outer, R, inner) lines, R the reduced
 * size.  When inner = 1 (a reduction over the last dim, or over everything) each line is one block:
 * its threads stride over R and meet in a shared-memory tree, so a long line uses the whole block.
 * Otherwise one thread per (outer, inner) output walks R, and neighbouring threads read neighbouring
 * addresses (inner is the unit stride).  Sums accumulate in double, as the CPU does for long lines:
 * results match the CPU's to rounding, not bit for bit (the order of the additions differs). */
#include "cuda_internal.h"

enum { REDUCE_THREADS = 256 };

template <typename T>
static __global__ void sum_rows_kernel(const T *x, T *o, int64_t R, double scale) {
    __shared__ double partial[REDUCE_THREADS];
    const T *line = x + blockIdx.x * R;
    double acc = 0;
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc += (double)line[r];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) o[blockIdx.x] = (T)(partial[0] * scale);
}

template <typename T>
static __global__ void sum_columns_kernel(const T *x, T *o, int64_t outer, int64_t R, int64_t inner, double scale) {
    const int64_t n = outer * inner;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t a = k / inner, i = k % inner;
        const T *line = x + a * R * inner + i;
        double acc = 0;
        for (int64_t r = 0; r < R; r++) acc += (double)line[r * inner];
        o[k] = (T)(acc * scale);
    }
}

template <typename T>
static void launch_sum(const T *x, T *o, int64_t outer, int64_t R, int64_t inner, double scale) {
    cudaStream_t s = al_cuda_stream();
    if (inner == 1) {
        /* one block per line; grids of more than 2^31 - 1 lines do not occur below 2^40 elements */
        sum_rows_kernel<T><<<(unsigned)outer, REDUCE_THREADS, 0, s>>>(x, o, R, scale);
    } else {
        sum_columns_kernel<T><<<al_cuda_blocks(outer * inner, REDUCE_THREADS), REDUCE_THREADS, 0, s>>>(x, o, outer, R, inner, scale);
    }
}

extern "C" int al_cuda_sum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, double scale) {
    if (outer * inner == 0) return 0;
    if (x->dtype == AL_FLOAT32) launch_sum((const float *)al_ptr(x), (float *)al_ptr(out), outer, R, inner, scale);
    else launch_sum((const double *)al_ptr(x), (double *)al_ptr(out), outer, R, inner, scale);
    return al_cuda_ok("sum", cudaGetLastError()) ? 0 : -1;
}

/* ---- max, min, argmax: one thread per line (lines are short in practice: a vocabulary, a row of
 * logits); the first NaN of a line wins, as on the CPU. ---- */
template <typename T>
static __global__ void argbest_kernel(const T *x, T *vo, long long *io, int64_t outer, int64_t R, int64_t inner, bool want_max) {
    const int64_t n = outer * inner;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t a = k / inner, i = k % inner;
        const T *line = x + a * R * inner + i;
        T best = line[0];
        long long bi = 0;
        for (int64_t r = 1; r < R; r++) {
            T v = line[r * inner];
            bool better = want_max ? v > best : v < best;
            if (better || (v != v && best == best)) { best = v; bi = r; }
        }
        vo[k] = best;
        io[k] = bi;
    }
}

extern "C" int al_cuda_argbest_lines(const al_tensor *x, al_tensor *vals, al_tensor *idx, int64_t outer, int64_t R,
                                     int64_t inner, bool want_max) {
    const int64_t n = outer * inner;
    if (n == 0) return 0;
    const unsigned blocks = al_cuda_blocks(n, REDUCE_THREADS);
    cudaStream_t s = al_cuda_stream();
    if (x->dtype == AL_FLOAT32)
        argbest_kernel<float><<<blocks, REDUCE_THREADS, 0, s>>>((const float *)al_ptr(x), (float *)al_ptr(vals),
                                                                 (long long *)al_ptr(idx), outer, R, inner, want_max);
    else
        argbest_kernel<double><<<blocks, REDUCE_THREADS, 0, s>>>((const double *)al_ptr(x), (double *)al_ptr(vals),
                                                                  (long long *)al_ptr(idx), outer, R, inner, want_max);
    return al_cuda_ok("max", cudaGetLastError()) ? 0 : -1;
}

/* max's backward: each line's gradient goes to the position its max came from (gin zeroed first;
 * one writer per line, so no atomics). */
template <typename T>
static __global__ void scatter_best_kernel(T *gin, const T *g, const long long *idx, int64_t outer, int64_t R, int64_t inner) {
    const int64_t n = outer * inner;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t a = k / inner, i = k % inner;
        gin[(a * R + idx[k]) * inner + i] += g[k];
    }
}

extern "C" int al_cuda_scatter_best(al_tensor *gin, const al_tensor *g, const al_tensor *idx, int64_t outer, int64_t R,
                                    int64_t inner) {
    const int64_t n = outer * inner;
    if (n == 0) return 0;
    const unsigned blocks = al_cuda_blocks(n, REDUCE_THREADS);
    cudaStream_t s = al_cuda_stream();
    if (gin->dtype == AL_FLOAT32)
        scatter_best_kernel<float><<<blocks, REDUCE_THREADS, 0, s>>>((float *)al_ptr(gin), (const float *)al_ptr(g),
                                                                      (const long long *)al_ptr(idx), outer, R, inner);
    else
        scatter_best_kernel<double><<<blocks, REDUCE_THREADS, 0, s>>>((double *)al_ptr(gin), (const double *)al_ptr(g),
                                                                       (const long long *)al_ptr(idx), outer, R, inner);
    return al_cuda_ok("max", cudaGetLastError()) ? 0 : -1;
}
