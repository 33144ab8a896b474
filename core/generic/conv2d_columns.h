/* generic/conv2d_columns.h -- the column kernels of ops/conv2d.c, written once for a scalar type
 * `real`; conv2d.c includes it once per float dtype through float_types.h (see reduce_lines.h for
 * why plain functions rather than macros).
 *
 * A slice is the output columns [q0, q1) of all images' N * P positions, walked in runs along one
 * output row (column_run, conv2d.c); col's rows have stride `width`. */

/* im2col for input channels [c0, c1): col rows c kh kw .. (c + 1) kh kw - 1 get what each window
 * sees, zero where it hangs over the padding. */
static void SFX(im2col)(const conv_geometry *g, const real *restrict x, real *restrict col, int64_t width, int64_t q0,
                        int64_t q1, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                real *restrict row = col + ((c * g->kh + ki) * g->kw + kj) * width;
                const int64_t off = kj * g->dw - g->pl;   /* input column of output column ox: ox sw + off */
                for (column_run r = first_run(g, q0, q1); r.len > 0; r = next_run(g, r, q0, q1)) {
                    const int64_t iy = r.oy * g->sh - g->pt + ki * g->dh;
                    real *restrict dst = row + r.j;   /* dst[i]: output column r.ox0 + i */
                    if (iy < 0 || iy >= g->H) {
                        memset(dst, 0, (size_t)r.len * sizeof(real));
                        continue;
                    }
                    const real *restrict src = x + ((r.n * g->Cin + c) * g->H + iy) * g->W;
                    int64_t lo, hi;
                    inside_columns(r.ox0, r.len, g->sw, off, g->W, &lo, &hi);
                    for (int64_t ox = r.ox0; ox < lo; ox++) dst[ox - r.ox0] = 0;
                    if (g->sw == 1 && hi > lo) memcpy(dst + (lo - r.ox0), src + (lo + off), (size_t)(hi - lo) * sizeof(real));
                    else for (int64_t ox = lo; ox < hi; ox++) dst[ox - r.ox0] = src[ox * g->sw + off];
                    for (int64_t ox = hi; ox < r.ox0 + r.len; ox++) dst[ox - r.ox0] = 0;
                }
            }
}

/* col2im, im2col's adjoint, for input channels [c0, c1): dx += the same windows of dcol. */
static void SFX(col2im)(const conv_geometry *g, const real *restrict col, real *restrict dx, int64_t width, int64_t q0,
                        int64_t q1, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const real *restrict row = col + ((c * g->kh + ki) * g->kw + kj) * width;
                const int64_t off = kj * g->dw - g->pl;
                for (column_run r = first_run(g, q0, q1); r.len > 0; r = next_run(g, r, q0, q1)) {
                    const int64_t iy = r.oy * g->sh - g->pt + ki * g->dh;
                    if (iy < 0 || iy >= g->H) continue;
                    const real *restrict src = row + r.j;   /* src[i]: output column r.ox0 + i */
                    real *restrict dst = dx + ((r.n * g->Cin + c) * g->H + iy) * g->W;
                    int64_t lo, hi;
                    inside_columns(r.ox0, r.len, g->sw, off, g->W, &lo, &hi);
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox * g->sw + off] += src[ox - r.ox0];
                }
            }
}

/* Between the slice buffer buf (Cout, width) and an NCHW tensor t's channels [o0, o1): to_tensor:
 * t = buf + bias (bias may be NULL), the forward's output; else buf = t, gathering dy. */
static void SFX(move_slice)(const conv_geometry *g, real *restrict buf, real *restrict t, const real *restrict bias,
                            int64_t width, int64_t q0, int64_t q1, int64_t o0, int64_t o1, bool to_tensor) {
    for (int64_t o = o0; o < o1; o++) {
        const real b = bias ? bias[o] : 0;
        real *restrict brow = buf + o * width;
        for (int64_t q = q0; q < q1;) {
            const int64_t n = q / g->P, p = q % g->P;
            const int64_t len = g->P - p < q1 - q ? g->P - p : q1 - q;   /* this image's part of the slice */
            real *restrict trow = t + (n * g->Cout + o) * g->P + p;
            real *restrict bq = brow + (q - q0);
            if (to_tensor) for (int64_t i = 0; i < len; i++) trow[i] = bq[i] + b;
            else memcpy(bq, trow, (size_t)len * sizeof(real));
            q += len;
        }
    }
}
