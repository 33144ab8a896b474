/* short_rows_avx512.h -- dense.c's three float kernels over short rows (dot products with many rows,
 * weighted sums of rows, outer products into rows) for rows of at most 8 elements, with one masked
 * 8-lane vector per row.
 *
 * The rows path of the dense kernel (few queries per (batch, kv head)) walks keys and values as
 * rows of the head size, which is short in the toy tasks (6).  Compiled from plain loops, each row
 * was assembled from scalar loads and inserts, or summed one element at a time.  Here a row is one
 * masked load or store (masked lanes are never touched, so a row at the end of a tensor is safe),
 * and eight dot products are reduced together by a transposing tree of horizontal adds.
 *
 * Included by dense.c only, where __AVX512VL__ is defined (AVX-512 masks on 256-bit vectors). */
#include <immintrin.h>

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

/* out[c] = sum_j w[j] * rows[j][c] for c < width (width <= 8): four independent sums. */
static void weighted_rows_short_float(const float *w, const float *base, int64_t stride, int64_t width,
                                      int64_t n, float *out) {
    const __mmask8 m = short_row_mask(width);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int r = 0; r < 4; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(w[j + r]), _mm256_maskz_loadu_ps(m, base + (j + r) * stride), acc[r]);
    for (; j < n; j++)
        acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_maskz_loadu_ps(m, base + j * stride), acc[0]);
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    _mm256_mask_storeu_ps(out, m, sum);
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
