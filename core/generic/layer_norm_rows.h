/* generic/layer_norm_rows.h -- the backward row kernel of ops/nn.c's layer norm, written once for a
 * scalar type `real`, included once per float dtype through float_types.h (see reduce_lines.h for
 * why plain functions rather than macros).  The formulas are above layer_norm_forward_float in
 * nn.c; each row's sums run in `real` (D terms, as PyTorch does; on the float pass in vector lanes),
 * the sums over rows for dw and db in double. */

/* Rows [first, last): dx, and g * xhat and g summed over these rows into dw and db (either NULL). */
static void SFX(layer_norm_backward)(const layer_norm_backward_job *j, int64_t first, int64_t last,
                                     double *restrict dw, double *restrict db) {
    const int64_t D = j->D;
    const real *restrict W = j->w;
    for (int64_t r = first; r < last; r++) {
        const real *restrict xr = (const real *)j->x + r * D, *restrict gr = (const real *)j->g + r * D;
        const real mean = (real)j->stats[2 * r], rstd = (real)j->stats[2 * r + 1];
        real mg = 0, mgx = 0;
#ifdef REAL_IS_FLOAT32
        /* the float sums in vector lanes (see nn.c); the double pass, the gradient checks' reference,
         * keeps the sequential sum */
        #pragma omp simd reduction(+:mg, mgx)
#endif
        for (int64_t i = 0; i < D; i++) {
            const real xh = (xr[i] - mean) * rstd, gy = W ? gr[i] * W[i] : gr[i];
            mg += gy;
            mgx += gy * xh;
        }
        mg /= (real)D;
        mgx /= (real)D;
        if (j->dx) {
            real *restrict dxr = (real *)j->dx + r * D;
            for (int64_t i = 0; i < D; i++) {
                const real xh = (xr[i] - mean) * rstd, gy = W ? gr[i] * W[i] : gr[i];
                dxr[i] = rstd * (gy - mg - xh * mgx);
            }
        }
        if (dw) for (int64_t i = 0; i < D; i++) dw[i] += (double)(gr[i] * ((xr[i] - mean) * rstd));
        if (db) for (int64_t i = 0; i < D; i++) db[i] += (double)gr[i];
    }
}
