/* tiled.c -- softmax attention in tiles with an online softmax (FlashAttention-2, Dao 2023,
 * arXiv 2307.08691), for long sequences: no N x M map is ever formed, so the memory beyond the
 * inputs, the output and the gradients is one log-sum-exp per query row plus a few tiles per thread,
 * and each tile's products run through the BLAS at near its peak.
 *
 * Forward, per (batch, head, query tile I), over the key tiles J that some query of I can see:
 *   S = scale Q_I K_J^T (+ bias, masked and out-of-range entries -inf)
 *   m' = max(m, rowmax S);  P = exp(S - m');  l = exp(m - m') l + rowsum P;
 *   Acc = exp(m - m') Acc + P V_J;  m = m'
 * then O_I = Acc / l and LSE_I = m + log l (+inf for a row that sees nothing; its output is 0).
 * Backward, per (batch, kv head), key tile outer so that dK_J and dV_J stay in cache:
 *   P = exp(S - LSE_I) recomputed;  D_i = rowsum(dO_i o O_i)
 *   dV_J += P^T dO_I;  dP = dO_I V_J^T;  dS = P o (dP - D);  dQ_I += scale dS K_J;  dK_J += scale dS^T Q_I
 * A (batch, kv head) is one thread's: its query heads' dk and dv sum there without atomics.
 *
 * Keys a query may see are the range of visible_range (causal, sliding window, neighborhood) and
 * the mask; tiles outside every row's range are skipped, which makes causal attention half the work
 * and a sliding window O(N window).  The bias is read-only here (a trainable bias needs dS for every
 * entry: the dense kernel does that). */
#include "attention_internal.h"
#include "small_gemm_avx512.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tile sizes: 128 x 128 logits (64 KiB in float32) plus the Q, K, V, dO tiles of up to 128-wide
 * heads stay within the 1 MiB L2 of this machine, and each product is large enough that the BLAS
 * call costs little against its arithmetic. */
enum { TILE_Q = 128, TILE_K = 128 };

/* Below this many multiply-adds in all, one thread does the work (see dense.c) */
enum { TILED_PARALLEL_WORK = 1 << 22 };

typedef struct { attention_problem p; } tiled_ctx;

