/* sparse.c -- softmax attention over an explicit list of keys per query: the kernel of the
 * variants whose pattern is not a range (power-of-2 jumps, top-k keys, clusters, LSH blocks plus
 * samples).  Work and memory are O(nnz (d + dv)) for nnz listed (query, key) pairs; no N x M
 * array exists unless the caller asks for the map or passes a trainable dense bias.
 *
 * Per query row r = (b, h, i) with entries e = start[r] .. start[r+1]-1 (key j_e):
 *   s_e = scale q_i . k_{j_e} + offset_e + key_bias[b, hk, j_e] + bias[b, h, i, j_e]  (mask 0: -inf)
 *   P_e = softmax over the row's entries (a row with no finite entry is all 0)
 *   O_i = sum_e P_e v_{j_e}
 * A key listed twice counts twice (hyper's samples are drawn with replacement): the sums are over
 * entries, not distinct keys.  offset_e is a constant (an importance weight log(M/m), say).
 * Backward (as the dense kernel, entry by entry):
 *   dP_e = dO_i . v_{j_e};  delta_i = sum_e P_e dP_e;  dS_e = P_e (dP_e - delta_i)
 *   dq_i += scale dS_e k_{j_e};  dk_{j_e} += scale dS_e q_i;  dv_{j_e} += P_e dO_i;
 *   dkey_bias[b, hk, j_e] += dS_e;  dbias[b, h, i, j_e] += dS_e.
 * On the CPU one (batch, kv head) per thread, so the dk, dv and dkey_bias rows it writes are its
 * own; the kernels are plain functions in generic/sparse_kernel.h, included below once per float
 * dtype.  On CUDA tensors the lists are moved to the device and core/cuda/sparse.cu runs the same
 * formulas, a warp per query row.  This file holds the list builder and the op around both. */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- building the lists ---------------------------------------------------------------------- */

bool key_lists_init(key_list_builder *kb, int64_t rows, bool with_offsets) {
    memset(kb, 0, sizeof *kb);
    kb->rows = rows;
    kb->start = malloc(sizeof(int64_t) * (size_t)(rows + 1));
    kb->cap = 64;
    kb->keys = malloc(sizeof(int64_t) * (size_t)kb->cap);
    kb->offsets = with_offsets ? malloc(sizeof(double) * (size_t)kb->cap) : NULL;
    if (!kb->start || !kb->keys || (with_offsets && !kb->offsets)) {
        key_lists_free(kb);
        al_error("attention: out of memory for the key lists of %lld queries", (long long)rows);
        return false;
    }
    kb->start[0] = 0;
    return true;
}

bool key_lists_push(key_list_builder *kb, int64_t key, double offset) {
    if (kb->nnz == kb->cap) {
        int64_t cap = kb->cap * 2;
        int64_t *keys = realloc(kb->keys, sizeof(int64_t) * (size_t)cap);
        if (keys) kb->keys = keys;
        double *offs = kb->offsets ? realloc(kb->offsets, sizeof(double) * (size_t)cap) : NULL;
        if (offs) kb->offsets = offs;
        if (!keys || (kb->offsets && !offs)) {
            al_error("attention: out of memory for %lld listed keys", (long long)cap);
            return false;
        }
        kb->cap = cap;
    }
    kb->keys[kb->nnz] = key;
    if (kb->offsets) kb->offsets[kb->nnz] = offset;
    kb->nnz++;
    return true;
}

void key_lists_end_row(key_list_builder *kb) { kb->start[++kb->row] = kb->nnz; }

void key_lists_free(key_list_builder *kb) {
    free(kb->start); free(kb->keys); free(kb->offsets);
    kb->start = kb->keys = NULL; kb->offsets = NULL;
}

/* ---- the kernel ---------------------------------------------------------------------------- */

typedef struct {
    attention_problem p;
    bool has_key_bias, has_bias;   /* what input 3 is, if any: the key bias or the trainable bias */
} sparse_ctx;

/* The pieces of one call the loops read: raw pointers and the lists. */
typedef struct {
    const int64_t *start, *keys;
    const double *offsets;
    const void *key_bias;   /* contiguous (B, Hkv, M) or NULL */
} sparse_lists;

/* The kernels, once per dtype: sparse_forward_float, sparse_backward_double, ... */
#define GENERIC_FILE "../generic/sparse_kernel.h"
#include "../generic/float_types.h"

static al_tensor *zeros_shaped(int ndim, const int64_t *shape, al_dtype dt, al_device dev, bool want) {
    return want ? al_full_on(ndim, shape, 0, dt, dev) : NULL;
}

