/* attention_internal.h -- what the attention variants share: the validated problem description
 * and the signature every variant implements. */
#ifndef ATTNLAB_ATTENTION_INTERNAL_H
#define ATTNLAB_ATTENTION_INTERNAL_H
#include "../internal.h"

/* One attention call, after validation: q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), with
 * H a multiple of Hkv (grouped KV heads: query head h reads kv head h / (H / Hkv)).  bias and mask
 * are already expanded (as stride-0 views) to (B, H, N, M) and converted to q's dtype. */
typedef struct {
    const al_tensor *q, *k, *v, *bias, *mask;
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;          /* 0 none, 1 top-left, 2 bottom-right */
    double scale;
    double norm;         /* fixed normaliser of the "lsa" variant */
    int64_t window;      /* > 0: keys within this distance of the query's diagonal (sliding window) */
    int64_t kernel_size; /* > 0: the query's neighborhood of this many keys (neighborhood) */
    int64_t stride;      /* strided_neighborhood: queries per shared window (1: plain neighborhood) */
    int kernel;          /* 0 auto, 1 dense, 2 tiled (softmax over visible keys only) */
} attention_problem;

typedef al_tensor *(*attention_forward_fn)(const attention_problem *p, al_tensor **weights);

/* element offsets of a (b, h, i) row of a 4-d tensor whose last stride is 1 */
static inline int64_t row_offset(const al_tensor *t, int64_t b, int64_t h, int64_t i) {
    return t->offset + b * t->strides[0] + h * t->strides[1] + i * t->strides[2];
}

/* Keys visible from query i form a range [lo, end): a prefix under either causal convention, cut
 * to the band |j - diag| <= window around the query's diagonal position with a sliding window
 * (diag = i, or i + M - N for bottom-right alignment), or the k keys of i's neighborhood.  Keys
 * outside the range are never visited. */
static inline int64_t visible_range(const attention_problem *p, int64_t i, int64_t *lo) {
    const int64_t N = p->N, M = p->M, diag = i + (p->causal == 2 ? M - N : 0);
    int64_t e = p->causal ? diag + 1 : M, l = 0;
    if (p->kernel_size > 0) {   /* (strided) neighborhood, 1-D, dilation 1; N = M >= k checked */
        /* GNA (NATTEN flex single_dim_tiling_mask): queries in groups of `stride` share the window
         * of their leader; stride 1 is NATTEN's neighborhood (the window shifted at the borders) */
        const int64_t k = p->kernel_size, s = p->stride > 0 ? p->stride : 1, L = M;
        if (p->causal) {                                      /* j <= i and leader - j < k */
            int64_t leader = i / s * s + s - 1;
            if (leader > L - 1) leader = L - 1;
            l = leader - k + 1;
            e = i + 1;
        } else {
            int64_t leader = i / s * s + s / 2;
            if (leader > L - 1) leader = L - 1;
            const int64_t left = k / 2, right = k / 2 + k % 2 - 1;
            int64_t c = leader < left ? left : leader;
            if (c > L - 1 - right) c = L - 1 - right;
            l = c - left;
            e = c + right + 1;
        }
    } else if (p->window > 0) {
        l = diag - p->window;
        if (!p->causal && diag + p->window + 1 < e) e = diag + p->window + 1;
    }
    e = e < 0 ? 0 : (e > M ? M : e);
    l = l < 0 ? 0 : (l > e ? e : l);
    *lo = l;
    return e;
}

/* The variants (one file each). */
al_tensor *attention_softmax_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_lsa_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_linear_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_sliding_window_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_neighborhood_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_strided_neighborhood_forward(const attention_problem *p, al_tensor **weights);

/* Softmax attention over the visible keys (softmax, sliding_window, neighborhood variants): picks
 * the tiled kernel or the dense one (softmax.c). */
al_tensor *attention_softmax_over_visible(const attention_problem *p, const char *dense_name,
                                          const char *tiled_name, al_tensor **weights);
/* The tiled online-softmax kernel (tiled.c): no map, O(N) memory beyond inputs and outputs. */
al_tensor *attention_tiled_forward(const attention_problem *p, const char *name);

/* The dense kernel both use: normalise = softmax over allowed keys, or a fixed 1/norm. */
typedef enum { DENSE_SOFTMAX, DENSE_FIXED_NORM } dense_normalisation;
al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights);

#endif
