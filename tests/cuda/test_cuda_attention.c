/* test_cuda_attention.c -- softmax attention on the GPU (core/cuda/attention.cu) against the CPU's
 * al_attention (make test-cuda, on a machine with an NVIDIA GPU; built with make CUDA=1).
 *
 * Each case makes q, k, v (and a bias, a mask) on the CPU, runs attention there and on copies moved
 * to the device, and compares the output, the map when asked for, and the gradients of q, k, v (and
 * of a trainable bias): the device run's leaves are CPU tensors moved with al_to_device, its output
 * comes back with al_to_device(.., AL_CPU), and both losses are sum(out * R) for one random R on the
 * CPU, so the gradients cross back through the moves.  The cases cover no mask, causal top-left and
 * bottom-right with N != M (bottom-right with N > M leaves rows that see no key), a constant and a
 * trainable bias, a boolean mask with a fully masked row, grouped kv heads, N and M not multiples of
 * the tiles (16 query rows, 32 keys), and d = 16, 64, 128; float64 to 1e-12, float32 to 1e-5 (2e-5
 * for gradients, sums over every query or key in another order).  Then the calls that must fail, and
 * bfloat16: the same kernels on bfloat16 q, k, v (float accumulation) against float32 on the CPU from
 * the same rounded values, the conversions' rounding, and what refuses bfloat16. */
#include "compare.h"

/* which kernel the last CUDA attention forward or backward ran ("tiled", "tensor cores"; core/internal.h) */
const char *al_cuda_attention_kernel_used(void);
/* the prefix-state recurrence under delta and causal flow (core/attention/attention_internal.h) */
al_tensor *attention_state_recurrence(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                                      const al_tensor *coef, double scale, int causal, bool delta);



/* the largest |x| of a CPU tensor (0 for none) */
static double max_abs(const al_tensor *t) {
    int64_t n = al_numel(t);
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), worst = 0;
    if (al_copy_to_doubles(t, x, n) < 0) worst = INFINITY;
    for (int64_t i = 0; i < n && worst < INFINITY; i++) worst = fabs(x[i]) > worst ? fabs(x[i]) : worst;
    free(x);
    return worst;
}

enum { NO_BIAS, CONSTANT_FULL_BIAS, TRAINABLE_FULL_BIAS, CONSTANT_BROADCAST_BIAS, TRAINABLE_BROADCAST_BIAS };

typedef struct {
    const char *name;
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;
    int bias;          /* one of the enum above; a broadcast bias is (N, M) */
    bool mask;         /* (B, 1, N, M) of 0 and 1, row 0 all 0 */
    bool weights;
    int64_t window;    /* > 0: the sliding_window variant with this window */
    int64_t kernel_size, stride;   /* > 0: the neighborhood variant (N = M), strided_neighborhood with a stride */
} attention_case;

/* The mask: query 0 sees nothing, the others about three keys in four. */
static al_tensor *make_mask(const attention_case *c) {
    const int64_t shape[4] = {c->B, 1, c->N, c->M};
    double *m = malloc(sizeof(double) * (size_t)(c->B * c->N * c->M));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t i = 0; i < c->N; i++)
            for (int64_t j = 0; j < c->M; j++)
                m[(b * c->N + i) * c->M + j] = i == 0 ? 0 : (i * 7 + j * 3 + b) % 4 != 0;
    al_tensor *t = al_from_buffer(4, shape, AL_FLOAT64, m);
    free(m);
    return t;
}

/* One run of attention and its backward; the leaves' gradients are left in them. */
static al_tensor *run(const attention_case *c, const al_tensor *q, const al_tensor *k, const al_tensor *v,
                      const al_tensor *bias, const al_tensor *mask, const al_tensor *R, al_tensor **weights) {
    const al_attention_option window[1] = {{.name = "window", .value = {.type = AL_VALUE_NUMBER, .number = (double)c->window}}};
    const al_attention_option nbhd[2] = {{.name = "kernel_size", .value = {.type = AL_VALUE_NUMBER, .number = (double)c->kernel_size}},
                                         {.name = "stride", .value = {.type = AL_VALUE_NUMBER, .number = (double)c->stride}}};
    al_attention_opts opts = {.causal = c->causal, .bias = bias, .mask = mask};
    if (c->window > 0) { opts.variant = "sliding_window"; opts.n_options = 1; opts.options = window; }
    if (c->kernel_size > 0) {
        opts.variant = c->stride > 0 ? "strided_neighborhood" : "neighborhood";
        opts.n_options = c->stride > 0 ? 2 : 1;
        opts.options = nbhd;
    }
    al_tensor *out = al_attention(q, k, v, &opts, weights);
    if (!out) return NULL;
    al_tensor *back = to(out, AL_CPU), *prod = back ? al_mul(back, R) : NULL;
    al_tensor *loss = prod ? al_sum(prod, AL_ALL_DIMS, 0) : NULL;
    const bool ok = loss && al_backward(loss, NULL) == 0;
    al_release(out); al_release(prod); al_release(loss);
    if (!ok) { al_release(back); return NULL; }
    return back;
}

/* A leaf of its own that shares t's values (its gradient apart from t's). */
static al_tensor *twin_leaf(const al_tensor *t) {
    al_tensor *x = al_detach(t);
    if (x) al_set_requires_grad(x, 1);
    return x;
}

