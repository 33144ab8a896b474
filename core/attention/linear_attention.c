/* linear_attention.c -- the "linear" variant: kernelised linear attention (Katharopoulos et al.
 * 2020, arXiv 2006.16236) with the feature map phi(x) = elu(x) + 1:
 *   O_i = phi(q_i)^T S_i / (phi(q_i)^T z_i + eps),   S_i = sum_j phi(k_j) v_j^T,   z_i = sum_j phi(k_j)
 * the sums running over every key, or (causal, N = M) over j <= i, in chunks (causal_prefix_products),
 * so that no N x M map is ever formed: O(N (C + d) dv) time for chunks of C, O(N/C d dv) states.
 * It is composed of the core's differentiable ops, whose backwards make its gradient.  No scale
 * (phi is not scaled); a bias or a mask has no meaning here and is refused. */
#include "attention_internal.h"

static const double linear_eps = 1e-6;   /* as in the authors' fast-transformers code */

/* phi(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise; exp of min(x, 0) so that the branch not
 * taken never overflows (its zero gradient times inf would be NaN). */
static al_tensor *feature_map(const al_tensor *x) {
    al_tensor *zero = al_full_on(0, NULL, 0, x->dtype, x->storage->device);
    al_tensor *pos = zero ? al_compare(x, zero, AL_GT) : NULL;
    al_tensor *lin = al_add_scalar(x, 1);
    al_tensor *neg = zero ? al_minimum(x, zero) : NULL;
    al_tensor *ex = neg ? al_exp(neg) : NULL;
    al_tensor *phi = pos && lin && ex ? al_where(pos, lin, ex) : NULL;
    al_release(zero); al_release(pos); al_release(lin); al_release(neg); al_release(ex);
    return phi;
}

/* The (B, H, N, M) map the output is a weighted sum with, for lab.attention{weights = true}:
 * A_ij = phi(q_i) . phi(k_j) / den_i, times the causal keep-mask when causal.  Detached. */
static al_tensor *linear_weights(const attention_problem *p, const al_tensor *pq, const al_tensor *pk,
                                 const al_tensor *den) {
    int prev = al_set_grad_enabled(0);
    al_tensor *kt = al_transpose(pk, 2, 3), *a = kt ? al_matmul(pq, kt) : NULL;
    al_tensor *w = a ? al_div(a, den) : NULL;
    if (w && p->causal) {
        al_tensor *keep = attention_causal_keep(p, w->dtype), *masked = keep ? al_mul(w, keep) : NULL;
        al_release(keep);
        al_release(w);
        w = masked;
    }
    al_set_grad_enabled(prev);
    al_release(kt); al_release(a);
    return w;
}

/* Causal prefix products in chunks (the chunked form of the linear-attention papers):
 *   out_i = sum_{j <= i} (a_i . b_j) c_j,   a, b (B, H, N, d), c (B, H, N, e),
 * with the sequence cut into chunks of LINEAR_CHUNK: within a chunk the masked (chunk x chunk)
 * products, across chunks the state sum_j b_j c_j^T of the chunks before (an exclusive prefix sum
 * over chunks).  All products are batched matrix products, so this runs at BLAS speed, and the
 * state is kept once per chunk, O(N/C d e); the step-by-step recurrence it replaced was 5-20x slower
 * at N = 1,024 to 4,096 (bench/RESULTS.md).  Composed of differentiable ops: the backward is theirs. */
enum { LINEAR_CHUNK = 64 };

