/* matmul_avx512.h -- matmul.c's float kernels on AVX-512 for two skinny shapes:
 *   - a sum of outer products: few rows and columns of C over a long k, A transposed (a linear
 *     map's weight gradient);
 *   - a panel of many rows against a small B (k <= 8, m <= 32; a linear map's forward).
 * Accumulators and B's rows are named variables or fully unrolled: with arrays indexed in a loop
 * GCC kept them on the stack and stored them on every step.  Without AVX-512 both report false
 * and matmul.c takes its other paths.  Included by matmul.c only (matrix_job, SPLIT_WORK). */
#if defined(__AVX512F__)
#include <immintrin.h>

static inline __mmask16 lanes16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

/* Few rows and columns of C summed over a long k, with A's columns contiguous: the weight gradient
 * of a linear map, dW = g^T x, (24 x 10240) x (10240 x 6) for the toy tasks' projections.  C is a
 * sum of k outer products of A's column p (contiguous, up to OUTER_N lanes in two vectors) and B's
 * row p; the (up to) 2 x OUTER_M accumulators stay in registers for the whole pass over k, which
 * reads A and B once.  OpenBLAS packs the transposed operand first for this shape. */
enum { OUTER_N = 32, OUTER_M = 8, OUTER_MIN_K = 256 };
/* One block of up to OUTER_N rows of C; mm (<= OUTER_M) is a constant at every call, so the
 * accumulators the block does not use vanish.  They are named variables, not an array: with an
 * array GCC stored every accumulator to the stack on each step of the sum over k. */
#define OUTER_STEP(q) if ((q) < mm) { const __m512 bq = _mm512_set1_ps(b[q]);                 \
        c##q##a = _mm512_fmadd_ps(a0, bq, c##q##a); c##q##b = _mm512_fmadd_ps(a1, bq, c##q##b); }
#define OUTER_STORE(q) if ((q) < mm) { _mm512_storeu_ps(col, c##q##a); _mm512_storeu_ps(col + 16, c##q##b); \
        for (int64_t i = 0; i < rows; i++) C[(i0 + i) * mm + (q)] = col[i]; }
static inline __attribute__((always_inline)) void outer_sum_block(const matrix_job *j, int64_t i0, int64_t rows,
                                                                  __mmask16 m0, __mmask16 m1, const int mm) {
    const float *A = (const float *)j->a + i0, *B = (const float *)j->b;
    float *C = (float *)j->c;
    const int64_t k = j->k, as1 = j->as1, bs0 = j->bs0;
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    for (int64_t p = 0; p < k; p++) {
        const float *a = A + p * as1, *b = B + p * bs0;
        const __m512 a0 = _mm512_maskz_loadu_ps(m0, a), a1 = _mm512_maskz_loadu_ps(m1, a + 16);
        OUTER_STEP(0) OUTER_STEP(1) OUTER_STEP(2) OUTER_STEP(3)
        OUTER_STEP(4) OUTER_STEP(5) OUTER_STEP(6) OUTER_STEP(7)
    }
    float col[OUTER_N];   /* column q of this block of C */
    OUTER_STORE(0) OUTER_STORE(1) OUTER_STORE(2) OUTER_STORE(3)
    OUTER_STORE(4) OUTER_STORE(5) OUTER_STORE(6) OUTER_STORE(7)
}
#undef OUTER_STEP
#undef OUTER_STORE

/* The outer-product kernel when the product has its shape (float, A's columns and B's rows
 * contiguous, m <= OUTER_M, a long k, one thread's worth of work); false otherwise. */
