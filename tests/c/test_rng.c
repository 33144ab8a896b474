/* test_rng.c -- the counter-based generator: determinism, state save/restore, independence from
 * the thread count, the distributions' moments, errors, and the speed of normals. */
#include "check.h"
#include "internal.h"
#include <stdlib.h>
#include <time.h>

static int64_t shape1[1];
static int64_t *shp(int64_t n) { shape1[0] = n; return shape1; }

static bool same(const al_tensor *a, const al_tensor *b) {
    return a && b && al_numel(a) == al_numel(b) && al_dtype_of(a) == al_dtype_of(b) &&
           memcmp(al_data(a), al_data(b), (size_t)al_numel(a) * (al_dtype_of(a) == AL_FLOAT32 ? 4 : 8)) == 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double value(const al_tensor *t, int64_t i) {
    switch (al_dtype_of(t)) {
    case AL_FLOAT32: return ((const float *)al_data(t))[i];
    case AL_FLOAT64: return ((const double *)al_data(t))[i];
    default: return (double)((const int64_t *)al_data(t))[i];
    }
}

/* mean, variance, skewness and excess kurtosis of a tensor's values */
static void moments(const al_tensor *t, double *mean, double *var, double *skew, double *kurt) {
    const int64_t n = al_numel(t);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += value(t, i);
    *mean = s / (double)n;
    double m2 = 0, m3 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = value(t, i) - *mean;
        m2 += d * d; m3 += d * d * d; m4 += d * d * d * d;
    }
    m2 /= (double)n; m3 /= (double)n; m4 /= (double)n;
    *var = m2;
    *skew = m3 / pow(m2, 1.5);
    *kurt = m4 / (m2 * m2) - 3;
}

static void test_determinism(void) {
    /* before any al_seed the stream is seed 0, counter 0 */
    uint64_t seed = 99, counter = 99;
    al_rng_get_state(&seed, &counter);
    CHECK(seed == 0 && counter == 0);
    al_tensor *a = al_randn(1, shp(101), AL_FLOAT32);
    al_seed(0);
    al_tensor *b = al_randn(1, shp(101), AL_FLOAT32);
    CHECK(same(a, b));
    al_seed(1);
    al_tensor *c = al_randn(1, shp(101), AL_FLOAT32);
    CHECK(!same(a, c));
    al_release(a); al_release(b); al_release(c);

    al_dtype dts[2] = {AL_FLOAT32, AL_FLOAT64};
    for (int k = 0; k < 2; k++) {
        al_seed(1234);
        al_tensor *x = al_randn(2, (int64_t[]){7, 9}, dts[k]);
        al_tensor *u = al_rand(1, shp(50), dts[k]);
        al_seed(1234);
        al_tensor *y = al_randn(2, (int64_t[]){7, 9}, dts[k]);
        al_tensor *v = al_rand(1, shp(50), dts[k]);
        CHECK(same(x, y) && same(u, v));
        al_release(x); al_release(y); al_release(u); al_release(v);
    }
}

static void test_state(void) {
    al_seed(42);
    al_release(al_randn(1, shp(1001), AL_FLOAT32));
    uint64_t seed, counter;
    al_rng_get_state(&seed, &counter);
    CHECK(seed == 42 && counter == 501); /* float32 normals: one draw per pair */
    al_tensor *n1 = al_randn(1, shp(5), AL_FLOAT64), *u1 = al_rand(1, shp(3), AL_FLOAT32);
    al_tensor *i1 = al_randint(-5, 5, 1, shp(4));
    uint64_t s2, c2;
    al_rng_get_state(&s2, &c2);
    CHECK(s2 == 42 && c2 == 501 + 6 + 3 + 4); /* float64 pairs take two draws; rand, randint one */
    al_seed(7); /* elsewhere, then back */
    al_release(al_randn(1, shp(10), AL_FLOAT32));
    al_rng_set_state(seed, counter);
    al_tensor *n2 = al_randn(1, shp(5), AL_FLOAT64), *u2 = al_rand(1, shp(3), AL_FLOAT32);
    al_tensor *i2 = al_randint(-5, 5, 1, shp(4));
    CHECK(same(n1, n2) && same(u1, u2) && same(i1, i2));
    al_release(n1); al_release(n2); al_release(u1); al_release(u2); al_release(i1); al_release(i2);

    /* a short request is a prefix of a long one from the same state, odd lengths included */
    for (int dt = 0; dt < 2; dt++) {
        al_dtype dtype = dt ? AL_FLOAT64 : AL_FLOAT32;
        al_rng_set_state(3, 1000);
        al_tensor *longer = al_randn(1, shp(1000), dtype);
        bool ok = true;
        for (int64_t n = 1; n <= 300; n += 37) {
            al_rng_set_state(3, 1000);
            al_tensor *shorter = al_randn(1, shp(n), dtype);
            for (int64_t i = 0; i < n; i++) ok = ok && value(shorter, i) == value(longer, i);
            al_release(shorter);
        }
        CHECK(ok);
        al_release(longer);
    }
}

