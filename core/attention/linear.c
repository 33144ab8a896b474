/* linear.c -- the "linear" variant: kernelised linear attention (Katharopoulos et al. 2020,
 * arXiv 2006.16236) with the feature map phi(x) = elu(x) + 1:
 *   O_i = phi(q_i)^T S_i / (phi(q_i)^T z_i + eps),   S_i = sum_j phi(k_j) v_j^T,   z_i = sum_j phi(k_j)
 * the sums running over every key, or (causal, N = M) over j <= i as prefix sums, so that no N x M
 * map is ever formed: O(N d dv) time and, causal, O(N d dv) memory for the prefix states.
 * It is composed of the core's differentiable ops, whose backwards make its gradient.  No scale
 * (phi is not scaled); a bias or a mask has no meaning here and is refused. */
#include "attention_internal.h"

static const double linear_eps = 1e-6;   /* as in the authors' fast-transformers code */

/* phi(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise; exp of min(x, 0) so that the branch not
 * taken never overflows (its zero gradient times inf would be NaN). */
static al_tensor *feature_map(const al_tensor *x) {
    al_tensor *zero = al_full(0, NULL, 0, x->dtype);
    al_tensor *pos = zero ? al_compare(x, zero, AL_GT) : NULL;
    al_tensor *lin = al_add_scalar(x, 1);
    al_tensor *neg = zero ? al_minimum(x, zero) : NULL;
    al_tensor *ex = neg ? al_exp(neg) : NULL;
    al_tensor *phi = pos && lin && ex ? al_where(pos, lin, ex) : NULL;
    al_release(zero); al_release(pos); al_release(lin); al_release(neg); al_release(ex);
    return phi;
}

/* k or v with Hkv heads, repeated to the H query heads (a copy; only for grouped heads) */
al_tensor *attention_repeat_kv_heads(const al_tensor *t, int64_t H) {
    int64_t Hkv = t->shape[1];
    if (Hkv == H) return al_retain((al_tensor *)t);
    int64_t s5[5] = {t->shape[0], Hkv, 1, t->shape[2], t->shape[3]};
    int64_t e5[5] = {t->shape[0], Hkv, H / Hkv, t->shape[2], t->shape[3]};
    int64_t s4[4] = {t->shape[0], H, t->shape[2], t->shape[3]};
    al_tensor *a = al_reshape(t, 5, s5), *b = a ? al_expand(a, 5, e5) : NULL;
    al_tensor *c = b ? al_reshape(b, 4, s4) : NULL;
    al_release(a); al_release(b);
    return c;
}

/* The (B, H, N, M) map the output is a weighted sum with, for lab.attention{weights = true}:
 * A_ij = phi(q_i) . phi(k_j) / den_i, zero above the diagonal when causal.  Detached. */
static al_tensor *linear_weights(const al_tensor *pq, const al_tensor *pk, const al_tensor *den, int causal) {
    int prev = al_set_grad_enabled(0);
    al_tensor *kt = al_transpose(pk, 2, 3), *a = kt ? al_matmul(pq, kt) : NULL;
    al_tensor *w = a ? al_div(a, den) : NULL;
    if (w && causal) {
        int64_t N = w->shape[2], M = w->shape[3], rows = al_numel(w) / (M ? M : 1);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = r % N + 1; j < M; j++) {
                if (w->dtype == AL_FLOAT32) ((float *)al_ptr(w))[r * M + j] = 0;
                else ((double *)al_ptr(w))[r * M + j] = 0;
            }
    }
    al_set_grad_enabled(prev);
    al_release(kt); al_release(a);
    return w;
}

al_tensor *attention_linear_forward(const attention_problem *p, al_tensor **weights) {
    if (p->bias || p->mask) {
        al_error("attention: variant 'linear' takes no bias or mask (its map is never formed)");
        return NULL;
    }
    if (p->causal && p->N != p->M) {
        al_error("attention: variant 'linear' is causal only for N == M (got N = %lld, M = %lld)",
                 (long long)p->N, (long long)p->M);
        return NULL;
    }
    al_tensor *k = attention_repeat_kv_heads(p->k, p->H), *v = k ? attention_repeat_kv_heads(p->v, p->H) : NULL;
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
        al_tensor *ku = al_unsqueeze(pk, -1), *vu = al_unsqueeze(v, -2);
        al_tensor *kv = ku && vu ? al_mul(ku, vu) : NULL;               /* (B, H, M, d, dv) */
        al_tensor *S = kv ? al_cumsum(kv, 2) : NULL;                    /* prefix states */
        al_tensor *qu = al_unsqueeze(pq, -2);                           /* (B, H, N, 1, d) */
        al_tensor *n5 = qu && S ? al_matmul(qu, S) : NULL;              /* (B, H, N, 1, dv) */
        num = n5 ? al_squeeze(n5, 3) : NULL;
        al_tensor *z = al_cumsum(pk, 2);                                /* (B, H, M, d) */
        al_tensor *qz = z ? al_mul(pq, z) : NULL;
        den = qz ? al_sum(qz, 3, 1) : NULL;                             /* (B, H, N, 1) */
        al_release(ku); al_release(vu); al_release(kv); al_release(S); al_release(qu);
        al_release(n5); al_release(z); al_release(qz);
    }
    al_tensor *den_eps = den ? al_add_scalar(den, linear_eps) : NULL;
    if (num && den_eps) out = al_div(num, den_eps);
    if (out && weights) *weights = linear_weights(pq, pk, den_eps, p->causal);
    al_release(k); al_release(v); al_release(pq); al_release(pk);
    al_release(num); al_release(den); al_release(den_eps);
    return out;
}