static bool outer_sum_matmul(const matrix_job *j, al_dtype dt) {
    if (dt != AL_FLOAT32 || j->as0 != 1 || j->bs1 != 1 || j->m > OUTER_M || j->k < OUTER_MIN_K ||
        j->n * j->k * j->m >= SPLIT_WORK)
        return false;
    for (int64_t i0 = 0; i0 < j->n; i0 += OUTER_N) {
        const int64_t rows = j->n - i0 < OUTER_N ? j->n - i0 : OUTER_N;
        const __mmask16 m0 = lanes16(rows), m1 = lanes16(rows - 16);
        switch (j->m) {
        case 1: outer_sum_block(j, i0, rows, m0, m1, 1); break;
        case 2: outer_sum_block(j, i0, rows, m0, m1, 2); break;
        case 3: outer_sum_block(j, i0, rows, m0, m1, 3); break;
        case 4: outer_sum_block(j, i0, rows, m0, m1, 4); break;
        case 5: outer_sum_block(j, i0, rows, m0, m1, 5); break;
        case 6: outer_sum_block(j, i0, rows, m0, m1, 6); break;
        case 7: outer_sum_block(j, i0, rows, m0, m1, 7); break;
        default: outer_sum_block(j, i0, rows, m0, m1, 8); break;
        }
    }
    return true;
}
/* Many rows against a small B, C = A B with k <= PANEL_AVX_K and m <= 32: B's rows stay in (up
 * to) 2 x k registers, each row of C is k broadcast multiply-adds and one or two stores.  kk is a
 * constant at every call (the loops over it unroll, B lives in registers). */
enum { PANEL_AVX_K = 8, PANEL_AVX_M = 32 };
static inline __attribute__((always_inline)) void panel_rows_block(const matrix_job *j, const float *packed, const int kk) {
    const float *A = (const float *)j->a;
    float *C = (float *)j->c;
    const int64_t m = j->m, as0 = j->as0, as1 = j->as1;
    const __mmask16 m0 = lanes16(m), m1 = lanes16(m - 16);
    __m512 b0[PANEL_AVX_K], b1[PANEL_AVX_K];
    _Pragma("GCC unroll 8")
    for (int p = 0; p < kk; p++) {
        b0[p] = _mm512_maskz_loadu_ps(m0, packed + p * m);
        b1[p] = _mm512_maskz_loadu_ps(m1, packed + p * m + 16);
    }
    for (int64_t i = 0; i < j->n; i++) {
        const float *a = A + i * as0;
        __m512 s = _mm512_set1_ps(a[0]);
        __m512 c0 = _mm512_mul_ps(s, b0[0]), c1 = _mm512_mul_ps(s, b1[0]);
        _Pragma("GCC unroll 8")
        for (int p = 1; p < kk; p++) {
            s = _mm512_set1_ps(a[p * as1]);
            c0 = _mm512_fmadd_ps(s, b0[p], c0);
            c1 = _mm512_fmadd_ps(s, b1[p], c1);
        }
        _mm512_mask_storeu_ps(C + i * m, m0, c0);
        if (m1) _mm512_mask_storeu_ps(C + i * m + 16, m1, c1);
    }
}

/* The panel kernel above for B packed (k rows of m) when k and m fit it; false otherwise. */
static bool panel_rows_avx512(const matrix_job *j, const float *packed) {
    if (j->k < 1 || j->k > PANEL_AVX_K || j->m > PANEL_AVX_M) return false;
    switch (j->k) {
    case 1: panel_rows_block(j, packed, 1); return true;
    case 2: panel_rows_block(j, packed, 2); return true;
    case 3: panel_rows_block(j, packed, 3); return true;
    case 4: panel_rows_block(j, packed, 4); return true;
    case 5: panel_rows_block(j, packed, 5); return true;
    case 6: panel_rows_block(j, packed, 6); return true;
    case 7: panel_rows_block(j, packed, 7); return true;
    default: panel_rows_block(j, packed, 8); return true;
    }
}
#else
static bool outer_sum_matmul(const matrix_job *j, al_dtype dt) { (void)j; (void)dt; return false; }
static bool panel_rows_avx512(const matrix_job *j, const float *packed) { (void)j; (void)packed; return false; }
#endif
