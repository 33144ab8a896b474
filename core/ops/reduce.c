/* reduce.c -- reductions along one dimension (sum, mean, max, min, argmax, logsumexp), softmax and
 * log-softmax, with backward.
 *
 * Every kernel sees its input as a contiguous (outer, R, inner) block, R being the reduced size:
 * the inner loop runs over `inner` with unit stride (vectorisable) or, when inner = 1, along R. */
#include "../internal.h"
#include <math.h>
#include <string.h>

typedef struct { int64_t outer, R, inner; } lines;

static lines lines_of(const al_tensor *t, int d) {
    lines l = {1, t->ndim ? t->shape[d] : 1, 1};
    for (int i = 0; i < d; i++) l.outer *= t->shape[i];
    for (int i = d + 1; i < t->ndim; i++) l.inner *= t->shape[i];
    return l;
}

static void reduced_shape(const al_tensor *t, int d, int keepdim, int *nd, int64_t *shape) {
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d) { if (keepdim) shape[k++] = 1; }
        else shape[k++] = t->shape[i];
    }
    *nd = k;
}

/* softmax_kind (softmax, log_softmax, logsumexp) is in internal.h: the CUDA kernels switch on it too */

/* sum_lines: lines of at least LONG_LINE values are summed in SUM_LANES running sums */
enum { SUM_LANES = 32, LONG_LINE = 1 << 16 };

/* The kernels, once per float dtype: sum_lines_float, sum_lines_double, ... */
#define GENERIC_FILE "../generic/reduce_lines.h"
#include "../generic/float_types.h"

/* A float view of t, contiguous: int64 inputs are reduced as float64. */
static al_tensor *float_contiguous(const al_tensor *t) {
    return al_to_dtype_nograd(t, t->dtype == AL_INT64 ? AL_FLOAT64 : t->dtype);
}

/* ---- sum and mean --------------------------------------------------------------------------- */


static void sum_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    int d = (int)node->ints[0];
    bool keepdim = node->ints[1], all = node->ints[2];
    double scale = node->scalars[0];
    al_tensor *gk;
    if (all) gk = al_reshape(g, 0, NULL);
    else gk = keepdim ? al_retain((al_tensor *)g) : al_unsqueeze(g, d);
    al_tensor *gs = gk && scale != 1.0 ? al_mul_scalar(gk, scale) : al_retain(gk);
    al_tensor *ge = gs ? al_expand(gs, x->ndim, x->shape) : NULL;
    al_accumulate_input(node, 0, ge);
    al_release(gk); al_release(gs); al_release(ge);
}

static al_tensor *sum_impl(const char *fn, const al_tensor *t, int dim, int keepdim, bool mean) {
    CHECK_TENSOR(fn, t, "self");
    AL_REFUSE_BFLOAT16(fn, t, NULL);
    bool all = dim == AL_ALL_DIMS;
    int d = 0;
    if (!all && (d = al_normalize_dim(fn, dim, t->ndim)) < 0) return NULL;
    al_tensor *c = float_contiguous(t);
    if (!c) return NULL;
    int nd; int64_t shape[AL_MAX_DIMS];
    lines l;
    if (all) {
        l.outer = 1; l.R = al_numel(c); l.inner = 1;
        nd = keepdim ? t->ndim : 0;
        for (int i = 0; i < nd; i++) shape[i] = 1;
    } else {
        l = lines_of(c, d);
        reduced_shape(c, d, keepdim, &nd, shape);
    }
    if (mean && l.R == 0) {
        al_error("%s: cannot average over an empty dimension (shape %s)", fn, TSHAPE(t));
        al_release(c);
        return NULL;
    }
    double scale = mean ? 1.0 / (double)l.R : 1.0;
    al_tensor *out = al_new_tensor_on(nd, shape, c->dtype, c->storage->device);
    if (out && c->storage->device == AL_CUDA) {
        if (al_cuda_sum_lines(c, out, l.outer, l.R, l.inner, scale) < 0) { al_release(out); out = NULL; }
    } else if (out && al_numel(out) > 0) {   /* no elements out: skip the (possibly 2^40) empty lines */
        if (c->dtype == AL_FLOAT32) sum_lines_float(al_ptr(c), al_ptr(out), l, scale);
        else sum_lines_double(al_ptr(c), al_ptr(out), l, scale);
    }
    al_release(c);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, fn, sum_backward, 1, &t);
        if (node) {
            node->ints[0] = d; node->ints[1] = keepdim; node->ints[2] = all;
            node->scalars[0] = scale;
        }
    }
    return out;
}

