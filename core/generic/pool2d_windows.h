/* generic/pool2d_windows.h -- the window kernels of ops/pool2d.c (max and average pooling), written
 * once for a scalar type `real`; pool2d.c includes it once per float dtype through float_types.h
 * (see reduce_lines.h for why plain functions rather than macros).
 *
 * The forwards take the (plane, output row) pairs [first, last); the backwards whole planes
 * [first, last), since neighbouring rows' windows may share input cells. */

/* Max over each window and its argmax (iy W + ix within the plane).  A window with no cell inside
 * the input (possible only with dilation) gives -inf and index -1.  NaN wins, as in PyTorch. */
static void SFX(max_pool_forward)(const pool_geometry *g, const real *x, real *y, int64_t *idx, int64_t first, int64_t last) {
    for (int64_t r = first; r < last; r++) {
        const int64_t plane = r / g->Ho, oy = r % g->Ho;
        const real *xp = x + plane * g->H * g->W;
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            const int64_t h0 = oy * g->sh - g->ph, w0 = ox * g->sw - g->pw;
            real best = -INFINITY;
            int64_t arg = -1;
            for (int64_t i = 0; i < g->kh; i++) {
                const int64_t iy = h0 + i * g->dh;
                if (iy < 0 || iy >= g->H) continue;
                for (int64_t j = 0; j < g->kw; j++) {
                    const int64_t ix = w0 + j * g->dw;
                    if (ix < 0 || ix >= g->W) continue;
                    const real v = xp[iy * g->W + ix];
                    if (arg < 0 || v > best || isnan(v)) { best = v; arg = iy * g->W + ix; }
                }
            }
            y[r * g->Wo + ox] = best;
            idx[r * g->Wo + ox] = arg;
        }
    }
}

/* dx[argmax] += dy, plane by plane */
static void SFX(max_pool_backward)(const pool_geometry *g, const real *gy, const int64_t *idx, real *dx, int64_t first, int64_t last) {
    const int64_t per_out = g->Ho * g->Wo, per_in = g->H * g->W;
    for (int64_t plane = first; plane < last; plane++)
        for (int64_t o = 0; o < per_out; o++) {
            const int64_t at = idx[plane * per_out + o];
            if (at >= 0) dx[plane * per_in + at] += gy[plane * per_out + o];
        }
}

/* The mean of each window (summed in double), divided as avg_window says */
static void SFX(avg_pool_forward)(const pool_geometry *g, const real *x, real *y, int64_t first, int64_t last) {
    for (int64_t r = first; r < last; r++) {
        const int64_t plane = r / g->Ho, oy = r % g->Ho;
        const real *xp = x + plane * g->H * g->W;
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            int64_t h0, h1, w0, w1;
            const double div = avg_window(g, oy, ox, &h0, &h1, &w0, &w1);
            double sum = 0;
            for (int64_t iy = h0; iy < h1; iy++)
                for (int64_t ix = w0; ix < w1; ix++) sum += xp[iy * g->W + ix];
            y[r * g->Wo + ox] = (real)(div > 0 ? sum / div : 0);
        }
    }
}

/* dy / divisor spread over each window's cells inside the input, plane by plane */
static void SFX(avg_pool_backward)(const pool_geometry *g, const real *gy, real *dx, int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; plane++) {
        real *dp = dx + plane * g->H * g->W;
        for (int64_t oy = 0; oy < g->Ho; oy++)
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t h0, h1, w0, w1;
                const double div = avg_window(g, oy, ox, &h0, &h1, &w0, &w1);
                if (div <= 0) continue;
                const real share = (real)(gy[(plane * g->Ho + oy) * g->Wo + ox] / div);
                for (int64_t iy = h0; iy < h1; iy++)
                    for (int64_t ix = w0; ix < w1; ix++) dp[iy * g->W + ix] += share;
            }
    }
}
