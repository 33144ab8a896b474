/* test_tensor.c -- the core's tensors, views, broadcasting, errors and graph lifetime, from C. */
#include "check.h"

static al_tensor *from(int ndim, const int64_t *shape, const float *values) {
    return al_from_buffer(ndim, shape, AL_FLOAT32, values);
}

static void test_views_share_storage(void) {
    int64_t s23[2] = {2, 3};
    float v[6] = {1, 2, 3, 4, 5, 6};
    al_tensor *a = from(2, s23, v);
    al_tensor *t = al_transpose(a, 0, 1);
    CHECK(al_size(t, 0) == 3 && al_size(t, 1) == 2);
    CHECK(!al_is_contiguous(t));
    int64_t idx[2] = {2, 1};
    double x;
    CHECK(al_get(t, idx, &x) == 0 && x == 6);
    al_tensor *n = al_narrow(a, 1, 1, 2);          /* columns 2..3 */
    int64_t i0[2] = {1, 0};
    CHECK(al_get(n, i0, &x) == 0 && x == 5);
    CHECK(al_set(n, i0, 50) == 0);                 /* writes through to a */
    int64_t ia[2] = {1, 1};
    CHECK(al_get(a, ia, &x) == 0 && x == 50);
    al_tensor *c = al_contiguous(t);
    CHECK(al_is_contiguous(c));
    int64_t i1[2] = {1, 1};
    CHECK(al_get(c, i1, &x) == 0 && x == 50);
    int64_t s6[1] = {-1};
    al_tensor *r = al_reshape(t, 1, s6);           /* a copy: t is not contiguous */
    CHECK(r && al_size(r, 0) == 6);
    al_release(a); al_release(t); al_release(n); al_release(c); al_release(r);
}

static void test_broadcast_and_errors(void) {
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1}, s4[1] = {4};
    float v[6] = {1, 2, 3, 4, 5, 6}, w[3] = {10, 20, 30}, u[2] = {100, 200};
    al_tensor *a = from(2, s23, v), *b = from(1, s3, w), *c = from(2, s21, u), *d = al_full(1, s4, 1, AL_FLOAT32);
    al_tensor *ab = al_add(a, b), *ac = al_mul(a, c);
    double x;
    int64_t idx[2] = {1, 2};
    CHECK(al_get(ab, idx, &x) == 0 && x == 36);
    CHECK(al_get(ac, idx, &x) == 0 && x == 1200);
    CHECK_FAILS(al_add(a, d), "add: shapes {2,3} and {4} do not broadcast");
    int64_t s53[2] = {5, 3};
    al_tensor *m = al_full(2, s53, 1, AL_FLOAT32);
    CHECK_FAILS(al_matmul(a, m), "matmul: shapes {2,3} and {5,3} do not align");
    CHECK_FAILS(al_reshape(a, 1, s4), "reshape: cannot reshape a tensor of shape {2,3}");
    CHECK_FAILS(al_narrow(a, 1, 2, 5), "narrow:");
    CHECK_FAILS(al_transpose(a, 0, 5), "transpose: dimension 6 is out of range");
    int64_t neg[2] = {2, -3};
    CHECK_FAILS(al_full(2, neg, 0, AL_FLOAT32), "negative size");
    int64_t huge[2] = {(int64_t)1 << 30, (int64_t)1 << 30};
    CHECK_FAILS(al_full(2, huge, 0, AL_FLOAT32), "too large");
    int64_t big[1] = {(int64_t)1 << 39};
    CHECK_FAILS(al_full(1, big, 0, AL_FLOAT32), "cannot allocate");
    CHECK_FAILS(al_add(NULL, a), "add: argument 'a' is missing");
    al_release(a); al_release(b); al_release(c); al_release(d); al_release(ab); al_release(ac); al_release(m);
}

/* y = sum((a * b) @ c): checks backward values and that the graph is gone afterwards. */
static void test_backward_and_graph_lifetime(void) {
    int64_t live_tensors = al_live_tensors(), live_nodes = al_live_nodes();
    int64_t s22[2] = {2, 2};
    float av[4] = {1, 2, 3, 4}, bv[4] = {2, 2, 2, 2}, cv[4] = {1, 0, 0, 1};
    al_tensor *a = from(2, s22, av), *b = from(2, s22, bv), *c = from(2, s22, cv);
    CHECK(al_set_requires_grad(a, 1) == 0);
    al_tensor *ab = al_mul(a, b), *abc = al_matmul(ab, c), *y = al_sum(abc, AL_ALL_DIMS, 0);
    CHECK(al_live_nodes() == live_nodes + 3);
    CHECK(al_backward(y, NULL) == 0);
    al_tensor *g = al_grad(a);
    double x;
    int64_t idx[2] = {1, 0};
    CHECK(g && al_get(g, idx, &x) == 0 && x == 2);   /* d/da of sum(2a) = 2 */
    CHECK(al_backward(y, NULL) != 0 && strstr(al_last_error(), "already freed"));
    CHECK(al_set_requires_grad(ab, 1) != 0);           /* not a leaf */
    al_release(g); al_release(ab); al_release(abc); al_release(y);
    CHECK(al_live_nodes() == live_nodes);
    al_release(a); al_release(b); al_release(c);
    CHECK(al_live_tensors() == live_tensors);
}

static void test_no_grad_records_nothing(void) {
    int64_t s2[1] = {2};
    al_tensor *a = al_full(1, s2, 3, AL_FLOAT64);
    al_set_requires_grad(a, 1);
    int prev = al_set_grad_enabled(0);
    al_tensor *y = al_exp(a);
    al_set_grad_enabled(prev);
    CHECK(!al_requires_grad(y) && al_is_leaf(y));
    al_release(a); al_release(y);
}

