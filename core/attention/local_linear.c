/* local_linear.c -- the "local_linear" variant: Local Linear Attention, LLA (Zuo et al. 2025,
 * arXiv 2510.01450).  For query q_i, a local affine model f(x) = b + W (x - q_i) is fitted by
 * weighted ridge regression on the pairs (k_j, v_j) with the softmax weights p_ij of scale q_i . k_j
 * (+ bias, over the allowed keys); the output is its intercept b = f(q_i):
 *   kbar_i = sum_j p_ij k_j,  vbar_i = sum_j p_ij v_j,
 *   Sigma_i = sum_j p_ij (k_j - kbar_i)(k_j - kbar_i)^T,  C_i = sum_j p_ij v_j (k_j - kbar_i)^T
 *   o_i = vbar_i + C_i (Sigma_i + ridge I)^-1 (q_i - kbar_i)
 * The ridge is applied to the normalised weights (the objective's lambda divided by sum_j w_ij; the
 * paper's own normalisation is unverified, see attention-variants.md section 8).  ridge -> inf gives
 * softmax attention; values affine in the keys are reproduced exactly as ridge -> 0.
 * Composed of differentiable ops plus one batched d x d solve with its own backward
 * (d(A^-1 b) = -A^-1 dA A^-1 b): O(N M d (d + dv) + N d^3) time, O(N M d) memory per head (the keys
 * are centred per query, which keeps Sigma accurate where sum p k k^T - kbar kbar^T would cancel).
 * Its map is signed and rows sum to 1: A_ij = p_ij (1 + (k_j - kbar_i)^T (Sigma_i + ridge I)^-1 (q_i - kbar_i)). */
#include "attention_internal.h"
#include <math.h>

typedef struct { double ridge; } local_linear_options;
static const attention_option options[] = {
    {OPTION_FIELD(local_linear_options, ridge), .kind = OPTION_NUMBER, .least = 0, .above_least = true,
     .fallback = 1e-2, .summary = "the ridge lambda of each query's regression (default 1e-2)"},
    {0},
};

/* X = A^-1 B for batches of small systems, with gradients: dB = A^-T dX, dA = -dB X^T */
static void solve_backward(al_node *node, const al_tensor *g) {
    const al_tensor *A = node->inputs[0], *X = node->saved[0];
    int nd = A->ndim;
    al_tensor *At = al_transpose(A, nd - 2, nd - 1), *Atc = At ? al_contiguous(At) : NULL;
    al_tensor *gc = al_contiguous(g), *gB = Atc && gc ? al_solve(Atc, gc) : NULL;
    al_tensor *Xt = gB ? al_transpose(X, nd - 2, nd - 1) : NULL, *gBX = Xt ? al_matmul(gB, Xt) : NULL;
    al_tensor *gA = gBX ? al_neg(gBX) : NULL;
    al_accumulate_input(node, 0, gA);
    al_accumulate_input(node, 1, gB);
    al_release(At); al_release(Atc); al_release(gc); al_release(gB); al_release(Xt); al_release(gBX); al_release(gA);
}

static al_tensor *solve_differentiable(const al_tensor *A, const al_tensor *B) {
    al_tensor *Ac = al_contiguous_nograd(A), *Bc = Ac ? al_contiguous_nograd(B) : NULL;
    al_tensor *X = Bc ? al_solve(Ac, Bc) : NULL;
    al_release(Ac); al_release(Bc);
    if (X && al_grad_needed2(A, B)) {
        const al_tensor *in[2] = {A, B};
        al_tensor *alias = al_alias(X);
        al_node *node = al_record(X, "lla_solve", solve_backward, 2, in);
        if (node && alias) al_node_save(node, 0, alias);
        al_release(alias);
    }
    return X;
}

static al_tensor *local_linear_forward(attention_problem *p, al_tensor **weights) {
    const double ridge = ((const local_linear_options *)p->options)->ridge;
    if (p->causal == 2 && p->M < p->N) {
        al_error("attention: variant 'local_linear' causal bottom_right needs M >= N (the first queries would see no key; got q %s, k %s)",
                 TSHAPE(p->q), TSHAPE(p->k));
        return NULL;
    }
    const int64_t H = p->H, d = p->d;
    const al_dtype dt = p->q->dtype;
    op_scope s = {0};
    al_tensor *k = OP(&s, attention_repeat_heads(p->k, H)), *v = OP(&s, attention_repeat_heads(p->v, H));
    al_tensor *logits = OP(&s, al_mul_scalar(OP(&s, al_matmul(p->q, OP(&s, al_transpose(k, 2, 3)))), p->scale));
    if (p->bias) logits = OP(&s, al_add(logits, p->bias));
    al_tensor *keep = p->mask ? OP(&s, al_retain((al_tensor *)p->mask)) : NULL;
    if (p->causal) {
        al_tensor *c = OP(&s, attention_causal_keep(p, dt));
        keep = keep ? OP(&s, al_mul(keep, c)) : c;
    }
    if (keep) logits = OP(&s, al_where(keep, logits, OP(&s, al_full_on(0, NULL, -INFINITY, dt, p->q->storage->device))));
    al_tensor *P = OP(&s, al_softmax(logits, 3));                                     /* (B,H,N,M) */
    al_tensor *kbar = OP(&s, al_matmul(P, k)), *vbar = OP(&s, al_matmul(P, v));
    al_tensor *Kc = OP(&s, al_sub(OP(&s, al_unsqueeze(k, 2)), OP(&s, al_unsqueeze(kbar, 3))));   /* (B,H,N,M,d) */
    al_tensor *Kw = OP(&s, al_mul(Kc, OP(&s, al_unsqueeze(P, 4))));
    al_tensor *KwT = OP(&s, al_transpose(Kw, 3, 4));                                  /* (B,H,N,d,M) */
    al_tensor *Sigma = OP(&s, al_matmul(KwT, Kc));                                    /* (B,H,N,d,d) */
    al_tensor *ridgeI = OP(&s, al_mul_scalar(OP(&s, attention_on_device_of(p->q, al_eye(d, dt))), ridge));
    al_tensor *A = OP(&s, al_add(Sigma, ridgeI));
    al_tensor *rhs = OP(&s, al_unsqueeze(OP(&s, al_sub(p->q, kbar)), 4));             /* (B,H,N,d,1) */
    al_tensor *x = OP(&s, solve_differentiable(A, rhs));
    al_tensor *vT = OP(&s, al_unsqueeze(OP(&s, al_transpose(v, 2, 3)), 2));          /* (B,H,1,dv,M) */
    al_tensor *Cx = OP(&s, al_matmul(OP(&s, al_matmul(vT, Kw)), x));                  /* (B,H,N,dv,1) */
    al_tensor *out = OP(&s, al_add(vbar, OP(&s, al_squeeze(Cx, 4))));
    al_tensor *w = NULL;
    if (out && weights) {
        int prev = al_set_grad_enabled(0);
        al_tensor *lever = OP(&s, al_squeeze(OP(&s, al_matmul(Kc, x)), 4));          /* (B,H,N,M) */
        w = OP(&s, al_mul(P, OP(&s, al_add_scalar(lever, 1))));
        al_set_grad_enabled(prev);
    }
    return scope_return(&s, out, weights, w);
}

const attention_variant attention_local_linear = {
    .name = "local_linear", .forward = local_linear_forward, .cuda_forward = local_linear_forward, .options = options,
    .options_size = sizeof(local_linear_options),
    .summary = "local linear attention (LLA): per-query weighted ridge regression on (k, v) with softmax weights, "
               "read at q (opts.ridge)"};
