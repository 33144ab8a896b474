/* generic/scatter_mean_rows.h -- routing's scatter_mean of attention/routing.c, written once for a
 * scalar type `real`; routing.c includes it once per float dtype through float_types.h (see
 * reduce_lines.h for why plain functions rather than macros). */

/* forward: out (B, H, N, w) += src (B, H, S, w) / count per slot's query; backward (gather): out
 * (B, H, S, w) = src (B, H, N, w) / count at the slot's query.  index (B, H, S), count (B, H, N). */
static void SFX(scatter_mean)(const real *src, real *out, const int64_t *index, const double *count, int64_t BH,
                              int64_t N, int64_t S, int64_t w, bool gather) {
    for (int64_t bh = 0; bh < BH; bh++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t row = bh * N + index[bh * S + s], slot = bh * S + s;
            const real inv = (real)(1.0 / count[row]);
            for (int64_t c = 0; c < w; c++) {
                if (gather) out[slot * w + c] = inv * src[row * w + c];
                else out[row * w + c] += inv * src[slot * w + c];
            }
        }
}