static void test_int64_arithmetic_stays_integer(void) {
    al_tensor *r = al_arange(0, 5, 1, AL_INT64);
    al_tensor *s = al_add_scalar(r, 1);
    CHECK(al_dtype_of(s) == AL_INT64);
    double x;
    int64_t idx[1] = {4};
    CHECK(al_get(s, idx, &x) == 0 && x == 5);
    al_release(r); al_release(s);
}

static void test_attention_matches_manual_softmax(void) {
    /* one head, one query, two keys: weights softmax([q.k1, q.k2] / sqrt(2)) */
    int64_t sq[4] = {1, 1, 1, 2}, sk[4] = {1, 1, 2, 2};
    float qv[2] = {1, 0}, kv[4] = {1, 0, 0, 1}, vv[4] = {10, 0, 0, 20};
    al_tensor *q = from(4, sq, qv), *k = from(4, sk, kv), *v = from(4, sk, vv), *w = NULL;
    al_attention_opts opts = {0};
    al_tensor *o = al_attention(q, k, v, &opts, &w);
    double e = exp(1.0 / sqrt(2.0)), p1 = e / (e + 1), x;
    int64_t i0[4] = {0, 0, 0, 0}, i1[4] = {0, 0, 0, 1};
    CHECK(o && al_get(o, i0, &x) == 0);
    CHECK_NEAR(x, 10 * p1, 1e-5);
    CHECK(al_get(o, i1, &x) == 0);
    CHECK_NEAR(x, 20 * (1 - p1), 1e-5);
    CHECK(w && al_get(w, i0, &x) == 0);
    CHECK_NEAR(x, p1, 1e-6);
    opts.variant = "nope";
    CHECK_FAILS(al_attention(q, k, v, &opts, NULL), "unknown variant 'nope'");
    al_release(q); al_release(k); al_release(v); al_release(o); al_release(w);
}

/* A C caller names a variant's options with tagged values; the descriptor checks them (no Lua spelling:
 * the messages spell the values themselves). */
static void test_attention_named_options(void) {
    int64_t shape[4] = {1, 1, 5, 2};
    float x[10] = {1, 0, 0, 1, 1, 1, -1, 0, 0, -1};
    al_tensor *q = from(4, shape, x);
    al_attention_option window = {.name = "window", .value = {.type = AL_VALUE_NUMBER, .number = 1}};
    al_attention_opts opts = {.variant = "sliding_window", .n_options = 1, .options = &window};
    al_tensor *banded = al_attention(q, q, q, &opts, NULL);
    CHECK(banded != NULL);
    /* window 1 on 5 keys: a mask of |i - j| <= 1 gives the same output through the softmax variant */
    float keep[25];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) keep[i * 5 + j] = (i - j <= 1 && j - i <= 1);
    int64_t ms[2] = {5, 5};
    al_tensor *mask = al_from_buffer(2, ms, AL_FLOAT32, keep);
    al_attention_opts masked = {.mask = mask};
    al_tensor *reference = al_attention(q, q, q, &masked, NULL);
    double a, b, worst = 0;
    for (int64_t i = 0; i < 5; i++)
        for (int64_t c = 0; c < 2; c++) {
            int64_t at[4] = {0, 0, i, c};
            al_get(banded, at, &a);
            al_get(reference, at, &b);
            worst = fabs(a - b) > worst ? fabs(a - b) : worst;
        }
    CHECK_NEAR(worst, 0, 1e-6);
    window.value.number = 1.5;
    CHECK_FAILS(al_attention(q, q, q, &opts, NULL), "opts.window must be an integer >= 1 (got 1.5)");
    opts.n_options = 0;
    CHECK_FAILS(al_attention(q, q, q, &opts, NULL), "variant 'sliding_window' needs opts.window: an integer >= 1");
    al_attention_option twice[2] = {window, window};
    twice[0].value.number = twice[1].value.number = 2;
    opts.n_options = 2; opts.options = twice;
    CHECK_FAILS(al_attention(q, q, q, &opts, NULL), "option 'window' given twice");
    opts.variant = "linear"; opts.n_options = 1;
    CHECK_FAILS(al_attention(q, q, q, &opts, NULL), "window is an option of the variant(s) sliding_window, not of 'linear'");
    al_attention_option kernel = {.name = "kernel", .value = {.type = AL_VALUE_STRING, .string = "fast"}};
    opts.variant = "softmax"; opts.options = &kernel;
    CHECK_FAILS(al_attention(q, q, q, &opts, NULL), "opts.kernel must be 'auto', 'dense' or 'tiled' (got fast)");
    /* the catalogue as the descriptors give it */
    al_attention_variant_info info;
    al_attention_option_info option;
    CHECK(al_attention_describe(2, &info) == 0 && strcmp(info.name, "sliding_window") == 0 && info.n_options == 2);
    CHECK(al_attention_describe_option(2, 0, &option) == 0 && strcmp(option.name, "window") == 0 && option.required &&
          strcmp(option.kind, "integer") == 0 && strcmp(option.expects, "an integer >= 1") == 0);
    CHECK(al_attention_describe(al_attention_variant_count(), &info) == -1);
    CHECK(al_attention_describe_option(2, 2, &option) == -1);
    al_release(q); al_release(banded); al_release(mask); al_release(reference);
}

int main(void) {
    test_views_share_storage();
    test_broadcast_and_errors();
    test_backward_and_graph_lifetime();
    test_no_grad_records_nothing();
    test_int64_arithmetic_stays_integer();
    test_attention_matches_manual_softmax();
    test_attention_named_options();
    return check_report("test_tensor");
}
