/* dense_rows_avx512.h -- dense.c's float kernels on AVX-512: the three kernels over short rows (dot
 * products with many rows, weighted sums of rows, outer products into rows) for rows of at most 8
 * elements, with one masked 8-lane vector per row; the softmax of one row of logits and the dot
 * product of two rows, with masked tails and tree reductions.
 *
 * The rows path of the dense kernel (few queries per (batch, kv head)) walks keys and values as
 * rows of the head size, which is short in the toy tasks (6).  Compiled from plain loops, each row
 * was assembled from scalar loads and inserts, or summed one element at a time.  Here a row is one
 * masked load or store (masked lanes are never touched, so a row at the end of a tensor is safe),
 * and eight dot products are reduced together by a transposing tree of horizontal adds.
 *
 * Included by dense.c only, where __AVX512VL__ is defined (AVX-512 masks on 256-bit vectors). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

enum { SHORT_ROW_MAX = 8 };

static inline __mmask8 short_row_mask(int64_t width) { return (__mmask8)((1u << width) - 1u); }

/* out[j] = scale * <x, rows[j]> for j < n (width <= 8). */
static void dots_short_float(const float *x, const float *base, int64_t stride, int64_t width,
                             int64_t n, float scale, float *out) {
    const __mmask8 m = short_row_mask(width);
    const __m256 xv = _mm256_maskz_loadu_ps(m, x), sv = _mm256_set1_ps(scale);
    int64_t j = 0;
    for (; j < n; j += 8) {
        const int64_t rows = n - j < 8 ? n - j : 8;
        __m256 p[8];
        for (int r = 0; r < 8; r++)
            p[r] = r < rows ? _mm256_mul_ps(xv, _mm256_maskz_loadu_ps(m, base + (j + r) * stride))
                            : _mm256_setzero_ps();
        /* after two rounds of pairwise adds, lane r of each 128-bit half holds row r's partial
         * sum over that half (rows 0-3 in a, 4-7 in b); adding the halves finishes all eight */
        const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(p[0], p[1]), _mm256_hadd_ps(p[2], p[3]));
        const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(p[4], p[5]), _mm256_hadd_ps(p[6], p[7]));
        const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
        _mm256_mask_storeu_ps(out + j, short_row_mask(rows), _mm256_mul_ps(sums, sv));
    }
}

/* out[c] = scale * sum_j w[j] * rows[j][c] for c < width (width <= 8): four independent sums. */
static void weighted_rows_short_float(const float *w, const float *base, int64_t stride, int64_t width,
                                      int64_t n, float scale, float *out) {
    const __mmask8 m = short_row_mask(width);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int r = 0; r < 4; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(w[j + r]), _mm256_maskz_loadu_ps(m, base + (j + r) * stride), acc[r]);
    for (; j < n; j++)
        acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_maskz_loadu_ps(m, base + j * stride), acc[0]);
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    _mm256_mask_storeu_ps(out, m, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
}

/* rows[j] (+)= scale * w[j] * x for j < n (width <= 8). */
static void scaled_rows_short_float(float *base, int64_t stride, int64_t width, int64_t n, const float *w,
                                    float scale, const float *x, int accumulate) {
    const __mmask8 m = short_row_mask(width);
    const __m256 xv = _mm256_maskz_loadu_ps(m, x);
    for (int64_t j = 0; j < n; j++) {
        float *r = base + j * stride;
        const __m256 sj = _mm256_set1_ps(scale * w[j]);
        const __m256 v = accumulate ? _mm256_fmadd_ps(sj, xv, _mm256_maskz_loadu_ps(m, r)) : _mm256_mul_ps(sj, xv);
        _mm256_mask_storeu_ps(r, m, v);
    }
}

/* al_expf on 16 lanes, the same operations in the same order (so the same results). */
static inline __m512 expf_16(__m512 x) {
    const __m512 xc = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.3f), x));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693145751953125f), xc);
    r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(k), _mm512_set1_epi32(127)), 23);
    const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
    return _mm512_maskz_mul_ps((__mmask16)~underflow, p, _mm512_castsi512_ps(bits));
}

static inline __mmask16 row_tail_mask(int64_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u); }

/* x[j] = exp(x[j] - mx) / z for j < n, mx the row's maximum (0 when every entry is -inf), z the
 * sum of the exponentials (0 leaves the row 0); *mx_out and *z_out for the log-sum-exp.  Masked
 * tails and tree reductions: the plain loops ran the tail of a 40-key row through a scalar exp and
 * summed the 16 lanes of z in order, a chain of dependent adds per row. */
static void softmax_row_float(float *x, int64_t n, float *mx_out, float *z_out) {
    __m512 mxv = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16)
        mxv = _mm512_max_ps(mxv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), row_tail_mask(n - j), x + j));
    float mx = _mm512_reduce_max_ps(mxv);
    if (mx == -INFINITY) mx = 0;
    __m512 zv = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = row_tail_mask(n - j);
        const __m512 e = _mm512_maskz_mov_ps(m, expf_16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_set1_ps(mx))));
        _mm512_mask_storeu_ps(x + j, m, e);
        zv = _mm512_add_ps(zv, e);
    }
    const float z = _mm512_reduce_add_ps(zv), inv = z > 0 ? 1.0f / z : 0.0f;
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = row_tail_mask(n - j);
        _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_set1_ps(inv)));
    }
    *mx_out = mx;
    *z_out = z;
}

/* sum_j a[j] * b[j] for j < n: lane-wise sums and one tree reduction (in order, the sum was a
 * chain of n dependent adds). */
static float row_dot_float(const float *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = row_tail_mask(n - j);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), acc);
    }
    return _mm512_reduce_add_ps(acc);
}
