/* pointer.c -- the "pointer" variant: pointer-network attention (Vinyals, Fortunato, Jaitly 2015,
 * arXiv 1506.03134).  The output is the attention distribution itself, over the input positions,
 * as log-probabilities (B, H, N, M) ready for lab.cross_entropy-style losses (nll of the target
 * position): there is no value mixing, so v is not read (pass k; its shape is still checked).
 *   additive (W1 = pointer_w1 (h, d), W2 = pointer_w2 (h, d), v = pointer_v (h), all given):
 *     u_ij = v . tanh(W1 e_j + W2 d_i),   e_j = k_j (encoder states), d_i = q_i (decoder states)
 *   dot-product (none given): u_ij = scale q_i . k_j
 *   out = log_softmax_j(u_ij + bias, causal / mask entries -inf)
 * Composed of the core's ops (the parameters may require grad).  The additive form holds the
 * (B, H, N, M, h) tanh arguments, O(N M h) like Bahdanau attention; the dot form O(N M). */
#include "attention_internal.h"

static bool pointer_parameter(const char *name, const al_tensor *t, int ndim, const int64_t *shape, al_dtype dt) {
    if (!al_shape_equal(t->ndim, t->shape, ndim, shape) || t->dtype != dt) {
        al_error("attention: variant 'pointer' needs %s of shape %s in %s (got %s %s)", name, al_shape_str(ndim, shape),
                 al_dtype_name(dt), TSHAPE(t), al_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* u (B, H, N, M) = v . tanh(k W1^T (keys) + q W2^T (queries)), kv heads repeated */
static al_tensor *additive_scores(const attention_problem *p, const al_tensor *w1, const al_tensor *w2,
                                  const al_tensor *v) {
    al_tensor *k = attention_repeat_heads(p->k, p->H);
    al_tensor *ek = k ? al_linear(k, w1, NULL) : NULL, *dq = ek ? al_linear(p->q, w2, NULL) : NULL;
    al_tensor *eku = dq ? al_unsqueeze(ek, 2) : NULL, *dqu = eku ? al_unsqueeze(dq, 3) : NULL;
    al_tensor *sum = dqu ? al_add(dqu, eku) : NULL, *th = sum ? al_tanh(sum) : NULL;   /* (B, H, N, M, h) */
    al_tensor *u = th ? al_matmul(th, v) : NULL;
    al_release(k); al_release(ek); al_release(dq); al_release(eku); al_release(dqu); al_release(sum); al_release(th);
    return u;
}

static al_tensor *dot_scores(const attention_problem *p) {
    al_tensor *k = attention_repeat_heads(p->k, p->H), *kt = k ? al_transpose(k, 2, 3) : NULL;
    al_tensor *qk = kt ? al_matmul(p->q, kt) : NULL, *u = qk ? al_mul_scalar(qk, p->scale) : NULL;
    al_release(k); al_release(kt); al_release(qk);
    return u;
}

typedef struct { const al_tensor *pointer_w1, *pointer_w2, *pointer_v; } pointer_options;
static const attention_option options[] = {
    {OPTION_FIELD(pointer_options, pointer_w1), .kind = OPTION_TENSOR,
     .summary = "W1 (h, d), applied to the keys (encoder states)"},
    {OPTION_FIELD(pointer_options, pointer_w2), .kind = OPTION_TENSOR,
     .summary = "W2 (h, d), applied to the queries (decoder states)"},
    {OPTION_FIELD(pointer_options, pointer_v), .kind = OPTION_TENSOR,
     .summary = "v (h); all three: additive scores, none: dot-product scores"},
    {0},
};

static al_tensor *pointer_forward(attention_problem *p, al_tensor **weights) {
    const pointer_options *o = p->options;
    const al_tensor *w1 = o->pointer_w1, *w2 = o->pointer_w2, *v = o->pointer_v;
    const int given = (w1 != NULL) + (w2 != NULL) + (v != NULL);
    if (given != 0 && given != 3) {
        al_error("attention: variant 'pointer' needs all of pointer_w1, pointer_w2, pointer_v (additive scores) or "
                 "none (dot-product scores) (got %s, %s, %s)", w1 ? TSHAPE(w1) : "nil", w2 ? TSHAPE(w2) : "nil",
                 v ? TSHAPE(v) : "nil");
        return NULL;
    }
    if (given) {
        const int64_t h = v->ndim == 1 ? v->shape[0] : -1, ws[2] = {h, p->d}, vs[1] = {h};
        if (!pointer_parameter("pointer_v", v, 1, vs, p->q->dtype) || !pointer_parameter("pointer_w1", w1, 2, ws, p->q->dtype) ||
            !pointer_parameter("pointer_w2", w2, 2, ws, p->q->dtype))
            return NULL;
    }
    al_tensor *u = given ? additive_scores(p, w1, w2, v) : dot_scores(p);
    al_tensor *ub = u && p->bias ? al_add(u, p->bias) : (u ? al_retain(u) : NULL);
    al_tensor *um = ub ? attention_mask_logits(p, ub) : NULL, *out = um ? al_log_softmax(um, 3) : NULL;
    if (out && weights) {
        al_tensor *d = al_detach(out);
        *weights = d ? al_exp(d) : NULL;
        al_release(d);
    }
    al_release(u); al_release(ub); al_release(um);
    return out;
}

const attention_variant attention_pointer = {
    .name = "pointer", .forward = pointer_forward, .cuda_forward = pointer_forward, .options = options,
    .options_size = sizeof(pointer_options),
    .summary = "pointer network: the output is the (B, H, N, M) log-distribution over the keys (additive or dot "
               "scores); v unused"};
