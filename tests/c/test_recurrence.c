/* test_recurrence.c -- the prefix-state recurrence (core/attention/recurrence.c) in the form no
 * variant uses yet: Hebbian with a retention gate, S_t = alpha_t S_{t-1} + beta_t v_t k_t^T (gated
 * linear attention / RetNet-style decay), against its quadratic form
 *   y_i = scale sum_{j <= i} (prod_{j < l <= i} alpha_l) beta_j (q_i . k_j) v_j
 * (not causal: every query reads the final state, the product running to M), and its gradients for
 * q, k, v and [beta, alpha] against central differences, over several checkpoint chunks. */
#include "check.h"
#include "attention/attention_internal.h"
#include <stdlib.h>

enum { B = 1, H = 2, HKV = 1, N = 11, D = 3, DV = 2 };

static double rnd_uniform(void) { return (double)rand() / RAND_MAX; }

static al_tensor *random_tensor(int ndim, const int64_t *shape, double lo, double hi) {
    al_tensor *t = al_empty(ndim, shape, AL_FLOAT64);
    double *p = al_data(t);
    for (int64_t i = 0; i < al_numel(t); i++) p[i] = lo + (hi - lo) * rnd_uniform();
    return t;
}

/* the quadratic form, element (b = 0, h, i, e) */
static double quadratic(const double *q, const double *k, const double *v, const double *coef, double scale,
                        int causal, int64_t h, int64_t i, int64_t e) {
    int64_t last = causal ? i : N - 1;
    double y = 0;
    for (int64_t j = 0; j <= last; j++) {
        double decay = 1, qk = 0;
        for (int64_t l = j + 1; l <= last; l++) decay *= coef[(h * N + l) * 2 + 1];
        for (int64_t t = 0; t < D; t++) qk += q[(h * N + i) * D + t] * k[j * D + t];
        y += decay * coef[(h * N + j) * 2] * qk * v[j * DV + e];
    }
    return scale * y;
}

static double weighted_sum(al_tensor *const in[4], const al_tensor *R, int causal) {
    al_tensor *y = attention_state_recurrence(in[0], in[1], in[2], in[3], 0.8, causal, false);
    double s = 0;
    for (int64_t i = 0; i < al_numel(y); i++) s += ((double *)al_data(y))[i] * ((double *)al_data(R))[i];
    al_release(y);
    return s;
}

int main(void) {
    srand(5);
    const int64_t qs[4] = {B, H, N, D}, ks[4] = {B, HKV, N, D}, vs[4] = {B, HKV, N, DV}, cs[4] = {B, H, N, 2};
    const int64_t ys[4] = {B, H, N, DV};
    for (int causal = 0; causal <= 1; causal++) {
        al_tensor *in[4] = {random_tensor(4, qs, -1, 1), random_tensor(4, ks, -1, 1), random_tensor(4, vs, -1, 1),
                            random_tensor(4, cs, 0.5, 1)};
        al_tensor *y = attention_state_recurrence(in[0], in[1], in[2], in[3], 0.8, causal, false);
        double worst = 0;
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < N; i++)
                for (int64_t e = 0; e < DV; e++) {
                    double ref = quadratic(al_data(in[0]), al_data(in[1]), al_data(in[2]), al_data(in[3]), 0.8, causal, h, i, e);
                    worst = fmax(worst, fabs(((double *)al_data(y))[(h * N + i) * DV + e] - ref));
                }
        CHECK(worst < 1e-12);
        al_release(y);

        /* gradients of sum(y * R) for all four inputs against central differences */
        al_tensor *R = random_tensor(4, ys, -1, 1);
        for (int i = 0; i < 4; i++) al_set_requires_grad(in[i], 1);
        al_tensor *y2 = attention_state_recurrence(in[0], in[1], in[2], in[3], 0.8, causal, false);
        al_tensor *prod = al_mul(y2, R), *loss = al_sum(prod, AL_ALL_DIMS, 0);
        CHECK(al_backward(loss, NULL) == 0);
        al_release(y2); al_release(prod); al_release(loss);
        al_set_grad_enabled(0);
        for (int i = 0; i < 4; i++) {
            al_tensor *g = al_grad(in[i]);
            double *x = al_data(in[i]), err = 0;
            for (int64_t n = 0; n < al_numel(in[i]); n++) {
                double keep = x[n];
                x[n] = keep + 1e-6; double up = weighted_sum(in, R, causal);
                x[n] = keep - 1e-6; double down = weighted_sum(in, R, causal);
                x[n] = keep;
                err = fmax(err, fabs((up - down) / 2e-6 - ((double *)al_data(g))[n]));
            }
            CHECK(err < 1e-7);
            al_release(g);
        }
        al_set_grad_enabled(1);
        for (int i = 0; i < 4; i++) al_release(in[i]);
        al_release(R);
    }
    CHECK(al_live_nodes() == 0);
    return check_report("test_recurrence");
}
