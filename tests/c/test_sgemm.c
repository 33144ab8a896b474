/* test_sgemm.c -- attnlab's own float product (core/ops/sgemm_avx512.c) against a float64 product
 * worked out here: every combination of transposes, beta 0 / 1 / 0.5 (C not read when beta is 0:
 * it starts as NaN there), shapes on and off the 12 x 32 tile and the 256-step and 144-row blocks,
 * strides wider than the matrices, and k = 0.  On a build without AVX-512 the product declines every
 * call, which is checked instead. */
#include "check.h"
#include "internal.h"

static double uniform(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / (double)(1u << 24) - 0.5;
}

static void one_case(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float beta, int64_t pad) {
    const int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const int64_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(arows * lda + 1)), *b = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    double *want = malloc(sizeof(double) * (size_t)(m * n + 1));
    unsigned state = (unsigned)(m * 7919 + n * 104729 + k * 31 + ta * 2 + tb);
    for (int64_t i = 0; i < arows * lda; i++) a[i] = (float)uniform(&state);
    for (int64_t i = 0; i < brows * ldb; i++) b[i] = (float)uniform(&state);
    for (int64_t i = 0; i < m * ldc; i++) c[i] = beta == 0.0f ? NAN : (float)uniform(&state);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (double)(tb ? b[j * ldb + p] : b[p * ldb + j]);
            want[i * n + j] = s + (beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j]);
        }
    const float before_pad = pad ? c[n] : 0.0f;   /* a stride's slack must stay untouched */
    CHECK(al_sgemm_own(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc));
    double worst = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const double d = fabs((double)c[i * ldc + j] - want[i * n + j]);
            worst = d > worst || d != d ? d : worst;
        }
    /* float rounding of k products of |x| <= 0.5, summed: well under 1e-6 k */
    CHECK_NEAR(worst, 0.0, 1e-6 * (double)(k + 1));
    if (pad && m > 1) CHECK((isnan(before_pad) && isnan(c[n])) || before_pad == c[n]);
    free(a); free(b); free(c); free(want);
}

int main(void) {
    if (!al_sgemm_own_available()) {
        float x = 1, y = 1, z = 0;
        CHECK(!al_sgemm_own(false, false, 1, 1, 1, &x, 1, &y, 1, 0.0f, &z, 1));
    } else {
        const int64_t shapes[][3] = {{1, 1, 1},    {12, 32, 256}, {13, 33, 257}, {11, 31, 5},   {144, 64, 300},
                                     {145, 70, 1}, {300, 96, 40}, {7, 513, 19},  {40, 128, 600}, {2, 5, 0}};
        const float betas[] = {0.0f, 1.0f, 0.5f};
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 4; t++)
                for (int bi = 0; bi < 3; bi++)
                    one_case(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], betas[bi], (s + (size_t)t) % 3 == 0 ? 3 : 0);
    }
    return check_report("test_sgemm");
}