al_tensor *al_sum(const al_tensor *t, int dim, int keepdim) { return sum_impl("sum", t, dim, keepdim, false); }
al_tensor *al_mean(const al_tensor *t, int dim, int keepdim) { return sum_impl("mean", t, dim, keepdim, true); }

al_tensor *al_sum_to_shape(const al_tensor *g, int ndim, const int64_t *shape) {
    al_tensor *cur = al_retain((al_tensor *)g);
    int lead = g->ndim - ndim;
    if (lead < 0) {
        al_error("backward: gradient of shape %s cannot fold into shape %s", TSHAPE(g), al_shape_str(ndim, shape));
        al_release(cur);
        return NULL;
    }
    for (int i = 0; i < lead && cur; i++) {
        al_tensor *next = al_sum(cur, 0, 0);
        al_release(cur);
        cur = next;
    }
    for (int i = 0; i < ndim && cur; i++) {
        if (shape[i] == 1 && cur->shape[i] != 1) {
            al_tensor *next = al_sum(cur, i, 1);
            al_release(cur);
            cur = next;
        }
    }
    if (cur && !al_shape_equal(cur->ndim, cur->shape, ndim, shape)) {
        al_error("backward: gradient of shape %s cannot fold into shape %s", TSHAPE(g), al_shape_str(ndim, shape));
        al_release(cur);
        return NULL;
    }
    return cur;
}

/* ---- max, min, argmax ------------------------------------------------------------------------ */


static void max_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0], *idx = node->saved[0];
    int d = (int)node->ints[0];
    al_tensor *gin = al_full_on(x->ndim, x->shape, 0, x->dtype, x->storage->device);
    al_tensor *gc = gin ? al_contiguous_nograd(g) : NULL;
    if (gc && gin->storage->device == AL_CUDA) {
        lines l = lines_of(x, d);
        if (al_cuda_scatter_best(gin, gc, idx, l.outer, l.R, l.inner) == 0) al_accumulate_input(node, 0, gin);
    } else if (gc) {
        lines l = lines_of(x, d);
        const int64_t *ip = al_ptr(idx);
        for (int64_t a = 0; a < l.outer; a++)
            for (int64_t i = 0; i < l.inner; i++) {
                int64_t k = a * l.inner + i, pos = (a * l.R + ip[k]) * l.inner + i;
                if (x->dtype == AL_FLOAT32) ((float *)al_ptr(gin))[pos] += ((float *)al_ptr(gc))[k];
                else ((double *)al_ptr(gin))[pos] += ((double *)al_ptr(gc))[k];
            }
        al_accumulate_input(node, 0, gin);
    }
    al_release(gin);
    al_release(gc);
}