static void check_case(const attention_case *c, al_dtype dt) {
    const double tol = dt == AL_FLOAT64 ? 1e-12 : 1e-5, gtol = dt == AL_FLOAT64 ? 1e-12 : 2e-5;
    const int64_t qs[4] = {c->B, c->H, c->N, c->d}, ks[4] = {c->B, c->Hkv, c->M, c->d};
    const int64_t vs[4] = {c->B, c->Hkv, c->M, c->dv}, os[4] = {c->B, c->H, c->N, c->dv};
    const int64_t full[4] = {c->B, c->H, c->N, c->M}, nm[2] = {c->N, c->M};
    al_tensor *q = al_randn(4, qs, dt), *k = al_randn(4, ks, dt), *v = al_randn(4, vs, dt), *R = al_randn(4, os, dt);
    al_tensor *bias = c->bias == NO_BIAS ? NULL
                      : c->bias == CONSTANT_BROADCAST_BIAS || c->bias == TRAINABLE_BROADCAST_BIAS ? al_randn(2, nm, dt)
                      : al_randn(4, full, dt);
    al_tensor *mask = c->mask ? make_mask(c) : NULL;
    const bool trainable_bias = c->bias == TRAINABLE_FULL_BIAS || c->bias == TRAINABLE_BROADCAST_BIAS;
    al_set_requires_grad(q, 1); al_set_requires_grad(k, 1); al_set_requires_grad(v, 1);
    if (trainable_bias) al_set_requires_grad(bias, 1);

    /* the CPU */
    al_tensor *w_cpu = NULL;
    al_tensor *out_cpu = run(c, q, k, v, bias, mask, R, c->weights ? &w_cpu : NULL);
    if (!out_cpu) fprintf(stderr, "%s (cpu): %s\n", c->name, al_last_error());

    /* the device, from leaves of their own */
    al_tensor *q2 = twin_leaf(q), *k2 = twin_leaf(k), *v2 = twin_leaf(v);
    al_tensor *bias2 = trainable_bias ? twin_leaf(bias) : bias ? al_retain(bias) : NULL;
    al_tensor *dq = to(q2, AL_CUDA), *dk = to(k2, AL_CUDA), *dv = to(v2, AL_CUDA);
    al_tensor *dbias = bias2 ? to(bias2, AL_CUDA) : NULL, *dmask = mask ? to(mask, AL_CUDA) : NULL;
    al_tensor *w_dev = NULL;
    al_tensor *out_dev = dq && dk && dv ? run(c, dq, dk, dv, dbias, dmask, R, c->weights ? &w_dev : NULL) : NULL;
    if (!out_dev) fprintf(stderr, "%s (%s, cuda): %s\n", c->name, al_dtype_name(dt), al_last_error());

    CHECK(out_dev != NULL);
    CHECK_NEAR(max_rel_diff(out_dev, out_cpu), 0, tol);
    if (c->weights) {
        CHECK(w_dev && al_device_of(w_dev) == AL_CUDA);
        al_tensor *w_back = w_dev ? to(w_dev, AL_CPU) : NULL;
        CHECK_NEAR(max_rel_diff(w_back, w_cpu), 0, tol);
        al_release(w_back);
    }
    const al_tensor *leaves[4] = {q, k, v, trainable_bias ? bias : NULL};
    const al_tensor *twins[4] = {q2, k2, v2, trainable_bias ? bias2 : NULL};
    for (int i = 0; i < 4; i++) {
        if (!leaves[i]) continue;
        al_tensor *g_cpu = al_grad(leaves[i]), *g_dev = al_grad(twins[i]);
        CHECK(g_cpu && g_dev && al_device_of(g_dev) == AL_CPU);
        CHECK_NEAR(max_rel_diff(g_dev, g_cpu), 0, gtol);
        al_release(g_cpu); al_release(g_dev);
    }
    /* a row that sees no key: output 0, as on the CPU (mask row 0; bottom-right rows i < N - M) */
    if (out_dev && (c->mask || (c->causal == 2 && c->N > c->M))) {
        al_tensor *row = al_narrow(out_dev, 2, 0, 1);
        CHECK(row && max_abs(row) == 0);
        al_release(row);
    }
    al_release(q); al_release(k); al_release(v); al_release(R); al_release(bias); al_release(mask);
    al_release(q2); al_release(k2); al_release(v2); al_release(bias2);
    al_release(dq); al_release(dk); al_release(dv); al_release(dbias); al_release(dmask);
    al_release(out_cpu); al_release(out_dev); al_release(w_cpu); al_release(w_dev);
}

/* ---- variants composed of ops ---------------------------------------------------------------------- */

/* The variants made of ops that have CUDA kernels (and of the fused softmax): the same code runs on
 * either device, so each is compared with itself on the CPU, output, map and the gradients of q, k
 * and v.  Option tensors (gates, bias factors, pointer weights, the second key and value sets) are
 * made on the CPU and moved. */
enum { NO_EXTRA, MOH_GATES, FLASHBIAS_FACTORS, POINTER_WEIGHTS, TENSOR_SECOND_SET, AGENT_TOKENS, DMA_PARAMETERS, RELATIVE_TABLES, LANDMARK_TOKENS, ROUTING_CENTROIDS, TRAINABLE_BIAS };
typedef struct {
    const char *name, *variant;
    int causal;
    bool weights, mask;
    int extra;
    double float32_tol;   /* 0: 1e-4 */
    struct { const char *name; double value; } numbers[2];   /* number options of the variant (name NULL: none) */
} composed_case;