static inline void gemm_float(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc) {
    al_count_flops(2.0 * (double)m * (double)n * (double)k);
    if (tile_gemm_float(ta == CblasTrans, tb == CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}
static inline void gemm_double(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                               double alpha, const double *a, int64_t lda, const double *b, int64_t ldb,
                               double beta, double *c, int64_t ldc) {
    al_count_flops(2.0 * (double)m * (double)n * (double)k);
    cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* The visible ranges [lo[r], end[r]) of the rows i0 .. i0 + rows - 1 */
static void tile_ranges(const attention_problem *p, int64_t i0, int64_t rows, int64_t *lo, int64_t *end) {
    for (int64_t r = 0; r < rows; r++) end[r] = visible_range(p, i0 + r, &lo[r]);
}
/* whether some row of the tile sees some key of [j0, j0 + cols) */
static inline bool tile_visible(const int64_t *lo, const int64_t *end, int64_t rows, int64_t j0, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        if (lo[r] < j0 + cols && end[r] > j0 && lo[r] < end[r]) return true;
    return false;
}

/* The logits of a tile as they leave the product: entries out of a row's range or masked become
 * -inf, the bias is added.  s is rows x cols with row stride TILE_K. */
#define FINISH_LOGITS(T)                                                                        \
static void finish_logits_##T(const attention_problem *p, int64_t b, int64_t h, int64_t i0, int64_t rows, \
                              int64_t j0, int64_t cols, const int64_t *lo, const int64_t *end, T *s) { \
    const T *Bias = p->bias ? (const T *)p->bias->storage->data : NULL;                         \
    const T *Mask = p->mask ? (const T *)p->mask->storage->data : NULL;                         \
    for (int64_t r = 0; r < rows; r++) {                                                        \
        T *sr = s + r * TILE_K;                                                                 \
        int64_t a = lo[r] - j0, e = end[r] - j0;                                                \
        a = a < 0 ? 0 : (a > cols ? cols : a);                                                  \
        e = e < a ? a : (e > cols ? cols : e);                                                  \
        for (int64_t c = 0; c < a; c++) sr[c] = -INFINITY;                                      \
        for (int64_t c = e; c < cols; c++) sr[c] = -INFINITY;                                   \
        if (Bias) {                                                                             \
            const T *br = Bias + row_offset(p->bias, b, h, i0 + r) + j0 * p->bias->strides[3];   \
            const int64_t bs = p->bias->strides[3];                                             \
            for (int64_t c = a; c < e; c++) sr[c] += br[c * bs];                                \
        }                                                                                       \
        if (Mask) {                                                                             \
            const T *mr = Mask + row_offset(p->mask, b, h, i0 + r) + j0 * p->mask->strides[3];  \
            const int64_t ms = p->mask->strides[3];                                             \
            for (int64_t c = a; c < e; c++) if (mr[c * ms] == 0) sr[c] = -INFINITY;             \
        }                                                                                       \
    }                                                                                           \
}
FINISH_LOGITS(float)
FINISH_LOGITS(double)

/* Each thread's scratch is its own malloc; a thread that cannot get it marks the call failed (the
 * error is raised after the parallel region, by the calling thread, which owns the message). */
#define TILED_FORWARD(T, EXP)                                                                   \
static bool tiled_forward_##T(const attention_problem *p, T *O, T *LSE) {                       \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const int64_t group = p->H / p->Hkv, N = p->N, d = p->d, dv = p->dv;                       \
    const int64_t ldq = p->q->strides[2], ldk = p->k->strides[2], ldv = p->v->strides[2];       \
    const int64_t tiles_q = (N + TILE_Q - 1) / TILE_Q, units = p->B * p->H * tiles_q;           \
    const bool parallel = units > 1 && p->B * p->H * N * p->M * (d + dv) >= TILED_PARALLEL_WORK; \
    bool failed = false;                                                                        \
    _Pragma("omp parallel if (parallel)")                                                       \
    {                                                                                           \
        T *s = malloc(sizeof(T) * (size_t)(TILE_Q * TILE_K + TILE_Q * dv + 2 * TILE_Q));        \
        if (!s) { _Pragma("omp atomic write") failed = true; }                                  \
        T *acc = s ? s + TILE_Q * TILE_K : NULL, *m = acc ? acc + TILE_Q * dv : NULL, *l = m ? m + TILE_Q : NULL; \
        int64_t lo[TILE_Q], end[TILE_Q];                                                        \
        _Pragma("omp for schedule(dynamic)")                                                    \
        for (int64_t u = 0; u < units; u++) {                                                   \
            if (!s) continue;                                                                   \
            const int64_t b = u / (p->H * tiles_q), h = u / tiles_q % p->H, hk = h / group;     \
            const int64_t i0 = u % tiles_q * TILE_Q, rows = N - i0 < TILE_Q ? N - i0 : TILE_Q;   \
            tile_ranges(p, i0, rows, lo, end);                                                  \
            int64_t jlo = p->M, jhi = 0;                                                        \
            for (int64_t r = 0; r < rows; r++)                                                  \
                if (lo[r] < end[r]) { jlo = lo[r] < jlo ? lo[r] : jlo; jhi = end[r] > jhi ? end[r] : jhi; } \
            for (int64_t r = 0; r < rows; r++) { m[r] = -INFINITY; l[r] = 0; }                  \
            memset(acc, 0, sizeof(T) * (size_t)(rows * dv));                                    \
            const T *q = Q + row_offset(p->q, b, h, i0);                                        \
            for (int64_t j0 = jlo; j0 < jhi; j0 += TILE_K) {                                    \
                const int64_t cols = jhi - j0 < TILE_K ? jhi - j0 : TILE_K;                     \
                if (!tile_visible(lo, end, rows, j0, cols)) continue;                           \
                gemm_##T(CblasNoTrans, CblasTrans, rows, cols, d, (T)p->scale, q, ldq,          \
                         K + row_offset(p->k, b, hk, j0), ldk, 0, s, TILE_K);                   \
                finish_logits_##T(p, b, h, i0, rows, j0, cols, lo, end, s);                     \
                for (int64_t r = 0; r < rows; r++) {                                            \
                    T *sr = s + r * TILE_K, mx = -INFINITY;                                     \
                    _Pragma("omp simd reduction(max:mx)")                                       \
                    for (int64_t c = 0; c < cols; c++) mx = sr[c] > mx ? sr[c] : mx;            \
                    const T mnew = mx > m[r] ? mx : m[r];                                       \
                    if (mnew == -INFINITY) { for (int64_t c = 0; c < cols; c++) sr[c] = 0; continue; } \
                    T z = 0;                                                                    \
                    _Pragma("omp simd reduction(+:z)")                                          \
                    for (int64_t c = 0; c < cols; c++) { sr[c] = EXP(sr[c] - mnew); z += sr[c]; } \
                    if (mnew > m[r]) {        /* rescale what was summed under the old maximum */ \
                        const T alpha = m[r] == -INFINITY ? (T)0 : EXP(m[r] - mnew);            \
                        T *ar = acc + r * dv;                                                   \
                        for (int64_t c = 0; c < dv; c++) ar[c] *= alpha;                        \
                        l[r] *= alpha;                                                          \
                        m[r] = mnew;                                                            \
                    }                                                                           \
                    l[r] += z;                                                                  \
                }                                                                               \
                gemm_##T(CblasNoTrans, CblasNoTrans, rows, dv, cols, 1, s, TILE_K,              \
                         V + row_offset(p->v, b, hk, j0), ldv, 1, acc, dv);                     \
            }                                                                                   \
            const int64_t bh = b * p->H + h;                                                    \
            for (int64_t r = 0; r < rows; r++) {                                                \
                const T inv = l[r] > 0 ? (T)1 / l[r] : (T)0;                                    \
                T *o = O + (bh * N + i0 + r) * dv, *ar = acc + r * dv;                          \
                for (int64_t c = 0; c < dv; c++) o[c] = ar[c] * inv;                            \
                LSE[bh * N + i0 + r] = l[r] > 0 ? m[r] + (T)log((double)l[r]) : (T)INFINITY;    \
            }                                                                                   \
        }                                                                                       \
        free(s);                                                                                \
    }                                                                                           \
    return !failed;                                                                             \
}
TILED_FORWARD(float, al_expf)
TILED_FORWARD(double, exp)

