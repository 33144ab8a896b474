/* flashbias.c -- the "flashbias" variant: FlashBias (Wu et al. 2025, arXiv 2505.12044), softmax
 * attention with a low-rank bias given by its factors,
 *   S = scale q k^T + phi_q phi_k^T,   phi_q = bias_q (B, H, N, r),  phi_k = bias_k (B, Hkv, M, r)
 * (each broadcastable; the bias is not scaled, as in thuml/FlashBias's kernel).  It is computed
 * exactly, never forming the N x M bias, by the paper's concatenation: q' = [scale q, phi_q],
 * k' = [k, phi_k], S = q' k'^T, handed to the dense kernel with scale 1 (causal, mask, opts.bias
 * and the map as there).  The factors may require grad: the concatenation is made of the core's
 * differentiable ops, so dphi_q = dS phi_k and dphi_k = dS^T phi_q come from their backwards.
 * Cost O(N M (d + r)) time, O(N r) beyond the dense kernel.  ALiBi, -m_h (i - j), is rank 2:
 * phi_q(i) = m_h [1, -i], phi_k(j) = [j, 1]. */
#include "attention_internal.h"

/* t broadcast to (B, heads, rows, r), then made contiguous for the concatenation */
static al_tensor *factor_of(const char *name, const char *dims, const al_tensor *t, int64_t B, int64_t heads,
                            int64_t rows, al_dtype dt) {
    if (t->ndim < 1 || t->ndim > 4 || t->dtype != dt) {
        al_error("attention: variant 'flashbias' needs %s broadcastable to %s = (%lld, %lld, %lld, r) "
                 "in %s (got %s %s)", name, dims, (long long)B, (long long)heads, (long long)rows, al_dtype_name(dt), TSHAPE(t), al_dtype_name(t->dtype));
        return NULL;
    }
    int64_t shape[4] = {B, heads, rows, t->shape[t->ndim - 1]};
    al_tensor *e = al_expand(t, 4, shape);
    if (!e) {
        al_error("attention: variant 'flashbias': %s of shape %s does not broadcast to %s", name, TSHAPE(t),
                 al_shape_str(4, shape));
        return NULL;
    }
    return e;
}

typedef struct { const al_tensor *bias_q, *bias_k; int kernel; } flashbias_options;
static const attention_option options[] = {
    {OPTION_FIELD(flashbias_options, bias_q), .kind = OPTION_TENSOR,
     .summary = "phi_q (B, H, N, r), broadcastable: the bias is phi_q phi_k^T"},
    {OPTION_FIELD(flashbias_options, bias_k), .kind = OPTION_TENSOR, .summary = "phi_k (B, Hkv, M, r), broadcastable"},
    KERNEL_OPTION(flashbias_options),
    {0},
};

static al_tensor *flashbias_forward(attention_problem *p, al_tensor **weights) {
    const flashbias_options *o = p->options;
    p->kernel = o->kernel;
    if (!o->bias_q || !o->bias_k) {
        al_error("attention: variant 'flashbias' needs the bias factors bias_q (B, H, N, r) and bias_k (B, Hkv, M, r) "
                 "(got %s and %s)", o->bias_q ? TSHAPE(o->bias_q) : "nil", o->bias_k ? TSHAPE(o->bias_k) : "nil");
        return NULL;
    }
    const al_dtype dt = p->q->dtype;
    al_tensor *fq = factor_of("bias_q", "(B, H, N, r)", o->bias_q, p->B, p->H, p->N, dt);
    al_tensor *fk = fq ? factor_of("bias_k", "(B, Hkv, M, r)", o->bias_k, p->B, p->Hkv, p->M, dt) : NULL;
    al_tensor *sq = NULL, *qq = NULL, *kk = NULL, *out = NULL;
    if (fq && fk && fq->shape[3] != fk->shape[3]) {
        al_error("attention: variant 'flashbias' needs bias_q and bias_k of one rank r (got %s and %s)",
                 TSHAPE(o->bias_q), TSHAPE(o->bias_k));
    } else if (fq && fk && (sq = al_mul_scalar(p->q, p->scale))) {
        al_tensor *qs[2] = {sq, fq}, *ks[2] = {(al_tensor *)p->k, fk};
        qq = al_cat(2, qs, 3);
        kk = qq ? al_cat(2, ks, 3) : NULL;
        if (kk) {
            attention_problem aug = *p;
            aug.q = qq; aug.k = kk; aug.d = p->d + fq->shape[3]; aug.scale = 1;
            out = attention_softmax_over_visible(&aug, "attention_flashbias", "attention_flashbias_tiled", weights);
        }
    }
    al_release(fq); al_release(fk); al_release(sq); al_release(qq); al_release(kk);
    return out;
}

const attention_variant attention_flashbias = {
    .name = "flashbias", .forward = flashbias_forward, .cuda_forward = flashbias_forward, .options = options,
    .options_size = sizeof(flashbias_options),
    .summary = "FlashBias: softmax attention plus a low-rank bias bias_q bias_k^T, exact, by concatenating the "
               "factors to q and k"};