/* N tokens (landmark cases: at most 24) */
static void check_composed_case(const composed_case *c, al_dtype dt, int64_t N) {
    const int64_t B = 2, H = 2, d = 16, h = 8, r = 3;
    const int64_t s4[4] = {B, H, N, d}, gs[3] = {B, H, N}, fs[4] = {B, H, N, r}, ws[2] = {h, d}, vs[1] = {h};
    const double tol = dt == AL_FLOAT64 ? 1e-10 : c->float32_tol > 0 ? c->float32_tol : 1e-4;
    al_tensor *q = al_randn(4, s4, dt), *k = al_randn(4, s4, dt), *v = al_randn(4, s4, dt), *R = NULL;
    al_tensor *extra[3] = {NULL, NULL, NULL};
    const char *names[3] = {NULL, NULL, NULL};
    int n_extra = 0;
    if (c->extra == MOH_GATES) { extra[0] = al_rand(3, gs, dt); names[0] = "gates"; n_extra = 1; }
    if (c->extra == FLASHBIAS_FACTORS) {
        extra[0] = al_randn(4, fs, dt); extra[1] = al_randn(4, fs, dt); names[0] = "bias_q"; names[1] = "bias_k"; n_extra = 2;
    }
    if (c->extra == POINTER_WEIGHTS) {
        extra[0] = al_randn(2, ws, dt); extra[1] = al_randn(2, ws, dt); extra[2] = al_randn(1, vs, dt);
        names[0] = "pointer_w1"; names[1] = "pointer_w2"; names[2] = "pointer_v"; n_extra = 3;
    }
    if (c->extra == TENSOR_SECOND_SET) { extra[0] = al_randn(4, s4, dt); extra[1] = al_randn(4, s4, dt); names[0] = "k2"; names[1] = "v2"; n_extra = 2; }
    if (c->extra == AGENT_TOKENS) { extra[0] = al_randn(4, (int64_t[]){1, H, 5, d}, dt); names[0] = "agents"; n_extra = 1; }
    if (c->extra == RELATIVE_TABLES) {   /* a^K shared by the heads, a^V per head; clip distance 3 */
        extra[0] = al_randn(2, (int64_t[]){7, d}, dt); extra[1] = al_randn(3, (int64_t[]){H, 7, d}, dt);
        names[0] = "rel_key"; names[1] = "rel_value"; n_extra = 2;
    }
    if (c->extra == LANDMARK_TOKENS) {   /* (M): every fifth key closes its block */
        double marks[24];
        for (int j = 0; j < N; j++) marks[j] = j % 5 == 4;
        extra[0] = al_from_buffer(1, (int64_t[]){N}, AL_FLOAT64, marks); names[0] = "landmarks"; n_extra = 1;
    }
    if (c->extra == ROUTING_CENTROIDS) { extra[0] = al_randn(3, (int64_t[]){H, 3, d}, dt); names[0] = "centroids"; n_extra = 1; }
    if (c->extra == TRAINABLE_BIAS) { extra[0] = al_randn(4, (int64_t[]){B, H, N, N}, dt); n_extra = 1; }   /* opts.bias */
    if (c->extra == DMA_PARAMETERS) {   /* W_dt (Hkv dv, Hkv) and A (Hkv), Hkv = H here */
        extra[0] = al_randn(2, (int64_t[]){H * d, H}, dt); extra[1] = al_randn(1, (int64_t[]){H}, dt);
        names[0] = "dt_proj"; names[1] = "dt_a"; n_extra = 2;
    }
    const int64_t map[4] = {B, 1, N, N};
    double *m = malloc(sizeof(double) * (size_t)(B * N * N));
    for (int64_t i = 0; i < B * N * N; i++) m[i] = (i * 7 + i / N) % 5 != 0;
    al_tensor *mask = c->mask ? al_from_buffer(4, map, AL_FLOAT64, m) : NULL;
    free(m);
    al_set_requires_grad(q, 1); al_set_requires_grad(k, 1); al_set_requires_grad(v, 1);
    /* the trained extras: their gradients compared too */
    const bool extra_grads = c->extra == DMA_PARAMETERS || c->extra == TRAINABLE_BIAS;
    al_tensor *extra_twins[3] = {NULL, NULL, NULL};   /* the GPU side's own leaves */
    for (int i = 0; extra_grads && i < n_extra; i++) {
        al_set_requires_grad(extra[i], 1);
        extra_twins[i] = twin_leaf(extra[i]);
    }

    al_tensor *out[2] = {NULL, NULL}, *w[2] = {NULL, NULL}, *leaves[2][3] = {{q, k, v}, {NULL, NULL, NULL}};
    for (int dev = 0; dev < 2; dev++) {
        al_tensor *in[3], *opt_t[3] = {NULL, NULL, NULL}, *dmask = NULL, *bias = NULL;
        for (int i = 0; i < 3; i++) {
            if (dev) leaves[1][i] = twin_leaf(leaves[0][i]);
            in[i] = dev ? to(leaves[1][i], AL_CUDA) : al_retain(leaves[0][i]);
        }
        al_attention_option opts_list[5];
        int n_options = 0;
        for (int i = 0; i < n_extra; i++) {
            opt_t[i] = dev ? to(extra_twins[i] ? extra_twins[i] : extra[i], AL_CUDA) : al_retain(extra[i]);
            if (names[i])
                opts_list[n_options++] = (al_attention_option){.name = names[i], .value = {.type = AL_VALUE_TENSOR, .tensor = opt_t[i]}};
            else
                bias = opt_t[i];
        }
        for (int i = 0; i < 2; i++)
            if (c->numbers[i].name)
                opts_list[n_options++] = (al_attention_option){.name = c->numbers[i].name,
                                                               .value = {.type = AL_VALUE_NUMBER, .number = c->numbers[i].value}};
        if (mask) dmask = dev ? to(mask, AL_CUDA) : al_retain(mask);
        al_seed(20261206);   /* the same draws on both devices (hyper's hyperplanes and samples) */
        const al_attention_opts opts = {.variant = c->variant, .causal = c->causal, .mask = dmask, .bias = bias, .n_options = n_options,
                                        .options = n_options ? opts_list : NULL};
        al_tensor *o = al_attention(in[0], in[1], in[2], &opts, c->weights ? &w[dev] : NULL);
        if (!o) fprintf(stderr, "%s (%s, %s): %s\n", c->name, al_dtype_name(dt), dev ? "cuda" : "cpu", al_last_error());
        out[dev] = o && dev ? to(o, AL_CPU) : (o ? al_retain(o) : NULL);
        if (!R && out[dev]) {
            int64_t os[AL_MAX_DIMS];
            for (int i = 0; i < al_ndim(out[dev]); i++) os[i] = al_size(out[dev], i);
            R = al_randn(al_ndim(out[dev]), os, dt);
        }
        al_tensor *prod = out[dev] ? al_mul(out[dev], R) : NULL, *loss = prod ? al_sum(prod, AL_ALL_DIMS, 0) : NULL;
        CHECK(loss && al_backward(loss, NULL) == 0);
        if (dev && w[dev]) { al_tensor *back = to(w[dev], AL_CPU); al_release(w[dev]); w[dev] = back; }
        al_release(o); al_release(prod); al_release(loss); al_release(dmask);
        for (int i = 0; i < 3; i++) { al_release(in[i]); al_release(opt_t[i]); }
    }
    CHECK(out[1] != NULL);
    CHECK_NEAR(max_rel_diff(out[1], out[0]), 0, tol);
    if (c->weights) CHECK_NEAR(max_rel_diff(w[1], w[0]), 0, tol);
    for (int i = 0; i < 3; i++) {
        if (!strcmp(c->variant, "pointer") && i == 2) continue;   /* v is not read: no gradient */
        al_tensor *g_cpu = al_grad(leaves[0][i]), *g_dev = leaves[1][i] ? al_grad(leaves[1][i]) : NULL;
        CHECK(g_cpu && g_dev);
        CHECK_NEAR(max_rel_diff(g_dev, g_cpu), 0, tol);
        al_release(g_cpu); al_release(g_dev);
    }
    for (int i = 0; extra_grads && i < n_extra; i++) {
        al_tensor *g_cpu = al_grad(extra[i]), *g_dev = al_grad(extra_twins[i]);
        CHECK(g_cpu && g_dev);
        if (g_cpu && g_dev) CHECK_NEAR(max_rel_diff(g_dev, g_cpu), 0, tol);
        al_release(g_cpu); al_release(g_dev);
    }
    al_tensor *all[] = {q, k, v, R, extra[0], extra[1], extra[2], mask, out[0], out[1], w[0], w[1],
                        leaves[1][0], leaves[1][1], leaves[1][2], extra_twins[0], extra_twins[1], extra_twins[2]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) al_release(all[i]);
}

