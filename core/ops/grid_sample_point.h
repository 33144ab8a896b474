/* grid_sample_point.h -- grid_sample's geometry and the rule that turns a grid entry into its
 * north-west neighbour and offsets, shared by ops/grid_sample.c (the checks and the CPU kernels) and
 * core/cuda/sample.cu (the GPU's): one rule for both devices, compiled for the host and, under nvcc,
 * for the device too. */
#ifndef ATTNLAB_GRID_SAMPLE_POINT_H
#define ATTNLAB_GRID_SAMPLE_POINT_H
#include "../internal.h"
#include <math.h>

typedef struct sample_geometry {
    int64_t N, C, H, W, Ho, Wo;
    bool align_corners, border;
} sample_geometry;

/* one point: the pixel coordinate along an axis of `size` and d coord / d grid value */
static inline AL_HOST_DEVICE double unnormalize(double c, int64_t size, bool align_corners, bool border, double *slope) {
    double v = align_corners ? (c + 1) / 2 * (double)(size - 1) : ((c + 1) * (double)size - 1) / 2;
    *slope = align_corners ? (double)(size - 1) / 2 : (double)size / 2;
    if (border) {
        if (v <= 0) { v = 0; *slope = 0; }
        else if (v >= (double)(size - 1)) { v = (double)(size - 1); *slope = 0; }
    }
    /* beyond a pixel outside, every neighbour is outside (value and gradient 0); pulling such points
     * (and NaN) in to -2 keeps that and keeps the conversion to int64 defined */
    if (!(v > -2 && v < (double)size + 1)) v = -2;
    return v;
}

typedef struct {
    int64_t x0, y0;          /* the north-west neighbour */
    double fx, fy;           /* the point's offsets from it, in [0, 1) */
    double sx, sy;           /* d pixel / d grid, per axis */
} sample_point;

static inline AL_HOST_DEVICE sample_point point_at(const sample_geometry *g, double gx, double gy) {
    sample_point p;
    const double x = unnormalize(gx, g->W, g->align_corners, g->border, &p.sx);
    const double y = unnormalize(gy, g->H, g->align_corners, g->border, &p.sy);
    const double fx = floor(x), fy = floor(y);
    p.x0 = (int64_t)fx; p.y0 = (int64_t)fy;
    p.fx = x - fx; p.fy = y - fy;
    return p;
}

static inline AL_HOST_DEVICE bool inside(const sample_geometry *g, int64_t y, int64_t x) {
    return y >= 0 && y < g->H && x >= 0 && x < g->W;
}

#endif
