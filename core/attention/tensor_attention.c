/* tensor_attention.c -- the "tensor" variant: triple-wise (Kronecker) attention (Alman & Song 2023,
 * arXiv 2310.04064).  Two key/value sets, k with v and opts.k2 with opts.v2; each query attends to
 * every pair (j1, j2):
 *   out_i = sum_{j1,j2} softmax_{(j1,j2)}(scale sum_t q_it k1_{j1 t} k2_{j2 t}) (v1_{j1} o v2_{j2})
 * i.e. softmax(scale Q (K1 (.) K2)^T) (V1 (.) V2) with (.) the column-wise Kronecker product (M^2 rows).
 * The paper writes no scale; the default here is 1/sqrt(d) like every variant (scale = 1 gives the
 * paper's form).  Causal [an extension, not in the paper]: both j1 and j2 <= i (+ M - N for
 * bottom_right).  Exact, O(N M^2 (d + dv)) time and O(N M^2) memory per head -- small N only.
 * Composed of differentiable ops.  No map is returned (it is N x M^2, not N x M); no bias or mask. */
#include "attention_internal.h"
#include <math.h>

static bool tensor_operand(const attention_problem *p, const char *name, const al_tensor *t, const al_tensor *like) {
    if (!t) {
        al_error("attention: variant 'tensor' needs opts.%s, a second %s set of shape %s", name,
                 name[0] == 'k' ? "key" : "value", TSHAPE(like));
        return false;
    }
    if (t->dtype != like->dtype || !al_shape_equal(t->ndim, t->shape, like->ndim, like->shape)) {
        al_error("attention: variant 'tensor' needs %s of the shape and dtype of %s %s %s (got %s %s)", name,
                 name[0] == 'k' ? "k" : "v", al_dtype_name(like->dtype), TSHAPE(like), al_dtype_name(t->dtype), TSHAPE(t));
        return false;
    }
    return true;
}

typedef struct { const al_tensor *k2, *v2; } tensor_options;
static const attention_option options[] = {
    {OPTION_FIELD(tensor_options, k2), .kind = OPTION_TENSOR, .summary = "the second key set, of k's shape (B, Hkv, M, d)"},
    {OPTION_FIELD(tensor_options, v2), .kind = OPTION_TENSOR, .summary = "the second value set, of v's shape (B, Hkv, M, dv)"},
    {0},
};

static al_tensor *tensor_forward(attention_problem *p, al_tensor **weights) {
    const tensor_options *o = p->options;
    if (!tensor_operand(p, "k2", o->k2, p->k) || !tensor_operand(p, "v2", o->v2, p->v)) return NULL;
    if (p->causal && p->M < p->N) {
        al_error("attention: variant 'tensor' causal needs M >= N (some queries would see no key; got q %s, k %s)",
                 TSHAPE(p->q), TSHAPE(p->k));
        return NULL;
    }
    const int64_t B = p->B, H = p->H, N = p->N, M = p->M;
    op_scope s = {0};
    al_tensor *k1 = OP(&s, attention_repeat_heads(p->k, H)), *k2 = OP(&s, attention_repeat_heads(o->k2, H));
    al_tensor *v1 = OP(&s, attention_repeat_heads(p->v, H)), *v2 = OP(&s, attention_repeat_heads(o->v2, H));
    /* (q_i o k1_j1) as (B, H, N M, d), times k2^T: logits (B, H, N, M, M) */
    al_tensor *qk = OP(&s, al_mul(OP(&s, al_unsqueeze(p->q, 3)), OP(&s, al_unsqueeze(k1, 2))));
    al_tensor *qk2 = OP(&s, al_reshape(qk, 4, (int64_t[]){B, H, N * M, p->d}));
    al_tensor *logits = OP(&s, al_matmul(qk2, OP(&s, al_transpose(k2, 2, 3))));
    logits = OP(&s, al_mul_scalar(logits, p->scale));
    logits = OP(&s, al_reshape(logits, 4, (int64_t[]){B, H, N, M * M}));
    if (p->causal && logits) {
        al_tensor *keep = OP(&s, attention_causal_keep(p, p->q->dtype));               /* (N, M) */
        al_tensor *pair = OP(&s, al_mul(OP(&s, al_unsqueeze(keep, 2)), OP(&s, al_unsqueeze(keep, 1))));
        al_tensor *flat = OP(&s, al_reshape(pair, 2, (int64_t[]){N, M * M}));
        al_tensor *ninf = OP(&s, al_full_on(0, NULL, -INFINITY, p->q->dtype, p->q->storage->device));
        logits = OP(&s, al_where(flat, logits, ninf));
    }
    al_tensor *P = OP(&s, al_softmax(logits, 3));
    al_tensor *vv = OP(&s, al_mul(OP(&s, al_unsqueeze(v1, 3)), OP(&s, al_unsqueeze(v2, 2))));   /* (B,H,M,M,dv) */
    al_tensor *vflat = OP(&s, al_reshape(vv, 4, (int64_t[]){B, H, M * M, p->dv}));
    al_tensor *out = OP(&s, al_matmul(P, vflat));
    /* the map is N x M^2: none in the (B, H, N, M) sense, so *weights stays NULL */
    return scope_return(&s, out, NULL, NULL);
}

const attention_variant attention_tensor = {
    .name = "tensor", .forward = tensor_forward, .cuda_forward = tensor_forward, .flags = ATTENTION_NO_LOGITS,
    .options = options, .options_size = sizeof(tensor_options),
    .summary = "triple-wise (Kronecker) attention: softmax over key pairs of scale sum_t q k1 k2, values v1 o v2 "
               "(opts.k2, opts.v2)"};