/* ---- the state recurrence ------------------------------------------------------------------------ */

/* The recurrence itself (core/cuda/recurrence.cu against recurrence.c), in the forms the variants use
 * (delta: the delta rule, causal or not; flow: Hebbian, causal) and the one none uses yet (Hebbian, not
 * causal, every query reading the final state), with a retention gate alpha < 1, three query heads on
 * one kv head, N != M when not causal, and M over five checkpoint chunks (chunk 5): the output and
 * the gradients of q, k, v and [beta, alpha].  The state is dv x d. */
static void check_state_recurrence(int causal, bool delta, al_dtype dt, int64_t d, int64_t dv) {
    const int64_t B = 2, H = 3, Hkv = 1, M = 23, N = causal ? M : 9;
    const int64_t qs[4] = {B, H, N, d}, ks[4] = {B, Hkv, M, d}, vs[4] = {B, Hkv, M, dv}, cs[4] = {B, H, M, 2};
    al_tensor *leaves[2][4] = {{al_randn(4, qs, dt), al_randn(4, ks, dt), al_randn(4, vs, dt), al_rand(4, cs, dt)}};
    {   /* keys small enough for the delta rule's (I - beta k k^T) to contract; beta in (0.2, 0.9), alpha in (0.6, 1) */
        al_tensor *scaled = al_mul_scalar(leaves[0][1], 0.3 * sqrt(5.0 / (double)d)), *c = leaves[0][3];
        const int64_t n = al_numel(c);
        double *cv = malloc(sizeof(double) * (size_t)n);
        al_copy_to_doubles(c, cv, n);
        for (int64_t i = 0; i < n; i++) cv[i] = i % 2 == 0 ? 0.2 + 0.7 * cv[i] : 0.6 + 0.4 * cv[i];
        al_tensor *c64 = al_from_buffer(4, cs, AL_FLOAT64, cv), *cd = al_to_dtype(c64, dt);
        free(cv);
        al_release(c64); al_release(c);
        al_release(leaves[0][1]);
        leaves[0][1] = al_detach(scaled); leaves[0][3] = al_detach(cd);
        al_release(scaled); al_release(cd);
    }
    for (int i = 0; i < 4; i++) { al_set_requires_grad(leaves[0][i], 1); leaves[1][i] = twin_leaf(leaves[0][i]); }
    al_tensor *R = al_randn(4, (int64_t[]){B, H, N, dv}, dt), *out[2] = {NULL, NULL};
    for (int dev = 0; dev < 2; dev++) {
        al_tensor *in[4];
        for (int i = 0; i < 4; i++) in[i] = dev ? to(leaves[1][i], AL_CUDA) : al_retain(leaves[0][i]);
        al_tensor *y = attention_state_recurrence(in[0], in[1], in[2], in[3], 0.7, causal, delta);
        if (!y) fprintf(stderr, "state recurrence (%s): %s\n", dev ? "cuda" : "cpu", al_last_error());
        out[dev] = y && dev ? to(y, AL_CPU) : (y ? al_retain(y) : NULL);
        al_tensor *prod = out[dev] ? al_mul(out[dev], R) : NULL, *loss = prod ? al_sum(prod, AL_ALL_DIMS, 0) : NULL;
        CHECK(loss && al_backward(loss, NULL) == 0);
        al_release(y); al_release(prod); al_release(loss);
        for (int i = 0; i < 4; i++) al_release(in[i]);
    }
    const double tol = dt == AL_FLOAT64 ? 1e-10 : 1e-5;
    CHECK_NEAR(max_rel_diff(out[1], out[0]), 0, tol);
    for (int i = 0; i < 4; i++) {
        al_tensor *g_cpu = al_grad(leaves[0][i]), *g_dev = al_grad(leaves[1][i]);
        CHECK(g_cpu && g_dev);
        CHECK_NEAR(max_rel_diff(g_dev, g_cpu), 0, tol);
        al_release(g_cpu); al_release(g_dev);
    }
    for (int i = 0; i < 4; i++) { al_release(leaves[0][i]); al_release(leaves[1][i]); }
    al_release(R); al_release(out[0]); al_release(out[1]);
}

/* ---- bfloat16 ------------------------------------------------------------------------------------ */

/* t (a CPU float32 tensor) through bfloat16 and back: its values rounded as the device rounds them */
static al_tensor *rounded_to_bfloat16(const al_tensor *t) {
    al_tensor *d = to(t, AL_CUDA), *b = d ? al_to_dtype(d, AL_BFLOAT16) : NULL, *f = b ? al_to_dtype(b, AL_FLOAT32) : NULL;
    al_tensor *back = f ? to(f, AL_CPU) : NULL;
    al_release(d); al_release(b); al_release(f);
    return back;
}

/* One bfloat16 case against the CPU's float32 attention on the same (rounded) values: the device
 * leaves are float32 on the CPU, moved and converted to bfloat16 (so the gradients come back through
 * both), the output converted to float32 before it leaves the device.  What bfloat16 costs: about 3
 * significant digits (a spacing of 2^-8 relative), in the output and in each gradient, whose
 * incoming dO is rounded too. */
