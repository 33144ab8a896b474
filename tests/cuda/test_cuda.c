/* test_cuda.c -- every op that has a CUDA kernel, on the GPU against the CPU (make test-cuda, on a
 * machine with an NVIDIA GPU; built with make CUDA=1).  Each case makes its inputs on the CPU,
 * runs the op there and on copies moved to the device, brings the device result back and compares
 * element by element: bit for bit where the kernel does the same arithmetic (copies, conversions,
 * fills, + - * and max/min), within a few ulps where the device's libm differs (exp, tanh, ...).
 * Then the device rule on a real device: an op without a CUDA kernel refuses a CUDA tensor by name,
 * and no op mixes devices. */
#include "compare.h"



/* normal draws; int64 (which al_randn refuses): 10 x a normal draw, truncated */
static al_tensor *randn(int ndim, const int64_t *shape, al_dtype dt) {
    if (dt != AL_INT64) return al_randn(ndim, shape, dt);
    al_tensor *f = al_randn(ndim, shape, AL_FLOAT64), *wide = f ? al_mul_scalar(f, 10) : NULL;
    al_tensor *t = wide ? al_to_dtype(wide, AL_INT64) : NULL;
    al_release(f); al_release(wide);
    return t;
}

typedef al_tensor *(*binary_fn)(const al_tensor *, const al_tensor *);
typedef al_tensor *(*unary_fn)(const al_tensor *);

static void check_binary(const char *name, binary_fn f, al_dtype dt, double tol) {
    /* broadcasting: (4, 1, 5) with (3, 1), and a permuted left operand */
    const int64_t sa[3] = {4, 1, 5}, sb[2] = {3, 1}, sc[3] = {5, 3, 4};
    al_tensor *a = randn(3, sa, dt), *b = randn(2, sb, dt), *c0 = randn(3, sc, dt);
    const int order[3] = {2, 1, 0};
    al_tensor *c = al_permute(c0, order);   /* (4, 3, 5), not contiguous */
    al_tensor *da = to(a, AL_CUDA), *db = to(b, AL_CUDA), *dc = to(c, AL_CUDA);
    al_tensor *cpu1 = f(a, b), *gpu1 = da && db ? f(da, db) : NULL;
    al_tensor *cpu2 = f(c, a), *gpu2 = dc && da ? f(dc, da) : NULL;
    CHECK(gpu1 && al_device_of(gpu1) == AL_CUDA);
    if (!gpu1 || !gpu2) fprintf(stderr, "%s: %s\n", name, al_last_error());
    CHECK_NEAR(gpu1 ? max_rel_diff(gpu1, cpu1) : INFINITY, 0, tol);
    CHECK_NEAR(gpu2 ? max_rel_diff(gpu2, cpu2) : INFINITY, 0, tol);
    al_release(a); al_release(b); al_release(c0); al_release(c); al_release(da); al_release(db); al_release(dc);
    al_release(cpu1); al_release(gpu1); al_release(cpu2); al_release(gpu2);
}

static void check_unary(const char *name, unary_fn f, al_dtype dt, double tol) {
    const int64_t s[2] = {37, 29};
    al_tensor *x0 = randn(2, s, dt);
    al_tensor *x = f == al_log || f == al_sqrt ? al_abs(x0) : al_retain(x0);   /* in the domain */
    al_tensor *dx = to(x, AL_CUDA);
    al_tensor *cpu = f(x), *gpu = dx ? f(dx) : NULL;
    if (!gpu) fprintf(stderr, "%s: %s\n", name, al_last_error());
    CHECK_NEAR(gpu ? max_rel_diff(gpu, cpu) : INFINITY, 0, tol);
    al_release(x0); al_release(x); al_release(dx); al_release(cpu); al_release(gpu);
}

/* An op of one tensor on `device` (its other operands moved there too); arg is the case's own. */
typedef al_tensor *(*op_on_device)(const al_tensor *x, al_device device, const void *arg);