static al_tensor *argbest(const char *fn, const al_tensor *t, int dim, int keepdim, bool want_max,
                          al_tensor **indices) {
    if (indices) *indices = NULL;
    CHECK_TENSOR(fn, t, "self");
    AL_REFUSE_BFLOAT16(fn, t, NULL);
    int d = al_normalize_dim(fn, dim, t->ndim);
    if (d < 0) return NULL;
    if (t->shape[d] == 0) {
        al_error("%s: dimension %d of shape %s is empty", fn, d + 1, TSHAPE(t));
        return NULL;
    }
    al_tensor *c = float_contiguous(t);
    if (!c) return NULL;
    int nd; int64_t shape[AL_MAX_DIMS];
    reduced_shape(c, d, keepdim, &nd, shape);
    lines l = lines_of(c, d);
    al_tensor *vals = al_new_tensor_on(nd, shape, c->dtype, c->storage->device);
    al_tensor *idx = al_new_tensor_on(nd, shape, AL_INT64, c->storage->device);
    if (vals && idx && c->storage->device == AL_CUDA) {
        if (al_cuda_argbest_lines(c, vals, idx, l.outer, l.R, l.inner, want_max) < 0) { al_release(vals); vals = NULL; }
    } else if (vals && idx) {
        if (c->dtype == AL_FLOAT32) argbest_lines_float(al_ptr(c), al_ptr(vals), al_ptr(idx), l, want_max);
        else argbest_lines_double(al_ptr(c), al_ptr(vals), al_ptr(idx), l, want_max);
    }
    al_release(c);
    if (vals && t->dtype == AL_INT64) {   /* compared as float64 (exact below 2^53); given back as int64 */
        al_tensor *iv = al_to_dtype_nograd(vals, AL_INT64);
        al_release(vals);
        vals = iv;
    }
    if (!vals || !idx) { al_release(vals); al_release(idx); return NULL; }
    if (al_grad_needed1(t)) {
        al_node *node = al_record(vals, fn, max_backward, 1, &t);
        if (node) {
            node->ints[0] = d;
            al_node_save(node, 0, idx);
        }
    }
    if (indices) *indices = idx;
    else al_release(idx);
    return vals;
}

al_tensor *al_max(const al_tensor *t, int dim, int keepdim, al_tensor **indices) {
    return argbest("max", t, dim, keepdim, true, indices);
}
al_tensor *al_min(const al_tensor *t, int dim, int keepdim, al_tensor **indices) {
    return argbest("min", t, dim, keepdim, false, indices);
}
al_tensor *al_argmax(const al_tensor *t, int dim, int keepdim) {
    al_tensor *idx = NULL;
    int prev = al_set_grad_enabled(0);
    al_tensor *vals = argbest("argmax", t, dim, keepdim, true, &idx);
    al_set_grad_enabled(prev);
    al_release(vals);
    return idx;
}

/* ---- softmax family ------------------------------------------------------------------------ */



static void softmax_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    softmax_kind kind = (softmax_kind)node->ints[1];
    int d = (int)node->ints[0];
    al_tensor *gin = al_new_like(x);
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *yc = al_contiguous_nograd(node->saved[0]);
    al_tensor *xc = kind == SM_LOGSUMEXP ? al_contiguous_nograd(x) : NULL;
    if (gin && gc && yc && (xc || kind != SM_LOGSUMEXP)) {
        lines l = lines_of(x, d);
        bool ok = true;
        if (al_numel(x) == 0) {}   /* no elements: skip the (possibly 2^40) empty lines */
        else if (x->storage->device == AL_CUDA) ok = al_cuda_softmax_backward(yc, gc, xc, gin, l.outer, l.R, l.inner, kind) == 0;
        else if (x->dtype == AL_FLOAT32)
            softmax_backward_lines_float(al_ptr(yc), al_ptr(gc), xc ? al_ptr(xc) : NULL, al_ptr(gin), l, kind);
        else softmax_backward_lines_double(al_ptr(yc), al_ptr(gc), xc ? al_ptr(xc) : NULL, al_ptr(gin), l, kind);
        if (ok) al_accumulate_input(node, 0, gin);
    }
    al_release(gin); al_release(gc); al_release(yc); al_release(xc);
}

