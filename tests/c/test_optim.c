/* test_optim.c -- SGD (plain, momentum, Nesterov, weight decay), Adam, AdamW and Adam with L2
 * decay against values computed by hand (PyTorch's update rules in double precision, see the
 * comments), gradient clipping, argument checking, and that no step touches the graph. */
#include "check.h"
#include <stdbool.h>
#include <stdlib.h>

static const double p0[3] = {1.0, -2.0, 0.5};
static const double grads[3][3] = {{0.1, -0.2, 0.3}, {-0.05, 0.4, 0.0}, {0.2, 0.1, -0.3}};
static const int64_t shape3[1] = {3};

static al_tensor *vec(const double *v, al_dtype dtype) {
    al_tensor *t = al_empty(1, shape3, dtype);
    for (int64_t i = 0; i < 3; i++) al_set(t, &i, v[i]);
    return t;
}

static void set_grad(al_tensor *p, int step) {
    al_tensor *g = vec(grads[step], AL_FLOAT64);
    al_set_grad(p, g); /* converted to the param's dtype */
    al_release(g);
}

static void check_values(const al_tensor *t, const double *want, double tol) {
    for (int64_t i = 0; i < 3; i++) {
        double got;
        al_get(t, &i, &got);
        CHECK_NEAR(got, want[i], tol);
    }
}

/* Three Adam steps with the fixed grads above; expected values from the textbook recurrences
 * m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, p -= lr mhat / (sqrt(vhat) + eps), in double. */
static void run_adam(al_dtype dtype, double lr, double b1, double b2, double eps, double wd,
                     int decoupled, const double *want_p, const double *want_m, const double *want_v) {
    al_tensor *p = vec(p0, dtype), *m = al_full(1, shape3, 0, dtype), *v = al_full(1, shape3, 0, dtype);
    al_set_requires_grad(p, 1);
    const int64_t nodes = al_live_nodes();
    for (int step = 0; step < 3; step++) {
        set_grad(p, step);
        CHECK(al_adam_step(p, m, v, lr, b1, b2, eps, wd, decoupled, step + 1) == 0);
    }
    const double tol = dtype == AL_FLOAT32 ? 2e-6 : 1e-12;
    check_values(p, want_p, tol);
    check_values(m, want_m, tol * 1e-1);
    check_values(v, want_v, tol * 1e-2);
    CHECK(al_live_nodes() == nodes && al_is_leaf(p) && al_requires_grad(p));
    al_release(p); al_release(m); al_release(v);
}

static void test_adam(void) {
    for (int k = 0; k < 2; k++) {
        al_dtype dt = k ? AL_FLOAT64 : AL_FLOAT32;
        const double m3[3] = {0.023599999999999996, 0.029799999999999993, -0.005699999999999997};
        const double v3[3] = {5.2477510000000055e-05, 0.00020976004000000022, 0.00017982009000000015};
        run_adam(dt, 0.01, 0.9, 0.999, 1e-8, 0, 0,
                 (const double[]){0.9807555154351382, -1.9978175474963837, 0.4841580952173369}, m3, v3);
        /* AdamW: p *= 1 - lr wd first; m and v do not see the decay */
        run_adam(dt, 0.01, 0.9, 0.999, 1e-8, 0.1, 1,
                 (const double[]){0.9777811678031988, -1.9918398744602297, 0.48268628529889596}, m3, v3);
        /* Adam with L2: g += wd p */
        run_adam(dt, 0.01, 0.9, 0.999, 1e-8, 0.1, 0,
                 (const double[]){0.972827847296762, -1.983983034921308, 0.4812148205708023},
                 (const double[]){0.05042720481193484, -0.02418355927702267, 0.007583319620888273},
                 (const double[]){0.00013122520925774682, 0.0002097894762652052, 0.00018804024500694024});
        /* other betas and a large eps, where eps's placement matters */
        run_adam(dt, 0.1, 0.5, 0.9, 1e-3, 0, 0,
                 (const double[]){0.8177558024218976, -2.016838102985624, 0.40436114169022097},
                 (const double[]){0.1, 0.125, -0.11249999999999999},
                 (const double[]){0.0050349999999999995, 0.018639999999999997, 0.016289999999999995});
    }
    /* a long tensor goes through the vector paths and the chunking (and threads) */
    const int64_t n = 100003;
    al_tensor *p = al_full(1, &n, 1.0, AL_FLOAT32), *g = al_full(1, &n, 0.5, AL_FLOAT32);
    al_tensor *m = al_full(1, &n, 0, AL_FLOAT32), *v = al_full(1, &n, 0, AL_FLOAT32);
    al_set_grad(p, g);
    CHECK(al_adam_step(p, m, v, 0.01, 0.9, 0.999, 1e-8, 0, 0, 1) == 0);
    bool all = true; /* the first step moves every element by lr (mhat / sqrt(vhat) = 1) */
    for (int64_t i = 0; i < n; i++) all = all && fabs(((float *)al_data(p))[i] - 0.99f) < 1e-6f;
    CHECK(all);
    al_release(p); al_release(g); al_release(m); al_release(v);
}

