/* dense.c -- the dense attention kernel: logits, normalisation, weighted sum, and the backward,
 * one (batch, kv head) group per thread.
 *
 * Shapes (per group): q (Hg, N, d), k (M, d), v (M, dv), P (Hg, N, M) kept for the backward.
 * It is the reference path: exact, O(N*M) memory for P, and fast for the toy tasks' small maps
 * (N*M up to a few thousand), where it beats a tiled kernel; the tiled online-softmax kernel for
 * long sequences belongs to the catalogue issue.
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
} dense_ctx;

/* element offsets of a (b, h, i) row of a 4-d tensor whose last stride is 1 */
static inline int64_t row_offset(const al_tensor *t, int64_t b, int64_t h, int64_t i) {
    return t->offset + b * t->strides[0] + h * t->strides[1] + i * t->strides[2];
}
static inline int64_t cell_offset(const al_tensor *t, int64_t b, int64_t h, int64_t i, int64_t j) {
    return row_offset(t, b, h, i) + j * t->strides[3];
}

#define DENSE_FORWARD(T, EXP)                                                                   \
static void dense_forward_##T(const attention_problem *p, dense_normalisation kind, T *P, T *O) { \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const T *Bias = p->bias ? (const T *)p->bias->storage->data : NULL;                         \
    const T *Mask = p->mask ? (const T *)p->mask->storage->data : NULL;                         \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const T scale = (T)p->scale, inv_norm = (T)(1.0 / p->norm);                                 \
    _Pragma("omp parallel for schedule(static) if (p->B * p->H * N * M * (d + dv) >= AL_PARALLEL_GRAIN)") \
    for (int64_t bh = 0; bh < p->B * p->H; bh++) {                                              \
        const int64_t b = bh / p->H, h = bh % p->H, hk = h / group;                             \
        for (int64_t i = 0; i < N; i++) {                                                       \
            const T *q = Q + row_offset(p->q, b, h, i);                                         \
            T *prow = P + (bh * N + i) * M, *o = O + (bh * N + i) * dv;                         \
            T mx = -INFINITY;                                                                   \
            for (int64_t j = 0; j < M; j++) {                                                   \
                bool ok = attention_causal_allows(p->causal, i, j, N, M) &&                     \
                          (!Mask || Mask[cell_offset(p->mask, b, h, i, j)] != 0);               \
                if (!ok) { prow[j] = -INFINITY; continue; }                                     \
                const T *k = K + row_offset(p->k, b, hk, j);                                    \
                T s = 0;                                                                        \
                for (int64_t c = 0; c < d; c++) s += q[c] * k[c];                               \
                s *= scale;                                                                     \
                if (Bias) s += Bias[cell_offset(p->bias, b, h, i, j)];                          \
                prow[j] = s;                                                                    \
                if (s > mx) mx = s;                                                             \
            }                                                                                   \
            if (kind == DENSE_SOFTMAX) {                                                        \
                T z = 0;                                                                        \
                for (int64_t j = 0; j < M; j++) {                                               \
                    T e = prow[j] == -INFINITY ? (T)0 : EXP(prow[j] - mx);                      \
                    prow[j] = e; z += e;                                                        \
                }                                                                               \
                T inv = z > 0 ? (T)1 / z : (T)0;                                                \
                for (int64_t j = 0; j < M; j++) prow[j] *= inv;                                 \
            } else {                                                                            \
                for (int64_t j = 0; j < M; j++) prow[j] = prow[j] == -INFINITY ? (T)0 : prow[j] * inv_norm; \
            }                                                                                   \
            for (int64_t c = 0; c < dv; c++) o[c] = 0;                                          \
            for (int64_t j = 0; j < M; j++) {                                                   \
                const T pj = prow[j];                                                           \
                if (pj == 0) continue;                                                          \
                const T *vr = V + row_offset(p->v, b, hk, j);                                   \
                for (int64_t c = 0; c < dv; c++) o[c] += pj * vr[c];                            \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}
DENSE_FORWARD(float, expf)
DENSE_FORWARD(double, exp)

/* The backward runs one (batch, kv head) per iteration so that dk and dv, shared by the query
 * heads of a group, are written by one thread only. dS is written to dbias when wanted. */
#define DENSE_BACKWARD(T)                                                                       \
static void dense_backward_##T(const attention_problem *p, dense_normalisation kind, const T *P, \
                               const T *dO, T *dQ, T *dK, T *dV, T *dBias) {                    \
    const T *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;       \
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;              \
    const T scale = (T)p->scale, inv_norm = (T)(1.0 / p->norm);                                 \
    _Pragma("omp parallel for schedule(static) if (p->B * p->H * N * M * (d + dv) >= AL_PARALLEL_GRAIN)") \
    for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {                                            \
        const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;                                        \
        T *ds = malloc(sizeof(T) * (size_t)(M > 0 ? M : 1));                                    \
        if (!ds) continue;                                                                      \
        T *dk = dK ? dK + bk * M * d : NULL, *dvv = dV ? dV + bk * M * dv : NULL;               \
        for (int64_t h = hk * group; h < (hk + 1) * group; h++) {                               \
            const int64_t bh = b * p->H + h;                                                    \
            for (int64_t i = 0; i < N; i++) {                                                   \
                const T *prow = P + (bh * N + i) * M, *go = dO + (bh * N + i) * dv;             \
                const T *q = Q + row_offset(p->q, b, h, i);                                     \
                T delta = 0;                                                                    \
                for (int64_t j = 0; j < M; j++) {                                               \
                    const T *vr = V + row_offset(p->v, b, hk, j);                               \
                    T dp = 0;                                                                   \
                    for (int64_t c = 0; c < dv; c++) dp += go[c] * vr[c];                       \
                    ds[j] = dp;                                                                 \
                    delta += dp * prow[j];                                                      \
                    if (dvv && prow[j] != 0)                                                    \
                        for (int64_t c = 0; c < dv; c++) dvv[j * dv + c] += prow[j] * go[c];    \
                }                                                                               \
                for (int64_t j = 0; j < M; j++) {                                               \
                    if (kind == DENSE_SOFTMAX) ds[j] = prow[j] * (ds[j] - delta);               \
                    else ds[j] = attention_causal_allows(p->causal, i, j, N, M) &&              \
                                 (!p->mask || ((const T *)p->mask->storage->data)[cell_offset(p->mask, b, h, i, j)] != 0) \
                                 ? ds[j] * inv_norm : (T)0;                                     \
                }                                                                               \
                if (dBias) memcpy(dBias + (bh * N + i) * M, ds, sizeof(T) * (size_t)M);         \
                if (dQ) {                                                                       \
                    T *dq = dQ + (bh * N + i) * d;                                              \
                    for (int64_t c = 0; c < d; c++) dq[c] = 0;                                  \
                    for (int64_t j = 0; j < M; j++) {                                           \
                        if (ds[j] == 0) continue;                                               \
                        const T *kr = K + row_offset(p->k, b, hk, j);                           \
                        for (int64_t c = 0; c < d; c++) dq[c] += scale * ds[j] * kr[c];         \
                    }                                                                           \
                }                                                                               \
                if (dk)                                                                         \
                    for (int64_t j = 0; j < M; j++) {                                           \
                        if (ds[j] == 0) continue;                                               \
                        for (int64_t c = 0; c < d; c++) dk[j * d + c] += scale * ds[j] * q[c];  \
                    }                                                                           \
            }                                                                                   \
        }                                                                                       \
        free(ds);                                                                               \
    }                                                                                           \
}
DENSE_BACKWARD(float)
DENSE_BACKWARD(double)

static void dense_backward(al_node *node, const al_tensor *g) {
    dense_ctx *ctx = node->ctx;
    attention_problem p = ctx->p;
    p.q = node->inputs[0]; p.k = node->inputs[1]; p.v = node->inputs[2];
    p.bias = node->saved[1]; p.mask = node->saved[2];
    const al_tensor *P = node->saved[0];
    bool want_bias = node->n_inputs > 3 && al_input_needs_grad(node, 3);
    int64_t qs[4] = {p.B, p.H, p.N, p.d}, ks[4] = {p.B, p.Hkv, p.M, p.d}, vs[4] = {p.B, p.Hkv, p.M, p.dv};
    int64_t ps[4] = {p.B, p.H, p.N, p.M};
    al_dtype dt = p.q->dtype;
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *dq = al_input_needs_grad(node, 0) ? al_new_tensor(4, qs, dt) : NULL;
    al_tensor *dk = al_input_needs_grad(node, 1) ? al_full(4, ks, 0, dt) : NULL;
    al_tensor *dv = al_input_needs_grad(node, 2) ? al_full(4, vs, 0, dt) : NULL;
    al_tensor *db = want_bias ? al_new_tensor(4, ps, dt) : NULL;
    if (gc) {
        if (dt == AL_FLOAT32)
            dense_backward_float(&p, ctx->kind, al_ptr(P), al_ptr(gc), dq ? al_ptr(dq) : NULL,
                                 dk ? al_ptr(dk) : NULL, dv ? al_ptr(dv) : NULL, db ? al_ptr(db) : NULL);
        else
            dense_backward_double(&p, ctx->kind, al_ptr(P), al_ptr(gc), dq ? al_ptr(dq) : NULL,
                                  dk ? al_ptr(dk) : NULL, dv ? al_ptr(dv) : NULL, db ? al_ptr(db) : NULL);
    }
    al_accumulate_input(node, 0, dq);
    al_accumulate_input(node, 1, dk);
    al_accumulate_input(node, 2, dv);
    al_accumulate_input(node, 3, db); /* folds the broadcast back to the bias's own shape */
    al_release(gc); al_release(dq); al_release(dk); al_release(dv); al_release(db);
}

al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights) {
    int64_t os[4] = {p->B, p->H, p->N, p->dv}, ps[4] = {p->B, p->H, p->N, p->M};
    al_dtype dt = p->q->dtype;
    al_tensor *out = al_new_tensor(4, os, dt), *P = al_new_tensor(4, ps, dt);
    if (!out || !P) { al_release(out); al_release(P); return NULL; }
    if (dt == AL_FLOAT32) dense_forward_float(p, kind, al_ptr(P), al_ptr(out));
    else dense_forward_double(p, kind, al_ptr(P), al_ptr(out));
    /* a trainable bias is input 3: it is the expanded view of the user's bias, whose own node
     * folds the (B, H, N, M) gradient back to the user's shape */
    const al_tensor *raw_bias = p->bias && p->bias->requires_grad ? p->bias : NULL;
    if (al_grad_needed2(p->q, p->k) || al_grad_needed2(p->v, raw_bias)) {
        dense_ctx *ctx = malloc(sizeof *ctx);
        const al_tensor *in[4] = {p->q, p->k, p->v, raw_bias};
        al_node *node = ctx ? al_record(out, name, dense_backward, raw_bias ? 4 : 3, in) : NULL;
        if (node) {
            ctx->p = *p;
            ctx->kind = kind;
            node->ctx = ctx;
            al_node_save(node, 0, P);
            al_node_save(node, 1, p->bias);
            al_node_save(node, 2, p->mask);
        } else {
            free(ctx);
        }
    }
    if (weights) *weights = al_alias(P);
    al_release(P);
    return out;
}
