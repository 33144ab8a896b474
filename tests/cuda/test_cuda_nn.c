/* test_cuda_nn.c -- the training step's kernels on the GPU against the CPU (make test-cuda): the
 * softmax family along every dim, layer norm, cross-entropy (ignore_index), mse, embedding (repeated
 * ids: the scatter-add), dropout (the device's mask is the CPU's), the SGD and Adam steps and
 * clip_grad_norm; then the errors (a bad id, mixed devices).
 *
 * Each op runs on CPU leaves and on device copies of equal leaves (moved with al_to_device, so the
 * gradients flow back across); the outputs are compared, then the leaves' gradients of
 * loss = sum(out * probe), probe a fixed random tensor, computed on the CPU from the device output
 * brought back.  Tolerances: relative (|a - b| / (1 + |b|)), about 1e-12 in float64 and 1e-5 in
 * float32: the device sums in another order and has its own exp and log. */
#include "compare.h"



/* a tensor of standard normals of t's shape and dtype */
static al_tensor *randn_like(const al_tensor *t) {
    int64_t shape[8];
    for (int d = 0; d < al_ndim(t); d++) shape[d] = al_size(t, d);
    return al_randn(al_ndim(t), shape, al_dtype_of(t));
}

static double tol_of(al_dtype dt) { return dt == AL_FLOAT32 ? 1e-5 : 1e-12; }

/* ---- one op, forward and gradients --------------------------------------------------------------- */

typedef al_tensor *(*op_fn)(al_tensor *const *in, const void *arg);

/* in[0 .. nleaf) are float leaves (gradients compared), in[nleaf .. n) other inputs (ids, targets). */
static void check_op(const char *name, op_fn op, const void *arg, int n, int nleaf, al_tensor *const *inputs, double tol) {
    al_tensor *cpu_in[6] = {0}, *dev_leaf[6] = {0}, *dev_in[6] = {0};
    for (int i = 0; i < n; i++) {
        cpu_in[i] = al_clone(inputs[i]);
        if (i < nleaf) {
            al_set_requires_grad(cpu_in[i], 1);
            dev_leaf[i] = al_clone(inputs[i]);
            al_set_requires_grad(dev_leaf[i], 1);
            dev_in[i] = to(dev_leaf[i], AL_CUDA);
        } else {
            dev_in[i] = to(inputs[i], AL_CUDA);
        }
    }
    al_tensor *out_c = op(cpu_in, arg), *out_d = op(dev_in, arg);
    if (!out_c || !out_d) fprintf(stderr, "%s: %s\n", name, al_last_error());
    CHECK(out_c && out_d && al_device_of(out_d) == AL_CUDA);
    const double fwd = max_rel_diff(out_d, out_c);
    if (!(fwd <= tol)) fprintf(stderr, "%s: forward differs by %g\n", name, fwd);
    CHECK_NEAR(fwd, 0, tol);
    if (out_c && out_d && nleaf > 0) {
        al_tensor *probe = randn_like(out_c);
        al_tensor *back = to(out_d, AL_CPU);
        al_tensor *pc = al_mul(out_c, probe), *pd = back ? al_mul(back, probe) : NULL;
        al_tensor *lc = al_sum(pc, AL_ALL_DIMS, 0), *ld = pd ? al_sum(pd, AL_ALL_DIMS, 0) : NULL;
        CHECK(lc && al_backward(lc, NULL) == 0);
        CHECK(ld && al_backward(ld, NULL) == 0);
        for (int i = 0; i < nleaf; i++) {
            al_tensor *gc = al_grad(cpu_in[i]), *gd = al_grad(dev_leaf[i]);
            const double d = gc && gd ? max_rel_diff(gd, gc) : INFINITY;
            if (!(d <= tol)) fprintf(stderr, "%s: gradient of input %d differs by %g (%s)\n", name, i + 1, d, al_last_error());
            CHECK_NEAR(d, 0, tol);
            al_release(gc); al_release(gd);
        }
        al_release(probe); al_release(back); al_release(pc); al_release(pd); al_release(lc); al_release(ld);
    }
    for (int i = 0; i < n; i++) { al_release(cpu_in[i]); al_release(dev_leaf[i]); al_release(dev_in[i]); }
    al_release(out_c); al_release(out_d);
}

