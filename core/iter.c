/* iter.c -- strided iteration over up to three operands laid over one shape.
 *
 * Dimensions that every operand walks contiguously are merged first, so a contiguous or a plain
 * broadcast op becomes a few long rows; the rows (cut into blocks of at most `block` elements) are
 * then shared among threads with a static schedule, so results do not depend on timing. */
#include "internal.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
static void coalesce(al_iter *it) {
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

void al_iter_run(al_iter *it, al_row_fn fn, void *arg) {
    for (int i = 0; i < it->ndim; i++)
        if (it->shape[i] == 0) return;
    coalesce(it);
    const int nd = it->ndim;
    const int64_t len = it->shape[nd - 1];
    int64_t nrows = 1;
    for (int i = 0; i < nd - 1; i++) nrows *= it->shape[i];
    const int64_t block = 8192;
    const int64_t nblocks = (len + block - 1) / block;
    const int64_t items = nrows * nblocks;
    int64_t inner[3];
    for (int k = 0; k < it->n; k++) inner[k] = it->strides[k][nd - 1];
    const bool parallel = nrows * len >= AL_PARALLEL_GRAIN && items > 1;

    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t item = 0; item < items; item++) {
        int64_t row = item / nblocks, b = item % nblocks;
        char *ptrs[3];
        for (int k = 0; k < it->n; k++) {
            int64_t off = 0, r = row;
            for (int d = nd - 2; d >= 0; d--) {
                off += (r % it->shape[d]) * it->strides[k][d];
                r /= it->shape[d];
            }
            off += b * block * inner[k];
            ptrs[k] = it->base[k] + off * (int64_t)it->esize[k];
        }
        int64_t n = len - b * block < block ? len - b * block : block;
        fn(ptrs, n, inner, arg);
    }
}