static al_tensor *softmax_impl(const char *fn, softmax_kind kind, const al_tensor *t, int dim, int keepdim) {
    CHECK_TENSOR(fn, t, "self");   /* CPU or CUDA: both have kernels (core/cuda/nn.cu) */
    AL_REFUSE_BFLOAT16(fn, t, NULL);
    int d = al_normalize_dim(fn, dim, t->ndim);
    if (d < 0) return NULL;
    al_tensor *c = float_contiguous(t);
    if (!c) return NULL;
    lines l = lines_of(c, d);
    int nd = c->ndim; int64_t shape[AL_MAX_DIMS];
    memcpy(shape, c->shape, sizeof shape);
    if (kind == SM_LOGSUMEXP) reduced_shape(c, d, 1, &nd, shape);
    al_tensor *out = al_new_tensor_on(nd, shape, c->dtype, c->storage->device);
    if (out && al_numel(out) > 0 && c->storage->device == AL_CUDA) {
        if (al_cuda_softmax(c, out, l.outer, l.R, l.inner, kind) < 0) { al_release(out); out = NULL; }
    } else if (out && al_numel(out) > 0) {   /* no elements: skip the (possibly 2^40) empty lines */
        if (c->dtype == AL_FLOAT32) softmax_lines_float(al_ptr(c), al_ptr(out), l, kind);
        else softmax_lines_double(al_ptr(c), al_ptr(out), l, kind);
    }
    al_release(c);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, fn, softmax_backward, 1, &t);
        if (node) {
            node->ints[0] = d;
            node->ints[1] = kind;
            al_tensor *alias = al_alias(out);
            al_node_save(node, 0, alias);
            al_release(alias);
        }
    }
    if (out && kind == SM_LOGSUMEXP && !keepdim) {
        al_tensor *squeezed = al_squeeze(out, d);
        al_release(out);
        out = squeezed;
    }
    return out;
}

al_tensor *al_softmax(const al_tensor *t, int dim) { return softmax_impl("softmax", SM_SOFTMAX, t, dim, 1); }
al_tensor *al_log_softmax(const al_tensor *t, int dim) { return softmax_impl("log_softmax", SM_LOG_SOFTMAX, t, dim, 1); }
al_tensor *al_logsumexp(const al_tensor *t, int dim, int keepdim) { return softmax_impl("logsumexp", SM_LOGSUMEXP, t, dim, keepdim); }

/* ---- cumulative sum ---------------------------------------------------------------------------
 * y_r = sum_{s <= r} x_s along dim; backward: dx_r = sum_{s >= r} g_s (the reverse cumulative sum).
 * Accumulated in double, so long prefixes of float32 keep their precision. */


static al_tensor *cumsum_impl(const al_tensor *t, int d, bool reverse) {
    al_tensor *c = float_contiguous(t);
    al_tensor *out = c ? al_new_like(c) : NULL;
    if (out && c->storage->device == AL_CUDA) {
        lines l = lines_of(c, d);
        if (al_cuda_cumsum_lines(c, out, l.outer, l.R, l.inner, reverse) < 0) { al_release(out); out = NULL; }
    } else if (out && al_numel(out) > 0) {
        lines l = lines_of(c, d);
        if (c->dtype == AL_FLOAT32) cumsum_lines_float(al_ptr(c), al_ptr(out), l, reverse);
        else cumsum_lines_double(al_ptr(c), al_ptr(out), l, reverse);
    }
    al_release(c);
    return out;
}

static void cumsum_backward(al_node *node, const al_tensor *g) {
    al_tensor *gx = cumsum_impl(g, (int)node->ints[0], true);
    al_accumulate_input(node, 0, gx);
    al_release(gx);
}

al_tensor *al_cumsum(const al_tensor *t, int dim) {
    CHECK_TENSOR("cumsum", t, "self");
    AL_REFUSE_BFLOAT16("cumsum", t, NULL);
    int d = al_normalize_dim("cumsum", dim, t->ndim);
    if (d < 0) return NULL;
    al_tensor *out = cumsum_impl(t, d, false);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, "cumsum", cumsum_backward, 1, &t);
        if (node) node->ints[0] = d;
    }
    return out;
}
