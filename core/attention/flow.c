/* flow.c -- the "flow" variant: Flow-Attention (Flowformer, Wu et al. 2022, arXiv 2202.06258), as
 * thuml/Flowformer Flow_Attention.py writes it.  Features phi = sigmoid, eps = 1e-6:
 *   I_i = 1 / ((Q_i + eps) . (sum_j K_j + eps))           incoming flow of sink i
 *   O_j = 1 / ((K_j + eps) . (sum_i Q_i + eps))           outgoing flow of source j
 *   Ihat_i = (Q_i + eps) . (sum_j K_j O_j + eps)          conserved sink
 *   Ohat_j = clamp((K_j + eps) . (sum_i Q_i I_i + eps), -1, 1)
 *   a_i = sigmoid(Ihat_i N / M) (allocation),  c_j = M softmax_j(Ohat_j) (competition)
 *   R = diag(a) diag(I) Q (K^T diag(c) V)
 * Causal (N = M), Flow_Attention_Causal: every sum becomes a prefix sum, n_i = i + 1,
 *   I_i, O_j multiplied by n, Ihat_i and Ohat_j divided by n, a_i = sigmoid(Ihat_i) (no N/M),
 *   c_j = n_j exp(Ohat_j) / sum_{j' <= j} exp(Ohat_j'),  R_i = a_i (Q_i I_i / n_i)^T sum_{j<=i} K_j (c_j V_j)^T
 * the last sum by recurrence.c's Hebbian prefix state, so no O(N d dv) cumsum of outer products is kept.
 * Composed of differentiable ops (backward for free); O(N d dv) time.  No scale (phi is not scaled),
 * no bias or mask.  Its map: A_ij = a_i I_i (Q_i . K_j) c_j [/ n_i, j <= i when causal]. */
#include "attention_internal.h"

static const double flow_eps = 1e-6;   /* as in the reference code */

/* sum over the feature dim of (x + eps) * y, keeping it: (..., L, 1) */
static al_tensor *flow_dot(op_scope *s, const al_tensor *x, const al_tensor *y) {
    al_tensor *xe = OP(s, al_add_scalar(x, flow_eps)), *prod = OP(s, al_mul(xe, y));
    return OP(s, al_sum(prod, 3, 1));
}

/* sum over the sequence (dim 2), as a total (keepdim) or as prefix sums */
static al_tensor *flow_sum(op_scope *s, const al_tensor *x, bool causal) {
    return causal ? OP(s, al_cumsum(x, 2)) : OP(s, al_sum(x, 2, 1));
}

static al_tensor *flow_forward(attention_problem *p, al_tensor **weights) {
    if (p->causal && p->N != p->M) {
        al_error("attention: variant 'flow' is causal only for N == M (got q %s, k %s)", TSHAPE(p->q), TSHAPE(p->k));
        return NULL;
    }
    const bool causal = p->causal != 0;
    op_scope s = {0};
    al_tensor *k = OP(&s, attention_repeat_heads(p->k, p->H)), *v = OP(&s, attention_repeat_heads(p->v, p->H));
    al_tensor *Q = OP(&s, al_sigmoid(p->q)), *K = OP(&s, al_sigmoid(k));
    /* n_i = i + 1 as (1, 1, N, 1) when causal; else the plain sums */
    al_tensor *n = NULL;
    if (causal) {
        al_tensor *r = OP(&s, attention_on_device_of(p->q, al_arange(1, (double)p->N + 1, 1, p->q->dtype)));
        n = OP(&s, al_reshape(r, 4, (int64_t[]){1, 1, p->N, 1}));
    }
    al_tensor *ksum = OP(&s, al_add_scalar(flow_sum(&s, K, causal), flow_eps));
    al_tensor *qsum = OP(&s, al_add_scalar(flow_sum(&s, Q, causal), flow_eps));
    al_tensor *I = OP(&s, al_rdiv_scalar(1, flow_dot(&s, Q, ksum)));
    al_tensor *O = OP(&s, al_rdiv_scalar(1, flow_dot(&s, K, qsum)));
    if (causal) { I = OP(&s, al_mul(I, n)); O = OP(&s, al_mul(O, n)); }
    al_tensor *KO = OP(&s, al_add_scalar(flow_sum(&s, OP(&s, al_mul(K, O)), causal), flow_eps));
    al_tensor *QI = OP(&s, al_add_scalar(flow_sum(&s, OP(&s, al_mul(Q, I)), causal), flow_eps));
    al_tensor *Ihat = flow_dot(&s, Q, KO), *Oraw = flow_dot(&s, K, QI);
    if (causal) { Ihat = OP(&s, al_div(Ihat, n)); Oraw = OP(&s, al_div(Oraw, n)); }
    al_tensor *Ohat = OP(&s, al_clamp(Oraw, -1, 1));
    al_tensor *a, *c, *R = NULL, *qn;   /* allocation, competition, output, the queries' weights */
    if (!causal) {
        a = OP(&s, al_sigmoid(OP(&s, al_mul_scalar(Ihat, (double)p->N / (double)(p->M ? p->M : 1)))));
        c = OP(&s, al_mul_scalar(OP(&s, al_softmax(Ohat, 2)), (double)p->M));
        qn = OP(&s, al_mul(Q, I));
        al_tensor *kv = OP(&s, al_matmul(OP(&s, al_transpose(K, 2, 3)), OP(&s, al_mul(v, c))));   /* (B,H,d,dv) */
        R = OP(&s, al_mul(a, OP(&s, al_matmul(qn, kv))));
    } else {
        /* exp(Ohat) needs no max-subtraction: the clamp bounds it to [e^-1, e] */
        a = OP(&s, al_sigmoid(Ihat));
        al_tensor *e = OP(&s, al_exp(Ohat));
        c = OP(&s, al_mul(OP(&s, al_div(e, OP(&s, al_cumsum(e, 2)))), n));
        qn = OP(&s, al_div(OP(&s, al_mul(Q, I)), n));
        al_tensor *coef = OP(&s, al_full_on(4, (int64_t[]){p->B, p->H, p->M, 2}, 1, p->q->dtype, p->q->storage->device));
        al_tensor *y = OP(&s, attention_state_recurrence(qn, K, OP(&s, al_mul(v, c)), coef, 1.0, 1, false));
        R = OP(&s, al_mul(a, y));
    }
    al_tensor *A = NULL;
    if (R && weights) {
        int prev = al_set_grad_enabled(0);
        A = OP(&s, al_matmul(qn, OP(&s, al_transpose(K, 2, 3))));
        A = OP(&s, al_mul(OP(&s, al_mul(A, a)), OP(&s, al_transpose(c, 2, 3))));
        if (causal) A = OP(&s, al_mul(A, OP(&s, attention_causal_keep(p, p->q->dtype))));
        al_set_grad_enabled(prev);
    }
    return scope_return(&s, R, weights, A);
}

const attention_variant attention_flow = {
    .name = "flow", .forward = flow_forward, .cuda_forward = flow_forward, .flags = ATTENTION_NO_LOGITS,
    .summary = "Flow-Attention (Flowformer): sigmoid features, conserved incoming/outgoing flows, allocation and "
               "competition"};
