/* topk_mask.c -- the top-k mask builder of the selection variants (MoH, DMA, Routing): along dim,
 * keep the k largest scores (ties to the lower index; NaN counts as smallest) and set the rest to
 * -inf, ready for a softmax.  keep (optional out) is the 0/1 mask in scores' dtype.  The selection
 * is a constant: the gradient reaches the kept scores unchanged and the others not at all
 * (al_where's backward), which is the reference semantics of DMA and MoH. */
#include "attention_internal.h"
#include "score_order.h"
#include <math.h>
#include <stdlib.h>

static int by_score_desc(const void *a, const void *b) {
    const scored_position *x = a, *y = b;
    if (score_precedes(x->score, x->pos, y->score, y->pos)) return -1;
    return score_precedes(y->score, y->pos, x->score, x->pos) ? 1 : 0;
}

void rank_descending(scored_position *items, int64_t n) { qsort(items, (size_t)n, sizeof *items, by_score_desc); }

/* The k first in rank order, the rest after them in no order: a quickselect (Hoare partition; the
 * order is total, positions being distinct) then a sort of the k, O(n + k log k) on average instead
 * of a full sort's O(n log n).  Routing picks sqrt(N) of N per cluster: at N = 16,384 the full sorts
 * were most of its time. */
void rank_top(scored_position *items, int64_t n, int64_t k) {
    if (k >= n) { rank_descending(items, n); return; }
    if (k <= 0) return;
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const scored_position pivot = items[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (by_score_desc(&items[i], &pivot) < 0) i++;
            while (by_score_desc(&items[j], &pivot) > 0) j--;
            if (i <= j) { scored_position t = items[i]; items[i] = items[j]; items[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    rank_descending(items, k);
}

/* 0/1 of scores' shape and dtype, contiguous, with dim last (the caller transposes); on CUDA
 * tensors an element's rank is counted on the device (core/cuda/topk.cu) */
static al_tensor *keep_last_dim(const al_tensor *s, int64_t k) {
    al_tensor *sc = al_contiguous_nograd(s), *keep = sc ? al_new_like(sc) : NULL;
    const int64_t n = s->shape[s->ndim - 1], lines = n ? al_numel(s) / n : 0;
    if (sc && keep && s->storage->device == AL_CUDA) {
        if (al_cuda_topk_keep(sc, keep, lines, n, k) < 0) { al_release(keep); keep = NULL; }
        al_release(sc);
        return keep;
    }
    scored_position *order = malloc(sizeof(scored_position) * (size_t)(n + 1));
    if (!sc || !keep || !order) {
        free(order); al_release(sc); al_release(keep);
        al_error("topk_mask: out of memory for %s", TSHAPE(s));
        return NULL;
    }
    for (int64_t l = 0; l < lines; l++) {
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = l * n + j;
            order[j] = (scored_position){s->dtype == AL_FLOAT32 ? ((float *)al_ptr(sc))[e] : ((double *)al_ptr(sc))[e], j};
        }
        rank_descending(order, n);
        for (int64_t r = 0; r < n; r++) {
            const int64_t e = l * n + order[r].pos;
            if (s->dtype == AL_FLOAT32) ((float *)al_ptr(keep))[e] = r < k;
            else ((double *)al_ptr(keep))[e] = r < k;
        }
    }
    free(order); al_release(sc);
    return keep;
}

al_tensor *al_topk_mask(const al_tensor *scores, int64_t k, int dim, al_tensor **keep_out) {
    if (keep_out) *keep_out = NULL;
    CHECK_TENSOR("topk_mask", scores, "scores");
    if (!al_same_device("topk_mask", scores, NULL, NULL)) return NULL;   /* CPU or CUDA; no bfloat16 */
    if (!al_is_float(scores->dtype) || scores->ndim < 1 || k < 1) {
        al_error("topk_mask: needs float scores of at least 1 dim and k >= 1 (got %s %s, k = %lld)", TSHAPE(scores),
                 al_dtype_name(scores->dtype), (long long)k);
        return NULL;
    }
    const int d = al_normalize_dim("topk_mask", dim, scores->ndim);
    if (d < 0) return NULL;
    const int last = scores->ndim - 1;
    al_tensor *detached = al_detach(scores), *st = detached ? al_transpose(detached, d, last) : NULL;
    al_tensor *keep_t = st ? keep_last_dim(st, k) : NULL, *keep = keep_t ? al_transpose(keep_t, d, last) : NULL;
    al_tensor *ninf = keep ? al_full_on(0, NULL, -INFINITY, scores->dtype, scores->storage->device) : NULL;
    al_tensor *out = ninf ? al_where(keep, scores, ninf) : NULL;
    al_release(detached); al_release(st); al_release(keep_t); al_release(ninf);
    if (out && keep_out) *keep_out = keep;
    else al_release(keep);
    return out;
}