/* The operands as the CUDA kernels take them (the lists go beside them, as an al_cuda_key_lists). */
static al_cuda_attention_args cuda_args_of(const attention_problem *p) {
    return (al_cuda_attention_args){.q = p->q, .k = p->k, .v = p->v, .bias = p->bias, .mask = p->mask, .scale = p->scale};
}

static void sparse_backward(al_node *node, const al_tensor *g) {
    sparse_ctx *ctx = node->ctx;
    attention_problem p = ctx->p;
    p.q = node->inputs[0]; p.k = node->inputs[1]; p.v = node->inputs[2];
    p.bias = node->saved[4]; p.mask = node->saved[5];
    /* input 3, when there is one, is the key bias or (never both) the trainable bias */
    sparse_lists L = {al_ptr(node->saved[1]), al_ptr(node->saved[2]),
                      node->saved[3] ? al_ptr(node->saved[3]) : NULL, NULL};
    const bool want_kb = ctx->has_key_bias && al_input_needs_grad(node, 3);
    const bool want_bias = ctx->has_bias && al_input_needs_grad(node, 3);
    const al_dtype dt = p.q->dtype;
    const al_device dev = p.q->storage->device;
    int64_t qs[4] = {p.B, p.H, p.N, p.d}, ks[4] = {p.B, p.Hkv, p.M, p.d}, vs[4] = {p.B, p.Hkv, p.M, p.dv};
    int64_t kbs[3] = {p.B, p.Hkv, p.M}, bs[4] = {p.B, p.H, p.N, p.M};
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *dq = zeros_shaped(4, qs, dt, dev, al_input_needs_grad(node, 0));
    al_tensor *dk = zeros_shaped(4, ks, dt, dev, al_input_needs_grad(node, 1));
    al_tensor *dv = zeros_shaped(4, vs, dt, dev, al_input_needs_grad(node, 2));
    al_tensor *dkb = zeros_shaped(3, kbs, dt, dev, want_kb);
    al_tensor *db = zeros_shaped(4, bs, dt, dev, want_bias);
    const void *P = al_ptr(node->saved[0]);
    void *dqp = dq ? al_ptr(dq) : NULL, *dkp = dk ? al_ptr(dk) : NULL, *dvp = dv ? al_ptr(dv) : NULL;
    void *dkbp = dkb ? al_ptr(dkb) : NULL, *dbp = db ? al_ptr(db) : NULL;
    bool ran = gc != NULL;
    if (gc && dev == AL_CUDA) {   /* a failure raises its error there; nothing is accumulated */
        const al_cuda_attention_args a = cuda_args_of(&p);
        const al_cuda_key_lists l = {node->saved[1], node->saved[2], node->saved[3], NULL};   /* no key bias needed */
        ran = al_cuda_sparse_attention_backward(&a, &l, node->saved[0], gc, dq, dk, dv, dkb, db) == 0;
    } else if (gc && dt == AL_FLOAT32) sparse_backward_float(&p, &L, P, al_ptr(gc), dqp, dkp, dvp, dkbp, dbp);
    else if (gc) sparse_backward_double(&p, &L, P, al_ptr(gc), dqp, dkp, dvp, dkbp, dbp);
    if (ran) {
        al_accumulate_input(node, 0, dq);
        al_accumulate_input(node, 1, dk);
        al_accumulate_input(node, 2, dv);
        if (dkb) al_accumulate_input(node, 3, dkb);
        if (db) al_accumulate_input(node, 3, db);
    }
    al_release(gc); al_release(dq); al_release(dk); al_release(dv); al_release(dkb); al_release(db);
}

/* The map (B, H, N, M) of a call, for lab.attention{weights = true}: the entries' probabilities
 * added at their keys (a key listed twice gets both). */
static al_tensor *sparse_map(const attention_problem *p, const sparse_lists *L, const al_cuda_key_lists *on_device,
                             const al_tensor *P) {
    int64_t ms[4] = {p->B, p->H, p->N, p->M};
    al_tensor *w = al_full_on(4, ms, 0, P->dtype, P->storage->device);
    if (!w) return NULL;
    if (P->storage->device == AL_CUDA) {
        if (al_cuda_sparse_attention_map(on_device, P, w) == 0) return w;
        al_release(w);
        return NULL;
    }
    const int64_t rows = p->B * p->H * p->N;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t e = L->start[r]; e < L->start[r + 1]; e++) {
            if (P->dtype == AL_FLOAT32) ((float *)al_ptr(w))[r * p->M + L->keys[e]] += ((float *)al_ptr(P))[e];
            else ((double *)al_ptr(w))[r * p->M + L->keys[e]] += ((double *)al_ptr(P))[e];
        }
    return w;
}