static void check_bfloat16_case(const attention_case *c) {
    const int64_t qs[4] = {c->B, c->H, c->N, c->d}, ks[4] = {c->B, c->Hkv, c->M, c->d};
    const int64_t vs[4] = {c->B, c->Hkv, c->M, c->dv}, os[4] = {c->B, c->H, c->N, c->dv}, nm[2] = {c->N, c->M};
    al_tensor *q0 = al_randn(4, qs, AL_FLOAT32), *k0 = al_randn(4, ks, AL_FLOAT32), *v0 = al_randn(4, vs, AL_FLOAT32);
    al_tensor *R0 = al_randn(4, os, AL_FLOAT32), *b0 = c->bias ? al_randn(2, nm, AL_FLOAT32) : NULL;
    al_tensor *q = rounded_to_bfloat16(q0), *k = rounded_to_bfloat16(k0), *v = rounded_to_bfloat16(v0);
    al_tensor *R = rounded_to_bfloat16(R0), *bias = b0 ? rounded_to_bfloat16(b0) : NULL;
    al_tensor *mask = c->mask ? make_mask(c) : NULL;
    al_set_requires_grad(q, 1); al_set_requires_grad(k, 1); al_set_requires_grad(v, 1);
    al_tensor *out_cpu = run(c, q, k, v, bias, mask, R, NULL);

    const al_attention_option window = {.name = "window", .value = {.type = AL_VALUE_NUMBER, .number = (double)c->window}};
    al_tensor *q2 = twin_leaf(q), *k2 = twin_leaf(k), *v2 = twin_leaf(v);
    al_tensor *dq = to(q2, AL_CUDA), *dk = to(k2, AL_CUDA), *dv = to(v2, AL_CUDA);
    al_tensor *bq = al_to_dtype(dq, AL_BFLOAT16), *bk = al_to_dtype(dk, AL_BFLOAT16), *bv = al_to_dtype(dv, AL_BFLOAT16);
    al_tensor *dbias = bias ? to(bias, AL_CUDA) : NULL, *dmask = mask ? to(mask, AL_CUDA) : NULL;
    const al_attention_opts opts = {.variant = c->window > 0 ? "sliding_window" : NULL, .causal = c->causal, .bias = dbias,
                                    .mask = dmask, .n_options = c->window > 0, .options = &window};
    al_tensor *out = bq && bk && bv ? al_attention(bq, bk, bv, &opts, NULL) : NULL;
    if (!out) fprintf(stderr, "%s (bfloat16, cuda): %s\n", c->name, al_last_error());
    CHECK(out && al_dtype_of(out) == AL_BFLOAT16 && al_device_of(out) == AL_CUDA);
    /* the tensor-core kernels take plain softmax (causal or not) with d = dv of 16, 32, 64 or 128;
     * the tiled kernels all the rest */
    const bool tensor_cores = c->bias == NO_BIAS && !c->mask && c->window == 0 && c->d == c->dv &&
                              (c->d == 16 || c->d == 32 || c->d == 64 || c->d == 128);
    const char *expected = tensor_cores ? "tensor cores" : "tiled";
    CHECK(strcmp(al_cuda_attention_kernel_used(), expected) == 0);
    al_tensor *wide = out ? al_to_dtype(out, AL_FLOAT32) : NULL, *back = wide ? to(wide, AL_CPU) : NULL;
    al_tensor *prod = back ? al_mul(back, R) : NULL, *loss = prod ? al_sum(prod, AL_ALL_DIMS, 0) : NULL;
    CHECK(loss && al_backward(loss, NULL) == 0);
    CHECK(strcmp(al_cuda_attention_kernel_used(), expected) == 0);
    CHECK_NEAR(max_rel_diff(back, out_cpu), 0, 1e-2);
    const al_tensor *leaves[3] = {q, k, v}, *twins[3] = {q2, k2, v2};
    for (int i = 0; i < 3; i++) {
        al_tensor *g_cpu = al_grad(leaves[i]), *g_dev = al_grad(twins[i]);
        CHECK(g_cpu && g_dev && al_dtype_of(g_dev) == AL_FLOAT32 && al_device_of(g_dev) == AL_CPU);
        CHECK_NEAR(max_rel_diff(g_dev, g_cpu), 0, 3e-2);
        al_release(g_cpu); al_release(g_dev);
    }
    al_tensor *all[] = {q0, k0, v0, R0, b0, q, k, v, R, bias, mask, out_cpu, q2, k2, v2, dq, dk, dv, bq, bk, bv,
                        dbias, dmask, out, wide, back, prod, loss};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) al_release(all[i]);
}

/* The tensor-core kernels copy a row 16 bytes at a time when every row starts on 16 bytes, element by
 * element otherwise: one problem given as views that start an element in (q, k and v narrowed from
 * rows one wider, in bfloat16 on the device) and as those views made contiguous gives the same
 * output and the same gradients, to the last bit. */
static void check_bfloat16_unaligned_views(void) {
    const int64_t qs[4] = {1, 2, 40, 65}, ks[4] = {1, 2, 70, 65}, os[4] = {1, 2, 40, 64};
    al_tensor *wide[3] = {al_randn(4, qs, AL_FLOAT32), al_randn(4, ks, AL_FLOAT32), al_randn(4, ks, AL_FLOAT32)};
    al_tensor *R = al_randn(4, os, AL_FLOAT32), *results[2][4] = {{NULL}};
    const al_attention_opts opts = {.causal = 1};
    for (int contiguous = 0; contiguous < 2; contiguous++) {
        al_tensor *leaf[3], *dev[3], *half[3], *view[3], *operand[3];
        for (int t = 0; t < 3; t++) {
            leaf[t] = twin_leaf(wide[t]);
            dev[t] = to(leaf[t], AL_CUDA);
            half[t] = dev[t] ? al_to_dtype(dev[t], AL_BFLOAT16) : NULL;
            view[t] = half[t] ? al_narrow(half[t], 3, 1, 64) : NULL;
            operand[t] = !view[t] ? NULL : contiguous ? al_contiguous(view[t]) : al_retain(view[t]);
        }
        al_tensor *out = operand[0] && operand[1] && operand[2] ? al_attention(operand[0], operand[1], operand[2], &opts, NULL) : NULL;
        if (!out) fprintf(stderr, "unaligned views (bfloat16, cuda): %s\n", al_last_error());
        CHECK(out && strcmp(al_cuda_attention_kernel_used(), "tensor cores") == 0);
        al_tensor *f = out ? al_to_dtype(out, AL_FLOAT32) : NULL, *back = f ? to(f, AL_CPU) : NULL;
        al_tensor *prod = back ? al_mul(back, R) : NULL, *loss = prod ? al_sum(prod, AL_ALL_DIMS, 0) : NULL;
        if (!(loss && al_backward(loss, NULL) == 0)) fprintf(stderr, "unaligned views, backward: %s\n", al_last_error());
        results[contiguous][0] = back ? al_retain(back) : NULL;
        for (int t = 0; t < 3; t++) results[contiguous][t + 1] = al_grad(leaf[t]);
        al_tensor *done[] = {out, f, back, prod, loss};
        for (size_t i = 0; i < sizeof done / sizeof done[0]; i++) al_release(done[i]);
        for (int t = 0; t < 3; t++) { al_release(leaf[t]); al_release(dev[t]); al_release(half[t]); al_release(view[t]); al_release(operand[t]); }
    }
    for (int r = 0; r < 4; r++) {
        CHECK(results[0][r] && results[1][r]);
        CHECK_NEAR(max_rel_diff(results[0][r], results[1][r]), 0, 0);
        al_release(results[0][r]); al_release(results[1][r]);
    }
    for (int t = 0; t < 3; t++) al_release(wide[t]);
    al_release(R);
}

