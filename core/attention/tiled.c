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
 * entry: the dense kernel does that).
 * The kernels are plain functions in generic/tiled_kernel.h, included below once per float dtype;
 * this file holds the tile products, the visible ranges and the op around them. */
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

/* The tile products of generic/tiled_kernel.h: C = alpha op(A) op(B) + beta C, counted for the
 * profiler; float tiles in registers where small_gemm_avx512.h takes them, else the BLAS. */
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

/* The kernels, once per dtype: tiled_forward_float, tiled_backward_double, ... */
#define GENERIC_FILE "../generic/tiled_kernel.h"
#include "../generic/float_types.h"

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
            attention_save_for_recompute(node, out, lse, p);
        } else {
            free(ctx);
        }
    }
    al_release(lse);
    return out;
}
