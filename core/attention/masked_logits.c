/* masked_logits.c -- for the variants composed of the core's ops (relative, pointer, landmark):
 * the (B, H, N, M) logits with -inf where the causal convention or opts.mask forbids the entry,
 * so that a softmax gives those 0 (and a row with nothing allowed all 0: the core's softmax makes
 * a line of -inf 0, not NaN).  Differentiable in S; the masks are constants. */
#include "attention_internal.h"
#include <math.h>

/* (N, M) 1/0 in dtype: may query i see key j (top-left j <= i, bottom-right j <= i + M - N) */
static al_tensor *causal_allowed(const attention_problem *p) {
    int64_t shape[2] = {p->N, p->M};
    al_tensor *m = al_new_tensor(2, shape, p->q->dtype);
    if (!m) return NULL;
    for (int64_t i = 0; i < p->N; i++)
        for (int64_t j = 0; j < p->M; j++) {
            const bool ok = j <= i + (p->causal == 2 ? p->M - p->N : 0);
            if (m->dtype == AL_FLOAT32) ((float *)al_ptr(m))[i * p->M + j] = ok;
            else ((double *)al_ptr(m))[i * p->M + j] = ok;
        }
    return m;
}

al_tensor *attention_mask_logits(const attention_problem *p, const al_tensor *S) {
    al_tensor *ninf = al_full(0, NULL, -INFINITY, S->dtype), *cur = al_retain((al_tensor *)S);
    al_tensor *allowed[2] = {p->causal ? causal_allowed(p) : NULL, (al_tensor *)p->mask};
    if (p->causal && !allowed[0]) { al_release(cur); cur = NULL; }
    for (int m = 0; m < 2 && cur; m++) {
        if (!allowed[m]) continue;
        al_tensor *next = ninf ? al_where(allowed[m], cur, ninf) : NULL;
        al_release(cur);
        cur = next;
    }
    al_release(ninf); al_release(allowed[0]);
    return cur;
}