static al_tensor *causal_prefix_products(const al_tensor *a, const al_tensor *b, const al_tensor *c) {
    const int64_t B = a->shape[0], H = a->shape[1], N = a->shape[2], e = c->shape[3];
    const int64_t C = N < LINEAR_CHUNK ? N : LINEAR_CHUNK, chunks = (N + C - 1) / C, pad = chunks * C - N;
    op_scope s = {0};
    const al_tensor *in[3] = {a, b, c};
    al_tensor *chunked[3];
    for (int t = 0; t < 3; t++) {        /* zero rows past N: phi(k) = 0 there adds nothing */
        const al_tensor *x = in[t];
        const int64_t w = x->shape[3];
        if (pad) {
            int64_t zs[4] = {B, H, pad, w};
            al_tensor *parts[2] = {(al_tensor *)x, OP(&s, al_full_on(4, zs, 0, x->dtype, x->storage->device))};
            x = parts[1] ? OP(&s, al_cat(2, parts, 2)) : NULL;
        }
        int64_t cs[5] = {B, H, chunks, C, w};
        chunked[t] = x ? OP(&s, al_reshape(x, 5, cs)) : NULL;
    }
    int64_t ts[2] = {C, C};
    al_tensor *tril = OP(&s, al_full(2, ts, 0, a->dtype));   /* on the host, then beside a */
    if (tril) {
        for (int64_t i = 0; i < C; i++)
            for (int64_t j = 0; j <= i; j++) {
                if (a->dtype == AL_FLOAT32) ((float *)al_ptr(tril))[i * C + j] = 1;
                else ((double *)al_ptr(tril))[i * C + j] = 1;
            }
        tril = OP(&s, attention_on_device_of(a, al_retain(tril)));
    }
    al_tensor *bt = OP(&s, al_transpose(chunked[1], 3, 4));                 /* (B, H, n, d, C) */
    al_tensor *scores = OP(&s, al_matmul(chunked[0], bt));                   /* (B, H, n, C, C) */
    al_tensor *masked = OP(&s, al_mul(scores, tril));
    al_tensor *within = OP(&s, al_matmul(masked, chunked[2]));               /* (B, H, n, C, e) */
    al_tensor *states = OP(&s, al_matmul(bt, chunked[2]));                   /* (B, H, n, d, e) */
    al_tensor *upto = OP(&s, al_cumsum(states, 2));
    al_tensor *before = OP(&s, al_sub(upto, states));                        /* chunks before this one */
    al_tensor *across = OP(&s, al_matmul(chunked[0], before));               /* (B, H, n, C, e) */
    al_tensor *sum = OP(&s, al_add(within, across));
    int64_t fs[4] = {B, H, chunks * C, e};
    al_tensor *flat = OP(&s, al_reshape(sum, 4, fs));
    al_tensor *out = OP(&s, al_narrow(flat, 2, 0, N));
    return scope_return(&s, out, NULL, NULL);
}

static al_tensor *linear_forward(attention_problem *p, al_tensor **weights) {
    if (p->causal && p->N != p->M) {
        al_error("attention: variant 'linear' is causal only for N == M (got N = %lld, M = %lld)",
                 (long long)p->N, (long long)p->M);
        return NULL;
    }
    al_tensor *k = attention_repeat_heads(p->k, p->H), *v = k ? attention_repeat_heads(p->v, p->H) : NULL;
    al_tensor *pq = v ? feature_map(p->q) : NULL, *pk = pq ? feature_map(k) : NULL;
    al_tensor *num = NULL, *den = NULL, *out = NULL;
    if (pk && !p->causal) {
        al_tensor *pkt = al_transpose(pk, 2, 3);
        al_tensor *S = pkt ? al_matmul(pkt, v) : NULL;                /* (B, H, d, dv) */
        al_tensor *z = al_sum(pk, 2, 1);                                /* (B, H, 1, d) */
        al_tensor *zt = z ? al_transpose(z, 2, 3) : NULL;               /* (B, H, d, 1) */
        num = S ? al_matmul(pq, S) : NULL;                              /* (B, H, N, dv) */
        den = zt ? al_matmul(pq, zt) : NULL;                            /* (B, H, N, 1) */
        al_release(pkt); al_release(S); al_release(z); al_release(zt);
    } else if (pk) {
        /* numerator and denominator together: sum_{j<=i} (phi(q_i) . phi(k_j)) [v_j, 1] */
        int64_t one_shape[4] = {p->B, p->H, p->M, 1};
        al_tensor *ones = al_full_on(4, one_shape, 1, p->q->dtype, p->q->storage->device);
        al_tensor *parts[2] = {v, ones};
        al_tensor *v1 = ones ? al_cat(2, parts, 3) : NULL;                   /* (B, H, M, dv + 1) */
        al_tensor *both = v1 ? causal_prefix_products(pq, pk, v1) : NULL;
        num = both ? al_narrow(both, 3, 0, p->dv) : NULL;                    /* (B, H, N, dv) */
        den = both ? al_narrow(both, 3, p->dv, 1) : NULL;                    /* (B, H, N, 1) */
        al_release(ones); al_release(v1); al_release(both);
    }
    al_tensor *den_eps = den ? al_add_scalar(den, linear_eps) : NULL;
    if (num && den_eps) out = al_div(num, den_eps);
    if (out && weights) *weights = linear_weights(p, pq, pk, den_eps);
    al_release(k); al_release(v); al_release(pq); al_release(pk);
    al_release(num); al_release(den); al_release(den_eps);
    return out;
}

const attention_variant attention_linear = {
    .name = "linear", .forward = linear_forward, .cuda_forward = linear_forward, .flags = ATTENTION_NO_LOGITS,
    .summary = "kernelised linear attention, phi = elu + 1; causal by prefix sums (Katharopoulos et al. 2020)"};