/* The op on the CPU and on the GPU from equal leaves, loss = sum(out^2) on the CPU: the outputs
 * compared within out_tol, then the leaves' gradients within grad_tol. */
static void check_with_gradient(const al_tensor *x0, op_on_device op, const void *arg, double out_tol, double grad_tol) {
    al_tensor *outs[2], *grads[2];
    for (int run = 0; run < 2; run++) {   /* 0: CPU, 1: GPU */
        al_tensor *x = al_clone(x0);
        al_set_requires_grad(x, 1);
        al_device dev = run ? AL_CUDA : AL_CPU;
        al_tensor *xd = to(x, dev);
        al_tensor *out = xd ? op(xd, dev, arg) : NULL;
        outs[run] = out ? to(out, AL_CPU) : NULL;
        al_tensor *sq = outs[run] ? al_mul(outs[run], outs[run]) : NULL, *loss = sq ? al_sum(sq, AL_ALL_DIMS, 0) : NULL;
        CHECK(loss && al_backward(loss, NULL) == 0);
        grads[run] = al_grad(x);
        al_release(x); al_release(xd); al_release(out); al_release(sq); al_release(loss);
    }
    CHECK_NEAR(outs[0] && outs[1] ? max_rel_diff(outs[1], outs[0]) : INFINITY, 0, out_tol);
    CHECK_NEAR(grads[0] && grads[1] ? max_rel_diff(grads[1], grads[0]) : INFINITY, 0, grad_tol);
    for (int run = 0; run < 2; run++) { al_release(outs[run]); al_release(grads[run]); }
}

static al_tensor *cumsum_on(const al_tensor *x, al_device device, const void *arg) {
    return al_cumsum(x, *(const int *)arg);
}
static al_tensor *max_on(const al_tensor *x, al_device device, const void *arg) {
    return al_max(x, *(const int *)arg, 0, NULL);
}
static al_tensor *pad_on(const al_tensor *x, al_device device, const void *arg) {
    const int64_t pads[4] = {2, -1, -3, 4};   /* last dim: +2, -1; the one before: -3, +4 */
    return al_pad(x, 2, pads, 0.5);
}
typedef struct { int dim; al_tensor *ids; } gather_case;
static al_tensor *gather_on(const al_tensor *x, al_device device, const void *arg) {
    const gather_case *c = arg;
    const int perm[3] = {0, 2, 1};
    al_tensor *xp = al_permute(x, perm), *ids = to(c->ids, device);   /* (4, 5, 6) */
    al_tensor *out = xp && ids ? al_gather(xp, c->dim, ids) : NULL;
    al_release(xp); al_release(ids);
    return out;
}

