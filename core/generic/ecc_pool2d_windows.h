/* generic/ecc_pool2d_windows.h -- the kernels of ops/ecc_pool2d.c, written once for a scalar type
 * `real`; ecc_pool2d.c includes it once per float dtype through float_types.h (see reduce_lines.h
 * for why plain functions rather than macros).
 *
 * Each takes the planes (n, c) [first, last); sizes holds one (Ho, Wo) map of window sizes per
 * fixation (n_fix of them: 1 for every image, or one per image). */

/* The average over each window, from the plane's summed-area table sat ((H + 1) x (W + 1), double) */
static void SFX(ecc_avg_forward)(const ecc_geometry *g, const real *x, real *y, const int64_t *sizes, int64_t per_fix,
                                 int64_t n_fix, double *sat, int64_t first, int64_t last) {
    const int64_t W1 = g->W + 1;
    for (int64_t plane = first; plane < last; plane++) {
        const real *xp = x + plane * g->H * g->W;
        const int64_t *k = sizes + (n_fix == 1 ? 0 : plane / g->C) * per_fix;
        for (int64_t ix = 0; ix <= g->W; ix++) sat[ix] = 0;
        for (int64_t iy = 0; iy < g->H; iy++) {
            double row = 0;
            sat[(iy + 1) * W1] = 0;
            for (int64_t ix = 0; ix < g->W; ix++) {
                row += xp[iy * g->W + ix];
                sat[(iy + 1) * W1 + ix + 1] = sat[iy * W1 + ix + 1] + row;
            }
        }
        for (int64_t oy = 0; oy < g->Ho; oy++)
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t h0, h1, w0, w1;
                window_of(g, oy, ox, k[oy * g->Wo + ox], &h0, &h1, &w0, &w1);
                const double sum = sat[h1 * W1 + w1] - sat[h0 * W1 + w1] - sat[h1 * W1 + w0] + sat[h0 * W1 + w0];
                y[(plane * g->Ho + oy) * g->Wo + ox] = (real)(sum / (double)((h1 - h0) * (w1 - w0)));
            }
    }
}

/* Each cell's share of the gradient goes to its window's four corners of the difference table diff
 * ((H + 1) x (W + 1), double); the 2-d prefix sums of diff are then dx. */
static void SFX(ecc_avg_backward)(const ecc_geometry *g, const real *gy, real *dx, const int64_t *sizes, int64_t per_fix,
                                  int64_t n_fix, double *diff, int64_t first, int64_t last) {
    const int64_t W1 = g->W + 1;
    for (int64_t plane = first; plane < last; plane++) {
        const int64_t *k = sizes + (n_fix == 1 ? 0 : plane / g->C) * per_fix;
        memset(diff, 0, sizeof(double) * (size_t)((g->H + 1) * W1));
        for (int64_t oy = 0; oy < g->Ho; oy++)
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t h0, h1, w0, w1;
                window_of(g, oy, ox, k[oy * g->Wo + ox], &h0, &h1, &w0, &w1);
                const double v = (double)gy[(plane * g->Ho + oy) * g->Wo + ox] / (double)((h1 - h0) * (w1 - w0));
                diff[h0 * W1 + w0] += v; diff[h0 * W1 + w1] -= v;
                diff[h1 * W1 + w0] -= v; diff[h1 * W1 + w1] += v;
            }
        /* 2-d prefix sums in place: along each row, then down each column */
        for (int64_t iy = 0; iy < g->H; iy++)
            for (int64_t ix = 1; ix < g->W; ix++) diff[iy * W1 + ix] += diff[iy * W1 + ix - 1];
        for (int64_t iy = 1; iy < g->H; iy++)
            for (int64_t ix = 0; ix < g->W; ix++) diff[iy * W1 + ix] += diff[(iy - 1) * W1 + ix];
        real *dp = dx + plane * g->H * g->W;
        for (int64_t iy = 0; iy < g->H; iy++)
            for (int64_t ix = 0; ix < g->W; ix++) dp[iy * g->W + ix] = (real)diff[iy * W1 + ix];
    }
}

/* The maximum over each window by a scan, and its argmax (iy W + ix within the plane) */
static void SFX(ecc_max_forward)(const ecc_geometry *g, const real *x, real *y, int64_t *idx, const int64_t *sizes,
                                 int64_t per_fix, int64_t n_fix, int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; plane++) {
        const real *xp = x + plane * g->H * g->W;
        const int64_t *k = sizes + (n_fix == 1 ? 0 : plane / g->C) * per_fix;
        for (int64_t oy = 0; oy < g->Ho; oy++)
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t h0, h1, w0, w1;
                window_of(g, oy, ox, k[oy * g->Wo + ox], &h0, &h1, &w0, &w1);
                /* (never empty: the window holds the cell's own first input row and column) */
                int64_t arg = h0 * g->W + w0;
                real best = xp[arg];
                for (int64_t iy = h0; iy < h1; iy++)
                    for (int64_t ix = w0; ix < w1; ix++) {
                        const real v = xp[iy * g->W + ix];
                        if (v > best || isnan(v)) { best = v; arg = iy * g->W + ix; }   /* NaN wins, as in max_pool2d */
                    }
                const int64_t o = (plane * g->Ho + oy) * g->Wo + ox;
                y[o] = best;
                idx[o] = arg;
            }
    }
}

/* dx[argmax] += dy, plane by plane */
static void SFX(ecc_max_backward)(const ecc_geometry *g, const real *gy, const int64_t *idx, real *dx, int64_t first,
                                  int64_t last) {
    const int64_t per_out = g->Ho * g->Wo, per_in = g->H * g->W;
    for (int64_t plane = first; plane < last; plane++)
        for (int64_t o = 0; o < per_out; o++) dx[plane * per_in + idx[plane * per_out + o]] += gy[plane * per_out + o];
}