/* dq, dk, dv: zero-filled gradients in their inputs' layouts (unit last stride), or NULL when
 * not wanted.  O and dO are contiguous (B, H, N, dv). */
#define TILED_BACKWARD(T, EXP)                                                                  \
static bool tiled_backward_##T(const attention_problem *p, const T *O, const T *LSE, const T *dO, \
                               al_tensor *gq, al_tensor *gk, al_tensor *gv) {                   \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    T *dQ = gq ? (T *)gq->storage->data : NULL, *dK = gk ? (T *)gk->storage->data : NULL;     \
    T *dV = gv ? (T *)gv->storage->data : NULL;                                                 \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const int64_t ldq = p->q->strides[2], ldk = p->k->strides[2], ldv = p->v->strides[2];       \
    const T scale = (T)p->scale;                                                                \
    const int64_t units = p->B * p->Hkv;                                                        \
    const bool parallel = units > 1 && p->B * p->H * N * M * (d + dv) >= TILED_PARALLEL_WORK;   \
    bool failed = false;                                                                        \
    _Pragma("omp parallel if (parallel)")                                                       \
    {                                                                                           \
        T *s = malloc(sizeof(T) * (size_t)(2 * TILE_Q * TILE_K + N));                           \
        if (!s) { _Pragma("omp atomic write") failed = true; }                                  \
        T *dp = s ? s + TILE_Q * TILE_K : NULL, *D = dp ? dp + TILE_Q * TILE_K : NULL;          \
        int64_t lo[TILE_Q], end[TILE_Q];                                                        \
        _Pragma("omp for schedule(dynamic)")                                                    \
        for (int64_t u = 0; u < units; u++) {                                                   \
            if (!s) continue;                                                                   \
            const int64_t b = u / p->Hkv, hk = u % p->Hkv;                                      \
            const T *k = K + row_offset(p->k, b, hk, 0), *v = V + row_offset(p->v, b, hk, 0);   \
            T *dk = dK ? dK + row_offset(gk, b, hk, 0) : NULL, *dvp = dV ? dV + row_offset(gv, b, hk, 0) : NULL; \
            const int64_t lddk = gk ? gk->strides[2] : 0, lddv = gv ? gv->strides[2] : 0;        \
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {                           \
                const int64_t bh = b * p->H + h;                                                \
                const T *go = dO + bh * N * dv, *o = O + bh * N * dv, *lse = LSE + bh * N;      \
                const T *q = Q + row_offset(p->q, b, h, 0);                                     \
                T *dq = dQ ? dQ + row_offset(gq, b, h, 0) : NULL;                               \
                const int64_t lddq = gq ? gq->strides[2] : 0;                                    \
                for (int64_t i = 0; i < N; i++) {                                               \
                    T acc = 0;                                                                  \
                    for (int64_t c = 0; c < dv; c++) acc += go[i * dv + c] * o[i * dv + c];     \
                    D[i] = acc;                                                                 \
                }                                                                               \
                for (int64_t j0 = 0; j0 < M; j0 += TILE_K) {                                    \
                    const int64_t cols = M - j0 < TILE_K ? M - j0 : TILE_K;                     \
                    for (int64_t i0 = 0; i0 < N; i0 += TILE_Q) {                                \
                        const int64_t rows = N - i0 < TILE_Q ? N - i0 : TILE_Q;                 \
                        tile_ranges(p, i0, rows, lo, end);                                      \
                        if (!tile_visible(lo, end, rows, j0, cols)) continue;                   \
                        gemm_##T(CblasNoTrans, CblasTrans, rows, cols, d, scale, q + i0 * ldq, ldq, \
                                 k + j0 * ldk, ldk, 0, s, TILE_K);                              \
                        finish_logits_##T(p, b, h, i0, rows, j0, cols, lo, end, s);             \
                        for (int64_t r = 0; r < rows; r++) {     /* P = exp(S - LSE) */         \
                            T *sr = s + r * TILE_K;                                             \
                            const T lr = lse[i0 + r];                                           \
                            for (int64_t c = 0; c < cols; c++) sr[c] = EXP(sr[c] - lr);         \
                        }                                                                       \
                        if (dvp)                                           /* dV_J += P^T dO_I */ \
                            gemm_##T(CblasTrans, CblasNoTrans, cols, dv, rows, 1, s, TILE_K,     \
                                     go + i0 * dv, dv, 1, dvp + j0 * lddv, lddv);               \
                        if (!dq && !dk) continue;                                               \
                        gemm_##T(CblasNoTrans, CblasTrans, rows, cols, dv, 1, go + i0 * dv, dv,  \
                                 v + j0 * ldv, ldv, 0, dp, TILE_K);        /* dP = dO_I V_J^T */ \
                        for (int64_t r = 0; r < rows; r++) {     /* dS = P (dP - D) */          \
                            T *dr = dp + r * TILE_K;                                            \
                            const T *sr = s + r * TILE_K, Dr = D[i0 + r];                       \
                            for (int64_t c = 0; c < cols; c++) dr[c] = sr[c] * (dr[c] - Dr);    \
                        }                                                                       \
                        if (dq)                                     /* dQ_I += scale dS K_J */  \
                            gemm_##T(CblasNoTrans, CblasNoTrans, rows, d, cols, scale, dp, TILE_K, \
                                     k + j0 * ldk, ldk, 1, dq + i0 * lddq, lddq);               \
                        if (dk)                                     /* dK_J += scale dS^T Q_I */ \
                            gemm_##T(CblasTrans, CblasNoTrans, cols, d, rows, scale, dp, TILE_K, \
                                     q + i0 * ldq, ldq, 1, dk + j0 * lddk, lddk);               \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        free(s);                                                                                \
    }                                                                                           \
    return !failed;                                                                             \
}
TILED_BACKWARD(float, al_expf)
TILED_BACKWARD(double, exp)

