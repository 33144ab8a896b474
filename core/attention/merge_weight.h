/* merge_weight.h -- the two numbers of the log-sum-exp merge (merge.c), shared by the CPU loops and
 * core/cuda/merge.cu's kernels: the weight c of part one and logaddexp, for row log-sum-exps that
 * may be -inf (an empty part).  Compiled for the host and, under nvcc, for the device too. */
#ifndef ATTNLAB_MERGE_WEIGHT_H
#define ATTNLAB_MERGE_WEIGHT_H
#include "../internal.h"
#include <math.h>

/* c = 1 / (1 + exp(l2 - l1)) without overflow; 1 when part two is empty (both empty too), 0 when
 * only part one is */
static inline AL_HOST_DEVICE double merge_part_one_weight(double l1, double l2) {
    if (l2 == -INFINITY) return 1;
    if (l1 == -INFINITY) return 0;
    if (l1 >= l2) return 1 / (1 + exp(l2 - l1));
    const double e = exp(l1 - l2);
    return e / (1 + e);
}

static inline AL_HOST_DEVICE double merge_logaddexp(double l1, double l2) {
    if (l1 == -INFINITY) return l2;
    if (l2 == -INFINITY) return l1;
    const double m = l1 > l2 ? l1 : l2;
    return m + log1p(exp(-fabs(l1 - l2)));
}

#endif