int main(void) {
    if (!al_cuda_available()) {
        printf("test_cuda: no CUDA device here (%s)\n", al_cuda_unavailable_reason());
        return check_report("test_cuda") + 1;   /* make test-cuda is run where there is a GPU: failing is right */
    }
    al_seed(7);

    /* round trips: every dtype, contiguous and permuted, bit for bit */
    const al_dtype dts[3] = {AL_FLOAT32, AL_FLOAT64, AL_INT64};
    for (int i = 0; i < 3; i++) {
        const int64_t s[3] = {3, 50, 7};
        al_tensor *f = al_randn(3, s, AL_FLOAT64);
        al_tensor *x = al_to_dtype(f, dts[i]);
        const int order[3] = {1, 2, 0};
        al_tensor *p = al_permute(x, order);
        al_tensor *dx = to(x, AL_CUDA), *dp = to(p, AL_CUDA);
        al_tensor *bx = dx ? to(dx, AL_CPU) : NULL, *bp = dp ? to(dp, AL_CPU) : NULL;
        CHECK(dx && al_device_of(dx) == AL_CUDA && bx && al_device_of(bx) == AL_CPU);
        CHECK_NEAR(bx ? max_rel_diff(bx, x) : INFINITY, 0, 0);
        CHECK_NEAR(bp ? max_rel_diff(bp, p) : INFINITY, 0, 0);
        /* a permuted view of a device tensor made contiguous on the device */
        al_tensor *dpv = dx ? al_permute(dx, order) : NULL;
        al_tensor *dcont = dpv ? al_contiguous(dpv) : NULL;
        CHECK(dcont && al_device_of(dcont) == AL_CUDA && al_is_contiguous(dcont));
        CHECK_NEAR(dcont ? max_rel_diff(dcont, p) : INFINITY, 0, 0);
        /* conversions on the device, like the CPU's */
        for (int j = 0; j < 3; j++) {
            al_tensor *cpu = al_to_dtype(x, dts[j]), *gpu = dx ? al_to_dtype(dx, dts[j]) : NULL;
            CHECK_NEAR(gpu ? max_rel_diff(gpu, cpu) : INFINITY, 0, 0);
            al_release(cpu); al_release(gpu);
        }
        /* fill_ of a narrowed view, and item/get through the device */
        al_tensor *dn = dx ? al_narrow(dx, 1, 10, 20) : NULL, *hn = al_narrow(x, 1, 10, 20);
        CHECK(dn && al_fill_(dn, 3) == 0 && al_fill_(hn, 3) == 0);
        CHECK_NEAR(dx ? max_rel_diff(dx, x) : INFINITY, 0, 0);
        const int64_t idx[3] = {2, 15, 6};
        double got = 0, want = 0;
        CHECK(dx && al_get(dx, idx, &got) == 0 && al_get(x, idx, &want) == 0);
        CHECK_NEAR(got, want, 0);
        al_release(f); al_release(x); al_release(p); al_release(dx); al_release(dp); al_release(bx); al_release(bp);
        al_release(dpv); al_release(dcont); al_release(dn); al_release(hn);
    }

    /* binary ops with broadcasting: exact for + - * max min in every dtype, / within an ulp */
    const binary_fn exact[5] = {al_add, al_sub, al_mul, al_maximum, al_minimum};
    const char *exact_names[5] = {"add", "sub", "mul", "maximum", "minimum"};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 5; k++) check_binary(exact_names[k], exact[k], dts[i], 0);
        if (dts[i] != AL_INT64) check_binary("div", al_div, dts[i], dts[i] == AL_FLOAT32 ? 2e-7 : 1e-15);
    }

    /* comparisons with broadcasting, into float32 (float64 for float64 operands): exact */
    for (int i = 0; i < 3; i++) {
        const int64_t sa[2] = {6, 1}, sb[2] = {1, 5};
        al_tensor *fa = al_randn(2, sa, AL_FLOAT64), *fb = al_randn(2, sb, AL_FLOAT64);
        al_tensor *a = al_to_dtype(fa, dts[i]), *b = al_to_dtype(fb, dts[i]);   /* int64: mostly 0 and -1 .. 1: ties */
        al_tensor *da = to(a, AL_CUDA), *db = to(b, AL_CUDA);
        for (int op = AL_EQ; op <= AL_GE; op++) {
            al_tensor *c = al_compare(a, b, (al_compare_op)op), *g = da && db ? al_compare(da, db, (al_compare_op)op) : NULL;
            al_tensor *cs = al_compare_scalar(a, 0.5, (al_compare_op)op), *gs = da ? al_compare_scalar(da, 0.5, (al_compare_op)op) : NULL;
            CHECK_NEAR(g ? max_rel_diff(g, c) : INFINITY, 0, 0);
            CHECK_NEAR(gs ? max_rel_diff(gs, cs) : INFINITY, 0, 0);
            al_release(c); al_release(g); al_release(cs); al_release(gs);
        }
        al_release(fa); al_release(fb); al_release(a); al_release(b); al_release(da); al_release(db);
    }

    /* where with broadcasting, for each dtype of the pair (its backward is made of the elementwise ops) */
    for (int i = 0; i < 3; i++) {
        const int64_t sc[2] = {5, 1}, sa[2] = {5, 4}, sb[1] = {4};
        al_tensor *cond = al_randn(2, sc, AL_FLOAT32), *fa = al_randn(2, sa, AL_FLOAT64), *fb = al_randn(1, sb, AL_FLOAT64);
        al_tensor *c01 = al_compare_scalar(cond, 0, AL_GT);
        al_tensor *a = al_to_dtype(fa, dts[i]), *b = al_to_dtype(fb, dts[i]);
        al_tensor *dc = to(c01, AL_CUDA), *da = to(a, AL_CUDA), *db = to(b, AL_CUDA);
        al_tensor *w = al_where(c01, a, b), *dw = dc && da && db ? al_where(dc, da, db) : NULL;
        CHECK_NEAR(dw ? max_rel_diff(dw, w) : INFINITY, 0, 0);
        al_release(cond); al_release(fa); al_release(fb); al_release(c01); al_release(a); al_release(b);
        al_release(dc); al_release(da); al_release(db); al_release(w); al_release(dw);
    }

    /* unary math: the device's exp/tanh/log differ from the CPU's by a few ulps */
    const unary_fn un[9] = {al_neg, al_exp, al_log, al_sqrt, al_tanh, al_sigmoid, al_relu, al_gelu, al_abs};
    const char *un_names[9] = {"neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "abs"};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 9; k++) check_unary(un_names[k], un[k], dts[i], dts[i] == AL_FLOAT32 ? 1e-6 : 1e-13);

    /* gradients across devices: loss = sum over the CPU of (to_cpu(to_cuda(x) * to_cuda(x))); dx = 2x */
    {
        const int64_t s[2] = {6, 9};
        al_tensor *x = al_randn(2, s, AL_FLOAT64);
        al_set_requires_grad(x, 1);
        al_tensor *dx = to(x, AL_CUDA);
        al_tensor *sq = dx ? al_mul(dx, dx) : NULL;
        al_tensor *back = sq ? to(sq, AL_CPU) : NULL;
        al_tensor *loss = back ? al_sum(back, AL_ALL_DIMS, 0) : NULL;
        CHECK(loss && al_backward(loss, NULL) == 0);
        al_tensor *g = al_grad(x), *two_x = al_mul_scalar(x, 2);
        CHECK(g && al_device_of(g) == AL_CPU);
        CHECK_NEAR(g ? max_rel_diff(g, two_x) : INFINITY, 0, 1e-15);
        al_release(x); al_release(dx); al_release(sq); al_release(back); al_release(loss); al_release(g); al_release(two_x);
    }

    /* reductions: sum and mean along each dim and over all, max/min/argmax with their indices; the
     * sums differ from the CPU's in the order of the additions only */
    for (int i = 0; i < 2; i++) {
        const int64_t s[3] = {5, 300, 7};
        al_tensor *x = al_randn(3, s, dts[i]), *dx = to(x, AL_CUDA);
        const double tol = dts[i] == AL_FLOAT32 ? 1e-5 : 1e-12;
        for (int d = 0; d < 3; d++) {
            al_tensor *cs = al_sum(x, d, 0), *gs = dx ? al_sum(dx, d, 0) : NULL;
            al_tensor *cm = al_mean(x, d, 1), *gm = dx ? al_mean(dx, d, 1) : NULL;
            al_tensor *ci = NULL, *gi = NULL;
            al_tensor *cx = al_max(x, d, 0, &ci), *gx = dx ? al_max(dx, d, 0, &gi) : NULL;
            al_tensor *cn = al_min(x, d, 0, NULL), *gn = dx ? al_min(dx, d, 0, NULL) : NULL;
            CHECK_NEAR(gs ? max_rel_diff(gs, cs) : INFINITY, 0, tol * 10);
            CHECK_NEAR(gm ? max_rel_diff(gm, cm) : INFINITY, 0, tol);
            CHECK_NEAR(gx ? max_rel_diff(gx, cx) : INFINITY, 0, 0);
            CHECK_NEAR(gi ? max_rel_diff(gi, ci) : INFINITY, 0, 0);
            CHECK_NEAR(gn ? max_rel_diff(gn, cn) : INFINITY, 0, 0);
            al_release(cs); al_release(gs); al_release(cm); al_release(gm); al_release(ci); al_release(gi);
            al_release(cx); al_release(gx); al_release(cn); al_release(gn);
        }
        al_tensor *ca = al_sum(x, AL_ALL_DIMS, 0), *ga = dx ? al_sum(dx, AL_ALL_DIMS, 0) : NULL;
        CHECK_NEAR(ga ? max_rel_diff(ga, ca) : INFINITY, 0, tol * 10);
        al_release(ca); al_release(ga); al_release(x); al_release(dx);
    }

    /* products through cuBLAS: batched, broadcast batch, transposed operands (as every backward
     * makes them), a 2-d weight against a batch, vectors; float32 with TF32 off stays near the CPU */
    for (int i = 0; i < 2; i++) {
        const double tol = dts[i] == AL_FLOAT32 ? 1e-5 : 1e-12;
        const int64_t sa[3] = {4, 33, 17}, sb[3] = {4, 17, 9}, sw[2] = {17, 9}, sbb[3] = {1, 17, 9}, sv[1] = {17};
        al_tensor *a = al_randn(3, sa, dts[i]), *b = al_randn(3, sb, dts[i]), *w = al_randn(2, sw, dts[i]);
        al_tensor *bb = al_randn(3, sbb, dts[i]), *v = al_randn(1, sv, dts[i]);
        al_tensor *da = to(a, AL_CUDA), *db = to(b, AL_CUDA), *dw = to(w, AL_CUDA), *dbb = to(bb, AL_CUDA), *dv = to(v, AL_CUDA);
        al_tensor *at = al_transpose(a, -1, -2), *dat = da ? al_transpose(da, -1, -2) : NULL;   /* (4, 17, 33) */
        const al_tensor *pairs[6][4] = {
            {a, b, da, db}, {a, w, da, dw}, {a, bb, da, dbb}, {a, v, da, dv}, {v, b, dv, db}, {at, at, dat, dat}};
        for (int p = 0; p < 6; p++) {
            const al_tensor *rhs = p == 5 ? a : pairs[p][1], *drhs = p == 5 ? da : pairs[p][3];
            al_tensor *c = al_matmul(pairs[p][0], rhs), *g = pairs[p][2] && drhs ? al_matmul(pairs[p][2], drhs) : NULL;
            if (!g) fprintf(stderr, "matmul case %d: %s\n", p, al_last_error());
            CHECK_NEAR(g ? max_rel_diff(g, c) : INFINITY, 0, tol);
            al_release(c); al_release(g);
        }
        al_release(a); al_release(b); al_release(w); al_release(bb); al_release(v);
        al_release(da); al_release(db); al_release(dw); al_release(dbb); al_release(dv); al_release(at); al_release(dat);
    }

    /* ops of one tensor with their backward, against the CPU (check_with_gradient) */
    for (int d = 0; d < 3; d++) {   /* cumsum: the CPU's order, bit for bit, both ways */
        const int64_t s[3] = {3, 40, 5};
        al_tensor *x0 = al_randn(3, s, AL_FLOAT32);
        check_with_gradient(x0, cumsum_on, &d, 0, 0);
        al_release(x0);
    }
    {   /* pad, growing and cropping: a fill and a copy into a window */
        const int64_t s[3] = {3, 7, 9};
        al_tensor *x0 = al_randn(3, s, AL_FLOAT64);
        check_with_gradient(x0, pad_on, NULL, 0, 0);
        al_release(x0);
    }
    for (int d = 0; d < 2; d++) {   /* max: each line's gradient to its max */
        const int64_t s[2] = {9, 13};
        al_tensor *x0 = al_randn(2, s, AL_FLOAT64);
        check_with_gradient(x0, max_on, &d, 0, 0);
        al_release(x0);
    }
    for (int d = 0; d < 3; d++) {   /* gather from a permuted view, ids repeated: the backward's atomics add them */
        const int64_t s[3] = {4, 6, 5};
        int64_t is[3] = {4, 5, 6};
        is[d] = 7;
        const int64_t limit = (int64_t[3]){4, 5, 6}[d];
        al_tensor *x0 = al_randn(3, s, AL_FLOAT64);
        al_tensor *u = al_rand(3, is, AL_FLOAT64), *uf = al_mul_scalar(u, (double)limit - 1e-9);
        const gather_case g = {d, al_to_dtype(uf, AL_INT64)};
        check_with_gradient(x0, gather_on, &g, 0, 1e-14);
        al_release(x0); al_release(u); al_release(uf); al_release(g.ids);
    }

    /* linear (through cuBLAS on the device) with its gradients, and cat/stack, compared with the
     * all-CPU run: loss = sum(cat(linear(x), linear(x))^2) */
    {
        const int64_t sx[3] = {3, 70, 96}, sw[2] = {80, 96}, sb[1] = {80};
        al_tensor *leaf[2][3];
        al_tensor *losses[2];
        al_seed(11);
        al_tensor *x0 = al_randn(3, sx, AL_FLOAT64), *w0 = al_randn(2, sw, AL_FLOAT64), *b0 = al_randn(1, sb, AL_FLOAT64);
        for (int run = 0; run < 2; run++) {   /* 0: CPU, 1: GPU */
            leaf[run][0] = al_clone(x0); leaf[run][1] = al_clone(w0); leaf[run][2] = al_clone(b0);
            for (int j = 0; j < 3; j++) al_set_requires_grad(leaf[run][j], 1);
            al_device dev = run ? AL_CUDA : AL_CPU;
            al_tensor *x = to(leaf[run][0], dev), *w = to(leaf[run][1], dev), *b = to(leaf[run][2], dev);
            al_tensor *y = x && w && b ? al_linear(x, w, b) : NULL;
            al_tensor *both[2] = {y, y};
            al_tensor *c = y ? al_cat(2, both, 1) : NULL, *sq = c ? al_mul(c, c) : NULL;
            al_tensor *host = sq ? to(sq, AL_CPU) : NULL;
            losses[run] = host ? al_sum(host, AL_ALL_DIMS, 0) : NULL;
            CHECK(losses[run] && al_backward(losses[run], NULL) == 0);
            al_release(x); al_release(w); al_release(b); al_release(y); al_release(c); al_release(sq); al_release(host);
        }
        CHECK_NEAR(losses[1] ? al_item(losses[1]) : INFINITY, al_item(losses[0]), 1e-9 * fabs(al_item(losses[0])));
        for (int j = 0; j < 3; j++) {
            al_tensor *gc = al_grad(leaf[0][j]), *gg = al_grad(leaf[1][j]);
            CHECK_NEAR(gc && gg ? max_rel_diff(gg, gc) : INFINITY, 0, 1e-11);
            al_release(gc); al_release(gg);
        }
        for (int run = 0; run < 2; run++) { for (int j = 0; j < 3; j++) al_release(leaf[run][j]); al_release(losses[run]); }
        al_release(x0); al_release(w0); al_release(b0);
    }

    /* the device rule: a function with no CUDA path names the device; no op mixes devices */
    {
        const int64_t s[2] = {4, 4};
        al_tensor *x = al_randn(2, s, AL_FLOAT32), *dx = to(x, AL_CUDA);
        al_clear_error();
        CHECK(al_data(dx) == NULL && strstr(al_last_error(), "on cuda") != NULL);
        CHECK_FAILS(al_add(x, dx), "two devices");
        al_release(x); al_release(dx);
    }
    return check_report("test_cuda");
}
