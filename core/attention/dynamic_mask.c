/* dynamic_mask.c -- the "dynamic_mask" variant: Dynamic Mask Attention (DMA, "Trainable Dynamic
 * Mask Sparse Attention", 2025; SmallDoges/flash-dmattn, whose benchmark helpers
 * calculate_zoh_states and prepare_dynamic_mask define it):
 *   z[b, hk, j] = exp(A[hk] * softplus(vcat_j W_dt)[hk]),  vcat_j = the Hkv values of key j, concatenated
 *   keep(b, h, i) = the top_k keys by z among the keys query i may see (causal, mask); ties to the
 *                   lower index; all of them when there are at most top_k
 *   O_i = softmax_j(scale q_i . k_j + z[b, hk, j], j in keep(b, h, i)) v
 * W_dt = dt_proj (Hkv*dv, Hkv) and A = dt_a (Hkv) are option tensors (trainable).  z is built from
 * the core's differentiable ops, so the gradient reaches v, W_dt and A through the bias, as in
 * the reference (dbias = dS summed over queries); the top-k selection itself is a constant (not
 * differentiated through).  Some integrations use A softplus(.) without the exp: this is the exp
 * form of the flash-dmattn helper.  The kernel visits only the kept keys: O(N top_k (d + dv))
 * work after an O(N M) selection (one sort of the keys per (batch, kv head)).  On CUDA tensors the
 * scores are computed on the device, the selection on the host, and the lists run on the device
 * (core/cuda/sparse.cu). */
#include "attention_internal.h"
#include <stdlib.h>
#include <string.h>

/* z = exp(A * softplus(vcat W_dt)) as (B, Hkv, M), differentiable in v, W_dt and A;
 * softplus(x) = relu(x) + log(1 + exp(-|x|)) (no overflow for large |x|) */
static al_tensor *dma_key_scores(const al_tensor *v, const al_tensor *w_dt, const al_tensor *a) {
    const int64_t B = v->shape[0], Hkv = v->shape[1], M = v->shape[2], dv = v->shape[3];
    const int order[4] = {0, 2, 1, 3};
    int64_t cat_shape[3] = {B, M, Hkv * dv};
    al_tensor *vp = al_permute(v, order), *vcat = vp ? al_reshape(vp, 3, cat_shape) : NULL;
    al_tensor *x = vcat ? al_matmul(vcat, w_dt) : NULL;                       /* (B, M, Hkv) */
    al_tensor *pos = x ? al_relu(x) : NULL, *ax = x ? al_abs(x) : NULL;
    al_tensor *nax = ax ? al_neg(ax) : NULL, *ex = nax ? al_exp(nax) : NULL;
    al_tensor *ex1 = ex ? al_add_scalar(ex, 1) : NULL, *lg = ex1 ? al_log(ex1) : NULL;
    al_tensor *sp = pos && lg ? al_add(pos, lg) : NULL;
    al_tensor *scaled = sp ? al_mul(sp, a) : NULL, *z = scaled ? al_exp(scaled) : NULL;
    al_tensor *zt = z ? al_transpose(z, 1, 2) : NULL;                         /* (B, Hkv, M) */
    al_release(vp); al_release(vcat); al_release(x); al_release(pos); al_release(ax); al_release(nax);
    al_release(ex); al_release(ex1); al_release(lg); al_release(sp); al_release(scaled); al_release(z);
    return zt;
}

static bool mask_allows(const attention_problem *p, int64_t b, int64_t h, int64_t i, int64_t j) {
    if (!p->mask) return true;
    const al_tensor *m = p->mask;
    const int64_t off = m->offset + b * m->strides[0] + h * m->strides[1] + i * m->strides[2] + j * m->strides[3];
    return m->dtype == AL_FLOAT32 ? ((const float *)m->storage->data)[off] != 0
                                  : ((const double *)m->storage->data)[off] != 0;
}

/* keep(b, h, i) for every query, from the detached scores z (B, Hkv, M); the selection runs on the
 * host, so on CUDA tensors it reads copies of z and of opts.mask */
