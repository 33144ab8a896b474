/* pool2d_window.h -- the geometry of a pooling call and the window of one output, shared by
 * ops/pool2d.c (which checks the options and runs the CPU kernels) and core/cuda/pool.cu (the GPU's):
 * one rule for both devices, compiled for the host and, under nvcc, for the device too. */
#ifndef ATTNLAB_POOL2D_WINDOW_H
#define ATTNLAB_POOL2D_WINDOW_H
#include "../internal.h"

typedef struct pool_geometry {
    int64_t planes, H, W, Ho, Wo;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    bool ceil_mode, count_include_pad;
} pool_geometry;

/* The window of output (oy, ox) clipped to the input, [*h0, *h1) x [*w0, *w1), and its divisor:
 * PyTorch's, the window clipped to the padded input when count_include_pad, else the cells inside. */
static inline AL_HOST_DEVICE double avg_window(const pool_geometry *g, int64_t oy, int64_t ox, int64_t *h0, int64_t *h1,
                                                 int64_t *w0, int64_t *w1) {
    int64_t hs = oy * g->sh - g->ph, ws = ox * g->sw - g->pw;
    int64_t he = hs + g->kh < g->H + g->ph ? hs + g->kh : g->H + g->ph;
    int64_t we = ws + g->kw < g->W + g->pw ? ws + g->kw : g->W + g->pw;
    const int64_t padded = (he - hs) * (we - ws);
    *h0 = hs > 0 ? hs : 0; *w0 = ws > 0 ? ws : 0;
    *h1 = he < g->H ? he : g->H; *w1 = we < g->W ? we : g->W;
    const int64_t inside = (*h1 - *h0) * (*w1 - *w0);
    return (double)(g->count_include_pad ? padded : inside);
}

#endif
