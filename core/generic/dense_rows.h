/* generic/dense_rows.h -- the row kernels of attention/dense.c, written once for a scalar type
 * `real`; dense.c includes it once per float dtype through float_types.h (see reduce_lines.h for
 * why plain functions rather than macros).  The dense kernel itself (generic/dense_kernel.h) is
 * built on these.
 *
 * Three kernels over n rows of `width` elements, rows[j] = base + j * stride (keys or values of
 * one head, walked as they are): dot products with one vector, a weighted sum of the rows, and an
 * outer product added to them.  Head sizes are small and known only at run time, so the loops over
 * a row would not unroll; rows_at_width calls them with the common widths as constants (the
 * "apply + row that switches once" of elementwise_rows.h), each case its own unrolled copy.  On
 * float, rows of at most 8 elements go to the masked-vector kernels of dense_rows_avx512.h where
 * the target has them (dense.c includes it): the ICL step (heads of 6) went from 0.80 to 0.71 ms.
 *
 * Then the softmax of one row of logits in place and the dot product of two rows: plain loops,
 * and the AVX-512 ones of dense_rows_avx512.h on float where the target has them. */

/* out[j] = scale * <x, rows[j]> for j < n: four rows at a time, so that four independent sums hide
 * the latency of a chain of fused multiply-adds (with heads as short as the toy tasks' 6, one chain
 * per row left the core idle most of the time). */
ALWAYS_INLINE void SFX(dots_impl)(const real *restrict x, const real *restrict base, int64_t stride, int64_t width,
                                  int64_t n, real scale, real *restrict out) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const real *r0 = base + j * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        real a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int64_t c = 0; c < width; c++) {
            const real xc = x[c];
            a0 += xc * r0[c]; a1 += xc * r1[c]; a2 += xc * r2[c]; a3 += xc * r3[c];
        }
        out[j] = a0 * scale; out[j + 1] = a1 * scale; out[j + 2] = a2 * scale; out[j + 3] = a3 * scale;
    }
    for (; j < n; j++) {
        const real *r = base + j * stride;
        real a = 0;
        for (int64_t c = 0; c < width; c++) a += x[c] * r[c];
        out[j] = a * scale;
    }
}

/* out[c] = scale * sum_j w[j] * rows[j][c] for c < width, over n rows; restrict lets the sums stay
 * in registers across rows instead of a store and reload per row. */
ALWAYS_INLINE void SFX(weighted_rows_impl)(const real *restrict w, const real *restrict base, int64_t stride,
                                           int64_t width, int64_t n, real scale, real *restrict out) {
    real even[width > 0 ? width : 1], odd[width > 0 ? width : 1];  /* two partial sums (a VLA of 0 is UB) */
    for (int64_t c = 0; c < width; c++) even[c] = odd[c] = 0;
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        const real w0 = w[j], w1 = w[j + 1], *r0 = base + j * stride, *r1 = r0 + stride;
        for (int64_t c = 0; c < width; c++) { even[c] += w0 * r0[c]; odd[c] += w1 * r1[c]; }
    }
    if (j < n) for (int64_t c = 0; c < width; c++) even[c] += w[j] * base[j * stride + c];
    for (int64_t c = 0; c < width; c++) out[c] = (even[c] + odd[c]) * scale;
}

/* rows[j] (+)= scale * w[j] * x for j < n: an outer product added to (or, when accumulate is 0,
 * written into) n rows of width elements. */
ALWAYS_INLINE void SFX(scaled_rows_impl)(real *restrict base, int64_t stride, int64_t width, int64_t n,
                                         const real *restrict w, real scale, const real *restrict x, int accumulate) {
    for (int64_t j = 0; j < n; j++) {
        const real sj = scale * w[j];
        real *restrict r = base + j * stride;
        if (accumulate) for (int64_t c = 0; c < width; c++) r[c] += sj * x[c];
        else for (int64_t c = 0; c < width; c++) r[c] = sj * x[c];
    }
}

/* The arguments of one call of a row kernel: rows are read from `rows` (dots, weighted) or
 * written at `out` (scaled); `x` is the vector (dots, scaled), `w` the weights (weighted, scaled). */
typedef struct {
    const real *x, *w, *rows;
    real *out;
    int64_t stride, n;
    real scale;
    int accumulate;
} SFX(row_call);

/* One kernel at one width; `kernel` and `width` are constants wherever it is inlined. */
ALWAYS_INLINE void SFX(rows_apply)(row_kernel kernel, int64_t width, SFX(row_call) a) {
    switch (kernel) {
    case ROWS_DOTS: SFX(dots_impl)(a.x, a.rows, a.stride, width, a.n, a.scale, a.out); return;
    case ROWS_WEIGHTED: SFX(weighted_rows_impl)(a.w, a.rows, a.stride, width, a.n, a.scale, a.out); return;
    case ROWS_SCALED: SFX(scaled_rows_impl)(a.out, a.stride, width, a.n, a.w, a.scale, a.x, a.accumulate); return;
    }
}