/* Three SGD steps; expected values from PyTorch's rules in double:
 * d = g + wd p; buf = d (first step) else momentum buf + d; d = nesterov ? d + momentum buf : buf;
 * p -= lr d. */
static void run_sgd(al_dtype dtype, double momentum, double wd, int nesterov, const double *want_p,
                    const double *want_buf) {
    al_tensor *p = vec(p0, dtype), *buf = momentum ? al_full(1, shape3, 0, dtype) : NULL;
    al_set_requires_grad(p, 1);
    const int64_t nodes = al_live_nodes();
    for (int step = 0; step < 3; step++) {
        set_grad(p, step);
        CHECK(al_sgd_step(p, buf, 0.1, momentum, wd, nesterov) == 0);
    }
    const double tol = dtype == AL_FLOAT32 ? 1e-6 : 1e-13;
    check_values(p, want_p, tol);
    if (buf) check_values(buf, want_buf, tol);
    CHECK(al_live_nodes() == nodes && al_is_leaf(p));
    al_release(p); al_release(buf);
}

static void test_sgd(void) {
    for (int k = 0; k < 2; k++) {
        al_dtype dt = k ? AL_FLOAT64 : AL_FLOAT32;
        run_sgd(dt, 0, 0, 0, (const double[]){0.975, -2.03, 0.5}, NULL);
        run_sgd(dt, 0.9, 0.01, 0, (const double[]){0.956827789, -2.0206255779999998, 0.44601136950000003},
                (const double[]){0.26283211, 0.24403578, -0.044308694999999954});
        run_sgd(dt, 0.9, 0.01, 1, (const double[]){0.933209762551, -2.0426112251019997, 0.4501211848005},
                (const double[]){0.2626901971, 0.2440496058, -0.044806498949999995});
    }
    /* no grad: nothing happens */
    al_tensor *p = vec(p0, AL_FLOAT32);
    CHECK(al_sgd_step(p, NULL, 0.1, 0, 0, 0) == 0);
    al_tensor *m = al_full(1, shape3, 0, AL_FLOAT32), *v = al_full(1, shape3, 0, AL_FLOAT32);
    CHECK(al_adam_step(p, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1) == 0);
    check_values(p, p0, 0);
    al_release(p); al_release(m); al_release(v);
}

#define CHECK_STATUS_FAILS(expr, needle)                                                        \
    do {                                                                                        \
        al_clear_error();                                                                       \
        double rc_ = (expr);                                                                    \
        if (rc_ == -1 && strstr(al_last_error(), needle)) check_passed++;                       \
        else { check_failed++; fprintf(stderr, "%s:%d: %s should fail with '%s', got %g '%s'\n", \
                                       __FILE__, __LINE__, #expr, needle, rc_, al_last_error()); } \
    } while (0)

static void test_errors(void) {
    al_tensor *p = vec(p0, AL_FLOAT32);
    set_grad(p, 0);
    al_tensor *ok = al_full(1, shape3, 0, AL_FLOAT32), *ok2 = al_full(1, shape3, 0, AL_FLOAT32);
    al_tensor *wrong_shape = al_full(2, (int64_t[]){3, 1}, 0, AL_FLOAT32);
    al_tensor *wrong_dtype = al_full(1, shape3, 0, AL_FLOAT64);
    al_tensor *ints = al_full(1, shape3, 0, AL_INT64);
    CHECK_STATUS_FAILS(al_adam_step(p, wrong_shape, ok, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "adam_step: m has shape {3,1}");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, wrong_dtype, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "float64");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "share memory");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, NULL, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "'v' is missing");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, -0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "lr -0.1");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, 0.1, 1.0, 0.999, 1e-8, 0, 0, 1), "betas");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, 0.1, 0.9, -0.5, 1e-8, 0, 0, 1), "betas");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, 0.1, 0.9, 0.999, -1, 0, 0, 1), "eps -1");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, NAN, 0.9, 0.999, 1e-8, 0, 0, 1), "adam_step");
    CHECK_STATUS_FAILS(al_adam_step(p, ok, ok2, 0.1, 0.9, 0.999, 1e-8, 0, 0, 0), "1-based");
    CHECK_STATUS_FAILS(al_adam_step(NULL, ok, ok2, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "param");
    CHECK_STATUS_FAILS(al_adam_step(ints, ok, ok2, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1), "int64");
    CHECK_STATUS_FAILS(al_sgd_step(p, NULL, 0.1, 0.9, 0, 0), "momentum_buf");
    CHECK_STATUS_FAILS(al_sgd_step(p, wrong_shape, 0.1, 0.9, 0, 0), "sgd_step: momentum_buf has shape {3,1}");
    CHECK_STATUS_FAILS(al_sgd_step(p, NULL, 0.1, 0, 0, 1), "nesterov");
    CHECK_STATUS_FAILS(al_sgd_step(p, NULL, -1, 0, 0, 0), "sgd_step");
    CHECK_STATUS_FAILS(al_sgd_step(p, NULL, 0.1, 0, -0.5, 0), "weight_decay");
    /* a non-contiguous param cannot be updated in place */
    al_tensor *mat = al_full(2, (int64_t[]){2, 3}, 1, AL_FLOAT32), *tr = al_transpose(mat, 0, 1);
    al_tensor *gm = al_full(2, (int64_t[]){3, 2}, 1, AL_FLOAT32);
    al_set_grad(tr, gm);
    CHECK_STATUS_FAILS(al_sgd_step(tr, NULL, 0.1, 0, 0, 0), "contiguous");
    check_values(p, p0, 0); /* nothing changed by any failed call */
    al_release(mat); al_release(tr); al_release(gm);
    al_release(p); al_release(ok); al_release(ok2); al_release(wrong_shape); al_release(wrong_dtype); al_release(ints);
}