/* ---- the ops, as op_fn ---------------------------------------------------------------------------- */

typedef struct { int kind, dim, keepdim; } softmax_arg;
static al_tensor *softmax_op(al_tensor *const *in, const void *varg) {
    const softmax_arg *a = varg;
    return a->kind == 0 ? al_softmax(in[0], a->dim) : a->kind == 1 ? al_log_softmax(in[0], a->dim)
                                                               : al_logsumexp(in[0], a->dim, a->keepdim);
}
static al_tensor *layer_norm_full(al_tensor *const *in, const void *arg) { return al_layer_norm(in[0], in[1], in[2], 1e-5); }
static al_tensor *layer_norm_weight(al_tensor *const *in, const void *arg) { return al_layer_norm(in[0], in[1], NULL, 1e-5); }
static al_tensor *layer_norm_plain(al_tensor *const *in, const void *arg) { return al_layer_norm(in[0], NULL, NULL, 1e-5); }
static al_tensor *cross_entropy_op(al_tensor *const *in, const void *arg) { return al_cross_entropy(in[0], in[1], -100); }
static al_tensor *mse_op(al_tensor *const *in, const void *arg) { return al_mse(in[0], in[1]); }
static al_tensor *embedding_op(al_tensor *const *in, const void *arg) { return al_embedding(in[0], in[1]); }
/* the same seed before each run: the CPU and the device draw the same mask */
typedef struct { al_conv2d_opts opts; bool bias; } conv_case;
static al_tensor *conv2d_op(al_tensor *const *in, const void *arg) {
    const conv_case *c = arg;
    return al_conv2d(in[0], in[1], c->bias ? in[2] : NULL, &c->opts);
}
static al_tensor *max_pool_op(al_tensor *const *in, const void *arg) { return al_max_pool2d(in[0], arg, NULL); }
static al_tensor *avg_pool_op(al_tensor *const *in, const void *arg) { return al_avg_pool2d(in[0], arg); }

typedef struct { int64_t out_h, out_w; int mode, align_corners; double scale_h, scale_w; } resample_case;
static al_tensor *interpolate_op(al_tensor *const *in, const void *arg) {
    const resample_case *c = arg;
    return al_interpolate(in[0], c->out_h, c->out_w, c->mode, c->align_corners, c->scale_h, c->scale_w);
}

static al_tensor *grid_sample_op(al_tensor *const *in, const void *arg) {
    const int *modes = arg;   /* align_corners, padding_mode */
    return al_grid_sample(in[0], in[1], modes[0], modes[1]);
}

static al_tensor *ecc_pool_op(al_tensor *const *in, const void *arg) { return al_ecc_pool2d(in[0], arg); }

static al_tensor *solve_op(al_tensor *const *in, const void *arg) { return al_solve(in[0], in[1]); }

/* the log-sum-exp merge: its output, of in = {o1, lse1, o2, lse2}; its log-sum-exp, of
 * in = {lse1, lse2, o1, o2} (the log-sum-exps first: the leaves whose gradients are compared) */
static al_tensor *merge_op(al_tensor *const *in, const void *arg) {
    al_tensor *lse = NULL, *o = al_attention_merge(in[0], in[1], in[2], in[3], &lse);
    al_release(lse);
    return o;
}
static al_tensor *topk_op(al_tensor *const *in, const void *arg) { return al_topk_mask(in[0], 3, *(const int *)arg, NULL); }
static al_tensor *grouped_softmax_op(al_tensor *const *in, const void *arg) { return al_grouped_softmax(in[0], in[1], -1); }
static al_tensor *routing_update_op(al_tensor *const *in, const void *arg) { return al_routing_update(in[0], in[1], in[2], 0.9); }
static al_tensor *skew_op(al_tensor *const *in, const void *arg) { return arg ? al_relative_unskew(in[0]) : al_relative_skew(in[0]); }
static al_tensor *merge_lse_op(al_tensor *const *in, const void *arg) {
    al_tensor *lse = NULL, *o = al_attention_merge(in[2], in[0], in[3], in[1], &lse);
    al_release(o);
    return lse;
}

