/* generic/relative_index_rows.h -- the gather and scatter by clipped relative distance of
 * attention/relative.c, written once for a scalar type `real`; relative.c includes it once per
 * float dtype through float_types.h (see reduce_lines.h for why plain functions rather than
 * macros), and so does core/cuda/relative.cu, whose kernel runs the row function a thread per row. */

/* Row n: out[n, j] = R[n, c(j - i - shift)], i = n mod N, c(x) = clip(x, -k, k) + k, W = 2k + 1; or
 * the adjoint, R[n, c] += G[n, j] (scatter).  Both contiguous, (rows, W) and (rows, M). */
static inline AL_HOST_DEVICE void SFX(relative_index_row)(const real *src, real *dst, int64_t n, int64_t N, int64_t M,
                                                          int64_t W, int64_t shift, bool scatter) {
    const int64_t k = (W - 1) / 2, i = n % N;
    if (scatter) for (int64_t c = 0; c < W; c++) dst[n * W + c] = 0;
    for (int64_t j = 0; j < M; j++) {
        int64_t x = j - i - shift;
        x = (x < -k ? -k : (x > k ? k : x)) + k;
        if (scatter) dst[n * W + x] += src[n * M + j];
        else dst[n * M + j] = src[n * W + x];
    }
}

/* every row, on the CPU */
static inline void SFX(relative_index)(const real *src, real *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                                       int64_t shift, bool scatter) {
    for (int64_t n = 0; n < rows; n++) SFX(relative_index_row)(src, dst, n, N, M, W, shift, scatter);
}
