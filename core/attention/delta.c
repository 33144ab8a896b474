/* delta.c -- the "delta" variant: the gated delta rule, i.e. the Miras memory M (dv x d) learned
 * online by one gradient step per key on the L2 regression loss 1/2 |M k_t - v_t|^2 with a
 * retention gate (Behrouz et al. 2025, arXiv 2504.13173; Gated DeltaNet):
 *     S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,     y_i = S_i (scale q_i)
 * causal (N = M): query i reads the memory after key i.  Not causal [an extension, not in the paper]:
 * every query reads the final memory S_M, so cross-attention (M != N) works too.
 * beta (write strength) and gate (alpha, retention) are option tensors broadcast to (B, H, M), both 1
 * when absent, and may require grad.  The recurrence and its reverse pass are recurrence.c's kernel
 * (O(M d dv) time, O(sqrt(M) d dv) memory per head).  The rule is stable for 0 <= beta |k|^2 <= 2:
 * normalise the keys (the variant uses them as given).
 * Its map: y is linear in v, y = A v, and A is the same recurrence run on v = I (an M x M identity),
 * O(N M d) more -- returned only when asked for. */
#include "attention_internal.h"

/* [beta, alpha] per (b, h, key) as one (B, H, M, 2) tensor, differentiable in both */
typedef struct { const al_tensor *beta, *gate; } delta_options;
static const attention_option options[] = {
    {OPTION_FIELD(delta_options, beta), .kind = OPTION_TENSOR,
     .summary = "the write strength per key, broadcast to (B, H, M) (default 1)"},
    {OPTION_FIELD(delta_options, gate), .kind = OPTION_TENSOR,
     .summary = "the retention alpha per key, broadcast to (B, H, M) (default 1)"},
    {0},
};

static al_tensor *delta_coefficients(const attention_problem *p) {
    const delta_options *o = p->options;
    int64_t shape[3] = {p->B, p->H, p->M};
    al_tensor *parts[2] = {NULL, NULL}, *coef = NULL;
    const al_tensor *given[2] = {o->beta, o->gate};
    const char *names[2] = {"beta", "gate"};
    for (int i = 0; i < 2; i++)
        parts[i] = given[i] ? attention_broadcast_option("delta", names[i], given[i], 3, shape, "(B, H, M)", p->q->dtype)
                            : al_full_on(3, shape, 1, p->q->dtype, p->q->storage->device);
    if (parts[0] && parts[1]) coef = al_stack(2, parts, 3);
    al_release(parts[0]); al_release(parts[1]);
    return coef;
}

static al_tensor *delta_forward(attention_problem *p, al_tensor **weights) {
    if (p->causal && p->N != p->M) {
        al_error("attention: variant 'delta' is causal only for N == M (got q %s, k %s)", TSHAPE(p->q), TSHAPE(p->k));
        return NULL;
    }
    al_tensor *coef = delta_coefficients(p);
    al_tensor *out = coef ? attention_state_recurrence(p->q, p->k, p->v, coef, p->scale, p->causal != 0, true) : NULL;
    if (out && weights) {
        int prev = al_set_grad_enabled(0);
        al_tensor *eye = attention_on_device_of(p->q, al_eye(p->M, p->q->dtype));
        al_tensor *e4 = eye ? al_reshape(eye, 4, (int64_t[]){1, 1, p->M, p->M}) : NULL;
        al_tensor *ids = e4 ? al_expand(e4, 4, (int64_t[]){p->B, p->Hkv, p->M, p->M}) : NULL;
        *weights = ids ? attention_state_recurrence(p->q, p->k, ids, coef, p->scale, p->causal != 0, true) : NULL;
        al_set_grad_enabled(prev);
        al_release(eye); al_release(e4); al_release(ids);
        if (!*weights) { al_release(out); out = NULL; }
    }
    al_release(coef);
    return out;
}

const attention_variant attention_delta = {
    .name = "delta", .forward = delta_forward, .cuda_forward = delta_forward, .flags = ATTENTION_NO_LOGITS,
    .options = options, .options_size = sizeof(delta_options),
    .summary = "gated delta rule / Miras L2 memory: S_t = alpha_t S_{t-1}(I - beta_t k_t k_t^T) + beta_t v_t "
               "k_t^T, y = S q"};
