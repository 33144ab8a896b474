/* random_feature.c -- the "random_feature" variant: the attention of the random-feature attention
 * layer (Fu, Guo, Bai, Mei 2023, arXiv 2307.11353), f(x_0, x_{1:N}) = sum_m (1/N) sum_i
 * sigma(x_0^T W_m x_i) <v_m, x_i>, with sigma = ReLU and the 1/N key-count normalisation (both as the
 * authors' random-feature model is recalled, not re-read: attention-variants.md section 16b flags the
 * normalisation as unverified).  Per head, with q = W_m^T x_0 and k = x_i projected:
 *   O_i = (1 / n_i) sum_{j allowed} relu(scale q_i . k_j + bias_ij) v_j,   n_i = the allowed-key count
 * The frozen random W_Q, W_K and trainable W_V are module-level: nn.MultiHeadAttention{variant =
 * "random_feature"}.  Composed of differentiable ops; O(N M (d + dv)) time, O(N M) memory; the map is
 * the (B, H, N, M) relu weights / n_i. */
#include "attention_internal.h"

static al_tensor *random_feature_forward(attention_problem *p, al_tensor **weights) {
    op_scope s = {0};
    al_tensor *k = OP(&s, attention_repeat_heads(p->k, p->H)), *v = OP(&s, attention_repeat_heads(p->v, p->H));
    al_tensor *logits = OP(&s, al_mul_scalar(OP(&s, al_matmul(p->q, OP(&s, al_transpose(k, 2, 3)))), p->scale));
    if (p->bias) logits = OP(&s, al_add(logits, p->bias));
    al_tensor *A = OP(&s, al_relu(logits));
    al_tensor *keep = p->mask ? OP(&s, al_retain((al_tensor *)p->mask)) : NULL;
    if (p->causal) {
        al_tensor *c = OP(&s, attention_causal_keep(p, p->q->dtype));
        keep = keep ? OP(&s, al_mul(keep, c)) : c;
    }
    al_tensor *count = NULL;
    if (keep) {
        A = OP(&s, al_mul(A, keep));
        /* n_i, at least 1 so that a query with no allowed key reads 0 (as the dense kernel does) */
        const al_device dev = p->q->storage->device;
        al_tensor *ones = OP(&s, al_full_on(4, (int64_t[]){p->B, p->H, p->N, p->M}, 1, p->q->dtype, dev));
        count = OP(&s, al_maximum(OP(&s, al_sum(OP(&s, al_mul(ones, keep)), 3, 1)), OP(&s, al_full_on(0, NULL, 1, p->q->dtype, dev))));
        A = OP(&s, al_div(A, count));
    } else {
        A = OP(&s, al_mul_scalar(A, 1.0 / (double)(p->M > 0 ? p->M : 1)));
    }
    al_tensor *out = OP(&s, al_matmul(A, v));
    return scope_return(&s, out, weights, weights && out ? OP(&s, al_detach(A)) : NULL);
}

const attention_variant attention_random_feature = {
    .name = "random_feature", .forward = random_feature_forward, .cuda_forward = random_feature_forward,
    .summary = "random-feature attention: relu(scale q.k) / key count; frozen random Q/K, trainable V in "
               "nn.MultiHeadAttention"};
