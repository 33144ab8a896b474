/* dense.c -- the dense attention kernel: logits, normalisation, weighted sum, and the backward,
 * one (batch, kv head) group per thread.
 *
 * Shapes (per group): q (Hg, N, d), k (M, d), v (M, dv), P (Hg, N, M) kept for the backward.
 * Exact, and fast for the toy tasks' small maps.  P is kept for the backward only while it is small
 * (map_limit_bytes); above that the forward keeps each row's log-sum-exp and the backward
 * recomputes the row, so memory is O(N) per head beyond the inputs and the gradients (a blocked
 * kernel that reuses key tiles across queries, for speed on long sequences, is still to come).
 *
 *   S = scale * q k^T + bias, masked (causal, mask) entries excluded
 *   softmax:    P = softmax_row(S) over allowed keys (a row with none allowed is all 0)
 *   fixed norm: P = S / norm on allowed keys, 0 elsewhere ("lsa", linear self-attention)
 *   O = P v
 * Backward: dV = P^T dO; dP = dO v^T; dS = P (dP - rowsum(dP P)) (softmax) or dP / norm;
 *           dq = scale dS k; dk = scale dS^T q; dbias = dS. */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    attention_problem p;
    dense_normalisation kind;
    bool recompute;            /* saved[0] is the row log-sum-exp (B, H, N), not the map */
} dense_ctx;

/* Maps larger than this are not kept for the backward: the forward keeps the row log-sum-exp and
 * the backward recomputes each row's probabilities (O(N) memory per head instead of O(N M)). */
static int64_t map_limit_bytes = (int64_t)64 << 20;
void al_attention_set_map_limit(int64_t bytes) { map_limit_bytes = bytes < 0 ? 0 : bytes; }

/* out[j] = scale * <x, rows[j]> for j < n, rows[j] = base + j * stride: four rows at a time, so
 * that four independent sums hide the latency of a chain of fused multiply-adds (with heads as
 * short as the toy tasks' 6, one chain per row left the core idle most of the time). */
#define DOTS(T)                                                                                 \
static inline __attribute__((always_inline)) void dots_impl_##T(const T *restrict x, const T *restrict base, int64_t stride, int64_t width, \
                     int64_t n, T scale, T *restrict out) {                                     \
    int64_t j = 0;                                                                              \
    for (; j + 4 <= n; j += 4) {                                                                \
        const T *r0 = base + j * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride; \
        T a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                                       \
        for (int64_t c = 0; c < width; c++) {                                                   \
            const T xc = x[c];                                                                  \
            a0 += xc * r0[c]; a1 += xc * r1[c]; a2 += xc * r2[c]; a3 += xc * r3[c];             \
        }                                                                                       \
        out[j] = a0 * scale; out[j + 1] = a1 * scale; out[j + 2] = a2 * scale; out[j + 3] = a3 * scale; \
    }                                                                                           \
    for (; j < n; j++) {                                                                        \
        const T *r = base + j * stride;                                                         \
        T a = 0;                                                                                \
        for (int64_t c = 0; c < width; c++) a += x[c] * r[c];                                   \
        out[j] = a * scale;                                                                     \
    }                                                                                           \
}
DOTS(float)
DOTS(double)

/* out[c] = scale * sum_j w[j] * rows[j][c] for c < width, over n rows; restrict lets the sums stay
 * in registers across rows instead of a store and reload per row. */
#define WEIGHTED_ROWS(T)                                                                        \
static inline __attribute__((always_inline)) void weighted_rows_impl_##T(const T *restrict w, const T *restrict base, int64_t stride,      \
                              int64_t width, int64_t n, T scale, T *restrict out) {             \
    T even[width > 0 ? width : 1], odd[width > 0 ? width : 1];  /* two partial sums (a VLA of 0 is UB) */ \
    for (int64_t c = 0; c < width; c++) even[c] = odd[c] = 0;                                   \
    int64_t j = 0;                                                                              \
    for (; j + 2 <= n; j += 2) {                                                                \
        const T w0 = w[j], w1 = w[j + 1], *r0 = base + j * stride, *r1 = r0 + stride;           \
        for (int64_t c = 0; c < width; c++) { even[c] += w0 * r0[c]; odd[c] += w1 * r1[c]; }    \
    }                                                                                           \
    if (j < n) for (int64_t c = 0; c < width; c++) even[c] += w[j] * base[j * stride + c];      \
    for (int64_t c = 0; c < width; c++) out[c] = (even[c] + odd[c]) * scale;                    \
}
WEIGHTED_ROWS(float)
WEIGHTED_ROWS(double)