static void test_threads(void) {
    const int saved = al_get_num_threads();
    const al_dtype dts[2] = {AL_FLOAT32, AL_FLOAT64};
    for (int k = 0; k < 2; k++) {
        al_set_num_threads(1);
        al_rng_set_state(5, 77);
        al_tensor *a = al_randn(1, shp(200003), dts[k]), *ua = al_rand(1, shp(100001), dts[k]);
        al_tensor *ia = al_randint(0, 1000, 1, shp(100001));
        al_set_num_threads(5);
        al_rng_set_state(5, 77);
        al_tensor *b = al_randn(1, shp(200003), dts[k]), *ub = al_rand(1, shp(100001), dts[k]);
        al_tensor *ib = al_randint(0, 1000, 1, shp(100001));
        CHECK(same(a, b) && same(ua, ub) && same(ia, ib));
        al_release(a); al_release(b); al_release(ua); al_release(ub); al_release(ia); al_release(ib);
    }
    al_set_num_threads(saved);
}

static void test_normal_moments(void) {
    const al_dtype dts[2] = {AL_FLOAT32, AL_FLOAT64};
    for (int k = 0; k < 2; k++) {
        al_seed(2024 + (uint64_t)k);
        al_tensor *t = al_randn(2, (int64_t[]){1000, 1000}, dts[k]);
        double mean, var, skew, kurt;
        moments(t, &mean, &var, &skew, &kurt);
        CHECK_NEAR(mean, 0.0, 0.005);   /* 5 standard errors */
        CHECK_NEAR(var, 1.0, 0.007);
        CHECK_NEAR(skew, 0.0, 0.012);
        CHECK_NEAR(kurt, 0.0, 0.025);
        int64_t tail = 0, n = al_numel(t);
        double lag1 = 0, lag2 = 0, mx = 0;
        for (int64_t i = 0; i < n; i++) {
            double x = value(t, i);
            tail += fabs(x) > 3;
            if (fabs(x) > mx) mx = fabs(x);
            if (i + 1 < n) lag1 += x * value(t, i + 1); /* the cos and sin of one pair, and across */
            if (i + 2 < n) lag2 += x * value(t, i + 2);
        }
        CHECK_NEAR((double)tail / (double)n, 0.0026998, 0.0003);
        CHECK_NEAR(lag1 / (double)n, 0.0, 0.005);
        CHECK_NEAR(lag2 / (double)n, 0.0, 0.005);
        CHECK(mx > 4 && mx < 7 && isfinite(mx));
        al_release(t);
    }
    /* neighbouring seeds give unrelated streams */
    al_seed(0);
    al_tensor *a = al_randn(1, shp(200000), AL_FLOAT32);
    al_seed(1);
    al_tensor *b = al_randn(1, shp(200000), AL_FLOAT32);
    double dot = 0;
    for (int64_t i = 0; i < 200000; i++) dot += value(a, i) * value(b, i);
    CHECK_NEAR(dot / 200000, 0.0, 0.012);
    al_release(a); al_release(b);
}

