/* iter.c -- strided iteration over up to AL_ITER_MAX_OPERANDS operands laid over one shape.
 *
 * Dimensions that every operand walks contiguously are merged first, so a contiguous or a plain
 * broadcast op becomes a few long rows; the rows (cut into blocks of at most `block` elements) are
 * then shared among threads with a static schedule, so results do not depend on timing. */
#include "internal.h"
#include <string.h>

void al_iter_init(al_iter *it, int ndim, const int64_t *shape) {
    memset(it, 0, sizeof *it);
    it->ndim = ndim;
    if (ndim) memcpy(it->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

void al_iter_add(al_iter *it, void *base, const int64_t *strides, size_t esize) {
    int k = it->n++;
    it->base[k] = base;
    it->esize[k] = esize;
    if (it->ndim) memcpy(it->strides[k], strides, sizeof(int64_t) * (size_t)it->ndim);
}

/* Drops size-1 dimensions and merges dimension i into i+1 where every operand allows it. */
void al_iter_coalesce(al_iter *it) {
    int out = 0;
    for (int i = 0; i < it->ndim; i++) {
        if (it->shape[i] == 1) continue;
        if (out > 0) {
            bool mergeable = true;
            for (int k = 0; k < it->n; k++)
                if (it->strides[k][out - 1] != it->strides[k][i] * it->shape[i]) mergeable = false;
            if (mergeable) {
                it->shape[out - 1] *= it->shape[i];
                for (int k = 0; k < it->n; k++) it->strides[k][out - 1] = it->strides[k][i];
                continue;
            }
        }
        it->shape[out] = it->shape[i];
        for (int k = 0; k < it->n; k++) it->strides[k][out] = it->strides[k][i];
        out++;
    }
    if (out == 0) { /* a single element */
        it->shape[0] = 1;
        for (int k = 0; k < it->n; k++) it->strides[k][0] = 1;
        out = 1;
    }
    it->ndim = out;
}

/* Rows [first, last) of the coalesced iteration, walked with an odometer so that each row costs
 * a few additions, not a division per dimension and operand. */
static void run_rows(const al_iter *it, int64_t first, int64_t last, int64_t len, al_row_fn fn, void *arg) {
    const int nd = it->ndim;
    int64_t idx[AL_MAX_DIMS] = {0}, r = first;
    char *ptrs[AL_ITER_MAX_OPERANDS];
    for (int d = nd - 2; d >= 0; d--) { idx[d] = r % it->shape[d]; r /= it->shape[d]; }
    for (int k = 0; k < it->n; k++) {
        int64_t off = 0;
        for (int d = 0; d < nd - 1; d++) off += idx[d] * it->strides[k][d];
        ptrs[k] = it->base[k] + off * (int64_t)it->esize[k];
    }
    int64_t inner[AL_ITER_MAX_OPERANDS];
    for (int k = 0; k < it->n; k++) inner[k] = it->strides[k][nd - 1];
    for (int64_t row = first; row < last; row++) {
        fn(ptrs, len, inner, arg);
        for (int d = nd - 2; d >= 0; d--) {   /* advance the odometer */
            for (int k = 0; k < it->n; k++) ptrs[k] += it->strides[k][d] * (int64_t)it->esize[k];
            if (++idx[d] < it->shape[d]) break;
            for (int k = 0; k < it->n; k++) ptrs[k] -= it->strides[k][d] * it->shape[d] * (int64_t)it->esize[k];
            idx[d] = 0;
        }
    }
}

void al_iter_run(al_iter *it, al_row_fn fn, void *arg) {
    for (int i = 0; i < it->ndim; i++)
        if (it->shape[i] == 0) return;
    al_iter_coalesce(it);
    const int nd = it->ndim;
    const int64_t len = it->shape[nd - 1];
    int64_t nrows = 1;
    for (int i = 0; i < nd - 1; i++) nrows *= it->shape[i];
    const int64_t total = nrows * len;
    if (total < AL_PARALLEL_GRAIN) {
        run_rows(it, 0, nrows, len, fn, arg);
        return;
    }
    if (nrows == 1) {   /* one long row: cut it into equal pieces, one per thread */
        #pragma omp parallel
        {
            int64_t start, end;
            al_thread_share(len, &start, &end);
            if (start < end) {
                char *ptrs[AL_ITER_MAX_OPERANDS];
                int64_t inner[AL_ITER_MAX_OPERANDS];
                for (int k = 0; k < it->n; k++) {
                    inner[k] = it->strides[k][0];
                    ptrs[k] = it->base[k] + start * inner[k] * (int64_t)it->esize[k];
                }
                fn(ptrs, end - start, inner, arg);
            }
        }
        return;
    }
    #pragma omp parallel
    {
        int64_t first, last;
        al_thread_share(nrows, &first, &last);
        if (first < last) run_rows(it, first, last, len, fn, arg);
    }
}
