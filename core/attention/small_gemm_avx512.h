/* small_gemm_avx512.h -- the products of small attention tiles in registers, for float on AVX-512.
 *
 * A 40-token sequence with 32-wide heads makes each tile product 40 x 40 x 32: about 50,000
 * multiply-adds, which a BLAS call spends as much time preparing (packing both operands, taking a
 * lock) as computing, and even a full 128 x 128 x 32 tile of a long sequence runs faster here.
 * Sixteen registers of C stay in registers over the whole sum on k (four rows of up to 64 floats,
 * or two rows of up to 128): each step broadcasts one element of A per row and does up to sixteen
 * multiply-adds against one row of B.  Measured forward + backward, against OpenBLAS: causal
 * (64, 4, 40, 32) 4.0-4.3 -> 2.4 ms; non-causal (8, 4, 2048, 32) 440-456 -> 246-250 ms.
 *
 * tile_gemm_float computes C (m x n) = alpha op(A) op(B) + beta C, row-major, where op(A) is A or
 * A^T and op(B) is B or B^T, for n <= SMALL_TILE_N and k <= SMALL_TILE_K (a tile's sides); it
 * returns false (doing nothing) for any other shape, and the caller takes the BLAS.  C is not read
 * when beta is 0. */
#ifndef ATTNLAB_SMALL_GEMM_AVX512_H
#define ATTNLAB_SMALL_GEMM_AVX512_H
#include <stdbool.h>
#include <stdint.h>

enum { SMALL_TILE_N = 128, SMALL_TILE_K = 128 };

#ifdef __AVX512F__
#include <immintrin.h>

static inline __mmask16 tile_lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u);
}

/* Rows [i0, i0 + ROWS) of C, NV registers (16 floats each) per row; ROWS and NV are constants at
 * every call, so the accumulators are registers.  A(i, p) is a[i lda + p], or a[p lda + i] when
 * a_trans.  B is k x n, row-major, ldb. */
static inline __attribute__((always_inline)) void tile_rows(int ROWS, int NV, int64_t i0, int64_t n, int64_t k,
                                                            float alpha, const float *a, int64_t lda, bool a_trans,
                                                            const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    __m512 acc[4][8];
    __mmask16 mask[8];
    for (int v = 0; v < NV; v++) mask[v] = tile_lanes(n - 16 * v);
    for (int r = 0; r < ROWS; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        __m512 brow[8];
        for (int v = 0; v < NV; v++) brow[v] = _mm512_maskz_loadu_ps(mask[v], b + p * ldb + 16 * v);
        for (int r = 0; r < ROWS; r++) {
            const __m512 air = _mm512_set1_ps(a_trans ? a[p * lda + i0 + r] : a[(i0 + r) * lda + p]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(air, brow[v], acc[r][v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < ROWS; r++)
        for (int v = 0; v < NV; v++) {
            float *cp = c + (i0 + r) * ldc + 16 * v;
            __m512 out = _mm512_mul_ps(va, acc[r][v]);
            if (beta != 0) out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], cp), out);
            _mm512_mask_storeu_ps(cp, mask[v], out);
        }
}

static inline __attribute__((always_inline)) void tile_all_rows(int NV, int64_t m, int64_t n, int64_t k, float alpha,
                                                                const float *a, int64_t lda, bool a_trans,
                                                                const float *b, int64_t ldb, float beta, float *c,
                                                                int64_t ldc) {
    int64_t i = 0;
    if (NV > 4)   /* 2 rows of up to 8 registers: 16 accumulators, as 4 rows of 4 */
        for (; i + 2 <= m; i += 2) tile_rows(2, NV, i, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc);
    else
        for (; i + 4 <= m; i += 4) tile_rows(4, NV, i, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc);
    for (; i < m; i++) tile_rows(1, NV, i, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc);
}

static bool tile_gemm_float(bool a_trans, bool b_trans, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                            int64_t ldc) {
    if (n < 1 || n > SMALL_TILE_N || k < 1 || k > SMALL_TILE_K || m < 1) return false;
    float packed[SMALL_TILE_K * SMALL_TILE_N];
    if (b_trans) {   /* B is n x k: lay B^T out as k x n rows */
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < n; j++) packed[p * n + j] = b[j * ldb + p];
        b = packed;
        ldb = n;
    }
    switch ((n + 15) / 16) {
    case 1: tile_all_rows(1, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 2: tile_all_rows(2, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 3: tile_all_rows(3, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 4: tile_all_rows(4, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 5: tile_all_rows(5, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 6: tile_all_rows(6, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    case 7: tile_all_rows(7, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    default: tile_all_rows(8, m, n, k, alpha, a, lda, a_trans, b, ldb, beta, c, ldc); break;
    }
    return true;
}
#else
static bool tile_gemm_float(bool a_trans, bool b_trans, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                            int64_t ldc) {
    (void)a_trans; (void)b_trans; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return false;
}
#endif
#endif