static void test_uniform(void) {
    const al_dtype dts[2] = {AL_FLOAT32, AL_FLOAT64};
    for (int k = 0; k < 2; k++) {
        al_seed(11);
        al_tensor *t = al_rand(1, shp(1000000), dts[k]);
        double lo = 1, hi = 0, mean, var, skew, kurt;
        bool grid = true; /* float32 values are multiples of 2^-24 */
        for (int64_t i = 0; i < 1000000; i++) {
            double x = value(t, i);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
            if (k == 0) grid = grid && x * 16777216.0 == floor(x * 16777216.0);
        }
        CHECK(lo >= 0 && hi < 1 && lo < 1e-4 && hi > 1 - 1e-4 && grid);
        moments(t, &mean, &var, &skew, &kurt);
        CHECK_NEAR(mean, 0.5, 0.0015);
        CHECK_NEAR(var, 1.0 / 12, 0.0005);
        CHECK_NEAR(kurt, -1.2, 0.01);
        al_release(t);
    }
    /* randint: the whole range and nothing else, roughly equally often */
    al_seed(3);
    al_tensor *r = al_randint(-3, 4, 1, shp(70000));
    int64_t counts[7] = {0};
    bool in_range = true;
    for (int64_t i = 0; i < 70000; i++) {
        int64_t v = ((const int64_t *)al_data(r))[i];
        if (v < -3 || v >= 4) in_range = false;
        else counts[v + 3]++;
    }
    CHECK(in_range);
    double chi2 = 0;
    for (int i = 0; i < 7; i++) chi2 += (double)(counts[i] - 10000) * (double)(counts[i] - 10000) / 10000;
    CHECK(chi2 < 25); /* 6 degrees of freedom: p ~ 3e-4 */
    al_release(r);
    al_tensor *one = al_randint(9, 10, 2, (int64_t[]){3, 3});
    bool nines = true;
    for (int i = 0; i < 9; i++) nines = nines && ((const int64_t *)al_data(one))[i] == 9;
    CHECK(nines);
    al_release(one);
    al_tensor *wide = al_randint(INT64_MIN, INT64_MAX, 1, shp(1000));
    int negative = 0;
    for (int i = 0; i < 1000; i++) negative += ((const int64_t *)al_data(wide))[i] < 0;
    CHECK(wide && negative > 400 && negative < 600);
    al_release(wide);
}

static void test_errors(void) {
    CHECK_FAILS(al_randint(5, 5, 1, shp(3)), "randint");
    CHECK_FAILS(al_randint(5, -5, 1, shp(3)), "empty range");
    CHECK_FAILS(al_randn(1, shp(3), AL_INT64), "randn");
    CHECK_FAILS(al_rand(1, shp(3), AL_INT64), "rand");
    CHECK_FAILS(al_randn(1, shp(-2), AL_FLOAT32), "negative size");
    CHECK_FAILS(al_rand(9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, AL_FLOAT32), "dimensions");
    CHECK_FAILS(al_randn(2, NULL, AL_FLOAT32), "shape");
    /* empty and 0-d tensors */
    al_tensor *e = al_randn(2, (int64_t[]){0, 4}, AL_FLOAT32), *s = al_randn(0, NULL, AL_FLOAT64);
    CHECK(e && al_numel(e) == 0 && s && al_numel(s) == 1 && isfinite(al_item(s)));
    al_release(e); al_release(s);
    float f[3] = {7, 7, 7};
    al_rng_normal_fill(f, NULL, 0); /* nothing to do, nothing touched */
    CHECK(f[0] == 7);
}

static void test_speed(void) {
    const int saved = al_get_num_threads();
    al_set_num_threads(1);
    const int64_t n = 60000;
    float *buf = malloc(sizeof(float) * (size_t)n);
    double *buf64 = malloc(sizeof(double) * (size_t)n);
    al_rng_normal_fill(buf, NULL, n); /* warm up */
    double best = 1e9, best64 = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int i = 0; i < 20; i++) al_rng_normal_fill(buf, NULL, n);
        double t1 = now();
        for (int i = 0; i < 20; i++) al_rng_normal_fill(NULL, buf64, n);
        double t2 = now();
        best = fmin(best, (t1 - t0) / 20 / (double)n * 1e9);
        best64 = fmin(best64, (t2 - t1) / 20 / (double)n * 1e9);
    }
    printf("rng: %.2f ns per float32 normal, %.2f ns per float64 normal (one thread, n = %lld)\n",
           best, best64, (long long)n);
#ifndef __SANITIZE_ADDRESS__
    CHECK(best < 50); /* the target is <= 5; this only catches a gross regression on a busy machine */
#endif
    free(buf);
    free(buf64);
    al_set_num_threads(saved);
}

int main(void) {
    test_determinism();
    test_state();
    test_threads();
    test_normal_moments();
    test_uniform();
    test_errors();
    test_speed();
    CHECK(al_live_tensors() == 0);
    return check_report("test_rng");
}
