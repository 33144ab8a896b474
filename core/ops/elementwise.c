/* elementwise.c -- broadcasting binary ops, unary math, comparisons and where, with backward.
 *
 * One strided row kernel per op family; the op is chosen by a switch outside the inner loop so
 * that each loop is a plain, vectorisable C loop.  Mixed dtypes promote (int64 < float32 <
 * float64) before the kernel runs. */
#include "../internal.h"
#include "elementwise_ops.h"
#include <math.h>

static const char *binary_names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};

static al_dtype promote(al_dtype a, al_dtype b) {
    if (a == AL_FLOAT64 || b == AL_FLOAT64) return AL_FLOAT64;
    if (a == AL_FLOAT32 || b == AL_FLOAT32) return AL_FLOAT32;
    return AL_INT64;
}

static const char *unary_names[] = {"neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu",
                                    "abs", "add", "mul", "sub", "div", "pow", "clamp"};


/* a comparison's 1 or 0 into a float32 or float64 output (out_double is a constant where inlined) */
ALWAYS_INLINE void store01(char *out, int64_t i, bool out_double, int v) {
    if (out_double) ((double *)out)[i] = (double)v;
    else ((float *)out)[i] = (float)v;
}

/* The row kernels, once per dtype: binary_row_float, compare_row_int64, unary_row_double, ... */
#define GENERIC_FILE "../generic/elementwise_rows.h"
#include "../generic/float_types.h"
#define real int64_t
#define SFX(name) name##_int64
#include "../generic/elementwise_rows.h"
#undef real
#undef SFX

typedef struct { binary_op op; al_dtype dtype; } binary_arg;

static void binary_row(char **p, int64_t n, const int64_t *s, void *varg) {
    const binary_arg *arg = varg;
    if (arg->dtype == AL_FLOAT32) binary_row_float(arg->op, p, n, s);
    else if (arg->dtype == AL_FLOAT64) binary_row_double(arg->op, p, n, s);
    else binary_row_int64(arg->op, p, n, s);
}

/* The CUDA kernel of a family (al_cuda_binary, al_cuda_compare), for the op cuda_op */
typedef int (*cuda_pair_fn)(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                            const int64_t *b_strides);

/* out (the broadcast shape of a and b, out_dt) = row(a, b), with a and b converted to `in` first (on
 * the device: cuda(cuda_op, ...)); what binary ops and comparisons share.  fn names the lab function
 * in a broadcast error. */
