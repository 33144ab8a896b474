/* generic/interpolate_rows.h -- the kernels of ops/interpolate.c, written once for a scalar type
 * `real`; interpolate.c includes it once per float dtype through float_types.h (see reduce_lines.h
 * for why plain functions rather than macros).  Every output mixes two source rows and two source
 * columns (g->rows, g->cols; nearest has weights 1 and 0). */

/* the (plane, output row) pairs [first, last) */
static void SFX(resample_forward)(const resample_geometry *g, const real *x, real *y, int64_t first, int64_t last) {
    for (int64_t r = first; r < last; r++) {
        const int64_t plane = r / g->Ho, oy = r % g->Ho;
        const source_1d sy = g->rows[oy];
        const real *row0 = x + (plane * g->H + sy.src0) * g->W, *row1 = x + (plane * g->H + sy.src1) * g->W;
        real *out = y + r * g->Wo;
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            const source_1d sx = g->cols[ox];
            out[ox] = (real)(sy.w0 * (sx.w0 * row0[sx.src0] + sx.w1 * row0[sx.src1]) +
                             sy.w1 * (sx.w0 * row1[sx.src0] + sx.w1 * row1[sx.src1]));
        }
    }
}

/* the planes [first, last): each output's gradient added to its four sources with the same weights */
static void SFX(resample_backward)(const resample_geometry *g, const real *gy, real *dx, int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; plane++)
        for (int64_t oy = 0; oy < g->Ho; oy++) {
            const source_1d sy = g->rows[oy];
            real *row0 = dx + (plane * g->H + sy.src0) * g->W, *row1 = dx + (plane * g->H + sy.src1) * g->W;
            const real *gr = gy + (plane * g->Ho + oy) * g->Wo;
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                const source_1d sx = g->cols[ox];
                const double v = gr[ox];
                row0[sx.src0] += (real)(sy.w0 * sx.w0 * v);
                row0[sx.src1] += (real)(sy.w0 * sx.w1 * v);
                row1[sx.src0] += (real)(sy.w1 * sx.w0 * v);
                row1[sx.src1] += (real)(sy.w1 * sx.w1 * v);
            }
        }
}