/* Conversions round to nearest, ties to even, from float32 and in one rounding from float64; what
 * takes bfloat16 and what refuses it. */
static void check_bfloat16_conversions(void) {
    const int64_t five[1] = {5}, two[1] = {2};
    const float f[5] = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, to 1 */, 1.01171875f /* 1 + 3 2^-8: a tie, to 1 + 2^-6 */,
                        1.009765625f /* 1 + 2^-7 + 2^-9: down */, -3.0e38f};
    const double want[5] = {1.0, 1.0, 1.015625, 1.0078125, -226 * 0x1p120 /* the nearest, 2^120 apart there */};
    al_tensor *x = al_from_buffer(1, five, AL_FLOAT32, f), *r = rounded_to_bfloat16(x);
    double got[5] = {0};
    CHECK(r && al_copy_to_doubles(r, got, 5) == 0);
    for (int i = 0; i < 5; i++) CHECK_NEAR(got[i], want[i], 0);
    /* float64 1 + 2^-8 + 2^-40 is above the tie: 1 + 2^-7 (through float32 it would round to the tie, then to 1) */
    const double d[2] = {1.0 + 0x1p-8 + 0x1p-40, -0.0};
    al_tensor *xd = al_from_buffer(1, two, AL_FLOAT64, d), *dd = to(xd, AL_CUDA);
    al_tensor *bd = dd ? al_to_dtype(dd, AL_BFLOAT16) : NULL;
    double v = 0;
    const int64_t at[1] = {0};
    CHECK(bd && al_get(bd, at, &v) == 0);
    CHECK_NEAR(v, 1.0078125, 0);
    CHECK_NEAR(bd ? al_numel(bd) : 0, 2, 0);

    /* what refuses it, and says so */
    const int64_t s[4] = {1, 2, 8, 16};
    CHECK_FAILS(al_full(1, five, 0, AL_BFLOAT16), "bfloat16 tensors live on the CUDA device only");
    CHECK_FAILS(al_to_dtype(x, AL_BFLOAT16), "bfloat16 tensors live on the CUDA device only");
    CHECK_FAILS(al_to_device(bd, AL_CPU), "convert with to(\"float32\")");
    CHECK_FAILS(al_sum(bd, AL_ALL_DIMS, 0), "sum: no kernel for bfloat16");
    CHECK_FAILS(al_exp(bd), "exp: no kernel for bfloat16");
    CHECK_FAILS(al_add(bd, bd), "add: no kernel for bfloat16");
    al_tensor *q = al_randn(4, s, AL_FLOAT32), *dq = to(q, AL_CUDA), *bq = dq ? al_to_dtype(dq, AL_BFLOAT16) : NULL;
    const int64_t map[4] = {1, 2, 8, 8};
    al_tensor *bias = al_randn(4, map, AL_FLOAT32), *dbias = to(bias, AL_CUDA);
    al_set_requires_grad(dbias, 1);
    const al_attention_opts trainable = {.bias = dbias};
    CHECK_FAILS(al_attention(bq, bq, bq, &trainable, NULL), "a trainable bias with bfloat16");
    /* a variant made of ops refuses bfloat16 at its first op without a kernel for it */
    const al_attention_opts delta = {.variant = "delta"};
    CHECK_FAILS(al_attention(bq, bq, bq, &delta, NULL), "bfloat16");
    /* item and totable read it, as float32 */
    al_tensor *one = bq ? al_narrow(bq, 3, 0, 1) : NULL, *first = one ? al_reshape(one, 1, (const int64_t[]){16}) : NULL;
    al_tensor *el = first ? al_narrow(first, 0, 0, 1) : NULL;
    CHECK(el && al_item(el) == al_item(el));
    al_tensor *all[] = {x, r, xd, dd, bd, q, dq, bq, bias, dbias, one, first, el};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) al_release(all[i]);
}