static al_tensor *dropout_op(al_tensor *const *in, const void *arg) {
    al_seed(11);
    return al_dropout(in[0], *(const double *)arg, 1);
}

/* ---- the optimiser steps ---------------------------------------------------------------------------- */

/* A leaf on `device` holding `init`, with grad = probe (through loss = sum(leaf * probe) on the CPU). */
static al_tensor *param_with_grad(const al_tensor *init, const al_tensor *probe, al_device device) {
    al_tensor *p = device == AL_CPU ? al_clone(init) : to(init, device), *q = to(probe, device);
    if (p) al_set_requires_grad(p, 1);
    al_tensor *prod = p && q ? al_mul(p, q) : NULL;
    al_tensor *back = prod ? to(prod, AL_CPU) : NULL;
    al_tensor *loss = back ? al_sum(back, AL_ALL_DIMS, 0) : NULL;
    CHECK(loss && al_backward(loss, NULL) == 0);
    al_release(q); al_release(prod); al_release(back); al_release(loss);
    return p;
}

static al_tensor *zeros_on(const al_tensor *like, al_device device) {
    al_tensor *z = randn_like(like);
    al_tensor *d = z && al_fill_(z, 0) == 0 ? to(z, device) : NULL;
    al_release(z);
    return d;
}

static void check_optimisers(al_dtype dt) {
    const int64_t s[2] = {17, 33};
    const double tol = tol_of(dt);
    al_tensor *init = al_randn(2, s, dt), *probe = al_randn(2, s, dt);
    /* SGD: plain with weight decay, momentum, Nesterov; three steps each */
    for (int variant = 0; variant < 3; variant++) {
        const double momentum = variant == 0 ? 0 : 0.9;
        al_tensor *pc = param_with_grad(init, probe, AL_CPU), *pd = param_with_grad(init, probe, AL_CUDA);
        al_tensor *bc = zeros_on(init, AL_CPU), *bd = zeros_on(init, AL_CUDA);
        for (int step = 0; step < 3; step++) {
            CHECK(al_sgd_step(pc, bc, 0.1, momentum, 0.01, variant == 2) == 0);
            const int rc = al_sgd_step(pd, bd, 0.1, momentum, 0.01, variant == 2);
            if (rc) fprintf(stderr, "sgd_step: %s\n", al_last_error());
            CHECK(rc == 0);
        }
        CHECK_NEAR(max_rel_diff(pd, pc), 0, tol);
        CHECK_NEAR(max_rel_diff(bd, bc), 0, tol);
        al_release(pc); al_release(pd); al_release(bc); al_release(bd);
    }
    /* Adam with coupled weight decay, and AdamW; steps 1 to 3 (the bias corrections) */
    for (int decoupled = 0; decoupled < 2; decoupled++) {
        al_tensor *pc = param_with_grad(init, probe, AL_CPU), *pd = param_with_grad(init, probe, AL_CUDA);
        al_tensor *mc = zeros_on(init, AL_CPU), *md = zeros_on(init, AL_CUDA);
        al_tensor *vc = zeros_on(init, AL_CPU), *vd = zeros_on(init, AL_CUDA);
        for (int step = 1; step <= 3; step++) {
            CHECK(al_adam_step(pc, mc, vc, 1e-2, 0.9, 0.999, 1e-8, 0.1, decoupled, step) == 0);
            const int rc = al_adam_step(pd, md, vd, 1e-2, 0.9, 0.999, 1e-8, 0.1, decoupled, step);
            if (rc) fprintf(stderr, "adam_step: %s\n", al_last_error());
            CHECK(rc == 0);
        }
        CHECK_NEAR(max_rel_diff(pd, pc), 0, tol);
        CHECK_NEAR(max_rel_diff(md, mc), 0, tol);
        CHECK_NEAR(max_rel_diff(vd, vc), 0, tol);
        al_release(pc); al_release(pd); al_release(mc); al_release(md); al_release(vc); al_release(vd);
    }
    /* clip_grad_norm over two params: the same norm, the same scaled grads */
    {
        al_tensor *pc[2] = {param_with_grad(init, probe, AL_CPU), param_with_grad(probe, init, AL_CPU)};
        al_tensor *pd[2] = {param_with_grad(init, probe, AL_CUDA), param_with_grad(probe, init, AL_CUDA)};
        const double nc = al_clip_grad_norm(2, pc, 1.0), nd = al_clip_grad_norm(2, pd, 1.0);
        if (nd < 0) fprintf(stderr, "clip_grad_norm: %s\n", al_last_error());
        CHECK(nc > 1);   /* so that the grads were scaled */
        CHECK_NEAR(fabs(nd - nc) / nc, 0, tol);
        for (int i = 0; i < 2; i++) {
            al_tensor *gc = al_grad(pc[i]), *gd = al_grad(pd[i]);
            CHECK(gd && al_device_of(gd) == AL_CUDA);
            CHECK_NEAR(max_rel_diff(gd, gc), 0, tol);
            al_release(gc); al_release(gd); al_release(pc[i]); al_release(pd[i]);
        }
    }
    al_release(init); al_release(probe);
}

