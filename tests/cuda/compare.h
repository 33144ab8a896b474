/* compare.h -- what the tests/cuda programs share: moving a tensor between devices, and comparing a
 * device result with the CPU's element by element. */
#ifndef ATTNLAB_TESTS_CUDA_COMPARE_H
#define ATTNLAB_TESTS_CUDA_COMPARE_H
#include "check.h"

static inline al_tensor *to(const al_tensor *t, al_device d) { return al_to_device(t, d); }

/* max |a - b| / (1 + |b|) over all elements, both brought to the CPU as float64; NaN against NaN and
 * an infinity against the same infinity count as equal; INFINITY when either is missing, their sizes
 * differ or a copy fails */
static inline double max_rel_diff(const al_tensor *a, const al_tensor *b) {
    if (!a || !b) return INFINITY;
    int64_t n = al_numel(a);
    if (n != al_numel(b)) return INFINITY;
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double worst = 0;
    if (!x || !y || al_copy_to_doubles(a, x, n) < 0 || al_copy_to_doubles(b, y, n) < 0) worst = INFINITY;
    for (int64_t i = 0; i < n && worst < INFINITY; i++) {
        double d = fabs(x[i] - y[i]) / (1 + fabs(y[i]));
        if ((x[i] != x[i] && y[i] != y[i]) || x[i] == y[i]) d = 0;
        if (d > worst || d != d) worst = d != d ? INFINITY : d;
    }
    free(x); free(y);
    return worst;
}
#endif