/* The calls the device refuses, each with an error that says why. */
static void check_refusals(void) {
    const int64_t s[4] = {1, 2, 20, 16}, big[4] = {1, 2, 20, 160}, map[4] = {1, 2, 20, 20};
    al_tensor *q = al_randn(4, s, AL_FLOAT32), *dq = to(q, AL_CUDA);
    al_tensor *qb = al_randn(4, big, AL_FLOAT32), *dqb = to(qb, AL_CUDA);
    al_tensor *mask = al_full(4, map, 1, AL_FLOAT32);

    /* a dilated (or grid) neighborhood runs on key lists, composed from the fused kernel in float32
     * and float64 (the composed cases below); not in bfloat16, and it says so */
    const al_attention_option dilated[2] = {{.name = "kernel_size", .value = {.type = AL_VALUE_NUMBER, .number = 3}},
                                            {.name = "dilation", .value = {.type = AL_VALUE_NUMBER, .number = 2}}};
    const al_attention_opts dilated_opts = {.variant = "neighborhood", .n_options = 2, .options = dilated};
    al_tensor *dq_bf16 = al_to_dtype(dq, AL_BFLOAT16);
    CHECK_FAILS(al_attention(dq_bf16, dq_bf16, dq_bf16, &dilated_opts, NULL), "no bfloat16 kernel for a key-list pattern");
    al_release(dq_bf16);
    /* every tensor on q's device */
    const al_attention_opts cpu_mask = {.mask = mask};
    CHECK_FAILS(al_attention(dq, dq, dq, &cpu_mask, NULL), "two devices");
    CHECK_FAILS(al_attention(dq, q, dq, NULL, NULL), "two devices");
    /* head dims past the kernel's limit */
    CHECK_FAILS(al_attention(dqb, dqb, dqb, NULL, NULL), "head dims up to 128");
    /* kernel = 'tiled' keeps its CPU promise of no map */
    const al_attention_option tiled = {.name = "kernel", .value = {.type = AL_VALUE_STRING, .string = "tiled"}};
    const al_attention_opts tiled_opts = {.n_options = 1, .options = &tiled};
    al_tensor *w = NULL;
    CHECK_FAILS(al_attention(dq, dq, dq, &tiled_opts, &w), "never forms the attention map");
    al_release(w);
    al_release(q); al_release(dq); al_release(qb); al_release(dqb); al_release(mask);
}