static al_tensor *broadcast_pair(const char *fn, const al_tensor *a, const al_tensor *b, al_dtype in, al_dtype out_dt,
                                 al_row_fn row, void *arg, cuda_pair_fn cuda, int cuda_op) {
    int nd; int64_t shape[AL_MAX_DIMS];
    if (!al_broadcast_shapes(fn, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    al_tensor *ca = a->dtype == in ? al_retain((al_tensor *)a) : al_to_dtype_nograd(a, in);
    al_tensor *cb = b->dtype == in ? al_retain((al_tensor *)b) : al_to_dtype_nograd(b, in);
    al_tensor *out = ca && cb ? al_new_tensor_on(nd, shape, out_dt, a->storage->device) : NULL;
    if (out) {
        int64_t sa[AL_MAX_DIMS], sb[AL_MAX_DIMS];
        al_broadcast_strides(ca, nd, shape, sa);
        al_broadcast_strides(cb, nd, shape, sb);
        if (out->storage->device == AL_CUDA) {
            if (cuda(cuda_op, out, ca, sa, cb, sb) < 0) { al_release(out); out = NULL; }
            al_release(ca);
            al_release(cb);
            return out;
        }
        al_iter it;
        al_iter_init(&it, nd, shape);
        al_iter_add(&it, al_ptr(out), out->strides, al_dtype_size(out_dt));
        al_iter_add(&it, al_ptr(ca), sa, al_dtype_size(in));
        al_iter_add(&it, al_ptr(cb), sb, al_dtype_size(in));
        al_iter_run(&it, row, arg);
    }
    al_release(ca);
    al_release(cb);
    return out;
}

/* out = a op b over the broadcast shape, in the promoted dtype; no graph. */
static al_tensor *binary_compute(binary_op op, const al_tensor *a, const al_tensor *b) {
    al_dtype dt = promote(a->dtype, b->dtype);
    if (op == OP_DIV && dt == AL_INT64) dt = AL_FLOAT32;   /* `/` is true division, as in Lua */
    binary_arg arg = {op, dt};
    return broadcast_pair(binary_names[op], a, b, dt, dt, binary_row, &arg, al_cuda_binary, op);
}

static void binary_backward(al_node *node, const al_tensor *g) {
    binary_op op = (binary_op)node->ints[0];
    const al_tensor *a = node->inputs[0], *b = node->inputs[1];
    al_tensor *ga = NULL, *gb = NULL;
    switch (op) {
    case OP_ADD:
        ga = al_retain((al_tensor *)g);
        gb = al_retain((al_tensor *)g);
        break;
    case OP_SUB:
        ga = al_retain((al_tensor *)g);
        if (al_input_needs_grad(node, 1)) gb = al_neg(g);
        break;
    case OP_MUL:
        if (al_input_needs_grad(node, 0)) ga = al_mul(g, b);
        if (al_input_needs_grad(node, 1)) gb = al_mul(g, a);
        break;
    case OP_DIV:
        if (al_input_needs_grad(node, 0)) ga = al_div(g, b);
        if (al_input_needs_grad(node, 1)) { /* d(a/b)/db = -(a/b)/b */
            al_tensor *q = al_div(a, b), *qb = q ? al_div(q, b) : NULL;
            al_tensor *t = qb ? al_mul(g, qb) : NULL;
            gb = t ? al_neg(t) : NULL;
            al_release(q); al_release(qb); al_release(t);
        }
        break;
    case OP_MAX: case OP_MIN: { /* the gradient goes to the chosen side (a on ties) */
        al_tensor *pick_a = al_compare(a, b, op == OP_MAX ? AL_GE : AL_LE);
        if (pick_a) {
            if (al_input_needs_grad(node, 0)) ga = al_mul(g, pick_a);
            if (al_input_needs_grad(node, 1)) {
                al_tensor *pick_b = al_rsub_scalar(1.0, pick_a);
                gb = pick_b ? al_mul(g, pick_b) : NULL;
                al_release(pick_b);
            }
        }
        al_release(pick_a);
        break;
    }
    }
    al_accumulate_input(node, 0, ga);
    al_accumulate_input(node, 1, gb);
    al_release(ga);
    al_release(gb);
}

static al_tensor *binary(binary_op op, const al_tensor *a, const al_tensor *b) {
    CHECK_TENSOR(binary_names[op], a, "a");
    CHECK_TENSOR(binary_names[op], b, "b");
    if (!al_same_device(binary_names[op], a, b, NULL)) return NULL;   /* CPU or CUDA: both have kernels */
    al_tensor *out = binary_compute(op, a, b);
    if (out && al_grad_needed2(a, b) && al_is_float(out->dtype)) {
        const al_tensor *in[2] = {a, b};
        al_node *node = al_record(out, binary_names[op], binary_backward, 2, in);
        if (node) node->ints[0] = op;
    }
    return out;
}

al_tensor *al_add(const al_tensor *a, const al_tensor *b) { return binary(OP_ADD, a, b); }
al_tensor *al_sub(const al_tensor *a, const al_tensor *b) { return binary(OP_SUB, a, b); }
al_tensor *al_mul(const al_tensor *a, const al_tensor *b) { return binary(OP_MUL, a, b); }
al_tensor *al_div(const al_tensor *a, const al_tensor *b) { return binary(OP_DIV, a, b); }
al_tensor *al_maximum(const al_tensor *a, const al_tensor *b) { return binary(OP_MAX, a, b); }
al_tensor *al_minimum(const al_tensor *a, const al_tensor *b) { return binary(OP_MIN, a, b); }

/* ---- unary ---------------------------------------------------------------------------------- */



typedef struct { unary_op op; al_dtype dtype; double s0, s1; } unary_arg;

static void unary_row(char **p, int64_t n, const int64_t *s, void *varg) {
    const unary_arg *arg = varg;
    if (arg->dtype == AL_FLOAT32) unary_row_float(arg->op, p, n, s, (float)arg->s0, (float)arg->s1);
    else unary_row_double(arg->op, p, n, s, arg->s0, arg->s1);
}

static al_tensor *unary_compute(unary_op op, const al_tensor *a, double s0, double s1) {
    al_dtype dt = a->dtype == AL_INT64 ? AL_FLOAT32 : a->dtype;
    al_tensor *ca = a->dtype == dt ? al_retain((al_tensor *)a) : al_to_dtype_nograd(a, dt);
    al_tensor *out = ca ? al_new_tensor_on(a->ndim, a->shape, dt, a->storage->device) : NULL;
    if (out && out->storage->device == AL_CUDA) {
        if (al_cuda_unary(op, out, ca, s0, s1) < 0) { al_release(out); out = NULL; }
    } else if (out) {
        al_iter it;
        al_iter_init(&it, a->ndim, a->shape);
        al_iter_add(&it, al_ptr(out), out->strides, al_dtype_size(dt));
        al_iter_add(&it, al_ptr(ca), ca->strides, al_dtype_size(dt));
        unary_arg arg = {op, dt, s0, s1};
        al_iter_run(&it, unary_row, &arg);
    }
    al_release(ca);
    return out;
}

/* Derivative factor d out / d a, as a tensor, from the saved input x and the saved output y. */
typedef struct { unary_op op; al_dtype dtype; double s0, s1; } dfactor_arg;

static void dfactor_row(char **p, int64_t n, const int64_t *s, void *varg) {
    const dfactor_arg *arg = varg;
    if (arg->dtype == AL_FLOAT32) dfactor_row_float(arg->op, p, n, s, (float)arg->s0, (float)arg->s1);
    else dfactor_row_double(arg->op, p, n, s, arg->s0, arg->s1);
}

/* gelu's gradient in one pass, g * gelu'(x), for contiguous float32 g and x (the MLP's hidden layer):
 * the general path below forms the derivative as a tensor first and then multiplies, two passes
 * over the largest activation of a transformer block and one more allocation. */
static al_tensor *gelu_backward_float(const al_tensor *g, const al_tensor *x) {
    al_tensor *ga = al_new_like(x);
    if (!ga) return NULL;
    const float *restrict G = al_ptr(g), *restrict X = al_ptr(x);
    float *restrict out = al_ptr(ga);
    const int64_t n = al_numel(x);
    const float c = (float)GELU_C;
    #pragma omp parallel if (n >= AL_PARALLEL_GRAIN)
    {
        int64_t first, last;
        al_thread_share(n, &first, &last);
        for (int64_t i = first; i < last; i++) {
            const float a = X[i], th = al_tanhf(c * (a + 0.044715f * a * a * a));
            out[i] = G[i] * (0.5f * (1 + th) + 0.5f * a * (1 - th * th) * c * (1 + 0.134145f * a * a));
        }
    }
    return ga;
}

static void unary_backward(al_node *node, const al_tensor *g) {
    unary_op op = (unary_op)node->ints[0];
    double s0 = node->scalars[0], s1 = node->scalars[1];
    al_tensor *ga = NULL;
    const al_tensor *x0 = node->inputs[0];
    if (op == U_GELU && x0->dtype == AL_FLOAT32 && g->dtype == AL_FLOAT32 && al_is_contiguous(x0) &&
        al_is_contiguous(g) && al_shape_equal(g->ndim, g->shape, x0->ndim, x0->shape)) {
        al_accumulate_input_take(node, 0, gelu_backward_float(g, x0));
        return;
    }
    switch (op) {
    case U_NEG: ga = al_neg(g); break;
    case U_ADD_S: ga = al_retain((al_tensor *)g); break;
    case U_MUL_S: ga = al_mul_scalar(g, s0); break;
    case U_RSUB_S: ga = al_neg(g); break;
    default: {
        const al_tensor *x = node->inputs[0];
        const al_tensor *y = node->saved[0] ? node->saved[0] : x;
        al_tensor *factor = al_new_like(x);
        if (!factor) break;
        al_iter it;
        al_iter_init(&it, x->ndim, x->shape);
        al_iter_add(&it, al_ptr(factor), factor->strides, al_dtype_size(x->dtype));
        al_iter_add(&it, al_ptr(x), x->strides, al_dtype_size(x->dtype));
        al_iter_add(&it, al_ptr(y), y->strides, al_dtype_size(y->dtype));
        dfactor_arg arg = {op, x->dtype, s0, s1};
        al_iter_run(&it, dfactor_row, &arg);
        ga = al_mul(g, factor);
        al_release(factor);
    }
    }
    al_accumulate_input(node, 0, ga);
    al_release(ga);
}

/* Integer arithmetic stays integer: int64 +, -, * by an integer scalar (and neg) keep int64, as
 * index arithmetic needs (the Lua layer turns its 1-based ids into the core's 0-based ones so). */
static al_tensor *int64_scalar_op(unary_op op, const al_tensor *a, double s0) {
    if (a->dtype != AL_INT64 || s0 != floor(s0)) return NULL;
    binary_op bop;
    switch (op) {
    case U_ADD_S: bop = OP_ADD; break;
    case U_MUL_S: bop = OP_MUL; break;
    case U_RSUB_S: bop = OP_SUB; break;
    case U_NEG: bop = OP_MUL; s0 = -1; break;
    default: return NULL;
    }
    al_tensor *s = al_full_on(0, NULL, s0, AL_INT64, a->storage->device);   /* the scalar beside a */
    al_tensor *out = s ? (op == U_RSUB_S ? binary_compute(bop, s, a) : binary_compute(bop, a, s)) : NULL;
    al_release(s);
    return out;
}

static al_tensor *unary(unary_op op, const al_tensor *a, double s0, double s1) {
    CHECK_TENSOR(unary_names[op], a, "self");
    AL_REFUSE_BFLOAT16(unary_names[op], a, NULL);
    al_tensor *out = int64_scalar_op(op, a, s0);
    if (out) return out;
    out = unary_compute(op, a, s0, s1);
    if (out && al_grad_needed1(a)) {
        al_node *node = al_record(out, unary_names[op], unary_backward, 1, &a);
        if (node) {
            node->ints[0] = op;
            node->scalars[0] = s0;
            node->scalars[1] = s1;
            /* these derivatives are cheapest from the output; keep an alias (not the output
             * itself, which would make a cycle) */
            if (op == U_EXP || op == U_SQRT || op == U_TANH || op == U_SIGMOID || op == U_RDIV_S) {
                al_tensor *alias = al_alias(out);
                al_node_save(node, 0, alias);
                al_release(alias);
            }
        }
    }
    return out;
}

al_tensor *al_neg(const al_tensor *a) { return unary(U_NEG, a, 0, 0); }
al_tensor *al_exp(const al_tensor *a) { return unary(U_EXP, a, 0, 0); }
al_tensor *al_log(const al_tensor *a) { return unary(U_LOG, a, 0, 0); }
al_tensor *al_sqrt(const al_tensor *a) { return unary(U_SQRT, a, 0, 0); }
al_tensor *al_tanh(const al_tensor *a) { return unary(U_TANH, a, 0, 0); }
al_tensor *al_sigmoid(const al_tensor *a) { return unary(U_SIGMOID, a, 0, 0); }
al_tensor *al_relu(const al_tensor *a) { return unary(U_RELU, a, 0, 0); }
al_tensor *al_gelu(const al_tensor *a) { return unary(U_GELU, a, 0, 0); }
al_tensor *al_abs(const al_tensor *a) { return unary(U_ABS, a, 0, 0); }
al_tensor *al_add_scalar(const al_tensor *a, double s) { return unary(U_ADD_S, a, s, 0); }
al_tensor *al_mul_scalar(const al_tensor *a, double s) { return unary(U_MUL_S, a, s, 0); }
al_tensor *al_rsub_scalar(double s, const al_tensor *a) { return unary(U_RSUB_S, a, s, 0); }
al_tensor *al_rdiv_scalar(double s, const al_tensor *a) { return unary(U_RDIV_S, a, s, 0); }
al_tensor *al_pow_scalar(const al_tensor *a, double p) { return unary(U_POW_S, a, p, 0); }
al_tensor *al_clamp(const al_tensor *a, double lo, double hi) {
    if (lo > hi) {
        al_error("clamp: lower bound %g is above upper bound %g", lo, hi);
        return NULL;
    }
    return unary(U_CLAMP, a, lo, hi);
}

/* ---- comparisons and where (no gradient flows through a comparison) -------------------------- */

typedef struct { al_compare_op op; al_dtype in, out; } compare_arg;

static void compare_row(char **p, int64_t n, const int64_t *s, void *varg) {
    const compare_arg *arg = varg;
    const bool out_double = arg->out == AL_FLOAT64;
    if (arg->in == AL_FLOAT32) compare_row_float(arg->op, out_double, p, n, s);
    else if (arg->in == AL_FLOAT64) compare_row_double(arg->op, out_double, p, n, s);
    else compare_row_int64(arg->op, out_double, p, n, s);
}

al_tensor *al_compare(const al_tensor *a, const al_tensor *b, al_compare_op op) {
    CHECK_TENSOR("compare", a, "a");
    CHECK_TENSOR("compare", b, "b");
    if (!al_same_device("compare", a, b, NULL)) return NULL;
    if ((int)op < AL_EQ || (int)op > AL_GE) { al_error("compare: unknown comparison %d", (int)op); return NULL; }
    const al_dtype in = promote(a->dtype, b->dtype);
    const al_dtype out_dt = a->dtype == AL_FLOAT64 ? AL_FLOAT64 : AL_FLOAT32;
    compare_arg arg = {op, in, out_dt};
    return broadcast_pair("compare", a, b, in, out_dt, compare_row, &arg, al_cuda_compare, op);
}

al_tensor *al_compare_scalar(const al_tensor *a, double s, al_compare_op op) {
    CHECK_TENSOR("compare", a, "a");
    al_tensor *b = al_full_on(0, NULL, s, a->dtype == AL_INT64 && s != floor(s) ? AL_FLOAT64 : a->dtype,
                              a->storage->device);   /* the scalar beside a */
    al_tensor *out = b ? al_compare(a, b, op) : NULL;
    al_release(b);
    return out;
}

static void where_backward(al_node *node, const al_tensor *g) {
    const al_tensor *cond = node->saved[0];
    al_tensor *ga = al_input_needs_grad(node, 0) ? al_mul(g, cond) : NULL;
    al_tensor *gb = NULL;
    if (al_input_needs_grad(node, 1)) {
        al_tensor *inv = al_rsub_scalar(1.0, cond);
        gb = inv ? al_mul(g, inv) : NULL;
        al_release(inv);
    }
    al_accumulate_input(node, 0, ga);
    al_accumulate_input(node, 1, gb);
    al_release(ga);
    al_release(gb);
}

/* where = cond01 * a + (1 - cond01) * b would turn inf * 0 into NaN; select instead. */
static void where_row(char **p, int64_t n, const int64_t *s, void *varg) {
    switch (*(const al_dtype *)varg) {
    case AL_FLOAT32: where_row_float(p, n, s); break;
    case AL_FLOAT64: where_row_double(p, n, s); break;
    default: where_row_int64(p, n, s); break;
    }
}

al_tensor *al_where(const al_tensor *cond, const al_tensor *a, const al_tensor *b) {
    CHECK_TENSOR("where", cond, "cond");
    CHECK_TENSOR("where", a, "a");
    CHECK_TENSOR("where", b, "b");
    if (!al_same_device("where", cond, a, b)) return NULL;
    int n1, nd; int64_t s1[AL_MAX_DIMS], shape[AL_MAX_DIMS];
    if (!al_broadcast_shapes("where", a->ndim, a->shape, b->ndim, b->shape, &n1, s1)) return NULL;
    if (!al_broadcast_shapes("where", cond->ndim, cond->shape, n1, s1, &nd, shape)) return NULL;
    al_dtype dt = promote(a->dtype, b->dtype);
    /* cf: cond as 0/1 in the values' dtype (float64 for int64 values); the backward keeps it */
    al_tensor *c01 = al_compare_scalar(cond, 0, AL_NE);
    al_dtype cdt = dt == AL_INT64 ? AL_FLOAT64 : dt;
    al_tensor *cf = c01 ? (c01->dtype == cdt ? al_retain(c01) : al_to_dtype_nograd(c01, cdt)) : NULL;
    al_tensor *keep = cf && dt == AL_INT64 ? al_to_dtype_nograd(cf, AL_INT64) : al_retain(cf);
    al_tensor *out = keep ? al_new_tensor_on(nd, shape, dt, a->storage->device) : NULL;
    if (out) {
        al_tensor *ca = a->dtype == dt ? al_retain((al_tensor *)a) : al_to_dtype_nograd(a, dt);
        al_tensor *cb = b->dtype == dt ? al_retain((al_tensor *)b) : al_to_dtype_nograd(b, dt);
        if (ca && cb) {
            int64_t sc[AL_MAX_DIMS], sa[AL_MAX_DIMS], sb[AL_MAX_DIMS];
            al_broadcast_strides(keep, nd, shape, sc);
            al_broadcast_strides(ca, nd, shape, sa);
            al_broadcast_strides(cb, nd, shape, sb);
            const size_t es = al_dtype_size(dt);
            if (out->storage->device == AL_CUDA) {
                if (al_cuda_where(out, keep, sc, ca, sa, cb, sb) < 0) { al_release(out); out = NULL; }
            } else {
                al_iter it;
                al_iter_init(&it, nd, shape);
                al_iter_add(&it, al_ptr(out), out->strides, es);
                al_iter_add(&it, al_ptr(keep), sc, es);
                al_iter_add(&it, al_ptr(ca), sa, es);
                al_iter_add(&it, al_ptr(cb), sb, es);
                al_iter_run(&it, where_row, &dt);
            }
        } else {
            al_release(out);
            out = NULL;
        }
        al_release(ca); al_release(cb);
    }
    al_release(keep);
    if (out && al_grad_needed2(a, b) && al_is_float(dt)) {
        const al_tensor *in[2] = {a, b};
        al_node *node = al_record(out, "where", where_backward, 2, in);
        if (node) al_node_save(node, 0, cf);
    }
    al_release(c01);
    al_release(cf);
    return out;
}

/* ---- in place ------------------------------------------------------------------------------- */

int al_add_scaled_(al_tensor *dst, const al_tensor *src, double alpha) {
    if (!dst || !src) { al_error("add_: tensor is missing"); return -1; }
    al_tensor *scaled = alpha == 1.0 ? al_retain((al_tensor *)src) : al_mul_scalar(src, alpha);
    if (!scaled) return -1;
    int prev = al_set_grad_enabled(0);
    al_tensor *sum = al_add(dst, scaled);
    al_set_grad_enabled(prev);
    int rc = sum ? al_copy_(dst, sum) : -1;
    al_release(sum);
    al_release(scaled);
    return rc;
}

int al_mul_scalar_(al_tensor *t, double s) {
    if (!t) { al_error("mul_: tensor is missing"); return -1; }
    int prev = al_set_grad_enabled(0);
    al_tensor *prod = al_mul_scalar(t, s);
    al_set_grad_enabled(prev);
    int rc = prod ? al_copy_(t, prod) : -1;
    al_release(prod);
    return rc;
}