static bool dma_key_lists(const attention_problem *p, const al_tensor *z, int64_t top_k, key_list_builder *kb) {
    const int64_t M = p->M, group = p->H / p->Hkv;
    memset(kb, 0, sizeof *kb);   /* freed below only when its lists were started */
    attention_problem host = *p;
    al_tensor *zh = al_to_cpu_nograd(z), *mask_host = p->mask ? al_to_cpu_nograd(p->mask) : NULL;
    host.mask = mask_host;
    p = &host;
    al_tensor *z64 = zh ? al_to_dtype_nograd(zh, AL_FLOAT64) : NULL, *zc = z64 ? al_contiguous_nograd(z64) : NULL;
    scored_position *order = malloc(sizeof(scored_position) * (size_t)(M + 1));
    bool ok = zc && order && (!p->mask || mask_host) && key_lists_init(kb, p->B * p->H * p->N, false);
    for (int64_t bk = 0; ok && bk < p->B * p->Hkv; bk++) {
        const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;
        const double *zr = (const double *)al_ptr(zc) + bk * M;
        for (int64_t j = 0; j < M; j++) order[j] = (scored_position){zr[j], j};
        rank_descending(order, M);   /* by z, largest first, ties to the lower index */
        for (int64_t h = hk * group; ok && h < (hk + 1) * group; h++)
            for (int64_t i = 0; ok && i < p->N; i++) {
                const int64_t last = !p->causal ? M - 1 : i + (p->causal == 2 ? M - p->N : 0);
                int64_t kept = 0;
                for (int64_t r = 0; ok && r < M && kept < top_k; r++) {
                    const int64_t j = order[r].pos;
                    if (j > last || !mask_allows(p, b, h, i, j)) continue;
                    ok = key_lists_push(kb, j, 0);
                    kept++;
                }
                key_lists_end_row(kb);
            }
    }
    if (!zc || !order) al_error("attention: out of memory selecting the dynamic mask");
    if (!ok && kb->start) key_lists_free(kb);
    free(order); al_release(z64); al_release(zc); al_release(zh); al_release(mask_host);
    return ok;
}

typedef struct { int64_t top_k; const al_tensor *dt_proj, *dt_a; } dynamic_mask_options;
static const attention_option options[] = {
    {OPTION_FIELD(dynamic_mask_options, top_k), .kind = OPTION_INTEGER, .least = 1,
     .summary = "the keys kept per query (keep_window_size)"},
    {OPTION_FIELD(dynamic_mask_options, dt_proj), .kind = OPTION_TENSOR,
     .summary = "W_dt (Hkv*dv, Hkv), the value-to-score projection"},
    {OPTION_FIELD(dynamic_mask_options, dt_a), .kind = OPTION_TENSOR, .summary = "A (Hkv), the per-head score gain"},
    {0},
};

static al_tensor *dynamic_mask_forward(attention_problem *p, al_tensor **weights) {
    const dynamic_mask_options *o = p->options;
    const al_tensor *w_dt = o->dt_proj, *a = o->dt_a;
    if (!w_dt || !a || o->top_k < 1) {
        al_error("attention: variant 'dynamic_mask' needs dt_proj (Hkv*dv, Hkv), dt_a (Hkv) and top_k >= 1 "
                 "(got dt_proj %s, dt_a %s, top_k %lld)", w_dt ? TSHAPE(w_dt) : "nil", a ? TSHAPE(a) : "nil",
                 (long long)o->top_k);
        return NULL;
    }
    int64_t want_w[2] = {p->Hkv * p->dv, p->Hkv}, want_a[1] = {p->Hkv};
    if (!al_shape_equal(w_dt->ndim, w_dt->shape, 2, want_w) || !al_shape_equal(a->ndim, a->shape, 1, want_a) ||
        w_dt->dtype != p->q->dtype || a->dtype != p->q->dtype) {
        al_error("attention: variant 'dynamic_mask' needs dt_proj %s and dt_a %s in %s (got %s %s and %s %s)",
                 al_shape_str(2, want_w), al_shape_str(1, want_a), al_dtype_name(p->q->dtype), TSHAPE(w_dt),
                 al_dtype_name(w_dt->dtype), TSHAPE(a), al_dtype_name(a->dtype));
        return NULL;
    }
    /* (B, Hkv, M) scores; the sparse kernel wants them contiguous in that shape */
    al_tensor *zt = dma_key_scores(p->v, w_dt, a), *z = zt ? al_contiguous(zt) : NULL;
    al_release(zt);
    if (!z) return NULL;
    key_list_builder kb;
    al_tensor *out = NULL;
    if (dma_key_lists(p, z, o->top_k, &kb))
        out = attention_sparse_forward(p, &kb, z, "attention_dynamic_mask", weights);
    al_release(z);
    return out;
}

const attention_variant attention_dynamic_mask = {
    .name = "dynamic_mask", .forward = dynamic_mask_forward, .cuda_forward = dynamic_mask_forward, .options = options,
    .options_size = sizeof(dynamic_mask_options),
    .summary = "dynamic mask attention (DMA): per query the top_k keys by a value-derived score z, which is also "
               "the bias"};