/* The kernel with the common head sizes as constants: each case is its own unrolled copy. */
ALWAYS_INLINE void SFX(rows_at_width)(row_kernel kernel, int64_t width, SFX(row_call) a) {
    switch (width) {
    case 2: SFX(rows_apply)(kernel, 2, a); return;
    case 3: SFX(rows_apply)(kernel, 3, a); return;
    case 4: SFX(rows_apply)(kernel, 4, a); return;
    case 5: SFX(rows_apply)(kernel, 5, a); return;
    case 6: SFX(rows_apply)(kernel, 6, a); return;
    case 7: SFX(rows_apply)(kernel, 7, a); return;
    case 8: SFX(rows_apply)(kernel, 8, a); return;
    case 16: SFX(rows_apply)(kernel, 16, a); return;
    case 21: SFX(rows_apply)(kernel, 21, a); return;
    case 32: SFX(rows_apply)(kernel, 32, a); return;
    case 64: SFX(rows_apply)(kernel, 64, a); return;
    default: SFX(rows_apply)(kernel, width, a); return;
    }
}

/* float on a target with AVX-512 masks on 256-bit vectors: dense_rows_avx512.h's kernels take
 * rows of at most SHORT_ROW_MAX elements, and the softmax and dot product of a row */
#if defined(REAL_IS_FLOAT32) && defined(__AVX512VL__)
#define AVX512_ROWS 1
#else
#define AVX512_ROWS 0
#endif

static void SFX(dots)(const real *x, const real *base, int64_t stride, int64_t width, int64_t n, real scale,
                      real *out) {
#if AVX512_ROWS
    if (width <= SHORT_ROW_MAX) { dots_short_float(x, base, stride, width, n, scale, out); return; }
#endif
    SFX(rows_at_width)(ROWS_DOTS, width, (SFX(row_call)){.x = x, .rows = base, .stride = stride, .n = n,
                                                          .scale = scale, .out = out});
}

static void SFX(weighted_rows)(const real *w, const real *base, int64_t stride, int64_t width, int64_t n,
                               real scale, real *out) {
#if AVX512_ROWS
    if (width <= SHORT_ROW_MAX) { weighted_rows_short_float(w, base, stride, width, n, scale, out); return; }
#endif
    SFX(rows_at_width)(ROWS_WEIGHTED, width, (SFX(row_call)){.w = w, .rows = base, .stride = stride, .n = n,
                                                              .scale = scale, .out = out});
}

static void SFX(scaled_rows)(real *base, int64_t stride, int64_t width, int64_t n, const real *w, real scale,
                             const real *x, int accumulate) {
#if AVX512_ROWS
    if (width <= SHORT_ROW_MAX) { scaled_rows_short_float(base, stride, width, n, w, scale, x, accumulate); return; }
#endif
    SFX(rows_at_width)(ROWS_SCALED, width, (SFX(row_call)){.out = base, .stride = stride, .n = n, .w = w,
                                                            .scale = scale, .x = x, .accumulate = accumulate});
}

/* The softmax of one row of logits in place: x[j] = exp(x[j] - mx) / z, mx the row's maximum (0
 * when every entry is -inf: the row stays 0), z the sum of the exponentials; *mx_out and *z_out
 * for the log-sum-exp. */
static inline void SFX(softmax_row_plain)(real *x, int64_t n, real *mx_out, real *z_out) {
    real mx = -INFINITY;
    #pragma omp simd reduction(max:mx)
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) mx = 0; /* no visible key: the row stays 0 */
    real z = 0;
    #pragma omp simd reduction(+:z)
    for (int64_t j = 0; j < n; j++) { x[j] = FAST_EXP(x[j] - mx); z += x[j]; }
    const real inv = z > 0 ? (real)1 / z : (real)0;
    for (int64_t j = 0; j < n; j++) x[j] *= inv;
    *mx_out = mx;
    *z_out = z;
}

static inline real SFX(row_dot_plain)(const real *a, const real *b, int64_t n) {
    real s = 0;
    for (int64_t j = 0; j < n; j++) s += a[j] * b[j];
    return s;
}

/* the fastest of the two this target has */
ALWAYS_INLINE void SFX(softmax_row_best)(real *x, int64_t n, real *mx_out, real *z_out) {
#if AVX512_ROWS
    softmax_row_float(x, n, mx_out, z_out);
#else
    SFX(softmax_row_plain)(x, n, mx_out, z_out);
#endif
}

ALWAYS_INLINE real SFX(row_dot_best)(const real *a, const real *b, int64_t n) {
#if AVX512_ROWS
    return row_dot_float(a, b, n);
#else
    return SFX(row_dot_plain)(a, b, n);
#endif
}

#undef AVX512_ROWS
