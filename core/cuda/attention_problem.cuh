/* attention_problem.cuh -- what the two fused attention kernels of the CUDA backend share: one
 * call's operands as a kernel reads them (problem<T>), which keys a query sees (the CPU's rule), the
 * range of key tiles a block of queries needs and of query tiles a block of keys needs (so that tiles
 * wholly outside a causal triangle, a window or the row ranges are never loaded), and the staging of
 * rows into shared memory, and the warp reductions.  attention.cu computes with one logit per lane
 * in the compute type; attention_mma.cu, for bfloat16, on the tensor cores; sparse.cu (key lists) a
 * warp per query row; all three include this. */
#ifndef ATTNLAB_CUDA_ATTENTION_PROBLEM_CUH
#define ATTNLAB_CUDA_ATTENTION_PROBLEM_CUH

#include "cuda_internal.h"

enum { WARP = 32 };
static const unsigned FULL_WARP = 0xffffffffu;

static __device__ inline float exp_of(float x) { return expf(x); }
static __device__ inline double exp_of(double x) { return exp(x); }

/* the maximum and the sum of x over the 32 lanes of a warp, in every lane */
template <typename T> static __device__ inline T warp_max(T x) {
    for (int o = WARP / 2; o > 0; o /= 2) {
        const T y = __shfl_xor_sync(FULL_WARP, x, o);
        x = y > x ? y : x;
    }
    return x;
}
template <typename T> static __device__ inline T warp_sum(T x) {
    for (int o = WARP / 2; o > 0; o /= 2) x += __shfl_xor_sync(FULL_WARP, x, o);
    return x;
}

/* One call's operands as the kernels read them: typed pointers (offset included) and element strides. */
template <typename T> struct problem {
    const T *q, *k, *v, *bias, *mask;
    int64_t qs[4], ks[4], vs[4], bs[4], ms[4];
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;
    int64_t window;   /* > 0: the sliding window's band around each query's diagonal */
    const int64_t *row_lo, *row_end;   /* or each query's key range, non-decreasing in i (al_cuda_attention_args.ranges) */
    typename compute_type<T>::type scale;
};

template <typename T> static problem<T> problem_of(const al_cuda_attention_args *a) {
    problem<T> p = {};
    p.q = (const T *)al_ptr(a->q);
    p.k = (const T *)al_ptr(a->k);
    p.v = (const T *)al_ptr(a->v);
    p.bias = a->bias ? (const T *)al_ptr(a->bias) : NULL;
    p.mask = a->mask ? (const T *)al_ptr(a->mask) : NULL;
    for (int i = 0; i < 4; i++) {
        p.qs[i] = a->q->strides[i];
        p.ks[i] = a->k->strides[i];
        p.vs[i] = a->v->strides[i];
        p.bs[i] = a->bias ? a->bias->strides[i] : 0;
        p.ms[i] = a->mask ? a->mask->strides[i] : 0;
    }
    p.B = a->q->shape[0]; p.H = a->q->shape[1]; p.N = a->q->shape[2]; p.d = a->q->shape[3];
    p.Hkv = a->k->shape[1]; p.M = a->k->shape[2]; p.dv = a->v->shape[3];
    p.causal = a->causal;
    p.window = a->window;
    p.row_lo = a->ranges ? (const int64_t *)al_ptr(a->ranges) : NULL;
    p.row_end = a->ranges ? p.row_lo + a->ranges->shape[1] : NULL;
    p.scale = (typename compute_type<T>::type)a->scale;
    return p;
}

/* Query i's diagonal: the key position it lines up with (bottom-right alignment shifts it by M - N). */
template <typename T> static __device__ inline int64_t diagonal(const problem<T> &p, int64_t i) {
    return i + (p.causal == 2 ? p.M - p.N : 0);
}

/* Whether query i of (b, h) sees key j: in range, on the allowed side of the causal diagonal, within
 * the sliding window's band (or within its row's range, when the ranges are given), and not masked
 * (a mask entry 0 hides the key); the CPU's rule, attention_internal.h's visible_range. */
template <typename T>
static __device__ inline bool visible(const problem<T> &p, int64_t b, int64_t h, int64_t i, int64_t j) {
    if (i >= p.N || j >= p.M) return false;
    if (p.row_lo) {
        if (j < p.row_lo[i] || j >= p.row_end[i]) return false;
    } else {
        if (p.causal == 1 && j > i) return false;
        if (p.causal == 2 && j > i + p.M - p.N) return false;
        if (p.window > 0 && (j < diagonal(p, i) - p.window || j > diagonal(p, i) + p.window)) return false;
    }
    if (p.mask && convert<double>::from(p.mask[b * p.ms[0] + h * p.ms[1] + i * p.ms[2] + j * p.ms[3]]) == 0) return false;
    return true;
}

