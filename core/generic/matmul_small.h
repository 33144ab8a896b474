/* generic/matmul_small.h -- ops/matmul.c's kernels for products too small for a BLAS call to pay,
 * written once for a scalar type `real`; matmul.c includes it once per float dtype through
 * float_types.h (see reduce_lines.h for why plain functions rather than macros).  matmul.c's top
 * comment says which product takes which path; the two here are:
 *   - the small kernel: the tiny matrices of the toy tasks' 6x6 heads, where a BLAS call costs
 *     more than the arithmetic;
 *   - the panel kernel: many rows against a small B (k <= SMALL_K, m one of a few widths), the
 *     toy tasks' projections, (10240 x 6) x (6 x 24).  With m a compile-time constant a row of C
 *     lives in registers for the whole sum over k and is stored once; OpenBLAS, built for large
 *     k, reaches a third of this here (measured 90 us faster than OpenBLAS on the toy tasks'
 *     three projections).  On float, the AVX-512 panel kernel of ops/matmul_avx512.h (B held in
 *     registers, k <= 8, m <= 32: ICL step 0.49-0.55 -> 0.45-0.48 ms) is tried first.
 * Both see one product as a matrix_job (matmul.c): A (n x k) and B (k x m) with any strides, C
 * (n x m) contiguous. */

/* The small kernel: row i of C accumulates A[i,p] times row p of B, B packed contiguous first when
 * it is a transposed view; restrict tells the compiler that C aliases neither, so each row's sum
 * vectorises.  A matrix-vector product (m = 1) is a dot product per row instead. */
static void SFX(small_matmul)(const matrix_job *j) {
    const real *restrict A = (const real *)j->a, *restrict B = (const real *)j->b;
    real *restrict C = (real *)j->c;
    const int64_t n = j->n, k = j->k, m = j->m, as0 = j->as0, as1 = j->as1;
    if (m == 1) {
        for (int64_t i = 0; i < n; i++) {
            real acc = 0;
            for (int64_t p = 0; p < k; p++) acc += A[i * as0 + p * as1] * B[p * j->bs0];
            C[i] = acc;
        }
        return;
    }
    real packed[SMALL_K * SMALL_M];
    if (j->bs1 != 1) {
        if (k > SMALL_K || m > SMALL_M) {   /* not worth packing: strided reads */
            for (int64_t i = 0; i < n; i++) {
                for (int64_t q = 0; q < m; q++) C[i * m + q] = 0;
                for (int64_t p = 0; p < k; p++)
                    for (int64_t q = 0; q < m; q++)
                        C[i * m + q] += A[i * as0 + p * as1] * B[p * j->bs0 + q * j->bs1];
            }
            return;
        }
        for (int64_t p = 0; p < k; p++)
            for (int64_t q = 0; q < m; q++) packed[p * m + q] = B[p * j->bs0 + q * j->bs1];
        B = packed;
    }
    const int64_t ldb = B == packed ? m : j->bs0;
    for (int64_t i = 0; i < n; i++) {
        real *restrict crow = C + i * m;
        const real a0 = A[i * as0];
        for (int64_t q = 0; q < m; q++) crow[q] = a0 * B[q];
        for (int64_t p = 1; p < k; p++) {
            const real a = A[i * as0 + p * as1];
            const real *restrict brow = B + p * ldb;
            for (int64_t q = 0; q < m; q++) crow[q] += a * brow[q];
        }
    }
}

/* The panel kernel for one width: C = A B with B packed (k rows of mm).  mm is a literal constant
 * at every call (the panel_matmul_N below), so each width is its own copy in which the loops over a
 * row unroll and acc stays in vector registers for the whole sum over k.  acc is sized for the
 * widest row: a variable-length one gave each copy a stack frame sized at run time. */
ALWAYS_INLINE void SFX(panel_matmul_width)(const matrix_job *j, const real *restrict B, const int mm) {
    const real *restrict A = (const real *)j->a;
    real *restrict C = (real *)j->c;
    const int64_t k = j->k, as0 = j->as0, as1 = j->as1;
    for (int64_t i = 0; i < j->n; i++) {
        real acc[SMALL_M];
        const real a0 = A[i * as0];
        for (int q = 0; q < mm; q++) acc[q] = a0 * B[q];
        for (int64_t p = 1; p < k; p++) {
            const real a = A[i * as0 + p * as1];
            for (int q = 0; q < mm; q++) acc[q] += a * B[p * mm + q];
        }
        for (int q = 0; q < mm; q++) C[i * mm + q] = acc[q];
    }
}

/* One function per width, which the switch below calls (GCC inlines them there).  Inlined straight
 * into the switch instead, the copies were optimised as one body before the width was known, and
 * GCC 12 vectorised some of them worse: the width-6 float64 rows took four scalar multiply-adds and
 * one of two lanes per step of the sum over k, where these take one of four lanes and one of two. */
static void SFX(panel_matmul_4)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 4); }
static void SFX(panel_matmul_6)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 6); }
static void SFX(panel_matmul_8)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 8); }
static void SFX(panel_matmul_12)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 12); }
static void SFX(panel_matmul_16)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 16); }
static void SFX(panel_matmul_24)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 24); }
static void SFX(panel_matmul_32)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 32); }
static void SFX(panel_matmul_48)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 48); }
static void SFX(panel_matmul_64)(const matrix_job *j, const real *restrict B) { SFX(panel_matmul_width)(j, B, 64); }

/* Runs the panel kernel when m is one of its widths (B packed contiguous first); false otherwise.
 * The widths are those that panel_matmul in matmul.c lets through. */
static bool SFX(panel_matmul)(const matrix_job *j) {
    if (j->k > SMALL_K || j->k < 1) return false;
    real packed[SMALL_K * SMALL_M] = {0};  /* zeros: the vector kernel loads whole rows, masked */
    const real *B = (const real *)j->b;
    for (int64_t p = 0; p < j->k; p++)
        for (int64_t q = 0; q < j->m && q < SMALL_M; q++) packed[p * j->m + q] = B[p * j->bs0 + q * j->bs1];
#ifdef REAL_IS_FLOAT32
    /* the AVX-512 panel kernel first (matmul_avx512.h; it declines shapes it does not take) */
    if (panel_rows_avx512(j, packed)) return true;
#endif
    switch (j->m) {
    case 4: SFX(panel_matmul_4)(j, packed); return true;
    case 6: SFX(panel_matmul_6)(j, packed); return true;
    case 8: SFX(panel_matmul_8)(j, packed); return true;
    case 12: SFX(panel_matmul_12)(j, packed); return true;
    case 16: SFX(panel_matmul_16)(j, packed); return true;
    case 24: SFX(panel_matmul_24)(j, packed); return true;
    case 32: SFX(panel_matmul_32)(j, packed); return true;
    case 48: SFX(panel_matmul_48)(j, packed); return true;
    case 64: SFX(panel_matmul_64)(j, packed); return true;
    default: return false;
    }
}