int main(void) {
    if (!al_cuda_available()) {
        printf("test_cuda_attention: no CUDA device here (%s)\n", al_cuda_unavailable_reason());
        return check_report("test_cuda_attention") + 1;   /* make test-cuda is run where there is a GPU */
    }
    al_seed(11);
    /*   name                           B  H Hkv   N    M    d   dv causal bias                  mask  weights */
    const attention_case cases[] = {
        {"no mask, d 16",               2, 3, 3,  37,  45,  16,  16, 0, NO_BIAS,                 false, false, 0, 0, 0},
        {"no mask, d 128, weights",     1, 2, 2, 100, 130, 128, 128, 0, NO_BIAS,                 false, true, 0, 0, 0},
        {"causal top-left, N < M",      2, 2, 2,  37,  50,  64,  64, 1, NO_BIAS,                 false, false, 0, 0, 0},
        {"causal top-left, N > M",      1, 2, 2,  45,  30,  16,  24, 1, NO_BIAS,                 false, true, 0, 0, 0},
        {"causal bottom-right, N < M",  2, 2, 2,  29,  70,  64,  32, 2, NO_BIAS,                 false, true, 0, 0, 0},
        {"causal bottom-right, N > M",  1, 3, 3,  50,  20,  16,  16, 2, NO_BIAS,                 false, false, 0, 0, 0},
        {"constant bias (B, H, N, M)",  2, 2, 2,  33,  40,  32,  32, 0, CONSTANT_FULL_BIAS,      false, false, 0, 0, 0},
        {"trainable bias, d 128",       1, 2, 2,  33,  40, 128, 128, 0, TRAINABLE_FULL_BIAS,     false, true, 0, 0, 0},
        {"trainable bias, causal",      2, 2, 1,  19,  19,  16,  16, 1, TRAINABLE_FULL_BIAS,     false, false, 0, 0, 0},
        {"constant bias (N, M), causal",1, 3, 3,  40,  40,  32,  32, 1, CONSTANT_BROADCAST_BIAS, false, false, 0, 0, 0},
        {"trainable bias (N, M)",       2, 3, 3,  37,  45,  32,  32, 0, TRAINABLE_BROADCAST_BIAS, false, false, 0, 0, 0},
        {"mask, a fully masked row",    2, 2, 2,  21,  35,  16,  16, 0, NO_BIAS,                 true,  true, 0, 0, 0},
        {"mask and causal bottom-right",1, 2, 2,  21,  35,  64,  64, 2, NO_BIAS,                 true,  false, 0, 0, 0},
        {"grouped kv heads, causal",    2, 4, 2,  40,  40,  64,  48, 1, NO_BIAS,                 false, false, 0, 0, 0},
        /* the sliding window: the band cuts key tiles (forward, dq) and query tiles (dk, dv) */
        {"window 5",                    1, 2, 2,  70,  70,  32,  32, 0, NO_BIAS,                 false, true,  5, 0, 0},
        {"window 9, causal",            2, 2, 1,  83,  83,  16,  16, 1, TRAINABLE_FULL_BIAS,     false, false, 9, 0, 0},
        {"window 3, bottom-right N < M",1, 2, 2,  37,  90,  32,  32, 2, NO_BIAS,                 true,  true,  3, 0, 0},
        {"window 40, N > M",            1, 1, 1, 100,  61,  64,  64, 0, CONSTANT_BROADCAST_BIAS, false, false, 40, 0, 0},
        /* 1-D neighborhoods: one key range per query, shifted at the borders (the kernel's row ranges) */
        {"neighborhood 7",              2, 2, 2,  70,  70,  32,  32, 0, NO_BIAS,                 false, true,  0, 7, 0},
        {"neighborhood 13, bias, mask", 1, 2, 1,  53,  53,  16,  16, 0, TRAINABLE_FULL_BIAS,     true,  false, 0, 13, 0},
        {"neighborhood 8, causal",      1, 2, 2,  61,  61,  64,  64, 1, NO_BIAS,                 false, true,  0, 8, 0},
        {"strided neighborhood 9 / 3",  2, 2, 2,  50,  50,  32,  32, 0, NO_BIAS,                 false, false, 0, 9, 3},
        {"strided, 6 / 4, causal",      1, 3, 3,  45,  45,  16,  16, 1, NO_BIAS,                 false, true,  0, 6, 4},
    };
    const al_dtype dts[2] = {AL_FLOAT64, AL_FLOAT32};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], dts[t]);
    check_refusals();
    const composed_case composed[] = {
        {"moh, causal, weights",         "moh",            1, true,  false, MOH_GATES, 0, {{NULL, 0}}},
        {"flashbias, mask",              "flashbias",      0, false, true,  FLASHBIAS_FACTORS, 0, {{NULL, 0}}},
        {"pointer, dot, causal",         "pointer",        1, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
        {"pointer, additive, mask",      "pointer",        0, false, true,  POINTER_WEIGHTS, 0, {{NULL, 0}}},
        {"linear",                       "linear",         0, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
        {"linear, causal (chunks)",      "linear",         1, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
        {"random_feature, causal, mask", "random_feature", 1, true,  true,  NO_EXTRA, 0, {{NULL, 0}}},
        {"tensor, causal",               "tensor",         1, false, false, TENSOR_SECOND_SET, 0, {{NULL, 0}}},
        /* local_linear solves Sigma + ridge I per query: float32's rounding of Sigma grows with its
         * condition number (up to 1 / ridge = 100), so its float32 gradients agree to 1e-3 */
        {"local_linear, causal, weights", "local_linear",  1, true,  false, NO_EXTRA, 1e-3, {{NULL, 0}}},
        {"local_linear, mask",           "local_linear",   0, false, true,  NO_EXTRA, 1e-3, {{NULL, 0}}},
        {"agent, 5 given agents, weights", "agent",        0, true,  false, AGENT_TOKENS, 0, {{NULL, 0}}},
        {"agent, 6 pooled from q",       "agent",          0, false, false, NO_EXTRA, 0, {{"agent_count", 6}}},
        /* key lists (core/cuda/sparse.cu) */
        {"power, causal, weights",       "power",          1, true,  false, NO_EXTRA, 0, {{"local_blocks", 2}}},
        {"neighborhood, dilation 2, mask", "neighborhood", 0, true,  true,  NO_EXTRA, 0, {{"kernel_size", 5}, {"dilation", 2}}},
        {"dynamic_mask, causal, mask",   "dynamic_mask",   1, true,  true,  DMA_PARAMETERS, 0, {{"top_k", 5}}},
        {"hyper, 2 bits, causal, mask",  "hyper",          1, true,  true,  NO_EXTRA, 0, {{"block_size", 8}, {"lsh_bits", 2}}},
        {"hyper, 4 samples, trainable bias", "hyper",      0, false, false, TRAINABLE_BIAS, 0, {{"block_size", 4}, {"samples", 12}}},
        {"power, trainable bias, mask",  "power",          1, true,  true,  TRAINABLE_BIAS, 0, {{NULL, 0}}},
        {"relative, bottom-right, mask", "relative",       2, true,  true,  RELATIVE_TABLES, 0, {{NULL, 0}}},
        {"landmark, causal, mask, weights", "landmark",    1, true,  true,  LANDMARK_TOKENS, 0, {{NULL, 0}}},
        {"routing, 3 clusters, causal, weights", "routing", 1, true, false, ROUTING_CENTROIDS, 0, {{NULL, 0}}},
        {"routing, 4 a cluster",         "routing",        0, false, false, ROUTING_CENTROIDS, 0, {{"cluster_size", 4}}},
        /* the state recurrence (core/cuda/recurrence.cu) with the rest through ops */
        {"delta, causal, weights",       "delta",          1, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
        {"delta",                        "delta",          0, false, false, NO_EXTRA, 0, {{NULL, 0}}},
        {"flow, causal, weights",        "flow",           1, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
        {"flow, weights",                "flow",           0, true,  false, NO_EXTRA, 0, {{NULL, 0}}},
    };
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof composed / sizeof composed[0]; i++) check_composed_case(&composed[i], dts[t], 24);
    /* key lists longer than a warp (a lane takes several entries of a row): 40 and 48 keys a query */
    const composed_case long_lists[] = {
        /* dt_proj's gradient is a sum with cancellation over every (batch, query, key) of a head:
         * there float32 itself is 8e-4 from float64 on the CPU and 1e-3 on the device (measured),
         * and the two float32 results 1.7e-4 apart; float64 agrees to 1e-10 */
        {"dynamic_mask, top 40 of 80, mask", "dynamic_mask", 1, true, true, DMA_PARAMETERS, 1e-3, {{"top_k", 40}}},
        {"hyper, blocks of 32 and 16 samples", "hyper",      0, true, false, TRAINABLE_BIAS, 0, {{"block_size", 32}, {"samples", 16}}},
    };
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof long_lists / sizeof long_lists[0]; i++) check_composed_case(&long_lists[i], dts[t], 80);
    for (int t = 0; t < 2; t++)
        for (int causal = 0; causal < 2; causal++)
            for (int delta = 0; delta < 2; delta++) check_state_recurrence(causal, delta, dts[t], 5, 4);
    /* a state wider and taller than a block's 128 threads: its rows and columns take turns */
    check_state_recurrence(1, true, AL_FLOAT64, 131, 130);
    check_state_recurrence(0, false, AL_FLOAT64, 131, 130);
    /* bfloat16: the output and the gradients against float32 on the CPU, from the same rounded values */
    const attention_case bf16_cases[] = {
        {"bfloat16, no mask, d 64",        2, 2, 2,  37,  45,  64,  64, 0, NO_BIAS,                 false, false, 0, 0, 0},
        {"bfloat16, causal bottom-right",  1, 4, 2,  29,  70,  32,  32, 2, NO_BIAS,                 false, false, 0, 0, 0},
        {"bfloat16, constant bias, mask",  2, 2, 2,  21,  35,  16,  16, 0, CONSTANT_BROADCAST_BIAS, true,  false, 0, 0, 0},
        {"bfloat16, window 9, causal",     1, 2, 1,  83,  83, 128, 128, 1, NO_BIAS,                 false, false, 9, 0, 0},
        /* on the tensor cores (and the two without bias, mask or window above): query and key tiles
         * of 64 with tails, causal over three key tiles, rows that see no key, d of 16 and 128 */
        {"bfloat16, causal, d 128",         1, 2, 2, 130, 130, 128, 128, 1, NO_BIAS,                false, false, 0, 0, 0},
        {"bfloat16, few queries, 200 keys", 2, 2, 1,   5, 200,  16,  16, 0, NO_BIAS,                false, false, 0, 0, 0},
        {"bfloat16, bottom-right, N > M",   1, 2, 2,  70,  20,  32,  32, 2, NO_BIAS,                false, false, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof bf16_cases / sizeof bf16_cases[0]; i++) check_bfloat16_case(&bf16_cases[i]);
    check_bfloat16_unaligned_views();
    check_bfloat16_conversions();
    return check_report("test_cuda_attention");
}