static al_tensor *zeros_like_layout(const al_tensor *t) {
    al_tensor *z = al_new_like_layout(t);
    if (z) memset(al_ptr(z), 0, (size_t)al_numel(z) * al_dtype_size(z->dtype));
    return z;
}

static void tiled_backward(al_node *node, const al_tensor *g) {
    tiled_ctx *ctx = node->ctx;
    attention_problem p = ctx->p;
    p.q = node->inputs[0]; p.k = node->inputs[1]; p.v = node->inputs[2];
    p.bias = node->saved[2]; p.mask = node->saved[3];
    const al_tensor *O = node->saved[0], *LSE = node->saved[1];
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *dq = al_input_needs_grad(node, 0) ? zeros_like_layout(p.q) : NULL;
    al_tensor *dk = al_input_needs_grad(node, 1) ? zeros_like_layout(p.k) : NULL;
    al_tensor *dv = al_input_needs_grad(node, 2) ? zeros_like_layout(p.v) : NULL;
    const bool wanted = (dq || !al_input_needs_grad(node, 0)) && (dk || !al_input_needs_grad(node, 1)) &&
                        (dv || !al_input_needs_grad(node, 2));
    if (gc && wanted) {
        const bool done = p.q->dtype == AL_FLOAT32
                              ? tiled_backward_float(&p, al_ptr(O), al_ptr(LSE), al_ptr(gc), dq, dk, dv)
                              : tiled_backward_double(&p, al_ptr(O), al_ptr(LSE), al_ptr(gc), dq, dk, dv);
        if (!done) {
            al_error("%s: backward: out of memory for the tiles of %s", node->name, TSHAPE(p.q));
            al_release(dq); al_release(dk); al_release(dv);
            dq = dk = dv = NULL;
        }
    } else {   /* an allocation failed and said so: hand back nothing rather than partial gradients */
        al_release(dq); al_release(dk); al_release(dv);
        dq = dk = dv = NULL;
    }
    al_accumulate_input_take(node, 0, dq);
    al_accumulate_input_take(node, 1, dk);
    al_accumulate_input_take(node, 2, dv);
    al_release(gc);
}

