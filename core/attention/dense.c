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
 *           dq = scale dS k; dk = scale dS^T q; dbias = dS.
 * The kernels are plain functions in generic/dense_rows.h and generic/dense_kernel.h, included
 * below once per float dtype; this file holds the op around them. */
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

/* A parallel region costs tens of microseconds on a 2-vCPU VM (waking the worker); below this much
 * work (multiply-adds of one pass) one thread is faster: the toy tasks' 1,024 (batch, head) pairs of
 * one query over 40 keys (0.5 M) took 575 us forward and backward on two threads, 508 us on one. */
enum { ATTENTION_PARALLEL_WORK = 1 << 22 };

/* Below this many queries per (batch, kv head), the kernels walk the rows of k and v as they
 * are; from it on, they first copy them transposed (see generic/dense_kernel.h). */
enum { ROWS_PATH_QUERIES = 8 };

/* Float rows of at most 8 elements, and the softmax and dot product of a row, take masked-vector
 * kernels where the target has them (generic/dense_rows.h calls them from its float pass). */
#if defined(__AVX512VL__)
#include "dense_rows_avx512.h"
#endif

/* What the forward and the backward kernels decide alike: whether a pass runs on several threads
 * (more than one (batch, kv head), and enough work), whether it walks the rows of k and v as they
 * are (few queries per (batch, kv head)), and what a thread whose scratch could not be had does in
 * the loop over (batch, kv head): it records the failure (the caller raises the error) and skips. */
static inline bool dense_parallel(const attention_problem *p) {
    return p->B * p->Hkv > 1 && p->B * p->H * p->N * p->M * (p->d + p->dv) >= ATTENTION_PARALLEL_WORK;
}
static inline bool dense_rows_path(const attention_problem *p) { return p->N * (p->H / p->Hkv) < ROWS_PATH_QUERIES; }
static inline bool scratch_missing(const void *scratch, bool *failed) {
    if (scratch) return false;
    #pragma omp atomic write
    *failed = true;
    return true;
}

/* which of the three row kernels a call of rows_at_width runs (generic/dense_rows.h) */
typedef enum { ROWS_DOTS, ROWS_WEIGHTED, ROWS_SCALED } row_kernel;

/* The row kernels and the kernel, once per dtype: dots_float, dense_forward_double, ... */
#define GENERIC_FILE "../generic/dense_rows.h"
#include "../generic/float_types.h"
#define GENERIC_FILE "../generic/dense_kernel.h"
#include "../generic/float_types.h"

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
