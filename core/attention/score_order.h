/* score_order.h -- the rank order of the top-k selections (topk_mask.c's rank_descending and
 * rank_top, and core/cuda/topk.cu's kernel): the larger score first, NaN after every number, and
 * ties to the lower position.  A total order, positions being distinct.  Compiled for the host and,
 * under nvcc, for the device too. */
#ifndef ATTNLAB_SCORE_ORDER_H
#define ATTNLAB_SCORE_ORDER_H
#include "../internal.h"
#include <math.h>

/* whether (xs, xp) ranks before (ys, yp) */
static inline AL_HOST_DEVICE bool score_precedes(double xs, int64_t xp, double ys, int64_t yp) {
    const bool xn = isnan(xs), yn = isnan(ys);
    if (xn != yn) return yn;
    if (!xn && xs != ys) return xs > ys;
    return xp < yp;
}

#endif
