/* ecc_pool2d_window.h -- eccentricity pooling's geometry and the window of one output cell, shared by
 * ops/ecc_pool2d.c (the options, the ring sizes, the CPU kernels) and core/cuda/ecc_pool.cu (the
 * GPU's): one rule for both devices, compiled for the host and, under nvcc, for the device too. */
#ifndef ATTNLAB_ECC_POOL2D_WINDOW_H
#define ATTNLAB_ECC_POOL2D_WINDOW_H
#include "../internal.h"

typedef struct ecc_geometry {
    int64_t planes, C, H, W, Ho, Wo, stride;
} ecc_geometry;

/* Output cell (oy, ox)'s window of size k, clipped to the input: rows [*h0, *h1), columns [*w0, *w1). */
static inline AL_HOST_DEVICE void window_of(const ecc_geometry *g, int64_t oy, int64_t ox, int64_t k, int64_t *h0,
                                             int64_t *h1, int64_t *w0, int64_t *w1) {
    const int64_t lead = k > g->stride ? (k - g->stride) / 2 : 0;
    const int64_t hs = oy * g->stride - lead, ws = ox * g->stride - lead;
    *h0 = hs > 0 ? hs : 0; *w0 = ws > 0 ? ws : 0;
    *h1 = hs + k < g->H ? hs + k : g->H; *w1 = ws + k < g->W ? ws + k : g->W;
}

#endif
