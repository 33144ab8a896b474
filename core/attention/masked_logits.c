/* masked_logits.c -- for the variants composed of the core's ops (relative, pointer, landmark):
 * the (B, H, N, M) logits with -inf where the causal convention or opts.mask forbids the entry,
 * so that a softmax gives those 0 (and a row with nothing allowed all 0: the core's softmax makes
 * a line of -inf 0, not NaN).  Differentiable in S; the masks are constants. */
#include "attention_internal.h"
#include <math.h>

/* On S's device: the causal keep-mask (variant_helpers.c) and the -inf beside it are made there. */
al_tensor *attention_mask_logits(const attention_problem *p, const al_tensor *S) {
    al_tensor *ninf = al_full_on(0, NULL, -INFINITY, S->dtype, S->storage->device), *cur = al_retain((al_tensor *)S);
    al_tensor *allowed[2] = {p->causal ? attention_causal_keep(p, S->dtype) : NULL, (al_tensor *)p->mask};
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
