/* attention_internal.h -- what the attention variants share: the validated problem description
 * and the signature every variant implements. */
#ifndef ATTNLAB_ATTENTION_INTERNAL_H
#define ATTNLAB_ATTENTION_INTERNAL_H
#include "../internal.h"

/* One attention call, after validation: q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), with
 * H a multiple of Hkv (grouped KV heads: query head h reads kv head h / (H / Hkv)).  bias and mask
 * are already expanded (as stride-0 views) to (B, H, N, M) and converted to q's dtype. */
typedef struct {
    const al_tensor *q, *k, *v, *bias, *mask;
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;          /* 0 none, 1 top-left, 2 bottom-right */
    double scale;
    double norm;         /* fixed normaliser of the "lsa" variant */
    int64_t window;      /* > 0: keys within this distance of the query's diagonal (sliding window) */
    int64_t kernel_size; /* > 0: the query's neighborhood of this many keys (neighborhood) */
    int64_t stride;      /* strided_neighborhood: queries per shared window (1: plain neighborhood) */
    /* linear-family and module-level variants' own options, as given (see al_attention_opts) */
    const al_tensor *beta, *gate, *agents, *k2, *v2, *head_gates;
    int64_t agent_count;
    double ridge;
} attention_problem;

typedef al_tensor *(*attention_forward_fn)(const attention_problem *p, al_tensor **weights);

/* The variants (one file each). */
al_tensor *attention_softmax_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_lsa_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_linear_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_sliding_window_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_neighborhood_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_strided_neighborhood_forward(const attention_problem *p, al_tensor **weights);

al_tensor *attention_flow_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_local_linear_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_delta_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_random_feature_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_agent_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_moh_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_tensor_forward(const attention_problem *p, al_tensor **weights);

/* The prefix-state recurrence (recurrence.c): S_t = alpha_t S_{t-1} + w_t k_t^T with
 * w_t = beta_t (v_t - [delta] alpha_t S_{t-1} k_t), read as y_i = S_i (scale q_i) when causal (N = M)
 * or S_M (scale q_i) when not.  q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), coef (B, H, M, 2)
 * = [beta, alpha]; one differentiable op (gradients for all four), O(sqrt(M) d dv) memory per head. */
al_tensor *attention_state_recurrence(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                                      const al_tensor *coef, double scale, int causal, bool delta);

/* Helpers the variants share (variant_options.c). */
/* k or v with Hkv heads repeated to H query heads (differentiable; t itself when Hkv == H) */
al_tensor *attention_repeat_heads(const al_tensor *t, int64_t H);
/* An option tensor broadcast (differentiably) to ndim/shape in dtype dt, or an error naming the
 * variant, the option, its shape and the expected one (`expected` spells it, e.g. "(B, H, M)"). */
al_tensor *attention_broadcast_option(const char *variant, const char *option, const al_tensor *t, int ndim,
                                      const int64_t *shape, const char *expected, al_dtype dt);
/* Refuses a bias or a mask for variants that never form the logits: 0 (with an error) or 1. */
int attention_refuse_bias_mask(const attention_problem *p, const char *variant);
/* The causal mask as a (N, M) tensor of 1 (j <= i [+ M - N for bottom_right]) and 0, dtype dt. */
al_tensor *attention_causal_keep(const attention_problem *p, al_dtype dt);

/* Temporaries of a variant composed of ops: each result is held until scope_end, and after the
 * first failure nothing more is computed (the first error message stands).  Use as
 *     op_scope s = {0};  al_tensor *x = OP(&s, al_exp(q));  ...  return scope_return(&s, y, weights, map); */
enum { OP_SCOPE_MAX = 128 };
typedef struct { al_tensor *held[OP_SCOPE_MAX]; int n; bool failed; } op_scope;
static inline al_tensor *scope_keep(op_scope *s, al_tensor *t) {
    if (t && s->n == OP_SCOPE_MAX) { al_error("attention: internal scope overflow"); al_release(t); t = NULL; }
    if (!t) { s->failed = true; return NULL; }
    return s->held[s->n++] = t;
}
#define OP(s, expr) ((s)->failed ? NULL : scope_keep((s), (expr)))
static inline void scope_end(op_scope *s) {
    for (int i = 0; i < s->n; i++) al_release(s->held[i]);
    s->n = 0;
}
/* The end of a composed variant: out (and, when weights is not NULL, the map) outlive the scope;
 * after any failure neither does, and the result is NULL. */
static inline al_tensor *scope_return(op_scope *s, al_tensor *out, al_tensor **weights, al_tensor *map) {
    bool ok = !s->failed && out && (!weights || map);
    if (ok) {
        al_retain(out);
        if (weights) *weights = al_retain(map);
    }
    scope_end(s);
    return ok ? out : NULL;
}

/* The dense kernel both use: normalise = softmax over allowed keys, or a fixed 1/norm. */
typedef enum { DENSE_SOFTMAX, DENSE_FIXED_NORM } dense_normalisation;
al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights);

#endif