/* The logit of a visible (i, j): scale times the dot product, plus the bias. */
template <typename T, typename A>
static __device__ inline A logit(const problem<T> &p, int64_t b, int64_t h, int64_t i, int64_t j, A dot) {
    A s = p.scale * dot;
    if (p.bias) s += convert<A>::from(p.bias[b * p.bs[0] + h * p.bs[1] + i * p.bs[2] + j * p.bs[3]]);
    return s;
}

/* The keys some query of [i0, i0 + rows) may see lie in [key_start, key_end): every key; or, causal,
 * up to the last row's diagonal; or, with a sliding window, the band from the first row's diagonal
 * minus the window to the last row's plus it; or from the first row's range start to the last
 * row's range end (the tiles outside are never loaded, so a window costs O(N window d), not
 * O(N M d)). */
template <typename T> static __device__ inline int64_t key_end(const problem<T> &p, int64_t i0, int64_t rows) {
    const int64_t last = (i0 + rows < p.N ? i0 + rows : p.N) - 1;
    if (p.row_lo) return p.row_end[last];   /* the largest, the bounds being non-decreasing */
    int64_t end = p.M;
    if (p.causal) end = diagonal(p, last) + 1;
    else if (p.window > 0) end = diagonal(p, last) + p.window + 1;
    return end < 0 ? 0 : (end > p.M ? p.M : end);
}
template <typename T> static __device__ inline int64_t key_start(const problem<T> &p, int64_t i0) {
    if (p.row_lo) return p.row_lo[i0 < p.N ? i0 : p.N - 1];
    const int64_t start = p.window > 0 ? diagonal(p, i0) - p.window : 0;
    return start < 0 ? 0 : start;
}

/* The first i in [0, N) with bound[i] > x (N when none), bound non-decreasing: a binary search. */
static __device__ inline int64_t first_above(const int64_t *bound, int64_t N, int64_t x) {
    int64_t lo = 0, hi = N;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (bound[mid] > x) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* The queries that may see a key of [j0, j0 + rows) lie in [query_start, query_end): every query;
 * or, causal, from the row whose diagonal is j0; with a window, up to the row whose band still
 * reaches the last key (and, not causal, from the row whose band reaches j0); with row ranges, the
 * rows whose range ends past j0 and starts by the tile's last key. */
template <typename T> static __device__ inline int64_t query_start(const problem<T> &p, int64_t j0) {
    if (p.row_lo) return first_above(p.row_end, p.N, j0);   /* the first row whose range ends past j0 */
    const int64_t offset = p.causal == 2 ? p.M - p.N : 0;
    int64_t first = 0;
    if (p.causal) first = j0 - offset;
    else if (p.window > 0) first = j0 - p.window - offset;
    return first < 0 ? 0 : first;
}
template <typename T> static __device__ inline int64_t query_end(const problem<T> &p, int64_t j0, int64_t rows) {
    if (p.row_lo) return first_above(p.row_lo, p.N, j0 + rows - 1);   /* past the last row starting by the tile's end */
    if (p.window <= 0) return p.N;
    const int64_t end = j0 + rows - 1 + p.window - (p.causal == 2 ? p.M - p.N : 0) + 1;
    return end < 0 ? 0 : (end > p.N ? p.N : end);
}

/* Copies rows [r0, r0 + rows) of a (b, h) slice (strides s, width w) into shared memory at row stride
 * ld, converted to the compute type, zeros past row `limit`; every thread of the block takes part. */
template <typename A, typename T>
static __device__ void stage_rows(A *dst, int64_t ld, const T *src, const int64_t *s, int64_t b, int64_t h,
                                  int64_t r0, int rows, int64_t limit, int64_t w) {
    for (int64_t e = threadIdx.x; e < rows * w; e += blockDim.x) {
        const int64_t r = e / w, c = e % w;
        dst[r * ld + c] = r0 + r < limit ? convert<A>::from(src[b * s[0] + h * s[1] + (r0 + r) * s[2] + c * s[3]])
                                         : convert<A>::from(0.0f);
    }
}

/* attention_mma.cu: the tensor-core kernels, for the problems they take (bfloat16, d = dv of 16, 32,
 * 64 or 128, no bias, no mask, no window or row ranges); each launch returns 0, or -1 with the error set. */
bool attention_mma_applies(const problem<__nv_bfloat16> &p);
int attention_mma_forward(const problem<__nv_bfloat16> &p, __nv_bfloat16 *out, float *lse);
int attention_mma_backward(const problem<__nv_bfloat16> &p, const float *lse, const float *D, const __nv_bfloat16 *dO,
                           __nv_bfloat16 *dQ, __nv_bfloat16 *dK, __nv_bfloat16 *dV);

#endif
