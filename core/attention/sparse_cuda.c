/* sparse_cuda.c -- softmax attention over explicit key lists (sparse.c's problem: the patterns that
 * are not one range per query) on CUDA tensors, composed from the fused softmax kernel: the lists
 * become a dense keep-mask (B, H, N, M), built on the host and moved, combined with opts.mask; their
 * constant offsets a dense bias; the variant's key bias (B, Hkv, M) a bias broadcast over the
 * queries; and attention_cuda_softmax_forward runs with that mask and the sum of the biases, not
 * causal (the lists already say which keys each query sees).  The result is the CPU kernel's (the same
 * logits over the same keys; a row with no key gives 0), and the gradients reach q, k, v and, through
 * the bias, the key bias.  But it costs O(N M) time and memory on the device where the CPU's kernel
 * visits only the listed keys: the composed form, until the GPU has a key-list kernel of its own. */
#include "attention_internal.h"
#include <math.h>

/* keep (B, H, N, M) in q's dtype: 1 at every listed key; offsets (or NULL when every one is 0): the
 * constant added to the key's logit.  A key listed more than once (hyper's samples are drawn with
 * replacement) counts once per entry in the CPU's kernel, e^(s + o_1) + e^(s + o_2) + ..., which is
 * one logit s + log(e^o_1 + e^o_2 + ...). */
static bool dense_lists(const attention_problem *p, const key_list_builder *kb, al_tensor **keep, al_tensor **offsets) {
    const int64_t shape[4] = {p->B, p->H, p->N, p->M}, rows = p->B * p->H * p->N;
    *keep = al_full(4, shape, 0, AL_FLOAT64);
    *offsets = al_full(4, shape, 0, AL_FLOAT64);
    if (!*keep || !*offsets) return false;
    double *k = al_ptr(*keep), *o = al_ptr(*offsets);   /* o: the sum of e^offset over the entries */
    bool plain = true;   /* every key once, with offset 0 */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t e = kb->start[r]; e < kb->start[r + 1]; e++) {
            const int64_t at = r * p->M + kb->keys[e];
            const double offset = kb->offsets ? kb->offsets[e] : 0;
            plain = plain && k[at] == 0 && offset == 0;
            k[at] = 1;
            o[at] += exp(offset);
        }
    for (int64_t at = 0; !plain && at < rows * p->M; at++) o[at] = k[at] ? log(o[at]) : 0;
    if (plain) { al_release(*offsets); *offsets = NULL; }
    al_tensor **made[2] = {keep, offsets};
    for (int t = 0; t < 2; t++) {   /* in q's dtype, beside q */
        if (!*made[t]) continue;
        al_tensor *c = al_to_dtype_nograd(*made[t], p->q->dtype);
        al_release(*made[t]);
        *made[t] = attention_on_device_of(p->q, c);
        if (!*made[t]) return false;
    }
    return true;
}

/* a new reference to a + b, or to the one given when the other is NULL */
static al_tensor *sum_of(const al_tensor *a, const al_tensor *b) {
    if (!a || !b) return al_retain((al_tensor *)(a ? a : b));
    return al_add(a, b);
}

al_tensor *attention_sparse_cuda_forward(const attention_problem *p, key_list_builder *kb, const al_tensor *key_bias,
                                         const char *name, al_tensor **weights) {
    if (p->q->dtype == AL_BFLOAT16) {
        key_lists_free(kb);
        al_error("%s: no bfloat16 kernel for a key-list pattern on the GPU (q %s); convert with to(\"float32\")", name,
                 TSHAPE(p->q));
        return NULL;
    }
    op_scope s = {0};
    al_tensor *keep = NULL, *offsets = NULL, *out = NULL;
    const int64_t full[4] = {p->B, p->H, p->N, p->M};
    if (p->bias && al_grad_needed1(p->bias) && key_bias) {   /* as the CPU kernel says (sparse.c) */
        al_error("%s: a trainable opts.bias cannot be combined with this variant's own key bias", name);
        goto done;
    }
    const bool built = dense_lists(p, kb, &keep, &offsets);
    if (keep) OP(&s, keep);
    if (offsets) OP(&s, offsets);
    if (!built) goto done;
    al_tensor *mask = p->mask ? OP(&s, al_mul(keep, p->mask)) : keep;
    al_tensor *bias = (al_tensor *)p->bias;
    if (key_bias) {   /* (B, Hkv, M) -> (B, H, 1, M), added to every query's logits */
        al_tensor *per_head = OP(&s, attention_repeat_heads(OP(&s, al_unsqueeze(key_bias, 2)), p->H));
        bias = OP(&s, sum_of(bias, per_head));
    }
    if (offsets) bias = OP(&s, sum_of(bias, offsets));
    if (bias && !(bias = OP(&s, al_expand(bias, 4, full)))) goto done;
    if (mask && !s.failed) {
        attention_problem listed = *p;
        listed.mask = mask;
        listed.bias = bias;
        listed.causal = 0;
        listed.window = 0;
        listed.nbhd.ndim = 0;
        listed.kernel = 0;
        out = attention_cuda_softmax_forward(&listed, weights);
    }
done:
    key_lists_free(kb);
    scope_end(&s);
    return out;
}