/* rows[j] (+)= scale * w[j] * x for j < n: an outer product added to (or, when accumulate is 0,
 * written into) n rows of width elements. */
#define SCALED_ROWS(T)                                                                          \
static inline __attribute__((always_inline)) void scaled_rows_impl_##T(T *restrict base, int64_t stride, int64_t width, int64_t n,         \
                            const T *restrict w, T scale, const T *restrict x, int accumulate) { \
    for (int64_t j = 0; j < n; j++) {                                                           \
        const T sj = scale * w[j];                                                              \
        T *restrict r = base + j * stride;                                                      \
        if (accumulate) for (int64_t c = 0; c < width; c++) r[c] += sj * x[c];                  \
        else for (int64_t c = 0; c < width; c++) r[c] = sj * x[c];                              \
    }                                                                                           \
}
SCALED_ROWS(float)
SCALED_ROWS(double)

/* Head sizes are small and known only at run time, so the loops over a row above would not unroll;
 * these wrappers call them with the common sizes as constants, each case its own unrolled copy. */
#define WIDTH_CASES(CALL)                                                                       \
    switch (width) {                                                                            \
    case 2: CALL(2); return;   case 3: CALL(3); return;   case 4: CALL(4); return;              \
    case 5: CALL(5); return;   case 6: CALL(6); return;   case 7: CALL(7); return;              \
    case 8: CALL(8); return;   case 16: CALL(16); return; case 21: CALL(21); return;            \
    case 32: CALL(32); return; case 64: CALL(64); return; default: CALL(width); return;         \
    }
/* Float rows of at most 8 elements go to the masked-vector kernels where the target has them: the
 * ICL step (heads of 6) went from 0.80 to 0.71 ms (with the two-range zero fill below). */
#if defined(__AVX512VL__)
#include "dense_rows_avx512.h"
#define SHORT_ROWS_float(CALL) if (width <= SHORT_ROW_MAX) { CALL; return; }
#else
#define SHORT_ROWS_float(CALL)
#endif
#define SHORT_ROWS_double(CALL)
#define WIDTH_DISPATCH(T)                                                                       \
static void dots_##T(const T *x, const T *base, int64_t stride, int64_t width, int64_t n, T scale, T *out) { \
    SHORT_ROWS_##T(dots_short_##T(x, base, stride, width, n, scale, out))                       \
    WIDTH_CASES(DOTS_CALL_##T)                                                                  \
}                                                                                               \
static void weighted_rows_##T(const T *w, const T *base, int64_t stride, int64_t width, int64_t n, T scale, \
                              T *out) {                                                         \
    SHORT_ROWS_##T(weighted_rows_short_##T(w, base, stride, width, n, scale, out))              \
    WIDTH_CASES(WEIGHTED_CALL_##T)                                                              \
}                                                                                               \
static void scaled_rows_##T(T *base, int64_t stride, int64_t width, int64_t n, const T *w, T scale, \
                            const T *x, int accumulate) {                                       \
    SHORT_ROWS_##T(scaled_rows_short_##T(base, stride, width, n, w, scale, x, accumulate))      \
    WIDTH_CASES(SCALED_CALL_##T)                                                                \
}
#define DOTS_CALL_float(W) dots_impl_float(x, base, stride, W, n, scale, out)
#define DOTS_CALL_double(W) dots_impl_double(x, base, stride, W, n, scale, out)
#define WEIGHTED_CALL_float(W) weighted_rows_impl_float(w, base, stride, W, n, scale, out)
#define WEIGHTED_CALL_double(W) weighted_rows_impl_double(w, base, stride, W, n, scale, out)
#define SCALED_CALL_float(W) scaled_rows_impl_float(base, stride, W, n, w, scale, x, accumulate)
#define SCALED_CALL_double(W) scaled_rows_impl_double(base, stride, W, n, w, scale, x, accumulate)
WIDTH_DISPATCH(float)
WIDTH_DISPATCH(double)

/* The softmax of one row of logits in place (see softmax_row_float in dense_rows_avx512.h) and the
 * dot product of two rows: plain loops for double and for targets without AVX-512. */
#define ROW_HELPERS(T, EXP)                                                                     \
static inline void softmax_row_plain_##T(T *x, int64_t n, T *mx_out, T *z_out) {               \
    T mx = -INFINITY;                                                                           \
    _Pragma("omp simd reduction(max:mx)")                                                       \
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;                                 \
    if (mx == -INFINITY) mx = 0; /* no visible key: the row stays 0 */                          \
    T z = 0;                                                                                    \
    _Pragma("omp simd reduction(+:z)")                                                          \
    for (int64_t j = 0; j < n; j++) { x[j] = EXP(x[j] - mx); z += x[j]; }                       \
    const T inv = z > 0 ? (T)1 / z : (T)0;                                                      \
    for (int64_t j = 0; j < n; j++) x[j] *= inv;                                                \
    *mx_out = mx;                                                                               \
    *z_out = z;                                                                                 \
}                                                                                               \
static inline T row_dot_plain_##T(const T *a, const T *b, int64_t n) {                         \
    T s = 0;                                                                                    \
    for (int64_t j = 0; j < n; j++) s += a[j] * b[j];                                           \
    return s;                                                                                   \
}
ROW_HELPERS(float, al_expf)
ROW_HELPERS(double, exp)
#if defined(__AVX512VL__)
#define softmax_row_of_float softmax_row_float
#define row_dot_of_float row_dot_float
#else
#define softmax_row_of_float softmax_row_plain_float
#define row_dot_of_float row_dot_plain_float
#endif
#define softmax_row_of_double softmax_row_plain_double
#define row_dot_of_double row_dot_plain_double

