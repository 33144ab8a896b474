/* sgemm_avx512.c -- a float matrix product of attnlab's own, for CPUs with AVX-512 whose OpenBLAS
 * kernel does not use it.
 *
 * Why: Debian's OpenBLAS picks its kernel per CPU when it loads, and an environment that sets
 * OPENBLAS_CORETYPE=Haswell (as this project's machines do) holds it to AVX2 kernels on an AVX-512
 * CPU.  On the project's Zen 5 machine one thread then multiplies nn.Linear's matrices at 103-109
 * GFLOP/s, against 200-212 with OpenBLAS's AVX-512 kernels and 192-222 with this product
 * (bench/RESULTS.md, part sgemm); `linear` was 70% of a GPT step.  blas_info.c decides when this
 * product replaces cblas_sgemm (al_linear_uses_own_sgemm).
 *
 * How (GotoBLAS's layout, Goto & van de Geijn 2008): C += A B is cut into blocks of KC steps of k;
 * for each, B's block is packed into panels of NR = 32 columns (each kc x 32, contiguous) and A's
 * rows, MC at a time, into slivers of MR = 12 rows (kc x 12; untransposed A is read in place, see
 * the loop below).  The micro-kernel keeps a 12 x 32 tile of C in 24 vector registers over the
 * block's kc steps: per step two loads of B, twelve broadcasts of A and 24 multiply-adds.  A B panel
 * (32 KiB at kc = 256) stays in L1 while the slivers of A's block (144 x 256 floats, 144 KiB) stream
 * from L2 past it.  Edges are padded with zeros in the packed copies, and stores are masked to C's
 * rows and columns.
 *
 * One call runs on the calling thread (linear.c splits rows or outputs between threads itself); the
 * packing buffers are the thread's own, kept between calls.  Each element of C is summed in a fixed
 * order that depends only on k, so results repeat to the last bit for any thread count. */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>

enum { MR = 12, NR = 32, KC = 256, MC = 144, NC = 512 };

static inline __mmask16 lanes_up_to(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u);
}

/* A(i, p) for i in [i0, i0 + mc), p in [p0, p0 + kc) into slivers of MR rows:
 * ap[(s kc + kk) MR + r] = A(i0 + s MR + r, p0 + kk), zero past mc.  A(i, p) is a[i lda + p], or
 * a[p lda + i] when a_trans. */
static void pack_a(bool a_trans, const float *a, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                   float *ap) {
    for (int64_t s = 0; s * MR < mc; s++) {
        const int64_t rows = mc - s * MR < MR ? mc - s * MR : MR;
        float *dst = ap + s * kc * MR;
        if (a_trans) {   /* a sliver's rows are contiguous in each of A's stored rows */
            const __mmask16 m = lanes_up_to(rows), pad = (__mmask16)(lanes_up_to(MR) & ~m);
            for (int64_t kk = 0; kk < kc; kk++) {
                const float *src = a + (p0 + kk) * lda + i0 + s * MR;
                __m512 v = _mm512_maskz_loadu_ps(m, src);
                _mm512_mask_storeu_ps(dst + kk * MR, (__mmask16)(m | pad), v);
            }
        } else {
            for (int64_t r = 0; r < rows; r++) {
                const float *src = a + (i0 + s * MR + r) * lda + p0;
                for (int64_t kk = 0; kk < kc; kk++) dst[kk * MR + r] = src[kk];
            }
            for (int64_t r = rows; r < MR; r++)
                for (int64_t kk = 0; kk < kc; kk++) dst[kk * MR + r] = 0.0f;
        }
    }
}

/* B(p, j) for p in [p0, p0 + kc), j in [j0, j0 + nc) into panels of NR columns:
 * bp[(q kc + kk) NR + c] = B(p0 + kk, j0 + q NR + c), zero past nc.  B(p, j) is b[p ldb + j], or
 * b[j ldb + p] when b_trans. */
