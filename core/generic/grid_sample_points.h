/* generic/grid_sample_points.h -- the kernels of ops/grid_sample.c, written once for a scalar type
 * `real`; grid_sample.c includes it once per float dtype through float_types.h (see reduce_lines.h
 * for why plain functions rather than macros).  point_at (grid_sample.c) turns a grid entry into its
 * north-west neighbour and offsets; a neighbour outside the image reads as 0. */

/* a plane's value at (y, x), 0 outside */
static inline double SFX(value_at)(const sample_geometry *g, const real *plane, int64_t y, int64_t x) {
    return inside(g, y, x) ? (double)plane[y * g->W + x] : 0.0;
}

/* the (image, output row) pairs [first, last): every channel at each point */
static void SFX(sample_forward)(const sample_geometry *g, const real *x, const real *grid, real *y, int64_t first, int64_t last) {
    for (int64_t r = first; r < last; r++) {
        const int64_t n = r / g->Ho, oy = r % g->Ho;
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            const real *gp = grid + ((n * g->Ho + oy) * g->Wo + ox) * 2;
            const sample_point p = point_at(g, gp[0], gp[1]);
            for (int64_t c = 0; c < g->C; c++) {
                const real *plane = x + (n * g->C + c) * g->H * g->W;
                const double nw = SFX(value_at)(g, plane, p.y0, p.x0), ne = SFX(value_at)(g, plane, p.y0, p.x0 + 1);
                const double sw = SFX(value_at)(g, plane, p.y0 + 1, p.x0), se = SFX(value_at)(g, plane, p.y0 + 1, p.x0 + 1);
                y[((n * g->C + c) * g->Ho + oy) * g->Wo + ox] =
                    (real)((1 - p.fy) * ((1 - p.fx) * nw + p.fx * ne) + p.fy * ((1 - p.fx) * sw + p.fx * se));
            }
        }
    }
}

/* dgrid for the (image, output row) pairs [first, last): the slope of the bilinear surface, summed
 * over channels, times d pixel / d grid */
static void SFX(sample_backward_grid)(const sample_geometry *g, const real *x, const real *grid, const real *gy, real *dgrid,
                                      int64_t first, int64_t last) {
    for (int64_t r = first; r < last; r++) {
        const int64_t n = r / g->Ho, oy = r % g->Ho;
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            const int64_t at = (n * g->Ho + oy) * g->Wo + ox;
            const sample_point p = point_at(g, grid[at * 2], grid[at * 2 + 1]);
            double dx = 0, dy = 0;
            for (int64_t c = 0; c < g->C; c++) {
                const real *plane = x + (n * g->C + c) * g->H * g->W;
                const double go = gy[((n * g->C + c) * g->Ho + oy) * g->Wo + ox];
                const double nw = SFX(value_at)(g, plane, p.y0, p.x0), ne = SFX(value_at)(g, plane, p.y0, p.x0 + 1);
                const double sw = SFX(value_at)(g, plane, p.y0 + 1, p.x0), se = SFX(value_at)(g, plane, p.y0 + 1, p.x0 + 1);
                dx += go * ((1 - p.fy) * (ne - nw) + p.fy * (se - sw));
                dy += go * ((1 - p.fx) * (sw - nw) + p.fx * (se - ne));
            }
            dgrid[at * 2] = (real)(dx * p.sx);
            dgrid[at * 2 + 1] = (real)(dy * p.sy);
        }
    }
}

/* dx for the planes (n, c) [first, last): each point's gradient to its four neighbours inside */
static void SFX(sample_backward_input)(const sample_geometry *g, const real *grid, const real *gy, real *dx, int64_t first,
                                       int64_t last) {
    for (int64_t pl = first; pl < last; pl++) {
        const int64_t n = pl / g->C;
        real *plane = dx + pl * g->H * g->W;
        for (int64_t o = 0; o < g->Ho * g->Wo; o++) {
            const real *gp = grid + (n * g->Ho * g->Wo + o) * 2;
            const sample_point p = point_at(g, gp[0], gp[1]);
            const double go = gy[pl * g->Ho * g->Wo + o];
            const double w[4] = {(1 - p.fy) * (1 - p.fx), (1 - p.fy) * p.fx, p.fy * (1 - p.fx), p.fy * p.fx};
            for (int k = 0; k < 4; k++) {
                const int64_t yy = p.y0 + (k >> 1), xx = p.x0 + (k & 1);
                if (inside(g, yy, xx)) plane[yy * g->W + xx] += (real)(w[k] * go);
            }
        }
    }
}
