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

/* ---- gather along a dim and its backward --------------------------------------------------------
 * out[k] = t[pos(k) with dim d replaced by idx[k]], k over idx's (contiguous) elements, t read through
 * its strides; the backward adds g[k] at the same place of a zeroed, contiguous gx, with atomics (the
 * same place may be gathered several times).  The ids were checked on the device before. */
struct gather_geometry {
    int ndim, d;
    int64_t idx_shape[AL_MAX_DIMS];
    int64_t t_strides[AL_MAX_DIMS];
};

static gather_geometry geometry_of(const al_tensor *t, const al_tensor *idx, int d, const int64_t *strides) {
    gather_geometry g;
    g.ndim = t->ndim;
    g.d = d;
    for (int i = 0; i < t->ndim; i++) { g.idx_shape[i] = idx->shape[i]; g.t_strides[i] = strides[i]; }
    return g;
}

static __device__ int64_t gather_offset(const gather_geometry &g, const long long *idx, int64_t k) {
    int64_t off = 0, r = k;
    for (int i = g.ndim - 1; i >= 0; i--) {
        const int64_t pos = r % g.idx_shape[i];
        r /= g.idx_shape[i];
        off += (i == g.d ? (int64_t)idx[k] : pos) * g.t_strides[i];
    }
    return off;
}

template <typename T>
static __global__ void gather_kernel(const T *t, const long long *idx, T *out, gather_geometry g, int64_t n) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
        out[k] = t[gather_offset(g, idx, k)];
}

template <typename T>
static __global__ void gather_backward_kernel(T *gx, const long long *idx, const T *g, gather_geometry geo, int64_t n) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
        atomicAdd(gx + gather_offset(geo, idx, k), g[k]);
}

extern "C" int al_cuda_gather(const al_tensor *t, int d, const al_tensor *idx, al_tensor *out) {
    const int64_t n = al_numel(idx);
    if (n == 0) return 0;
    const gather_geometry g = geometry_of(t, idx, d, t->strides);
    const unsigned blocks = al_cuda_blocks(n, REDUCE_THREADS);
    cudaStream_t s = al_cuda_stream();
    const long long *ip = (const long long *)al_ptr(idx);
    if (t->dtype == AL_FLOAT32)
        gather_kernel<float><<<blocks, REDUCE_THREADS, 0, s>>>((const float *)al_ptr(t), ip, (float *)al_ptr(out), g, n);
    else if (t->dtype == AL_FLOAT64)
        gather_kernel<double><<<blocks, REDUCE_THREADS, 0, s>>>((const double *)al_ptr(t), ip, (double *)al_ptr(out), g, n);
    else
        gather_kernel<long long><<<blocks, REDUCE_THREADS, 0, s>>>((const long long *)al_ptr(t), ip, (long long *)al_ptr(out), g, n);
    return al_cuda_ok("gather", cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_gather_backward(al_tensor *gx, int d, const al_tensor *idx, const al_tensor *g) {
    const int64_t n = al_numel(idx);
    if (n == 0) return 0;
    const gather_geometry geo = geometry_of(gx, idx, d, gx->strides);
    const unsigned blocks = al_cuda_blocks(n, REDUCE_THREADS);
    cudaStream_t s = al_cuda_stream();
    const long long *ip = (const long long *)al_ptr(idx);
    if (gx->dtype == AL_FLOAT32)
        gather_backward_kernel<float><<<blocks, REDUCE_THREADS, 0, s>>>((float *)al_ptr(gx), ip, (const float *)al_ptr(g), geo, n);
    else
        gather_backward_kernel<double><<<blocks, REDUCE_THREADS, 0, s>>>((double *)al_ptr(gx), ip, (const double *)al_ptr(g), geo, n);
    return al_cuda_ok("gather", cudaGetLastError()) ? 0 : -1;
}

/* ---- cumsum: one thread per (outer, inner) line walks R in order, summing in double, exactly as
 * the CPU's cumsum_lines does (so the results are the CPU's to the last bit) ---- */
template <typename T>
static __global__ void cumsum_kernel(const T *x, T *o, int64_t outer, int64_t R, int64_t inner, bool reverse) {
    const int64_t n = outer * inner;
    for (int64_t line = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; line < n; line += (int64_t)gridDim.x * blockDim.x) {
        const int64_t a = line / inner, i = line % inner;
        double acc = 0;
        for (int64_t k = 0; k < R; k++) {
            const int64_t r = reverse ? R - 1 - k : k, at = (a * R + r) * inner + i;
            acc += (double)x[at];
            o[at] = (T)acc;
        }
    }
}

extern "C" int al_cuda_cumsum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, bool reverse) {
    const int64_t n = outer * inner;
    if (n == 0 || R == 0) return 0;
    const unsigned blocks = al_cuda_blocks(n, REDUCE_THREADS);
    cudaStream_t s = al_cuda_stream();
    if (x->dtype == AL_FLOAT32)
        cumsum_kernel<float><<<blocks, REDUCE_THREADS, 0, s>>>((const float *)al_ptr(x), (float *)al_ptr(out), outer, R, inner, reverse);
    else
        cumsum_kernel<double><<<blocks, REDUCE_THREADS, 0, s>>>((const double *)al_ptr(x), (double *)al_ptr(out), outer, R, inner, reverse);
    return al_cuda_ok("cumsum", cudaGetLastError()) ? 0 : -1;
}