static void pack_b(bool b_trans, const float *b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   float *bp) {
    for (int64_t q = 0; q * NR < nc; q++) {
        const int64_t cols = nc - q * NR < NR ? nc - q * NR : NR;
        float *dst = bp + q * kc * NR;
        if (!b_trans) {
            const __mmask16 m0 = lanes_up_to(cols), m1 = lanes_up_to(cols - 16);
            for (int64_t kk = 0; kk < kc; kk++) {
                const float *src = b + (p0 + kk) * ldb + j0 + q * NR;
                _mm512_storeu_ps(dst + kk * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_storeu_ps(dst + kk * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else {
            if (cols < NR) memset(dst, 0, sizeof(float) * (size_t)(kc * NR));
            for (int64_t c = 0; c < cols; c++) {
                const float *src = b + (j0 + q * NR + c) * ldb + p0;
                for (int64_t kk = 0; kk < kc; kk++) dst[kk * NR + c] = src[kk];
            }
        }
    }
}

/* C's tile (rows <= MR, cols <= NR) = beta C + A's MR rows times the B panel when first, else
 * C += ...; C is not read when first and beta is 0.  A(r, p) is a[r rs + p ps]: a packed sliver
 * (rs 1, ps MR) or A's own rows (rs lda, ps 1), constants at each call once inlined. */
static inline __attribute__((always_inline)) void micro_tile(int64_t kc, const float *restrict a, int64_t rs, int64_t ps,
                                                             const float *restrict bp, float *c, int64_t ldc,
                                                             int64_t rows, int64_t cols, bool first, float beta) {
    __m512 acc[MR][2];
    #pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        #pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * rs]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
        a += ps;
        bp += NR;
    }
    const __mmask16 m0 = lanes_up_to(cols), m1 = lanes_up_to(cols - 16);
    const __m512 vb = _mm512_set1_ps(beta);
    /* a constant trip count, each acc[r] named at compile time (a bound of `rows` would put the
     * accumulators in memory) */
    #pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= rows) continue;
        float *cr = c + r * ldc;
        __m512 o0 = acc[r][0], o1 = acc[r][1];
        if (!first) {
            o0 = _mm512_add_ps(o0, _mm512_maskz_loadu_ps(m0, cr));
            o1 = _mm512_add_ps(o1, _mm512_maskz_loadu_ps(m1, cr + 16));
        } else if (beta != 0.0f) {
            o0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), o0);
            o1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), o1);
        }
        _mm512_mask_storeu_ps(cr, m0, o0);
        _mm512_mask_storeu_ps(cr + 16, m1, o1);
    }
}

/* the calling thread's packing buffers, made on its first call and kept (MC x KC and KC x NC floats) */
static _Thread_local float *a_block, *b_block;

bool al_sgemm_own(bool a_trans, bool b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return true;
    if (!a_block) a_block = aligned_alloc(64, sizeof(float) * (size_t)(((MC + MR - 1) / MR) * MR * KC));
    if (!b_block) b_block = aligned_alloc(64, sizeof(float) * (size_t)(KC * NC));
    if (!a_block || !b_block) return false;
    if (k <= 0) {   /* C = beta C */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return true;
    }
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        const int64_t nc = n - j0 < NC ? n - j0 : NC;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            const int64_t kc = k - p0 < KC ? k - p0 : KC;
            pack_b(b_trans, b, ldb, p0, kc, j0, nc, b_block);
            for (int64_t i0 = 0; i0 < m; i0 += MC) {
                const int64_t mc = m - i0 < MC ? m - i0 : MC;
                /* Transposed, A is packed (a sliver's rows lie along A's stored rows).  Otherwise the
                 * micro-kernel reads full slivers from A's rows in place, which measured faster than
                 * packing them (the packing is a transposition here), and only a last, partial
                 * sliver is packed, at the buffer's start. */
                const int64_t full = a_trans ? 0 : mc / MR * MR;
                if (full < mc) pack_a(a_trans, a, lda, i0 + full, mc - full, p0, kc, a_block);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const float *bq = b_block + jr * kc;
                    const int64_t cols = nc - jr < NR ? nc - jr : NR;
                    for (int64_t ir = 0; ir < full; ir += MR)
                        micro_tile(kc, a + (i0 + ir) * lda + p0, lda, 1, bq, c + (i0 + ir) * ldc + j0 + jr, ldc, MR, cols,
                                   p0 == 0, beta);
                    for (int64_t ir = full; ir < mc; ir += MR)
                        micro_tile(kc, a_block + (ir - full) * kc, 1, MR, bq, c + (i0 + ir) * ldc + j0 + jr, ldc,
                                   mc - ir < MR ? mc - ir : MR, cols, p0 == 0, beta);
                }
            }
        }
    }
    return true;
}

bool al_sgemm_own_available(void) { return true; }
#else
bool al_sgemm_own(bool a_trans, bool b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)a_trans; (void)b_trans; (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb; (void)beta;
    (void)c; (void)ldc;
    return false;
}
bool al_sgemm_own_available(void) { return false; }
#endif