al_tensor *attention_sparse_forward(const attention_problem *p, key_list_builder *kb,
                                    const al_tensor *key_bias, const char *name, al_tensor **weights) {
    const al_dtype dt = p->q->dtype;
    const al_device dev = p->q->storage->device;
    const int64_t rows = p->B * p->H * p->N;
    int64_t os[4] = {p->B, p->H, p->N, p->dv}, ns[1] = {kb->nnz}, rs[1] = {rows + 1};
    al_tensor *out = NULL, *P = NULL, *starts = NULL, *keys = NULL, *offs = NULL, *kbc = NULL;
    if (kb->row != rows) {
        al_error("%s: internal error, %lld key lists for %lld queries", name, (long long)kb->row, (long long)rows);
        goto done;
    }
    if (dt == AL_BFLOAT16) {
        al_error("%s: no bfloat16 kernel for a key-list pattern on the GPU (q %s); convert with to(\"float32\")", name,
                 TSHAPE(p->q));
        goto done;
    }
    const al_tensor *raw_bias = p->bias && p->bias->requires_grad ? p->bias : NULL;
    if (raw_bias && key_bias) {   /* a node has four input slots */
        al_error("%s: a trainable opts.bias cannot be combined with this variant's own key bias", name);
        goto done;
    }
    if (key_bias) {
        int64_t want[3] = {p->B, p->Hkv, p->M};
        if (!al_shape_equal(key_bias->ndim, key_bias->shape, 3, want) || key_bias->dtype != dt) {
            al_error("%s: key bias %s must be (B, Hkv, M) = %s in %s", name, TSHAPE(key_bias),
                     al_shape_str(3, want), al_dtype_name(dt));
            goto done;
        }
        if (!(kbc = al_contiguous_nograd(key_bias))) goto done;
    }
    /* built on the host; beside q */
    starts = attention_on_device_of(p->q, al_from_buffer(1, rs, AL_INT64, kb->start));
    keys = attention_on_device_of(p->q, al_from_buffer(1, ns, AL_INT64, kb->keys));
    offs = kb->offsets ? attention_on_device_of(p->q, al_from_buffer(1, ns, AL_FLOAT64, kb->offsets)) : NULL;
    out = al_new_tensor_on(4, os, dt, dev);
    P = al_new_tensor_on(1, ns, dt, dev);
    if (!starts || !keys || (kb->offsets && !offs) || !out || !P) { al_release(out); out = NULL; goto done; }
    sparse_lists L = {al_ptr(starts), al_ptr(keys), offs ? al_ptr(offs) : NULL, kbc ? al_ptr(kbc) : NULL};
    const al_cuda_key_lists on_device = {starts, keys, offs, kbc};
    if (dev == AL_CUDA) {
        const al_cuda_attention_args a = cuda_args_of(p);
        if (al_cuda_sparse_attention_forward(&a, &on_device, P, out) < 0) { al_release(out); out = NULL; goto done; }
    } else if (dt == AL_FLOAT32) sparse_forward_float(p, &L, al_ptr(P), al_ptr(out));
    else sparse_forward_double(p, &L, al_ptr(P), al_ptr(out));
    if (al_grad_needed2(p->q, p->k) || al_grad_needed2(p->v, key_bias) || raw_bias) {
        sparse_ctx *ctx = malloc(sizeof *ctx);
        const al_tensor *in[4] = {p->q, p->k, p->v, key_bias ? key_bias : raw_bias};
        const int n_in = key_bias || raw_bias ? 4 : 3;
        al_node *node = ctx ? al_record(out, name, sparse_backward, n_in, in) : NULL;
        if (node) {
            ctx->p = *p;
            ctx->has_key_bias = key_bias != NULL;
            ctx->has_bias = raw_bias != NULL;
            node->ctx = ctx;
            al_node_save(node, 0, P);
            al_node_save(node, 1, starts);
            al_node_save(node, 2, keys);
            al_node_save(node, 3, offs);
            al_node_save(node, 4, p->bias);
            al_node_save(node, 5, p->mask);
        } else {
            free(ctx);
        }
    }
    if (weights) *weights = sparse_map(p, &L, &on_device, P);
done:
    key_lists_free(kb);
    al_release(P); al_release(starts); al_release(keys); al_release(offs); al_release(kbc);
    return out;
}