static void test_clip(void) {
    al_tensor *a = al_full(1, (int64_t[]){2}, 0, AL_FLOAT32), *b = al_full(2, (int64_t[]){1, 1}, 0, AL_FLOAT64);
    al_tensor *c = al_full(1, (int64_t[]){4}, 0, AL_FLOAT32); /* no grad: skipped */
    al_tensor *ga = vec((const double[]){3, 4, 0}, AL_FLOAT32), *ga2 = al_narrow(ga, 0, 0, 2);
    al_tensor *gb = al_full(2, (int64_t[]){1, 1}, 12, AL_FLOAT64);
    al_set_grad(a, ga2);
    al_set_grad(b, gb);
    al_tensor *ps[3] = {a, c, b};
    /* norm 13 > 6.5: every grad is scaled by 6.5 / (13 + 1e-6) */
    CHECK_NEAR(al_clip_grad_norm(3, ps, 6.5), 13.0, 1e-6);
    const double k = 6.5 / (13 + 1e-6);
    al_tensor *g = al_grad(a);
    CHECK_NEAR(((float *)al_data(g))[0], 3 * k, 1e-6);
    CHECK_NEAR(((float *)al_data(g))[1], 4 * k, 1e-6);
    al_release(g);
    g = al_grad(b);
    CHECK_NEAR(al_item(g), 12 * k, 1e-12);
    al_release(g);
    /* below the limit: untouched */
    CHECK_NEAR(al_clip_grad_norm(3, ps, 100), 6.5, 1e-5);
    g = al_grad(b);
    CHECK_NEAR(al_item(g), 12 * k, 1e-12);
    al_release(g);
    CHECK(al_clip_grad_norm(0, NULL, 1) == 0);
    CHECK_STATUS_FAILS(al_clip_grad_norm(3, ps, -1), "max_norm");
    al_tensor *with_null[2] = {a, NULL};
    CHECK_STATUS_FAILS(al_clip_grad_norm(2, with_null, 1), "param 2");
    /* a big gradient, summed in chunks and threads, same answer */
    const int64_t n = 1 << 20;
    al_tensor *big = al_full(1, &n, 0, AL_FLOAT32), *gbig = al_full(1, &n, 0.5, AL_FLOAT32);
    al_set_grad(big, gbig);
    CHECK_NEAR(al_clip_grad_norm(1, &big, 1e9), 512.0, 1e-9);
    CHECK_NEAR(al_clip_grad_norm(1, &big, 256), 512.0, 1e-9);
    g = al_grad(big);
    CHECK_NEAR(((float *)al_data(g))[n - 1], 0.25, 1e-6);
    al_release(g);
    al_release(big); al_release(gbig);
    al_release(a); al_release(b); al_release(c); al_release(ga); al_release(ga2); al_release(gb);
}

int main(void) {
    test_adam();
    test_sgd();
    test_errors();
    test_clip();
    CHECK(al_live_tensors() == 0);
    return check_report("test_optim");
}