/* A parallel region costs tens of microseconds on a 2-vCPU VM (waking the worker); below this much
 * work (multiply-adds of one pass) one thread is faster: the toy tasks' 1,024 (batch, head) pairs of
 * one query over 40 keys (0.5 M) took 575 us forward and backward on two threads, 508 us on one. */
enum { ATTENTION_PARALLEL_WORK = 1 << 22 };

/* Below this many queries per (batch, kv head), the kernels walk the rows of k and v as they
 * are; from it on, they first copy them transposed (see LOAD_TRANSPOSED). */
enum { ROWS_PATH_QUERIES = 8 };

/* Each thread copies the keys and values of one (batch, kv head) transposed, (d, M) and (dv, M),
 * so that every inner loop below runs over the keys with unit stride and vectorises, whatever the
 * head size (the toy tasks' heads are 6 wide, too short to vectorise along). */
#define LOAD_TRANSPOSED(T, dst, src_t, SRC, width)                                              \
    for (int64_t j = 0; j < M; j++) {                                                           \
        const T *r = SRC + row_offset(src_t, b, hk, j);                                         \
        for (int64_t c = 0; c < width; c++) dst[c * M + j] = r[c];                              \
    }

#define DENSE_FORWARD(T)                                                                        \
static bool dense_forward_##T(const attention_problem *p, dense_normalisation kind, T *P, T *O,  \
                              T *LSE) {                                                         \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const T *Bias = p->bias ? (const T *)p->bias->storage->data : NULL;                         \
    const T *Mask = p->mask ? (const T *)p->mask->storage->data : NULL;                         \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const T scale = (T)p->scale, inv_norm = (T)(1.0 / p->norm);                                 \
    const bool parallel = p->B * p->Hkv > 1 && p->B * p->H * N * M * (d + dv) >= ATTENTION_PARALLEL_WORK; \
    const bool rows = N * group < ROWS_PATH_QUERIES;                                            \
    bool failed = false;   /* a thread without scratch: raised by the caller */                  \
    _Pragma("omp parallel if (parallel)")                                                       \
    {                                                                                           \
        /* kt, vt: transposed keys and values; row: the probabilities when P is not kept */       \
        T *kt = malloc(sizeof(T) * (size_t)((d + dv + 1) * M + 1)), *vt = kt ? kt + d * M : NULL; \
        T *row = kt ? vt + dv * M : NULL;                                                       \
        _Pragma("omp for schedule(static)")                                                     \
        for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {                                        \
            if (!kt) { _Pragma("omp atomic write") failed = true; continue; }                    \
            const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;                                    \
            if (!rows) {                                                                        \
                LOAD_TRANSPOSED(T, kt, p->k, K, d)                                              \
                LOAD_TRANSPOSED(T, vt, p->v, V, dv)                                             \
            }                                                                                   \
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {                           \
                const int64_t bh = b * p->H + h;                                                \
                for (int64_t i = 0; i < N; i++) {                                               \
                    const T *q = Q + row_offset(p->q, b, h, i);                                 \
                    T *prow = P ? P + (bh * N + i) * M : row, *o = O + (bh * N + i) * dv;      \
                    int64_t lo;                                                                 \
                    const int64_t end = visible_range(p, i, &lo);                               \
                    if (rows) {                                                                 \
                        dots_##T(q, K + row_offset(p->k, b, hk, lo), p->k->strides[2], d, end - lo, scale, prow + lo); \
                    } else {                                                                    \
                        for (int64_t j = lo; j < end; j++) prow[j] = 0;                          \
                        for (int64_t c = 0; c < d; c++) {                                       \
                            const T qc = q[c] * scale, *kc = kt + c * M;                        \
                            for (int64_t j = lo; j < end; j++) prow[j] += qc * kc[j];            \
                        }                                                                       \
                    }                                                                           \
                    if (Bias) {                                                                 \
                        const T *br = Bias + row_offset(p->bias, b, h, i);                      \
                        const int64_t bs = p->bias->strides[3];                                 \
                        for (int64_t j = lo; j < end; j++) prow[j] += br[j * bs];                \
                    }                                                                           \
                    if (Mask) {                                                                 \
                        const T *mr = Mask + row_offset(p->mask, b, h, i);                      \
                        const int64_t ms = p->mask->strides[3];                                 \
                        for (int64_t j = lo; j < end; j++) if (mr[j * ms] == 0) prow[j] = -INFINITY; \
                    }                                                                           \
                    if (kind == DENSE_SOFTMAX) {                                                \
                        T mx, z;                                                                \
                        softmax_row_of_##T(prow + lo, end - lo, &mx, &z);                       \
                        /* +inf for a row with nothing visible: exp(s - lse) is then 0 */          \
                        if (LSE) LSE[bh * N + i] = z > 0 ? mx + (T)log((double)z) : (T)INFINITY; \
                    } else {                                                                    \
                        for (int64_t j = lo; j < end; j++)                                       \
                            prow[j] = prow[j] == -INFINITY ? (T)0 : prow[j] * inv_norm;         \
                    }                                                                           \
                    for (int64_t j = 0; j < lo; j++) prow[j] = 0;                               \
                    for (int64_t j = end; j < M; j++) prow[j] = 0;                              \
                    if (rows) {                                                                 \
                        weighted_rows_##T(prow + lo, V + row_offset(p->v, b, hk, lo), p->v->strides[2], dv, end - lo, (T)1, o); \
                    } else {                                                                    \
                        for (int64_t c = 0; c < dv; c++) {                                      \
                            const T *vc = vt + c * M;                                           \
                            T acc = 0;                                                          \
                            for (int64_t j = lo; j < end; j++) acc += prow[j] * vc[j];           \
                            o[c] = acc;                                                         \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        free(kt);                                                                               \
    }                                                                                           \
    return !failed;                                                                             \
}
DENSE_FORWARD(float)
DENSE_FORWARD(double)

/* The probabilities of one query row, recomputed for the backward when the forward kept only the
 * row's log-sum-exp (the map was too large to keep): the same logits as the forward (scale q.k,
 * plus bias, masked entries -inf), then exp(s - lse) (softmax) or s / norm (lsa), on [lo, end). */
#define RECOMPUTE_ROW(T, EXP)                                                                   \
static void recompute_row_##T(const attention_problem *p, dense_normalisation kind, const T *LSE, \
                              int64_t b, int64_t h, int64_t hk, int64_t i, int64_t lo, int64_t end, \
                              T *prow) {                                                        \
    const T *Q = p->q->storage->data, *K = p->k->storage->data;                                 \
    const T *q = Q + row_offset(p->q, b, h, i);                                                 \
    dots_##T(q, K + row_offset(p->k, b, hk, lo), p->k->strides[2], p->d, end - lo, (T)p->scale, prow + lo); \
    if (p->bias) {                                                                              \
        const T *br = (const T *)p->bias->storage->data + row_offset(p->bias, b, h, i);         \
        for (int64_t j = lo; j < end; j++) prow[j] += br[j * p->bias->strides[3]];              \
    }                                                                                           \
    if (p->mask) {                                                                              \
        const T *mr = (const T *)p->mask->storage->data + row_offset(p->mask, b, h, i);         \
        for (int64_t j = lo; j < end; j++) if (mr[j * p->mask->strides[3]] == 0) prow[j] = -INFINITY; \
    }                                                                                           \
    if (kind == DENSE_SOFTMAX) {                                                                \
        const T lse = LSE[(b * p->H + h) * p->N + i];                                           \
        for (int64_t j = lo; j < end; j++) prow[j] = EXP(prow[j] - lse);                        \
    } else {                                                                                    \
        const T inv_norm = (T)(1.0 / p->norm);                                                  \
        for (int64_t j = lo; j < end; j++) prow[j] = prow[j] == -INFINITY ? (T)0 : prow[j] * inv_norm; \
    }                                                                                           \
}
RECOMPUTE_ROW(float, al_expf)
RECOMPUTE_ROW(double, exp)

/* Few queries per (batch, kv head), as in the toy tasks' single query: transposing the keys would
 * cost as much as the arithmetic, so these loops walk the rows of k and v as they are. */
#define DENSE_BACKWARD_ROWS(T)                                                                  \
static void dense_backward_rows_##T(const attention_problem *p, dense_normalisation kind, const T *P, \
                                    const T *LSE, const T *dO, al_tensor *gq, al_tensor *gk,    \
                                    al_tensor *gv, T *dBias, int64_t b, int64_t hk, T *ds, T *row) { \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const T *Mask = p->mask ? (const T *)p->mask->storage->data : NULL;                         \
    T *dQ = gq ? (T *)gq->storage->data : NULL, *dK = gk ? (T *)gk->storage->data : NULL;     \
    T *dV = gv ? (T *)gv->storage->data : NULL;                                                 \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const T scale = (T)p->scale, inv_norm = (T)(1.0 / p->norm);                                 \
    /* row j of k (v, dk, dv) for this (b, hk) is at base + j * stride */                     \
    const T *kb = K + row_offset(p->k, b, hk, 0), *vb = V + row_offset(p->v, b, hk, 0);         \
    const int64_t ks = p->k->strides[2], vs = p->v->strides[2];                                 \
    T *dkb = dK ? dK + row_offset(gk, b, hk, 0) : NULL, *dvb = dV ? dV + row_offset(gv, b, hk, 0) : NULL; \
    const int64_t dks = dK ? gk->strides[2] : 0, dvs = dV ? gv->strides[2] : 0;                 \
    /* with a single query per (batch, kv head), each row of dk and dv gets exactly one
     * contribution: assign it, with no zero fill and no read-modify-write */                   \
    const int accumulate = N * group > 1;                                                       \
    int64_t lo0 = 0, end0 = 0;   /* rows no single query writes start at 0: [0, lo0), [end0, M) */ \
    if (!accumulate) end0 = visible_range(p, 0, &lo0);                                          \
    /* two ranges, not one loop over M that skips the written rows: that loop's tests cost 2.5%  \
     * of the ICL step when it zeroed nothing */                                                \
    for (int part = 0; part < 2; part++) {                                                      \
        const int64_t from = part ? end0 : 0, to = part ? M : lo0;                              \
        for (int64_t j = from; j < to; j++) {                                                   \
            if (dkb) for (int64_t c = 0; c < d; c++) dkb[j * dks + c] = 0;                      \
            if (dvb) for (int64_t c = 0; c < dv; c++) dvb[j * dvs + c] = 0;                     \
        }                                                                                       \
    }                                                                                           \
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {                                   \
        const int64_t bh = b * p->H + h;                                                        \
        for (int64_t i = 0; i < N; i++) {                                                       \
            const T *go = dO + (bh * N + i) * dv;                                               \
            const T *q = Q + row_offset(p->q, b, h, i);                                         \
            int64_t lo;                                                                         \
            const int64_t end = visible_range(p, i, &lo);                                       \
            const T *prow = P ? P + (bh * N + i) * M : row;                                     \
            if (!P) recompute_row_##T(p, kind, LSE, b, h, hk, i, lo, end, row);                  \
            dots_##T(go, vb + lo * vs, vs, dv, end - lo, (T)1, ds + lo);   /* dP = dO v^T */    \
            const T delta = row_dot_of_##T(ds + lo, prow + lo, end - lo);                       \
            if (dvb) scaled_rows_##T(dvb + lo * dvs, dvs, dv, end - lo, prow + lo, (T)1, go, accumulate); /* dV += P^T dO */ \
            for (int64_t j = lo; j < end; j++) {                                                 \
                if (kind == DENSE_SOFTMAX) ds[j] = prow[j] * (ds[j] - delta);                   \
                else ds[j] = Mask && Mask[row_offset(p->mask, b, h, i) + j * p->mask->strides[3]] == 0 \
                                 ? (T)0 : ds[j] * inv_norm;                                     \
            }                                                                                   \
            if (dBias) {                                                                        \
                T *dbr = dBias + (bh * N + i) * M;                                              \
                for (int64_t j = 0; j < lo; j++) dbr[j] = 0;                                    \
                for (int64_t j = lo; j < end; j++) dbr[j] = ds[j];                              \
                for (int64_t j = end; j < M; j++) dbr[j] = 0;                                   \
            }                                                                                   \
            if (dQ) {                               /* dq = scale dS k */                       \
                T *dq = dQ + row_offset(gq, b, h, i);                                           \
                /* scaled in the kernel: a scalar pass over dq after the vector store stalled on \
                 * store forwarding (9% of the backward) */                                     \
                weighted_rows_##T(ds + lo, kb + lo * ks, ks, d, end - lo, scale, dq);           \
            }                                                                                   \
            if (dkb) scaled_rows_##T(dkb + lo * dks, dks, d, end - lo, ds + lo, scale, q, accumulate); /* dK += scale dS^T q */ \
        }                                                                                       \
    }                                                                                           \
}
DENSE_BACKWARD_ROWS(float)
DENSE_BACKWARD_ROWS(double)

/* The backward runs one (batch, kv head) per iteration, so the dk and dv of a group (shared by its
 * query heads) are accumulated by one thread, transposed in scratch, and written once at the end:
 * no zero fill and no atomics.  dS goes to dbias when the bias is trainable. */
#define DENSE_BACKWARD(T)                                                                       \
static bool dense_backward_##T(const attention_problem *p, dense_normalisation kind, const T *P, \
                               const T *LSE, const T *dO, al_tensor *gq, al_tensor *gk,         \
                               al_tensor *gv, T *dBias) {                                       \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const T *Mask = p->mask ? (const T *)p->mask->storage->data : NULL;                         \
    T *dQ = gq ? (T *)gq->storage->data : NULL, *dK = gk ? (T *)gk->storage->data : NULL;     \
    T *dV = gv ? (T *)gv->storage->data : NULL;                                                 \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const T scale = (T)p->scale, inv_norm = (T)(1.0 / p->norm);                                 \
    const bool parallel = p->B * p->Hkv > 1 && p->B * p->H * N * M * (d + dv) >= ATTENTION_PARALLEL_WORK; \
    const bool rows = N * group < ROWS_PATH_QUERIES;                                            \
    bool failed = false;   /* a thread without scratch: raised by the caller */                  \
    _Pragma("omp parallel if (parallel)")                                                       \
    {                                                                                           \
        T *kt = malloc(sizeof(T) * (size_t)(2 * (d + dv) * M + 2 * M + 1));                     \
        T *vt = kt + d * M, *dkt = vt + dv * M, *dvt = dkt + d * M, *ds = dvt + dv * M;         \
        T *row = ds + M;   /* the recomputed probabilities when P is not kept */                \
        _Pragma("omp for schedule(static)")                                                     \
        for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {                                        \
            if (!kt) { _Pragma("omp atomic write") failed = true; continue; }                    \
            const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;                                    \
            if (rows) {                                                                         \
                dense_backward_rows_##T(p, kind, P, LSE, dO, gq, gk, gv, dBias, b, hk, ds, row); \
                continue;                                                                       \
            }                                                                                   \
            LOAD_TRANSPOSED(T, kt, p->k, K, d)                                                  \
            LOAD_TRANSPOSED(T, vt, p->v, V, dv)                                                 \
            memset(dkt, 0, sizeof(T) * (size_t)((d + dv) * M));                                 \
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {                           \
                const int64_t bh = b * p->H + h;                                                \
                for (int64_t i = 0; i < N; i++) {                                               \
                    const T *go = dO + (bh * N + i) * dv;                                       \
                    const T *q = Q + row_offset(p->q, b, h, i);                                 \
                    int64_t lo;                                                                 \
                    const int64_t end = visible_range(p, i, &lo);                               \
                    const T *prow = P ? P + (bh * N + i) * M : row;                             \
                    if (!P) recompute_row_##T(p, kind, LSE, b, h, hk, i, lo, end, row);          \
                    for (int64_t j = lo; j < end; j++) ds[j] = 0;                               \
                    for (int64_t c = 0; c < dv; c++) {   /* dP = dO v^T;  dV += P^T dO */       \
                        const T g = go[c], *vc = vt + c * M;                                    \
                        T *dvc = dvt + c * M;                                                   \
                        for (int64_t j = lo; j < end; j++) { ds[j] += g * vc[j]; dvc[j] += g * prow[j]; } \
                    }                                                                           \
                    if (kind == DENSE_SOFTMAX) {                                                \
                        T delta = 0;                                                            \
                        for (int64_t j = lo; j < end; j++) delta += ds[j] * prow[j];             \
                        for (int64_t j = lo; j < end; j++) ds[j] = prow[j] * (ds[j] - delta);    \
                    } else {                                                                    \
                        for (int64_t j = lo; j < end; j++) ds[j] *= inv_norm;                    \
                        if (Mask) {                                                             \
                            const T *mr = Mask + row_offset(p->mask, b, h, i);                  \
                            const int64_t ms = p->mask->strides[3];                             \
                            for (int64_t j = lo; j < end; j++) if (mr[j * ms] == 0) ds[j] = 0;   \
                        }                                                                       \
                    }                                                                           \
                    if (dBias) {                                                                \
                        T *dbr = dBias + (bh * N + i) * M;                                      \
                        for (int64_t j = 0; j < lo; j++) dbr[j] = 0;                            \
                        for (int64_t j = lo; j < end; j++) dbr[j] = ds[j];                      \
                        for (int64_t j = end; j < M; j++) dbr[j] = 0;                           \
                    }                                                                           \
                    if (dQ) {                                                                   \
                        T *dq = dQ + row_offset(gq, b, h, i);                                   \
                        for (int64_t c = 0; c < d; c++) {                                       \
                            const T *kc = kt + c * M;                                           \
                            T acc = 0;                                                          \
                            for (int64_t j = lo; j < end; j++) acc += ds[j] * kc[j];             \
                            dq[c] = scale * acc;                                                \
                        }                                                                       \
                    }                                                                           \
                    for (int64_t c = 0; c < d; c++) {    /* dK += scale dS^T q */               \
                        const T qc = scale * q[c];                                              \
                        T *dkc = dkt + c * M;                                                   \
                        for (int64_t j = lo; j < end; j++) dkc[j] += qc * ds[j];                 \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            for (int64_t j = 0; j < M; j++) {                                                   \
                if (dK) { T *r = dK + row_offset(gk, b, hk, j); for (int64_t c = 0; c < d; c++) r[c] = dkt[c * M + j]; } \
                if (dV) { T *r = dV + row_offset(gv, b, hk, j); for (int64_t c = 0; c < dv; c++) r[c] = dvt[c * M + j]; } \
            }                                                                                   \
        }                                                                                       \
        free(kt);                                                                               \
    }                                                                                           \
    return !failed;                                                                             \
}
DENSE_BACKWARD(float)
DENSE_BACKWARD(double)

static void dense_backward(al_node *node, const al_tensor *g) {
    dense_ctx *ctx = node->ctx;
    attention_problem p = ctx->p;
    p.q = node->inputs[0]; p.k = node->inputs[1]; p.v = node->inputs[2];
    p.bias = node->saved[1]; p.mask = node->saved[2];
    const al_tensor *saved = node->saved[0];
    void *P = ctx->recompute ? NULL : al_ptr(saved), *LSE = ctx->recompute ? al_ptr(saved) : NULL;
    bool want_bias = node->n_inputs > 3 && al_input_needs_grad(node, 3);
    int64_t ps[4] = {p.B, p.H, p.N, p.M};
    al_dtype dt = p.q->dtype;
    al_tensor *gc = al_contiguous_nograd(g);
    /* gradients in the layout of their inputs (see al_new_like_layout) */
    al_tensor *dq = al_input_needs_grad(node, 0) ? al_new_like_layout(p.q) : NULL;
    al_tensor *dk = al_input_needs_grad(node, 1) ? al_new_like_layout(p.k) : NULL;
    al_tensor *dv = al_input_needs_grad(node, 2) ? al_new_like_layout(p.v) : NULL;
    al_tensor *db = want_bias ? al_new_tensor(4, ps, dt) : NULL;
    bool done = false;
    if (gc) {
        done = dt == AL_FLOAT32
                   ? dense_backward_float(&p, ctx->kind, P, LSE, al_ptr(gc), dq, dk, dv, db ? al_ptr(db) : NULL)
                   : dense_backward_double(&p, ctx->kind, P, LSE, al_ptr(gc), dq, dk, dv, db ? al_ptr(db) : NULL);
        if (!done) al_error("%s: backward: out of memory for the scratch rows of %s", node->name, TSHAPE(p.q));
    }
    if (!done) {   /* hand back nothing rather than partial gradients (the error is raised) */
        al_release(dq); al_release(dk); al_release(dv); al_release(db);
        dq = dk = dv = db = NULL;
    }
    al_accumulate_input_take(node, 0, dq);
    al_accumulate_input_take(node, 1, dk);
    al_accumulate_input_take(node, 2, dv);
    al_accumulate_input(node, 3, db); /* folds the broadcast back to the bias's own shape */
    al_release(gc); al_release(db);
}

al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights) {
    int64_t os[4] = {p->B, p->H, p->N, p->dv}, ps[4] = {p->B, p->H, p->N, p->M};
    al_dtype dt = p->q->dtype;
    /* a trainable bias is input 3: it is the expanded view of the user's bias, whose own node
     * folds the (B, H, N, M) gradient back to the user's shape */
    const al_tensor *raw_bias = p->bias && p->bias->requires_grad ? p->bias : NULL;
    const bool need_grad = al_grad_needed2(p->q, p->k) || al_grad_needed2(p->v, raw_bias);
    const double map_bytes = (double)al_shape_numel(4, ps) * (double)al_dtype_size(dt);
    const bool recompute = !weights && need_grad && map_bytes > (double)map_limit_bytes;
    const bool keep_map = weights || (need_grad && !recompute);
    al_tensor *out = al_new_tensor(4, os, dt);
    al_tensor *P = keep_map ? al_new_tensor(4, ps, dt) : NULL;
    al_tensor *LSE = recompute ? al_new_tensor(3, ps, dt) : NULL;
    if (!out || (keep_map && !P) || (recompute && !LSE)) { al_release(out); al_release(P); al_release(LSE); return NULL; }
    const bool done = dt == AL_FLOAT32
                          ? dense_forward_float(p, kind, P ? al_ptr(P) : NULL, al_ptr(out), LSE ? al_ptr(LSE) : NULL)
                          : dense_forward_double(p, kind, P ? al_ptr(P) : NULL, al_ptr(out), LSE ? al_ptr(LSE) : NULL);
    if (!done) {
        al_error("%s: out of memory for the scratch rows of q %s", name, TSHAPE(p->q));
        al_release(out); al_release(P); al_release(LSE);
        return NULL;
    }
    if (need_grad) {
        dense_ctx *ctx = malloc(sizeof *ctx);
        const al_tensor *in[4] = {p->q, p->k, p->v, raw_bias};
        al_node *node = ctx ? al_record(out, name, dense_backward, raw_bias ? 4 : 3, in) : NULL;
        if (node) {
            ctx->p = *p;
            ctx->kind = kind;
            ctx->recompute = recompute;
            node->ctx = ctx;
            al_node_save(node, 0, recompute ? LSE : P);
            al_node_save(node, 1, p->bias);
            al_node_save(node, 2, p->mask);
        } else {
            free(ctx);
        }
    }
    if (weights) *weights = al_alias(P);
    al_release(P);
    al_release(LSE);
    return out;
}