al_tensor *attention_tiled_forward(const attention_problem *p, const char *name) {
    if (p->bias && p->bias->requires_grad) {
        al_error("%s: the tiled kernel takes a bias only as a constant (a trainable bias needs "
                 "kernel = 'dense'); bias %s", name, TSHAPE(p->bias));
        return NULL;
    }
    int64_t os[4] = {p->B, p->H, p->N, p->dv}, ls[3] = {p->B, p->H, p->N};
    al_dtype dt = p->q->dtype;
    al_tensor *out = al_new_tensor(4, os, dt), *lse = al_new_tensor(3, ls, dt);
    if (!out || !lse) { al_release(out); al_release(lse); return NULL; }
    const bool done = dt == AL_FLOAT32 ? tiled_forward_float(p, al_ptr(out), al_ptr(lse))
                                       : tiled_forward_double(p, al_ptr(out), al_ptr(lse));
    if (!done) {
        al_error("%s: out of memory for the tiles of q %s", name, TSHAPE(p->q));
        al_release(out); al_release(lse);
        return NULL;
    }
    if (al_grad_needed2(p->q, p->k) || al_grad_needed2(p->v, NULL)) {
        tiled_ctx *ctx = malloc(sizeof *ctx);
        const al_tensor *in[3] = {p->q, p->k, p->v};
        al_node *node = ctx ? al_record(out, name, tiled_backward, 3, in) : NULL;
        if (node) {
            ctx->p = *p;
            node->ctx = ctx;
            al_tensor *o = al_alias(out);   /* the output's storage, without its grad history */
            al_node_save(node, 0, o);
            al_release(o);
            al_node_save(node, 1, lse);
            al_node_save(node, 2, p->bias);
            al_node_save(node, 3, p->mask);
        } else {
            free(ctx);
        }
    }
    al_release(lse);
    return out;
}