int main(void) {
    if (!al_cuda_available()) {
        printf("test_cuda_nn: no CUDA device here (%s)\n", al_cuda_unavailable_reason());
        return check_report("test_cuda_nn") + 1;   /* make test-cuda is run where there is a GPU: failing is right */
    }
    al_seed(5);
    const al_dtype dts[2] = {AL_FLOAT32, AL_FLOAT64};
    for (int t = 0; t < 2; t++) {
        const al_dtype dt = dts[t];
        const double tol = tol_of(dt);

        /* the softmax family along each dim of a (5, 37, 6) tensor, and along a 700-long last dim
         * (longer than a block: the threads stride) */
        {
            const int64_t s3[3] = {5, 37, 6}, s2[2] = {3, 700};
            al_tensor *x3 = al_randn(3, s3, dt), *x2 = al_randn(2, s2, dt);
            for (int kind = 0; kind < 3; kind++) {
                for (int dim = 0; dim < 3; dim++) {
                    const softmax_arg a = {kind, dim, dim == 1};
                    check_op("softmax family", softmax_op, &a, 1, 1, &x3, tol);
                }
                const softmax_arg a = {kind, -1, 0};
                check_op("softmax family (long lines)", softmax_op, &a, 1, 1, &x2, tol);
            }
            /* a line of -inf: softmax 0, log_softmax and logsumexp -inf, as on the CPU */
            const int64_t sm[2] = {2, 4};
            al_tensor *m = al_full(2, sm, -INFINITY, dt);
            al_tensor *row = al_select(m, 0, 1), *r01 = al_randn(1, sm + 1, dt);
            CHECK(al_copy_(row, r01) == 0);
            for (int kind = 0; kind < 3; kind++) {
                const softmax_arg a = {kind, 1, 0};
                check_op("softmax family (-inf line)", softmax_op, &a, 1, 0, &m, tol);
            }
            /* empty lines: logsumexp of (3, 0) along dim 1 is three -inf */
            const int64_t se[2] = {3, 0};
            al_tensor *e = al_randn(2, se, dt);
            const softmax_arg lse = {2, 1, 0};
            check_op("logsumexp (empty lines)", softmax_op, &lse, 1, 0, &e, tol);
            al_release(x3); al_release(x2); al_release(m); al_release(row); al_release(r01); al_release(e);
        }

        /* layer norm: with weight and bias, weight only, neither; 3000 rows (many chunks of the
         * weight/bias sums) and a 1000-wide row (longer than a block) */
        {
            const int64_t sx[3] = {4, 9, 300}, sw[1] = {300}, sl[2] = {3000, 16}, swl[1] = {16}, sd[2] = {5, 1000},
                          swd[1] = {1000};
            al_tensor *in[3] = {al_randn(3, sx, dt), al_randn(1, sw, dt), al_randn(1, sw, dt)};
            check_op("layer_norm", layer_norm_full, NULL, 3, 3, in, tol);
            check_op("layer_norm (weight only)", layer_norm_weight, NULL, 2, 2, in, tol);
            check_op("layer_norm (plain)", layer_norm_plain, NULL, 1, 1, in, tol);
            al_tensor *many[3] = {al_randn(2, sl, dt), al_randn(1, swl, dt), al_randn(1, swl, dt)};
            check_op("layer_norm (many rows)", layer_norm_full, NULL, 3, 3, many, tol * 10);
            al_tensor *wide[3] = {al_randn(2, sd, dt), al_randn(1, swd, dt), al_randn(1, swd, dt)};
            check_op("layer_norm (wide rows)", layer_norm_full, NULL, 3, 3, wide, tol);
            for (int i = 0; i < 3; i++) { al_release(in[i]); al_release(many[i]); al_release(wide[i]); }
        }

        /* cross-entropy over (6, 7, 11) logits with some ids ignored; all ignored gives 0 */
        {
            const int64_t sl[3] = {6, 7, 11}, st[2] = {6, 7};
            al_tensor *logits = al_randn(3, sl, dt), *ids = al_randint(0, 11, 2, st);
            const int64_t at[3][2] = {{0, 0}, {2, 5}, {5, 6}};
            for (int k = 0; k < 3; k++) CHECK(al_set(ids, at[k], -100) == 0);
            al_tensor *in[2] = {logits, ids};
            check_op("cross_entropy", cross_entropy_op, NULL, 2, 1, in, tol);
            al_tensor *none = al_full(2, st, -100, AL_INT64);
            al_tensor *in0[2] = {logits, none};
            check_op("cross_entropy (all ignored)", cross_entropy_op, NULL, 2, 1, in0, tol);
            al_release(logits); al_release(ids); al_release(none);
        }

        /* mse (composed: sub, mul and the mean's CUDA kernel) */
        {
            const int64_t s[2] = {7, 5};
            al_tensor *in[2] = {al_randn(2, s, dt), al_randn(2, s, dt)};
            check_op("mse", mse_op, NULL, 2, 2, in, tol);
            al_release(in[0]); al_release(in[1]);
        }

        /* embedding: 100 ids drawn from 10 rows of 50, so most rows repeat (the scatter-add) */
        {
            const int64_t sw[2] = {50, 33}, si[2] = {4, 25};
            al_tensor *in[2] = {al_randn(2, sw, dt), al_randint(0, 10, 2, si)};
            check_op("embedding", embedding_op, NULL, 2, 1, in, tol);
            al_release(in[0]); al_release(in[1]);
        }

        /* dropout: the device's mask is the CPU's, bit for bit, and the generator advances alike */
        {
            const int64_t s[3] = {3, 41, 29};
            al_tensor *x = al_randn(3, s, dt);
            const double p = 0.3;
            check_op("dropout", dropout_op, &p, 1, 1, &x, 0);
            uint64_t seed_c, counter_c, seed_d, counter_d;
            al_tensor *dx = to(x, AL_CUDA);
            al_seed(3);
            al_tensor *oc = al_dropout(x, p, 1);
            al_rng_get_state(&seed_c, &counter_c);
            al_seed(3);
            al_tensor *od = dx ? al_dropout(dx, p, 1) : NULL;
            al_rng_get_state(&seed_d, &counter_d);
            CHECK(od && counter_d == counter_c);
            CHECK_NEAR(max_rel_diff(od, oc), 0, 0);
            al_release(x); al_release(dx); al_release(oc); al_release(od);
        }

        check_optimisers(dt);

        /* attention_merge (core/cuda/merge.cu): two parts' outputs (2, 3, 5, 4) and log-sum-exps
         * (2, 3, 5), part two empty (-inf) in one row; the output and the log-sum-exp, with gradients */
        {
            const int64_t os[4] = {2, 3, 5, 4}, ls[3] = {2, 3, 5};
            al_tensor *in[4] = {al_randn(4, os, dt), al_randn(3, ls, dt), al_randn(4, os, dt), al_randn(3, ls, dt)};
            al_tensor *empty = al_narrow(in[3], 2, 1, 1);
            CHECK(empty && al_fill_(empty, -INFINITY) == 0);
            al_release(empty);
            check_op("attention_merge", merge_op, NULL, 4, 4, in, tol_of(dt));
            al_tensor *lse_first[4] = {in[1], in[3], in[0], in[2]};
            check_op("attention_merge (log-sum-exp)", merge_lse_op, NULL, 4, 2, lse_first, tol_of(dt));
            for (int i = 0; i < 4; i++) al_release(in[i]);
        }

        /* topk_mask (core/cuda/topk.cu) along the last and the first dim, with ties (ties go to the
         * lower position) and a NaN (ranked last); grouped_softmax (core/cuda/grouped_softmax.cu) with
         * three labels and a group of -inf only */
        {
            const int64_t xs[3] = {2, 3, 9}, ls[3] = {2, 1, 9};
            al_tensor *scores = al_randn(3, xs, dt);
            al_tensor *tie_a = al_narrow(scores, 2, 2, 1), *tie_b = al_narrow(scores, 2, 5, 1), *nan = al_narrow(scores, 2, 7, 1);
            CHECK(tie_a && tie_b && nan && al_fill_(tie_a, 0.25) == 0 && al_fill_(tie_b, 0.25) == 0 && al_fill_(nan, NAN) == 0);
            al_release(tie_a); al_release(tie_b); al_release(nan);
            const int last = -1, first = 0;
            al_tensor *in1[1] = {scores};
            check_op("topk_mask, last dim", topk_op, &last, 1, 1, in1, tol_of(dt));
            al_tensor *finite = al_randn(3, xs, dt), *in2[1] = {finite};
            check_op("topk_mask, first dim", topk_op, &first, 1, 1, in2, tol_of(dt));
            al_tensor *x = al_randn(3, xs, dt), *labels = al_randint(0, 3, 3, ls);
            al_tensor *lone = al_narrow(labels, 2, 8, 1), *ninf = al_narrow(x, 2, 8, 1);
            CHECK(lone && ninf && al_fill_(lone, 7) == 0 && al_fill_(ninf, -INFINITY) == 0);
            al_release(lone); al_release(ninf);
            al_tensor *in3[2] = {x, labels};
            check_op("grouped_softmax", grouped_softmax_op, NULL, 2, 1, in3, tol_of(dt));
            al_release(scores); al_release(finite); al_release(x); al_release(labels);
        }

        /* routing_update (attention/routing.c: on CUDA tensors the CPU's step on host copies) */
        {
            const int64_t cs[3] = {2, 3, 8}, qs[4] = {2, 2, 10, 8}, ks[4] = {2, 1, 12, 8};
            al_tensor *in[3] = {al_randn(3, cs, dt), al_randn(4, qs, dt), al_randn(4, ks, dt)};
            check_op("routing_update", routing_update_op, NULL, 3, 0, in, tol_of(dt));
            for (int i = 0; i < 3; i++) al_release(in[i]);
        }

        /* Music Transformer's skew and unskew (attention/relative.c: a zero column or row concatenated,
         * a reshape and a narrow, on either device) */
        {
            const int64_t xs[4] = {2, 3, 6, 6};
            al_tensor *in[1] = {al_randn(4, xs, dt)};
            check_op("relative_skew", skew_op, NULL, 1, 1, in, tol_of(dt));
            check_op("relative_unskew", skew_op, "unskew", 1, 1, in, tol_of(dt));
            al_release(in[0]);
        }

        /* solve (core/cuda/solve.cu): a batch of systems with pivoting, and a singular one refused */
        {
            const int64_t as[3] = {4, 6, 6}, bs[3] = {4, 6, 3}, one[3] = {1, 3, 3}, ob[3] = {1, 3, 1};
            al_tensor *in[2] = {al_randn(3, as, dt), al_randn(3, bs, dt)};
            check_op("solve", solve_op, NULL, 2, 0, in, dt == AL_FLOAT32 ? 1e-4 : 1e-10);
            al_tensor *z = al_full(3, one, 0, dt), *zb = al_full(3, ob, 1, dt), *dz = to(z, AL_CUDA), *dzb = to(zb, AL_CUDA);
            CHECK_FAILS(al_solve(dz, dzb), "is singular");
            al_release(in[0]); al_release(in[1]); al_release(z); al_release(zb); al_release(dz); al_release(dzb);
        }

        /* conv2d (core/cuda/conv.cu): x, weight and bias against the CPU's im2col and direct kernels, over
         * stride, asymmetric padding, dilation, groups, 1 x 1 and 5 x 5 kernels, no bias */
        {
            typedef struct { int64_t N, Cin, H, W, Cout, k; conv_case c; } conv_shape;
            const conv_shape shapes[] = {
                {2, 3, 11, 9, 4, 3, {{{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}, true}},
                {1, 4, 12, 13, 6, 3, {{{2, 1}, {0, 2, 1, 0}, {1, 2}, 2}, true}},
                {2, 2, 8, 8, 3, 1, {{{1, 1}, {0, 0, 0, 0}, {1, 1}, 1}, false}},
                {1, 3, 10, 7, 2, 5, {{{1, 2}, {2, 2, 2, 2}, {2, 1}, 1}, true}},
                {3, 6, 6, 6, 6, 3, {{{1, 1}, {1, 1, 1, 1}, {1, 1}, 6}, true}},   /* depthwise */
            };
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                const conv_shape *c = &shapes[i];
                const int64_t xs[4] = {c->N, c->Cin, c->H, c->W}, ws[4] = {c->Cout, c->Cin / c->c.opts.groups, c->k, c->k};
                al_tensor *in[3] = {al_randn(4, xs, dt), al_randn(4, ws, dt), al_randn(1, ws, dt)};
                check_op("conv2d", conv2d_op, &c->c, c->c.bias ? 3 : 2, c->c.bias ? 3 : 2, in, tol);
                for (int j = 0; j < 3; j++) al_release(in[j]);
            }
        }
        /* max and average pooling (core/cuda/pool.cu): stride, padding, dilation (max), ceil_mode and
         * count_include_pad (average), overlapping windows */
        {
            const int64_t xs[4] = {2, 3, 11, 10};
            al_tensor *x = al_randn(4, xs, dt);
            const al_pool2d_opts maxes[] = {{{2, 2}, {0, 0}, {0, 0}, {0, 0}, 0, 0}, {{3, 3}, {2, 1}, {1, 1}, {1, 1}, 1, 0},
                                            {{3, 2}, {1, 2}, {0, 1}, {2, 1}, 0, 0}};
            for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) check_op("max_pool2d", max_pool_op, &maxes[i], 1, 1, &x, tol);
            const al_pool2d_opts avgs[] = {{{2, 2}, {0, 0}, {0, 0}, {0, 0}, 0, 0}, {{3, 3}, {2, 2}, {1, 1}, {0, 0}, 1, 1},
                                           {{3, 2}, {1, 1}, {1, 1}, {0, 0}, 1, 0}};
            for (size_t i = 0; i < sizeof avgs / sizeof avgs[0]; i++) check_op("avg_pool2d", avg_pool_op, &avgs[i], 1, 1, &x, tol);
            /* interpolate (core/cuda/resample.cu): bilinear both ways of aligning corners, up and down,
             * a caller's scale factor, nearest (its backward adds with atomics: sums in any order) */
            const resample_case resamples[] = {{23, 17, 0, 0, 0, 0}, {6, 4, 0, 1, 0, 0}, {22, 30, 0, 0, 2.0, 3.0},
                                               {7, 25, 1, 0, 0, 0}, {22, 20, 1, 0, 0, 0}};
            for (size_t i = 0; i < sizeof resamples / sizeof resamples[0]; i++)
                check_op("interpolate", interpolate_op, &resamples[i], 1, 1, &x, tol);
            /* grid_sample (core/cuda/sample.cu): points inside, across the edges and outside, both paddings and
             * both corner conventions; gradients of the image (atomics) and of the grid */
            const int64_t gs[4] = {2, 5, 7, 2};
            al_tensor *u = al_rand(4, gs, dt), *grid = al_mul_scalar(u, 2.6);
            al_tensor *shifted = al_add_scalar(grid, -1.3);   /* in [-1.3, 1.3): some points beyond the image */
            al_tensor *in2[2] = {x, shifted};
            for (int align = 0; align < 2; align++)
                for (int pad = 0; pad < 2; pad++) {
                    const int modes[2] = {align, pad};
                    check_op("grid_sample", grid_sample_op, modes, 2, 2, in2, tol);
                }
            al_release(u); al_release(grid); al_release(shifted);
            /* eccentricity pooling (core/cuda/ecc_pool.cu): windows from 2 to beyond the image, one fixation
             * for both images or one each, average and maximum, stride 1 and 2 */
            const double one[2] = {3.5, 4.0}, each[4] = {1.0, 9.5, 8.0, 2.0};
            const al_ecc_pool2d_opts eccs[] = {{one, 1, 1, 2, 0.5, 4, 1, 1, 0}, {each, 2, 2, 1, 0.4, 4, 0.5, 1, 0},
                                               {one, 1, 2, 2, 0.6, 4, 1, 1, 1}, {each, 2, 1, 1, 0.3, 4, 1, 1, 1}};
            for (size_t i = 0; i < sizeof eccs / sizeof eccs[0]; i++) check_op("ecc_pool2d", ecc_pool_op, &eccs[i], 1, 1, &x, tol);
            al_release(x);
        }
    }

    /* errors: bad ids give the CPU's message; mixed devices refuse by name */
    {
        const int64_t sw[2] = {5, 3}, si[1] = {4}, sl[2] = {4, 5};
        al_tensor *w = al_randn(2, sw, AL_FLOAT32), *ids = al_randint(0, 5, 1, si);
        const int64_t at[1] = {2};
        CHECK(al_set(ids, at, 5) == 0);
        al_tensor *dw = to(w, AL_CUDA), *dids = to(ids, AL_CUDA);
        char cpu_message[512];
        CHECK_FAILS(al_embedding(w, ids), "out of range");
        snprintf(cpu_message, sizeof cpu_message, "%s", al_last_error());
        CHECK_FAILS(al_embedding(dw, dids), cpu_message);
        CHECK(al_set(ids, at, -1) == 0);
        al_release(dids);
        dids = to(ids, AL_CUDA);
        CHECK_FAILS(al_embedding(w, ids), "out of range");
        snprintf(cpu_message, sizeof cpu_message, "%s", al_last_error());
        CHECK_FAILS(al_embedding(dw, dids), cpu_message);
        CHECK_FAILS(al_embedding(dw, ids), "two devices");

        al_tensor *logits = al_randn(2, sl, AL_FLOAT64), *dlogits = to(logits, AL_CUDA);
        CHECK(al_set(ids, at, 7) == 0);
        al_release(dids);
        dids = to(ids, AL_CUDA);
        CHECK_FAILS(al_cross_entropy(logits, ids, -100), "out of range");
        snprintf(cpu_message, sizeof cpu_message, "%s", al_last_error());
        CHECK_FAILS(al_cross_entropy(dlogits, dids, -100), cpu_message);
        CHECK_FAILS(al_cross_entropy(dlogits, ids, -100), "two devices");

        al_tensor *x = al_randn(2, sl, AL_FLOAT32), *dx = to(x, AL_CUDA), *g = al_randn(1, sl + 1, AL_FLOAT32);
        CHECK_FAILS(al_layer_norm(dx, g, NULL, 1e-5), "two devices");
        CHECK_FAILS(al_mse(dx, x), "two devices");

        /* optimisers: state on the other device; clip_grad_norm over params of both devices */
        al_tensor *probe = al_randn(2, sl, AL_FLOAT32);
        al_tensor *pc = param_with_grad(x, probe, AL_CPU), *pd = param_with_grad(x, probe, AL_CUDA);
        al_tensor *bc = zeros_on(x, AL_CPU);
        al_clear_error();
        CHECK(al_sgd_step(pd, bc, 0.1, 0.9, 0, 0) < 0 && strstr(al_last_error(), "two devices"));
        al_clear_error();
        CHECK(al_adam_step(pd, bc, bc, 0.1, 0.9, 0.99, 1e-8, 0, 0, 1) < 0 && strstr(al_last_error(), "two devices"));
        al_tensor *both[2] = {pc, pd};
        al_clear_error();
        CHECK(al_clip_grad_norm(2, both, 1.0) < 0 && strstr(al_last_error(), "two devices"));

        al_release(w); al_release(ids); al_release(dw); al_release(dids); al_release(logits); al_release(dlogits);
        al_release(x); al_release(dx); al_release(g); al_release(probe); al_release(pc); al_release(pd); al_release(bc);
    }
    return check_report("test_cuda_nn");
}
