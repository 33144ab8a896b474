/* linear.c -- the affine map of nn.Linear as one op: y = x W^T + b, x (..., in), W (out, in).
 *
 * As one node it needs no transposed view of W on the graph, so W's gradient arrives contiguous
 * (no copy into the leaf), and the batch is folded into the rows of a single product both ways:
 *   dx = g W;  dW = g^T x (summed over every row by the product itself);  db = sum of g's rows. */
#include "../internal.h"

/* (..., k) as (rows, k): contiguous inputs only (the caller makes them so) */
static al_tensor *as_rows(const al_tensor *t) {
    int64_t k = t->shape[t->ndim - 1];
    int64_t shape[2] = {k ? al_numel(t) / k : 0, k}, strides[2] = {k, 1};
    return al_view_of(t, 2, shape, strides, t->offset);
}

static void linear_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0], *w = node->inputs[1];
    if (al_input_needs_grad(node, 0)) {
        al_tensor *gx = al_matmul(g, w);
        al_accumulate_input(node, 0, gx);
        al_release(gx);
    }
    if (al_input_needs_grad(node, 1) || al_input_needs_grad(node, 2)) {
        al_tensor *gc = al_contiguous_nograd(g), *g2 = gc ? as_rows(gc) : NULL;
        if (g2 && al_input_needs_grad(node, 1)) {
            al_tensor *xc = al_contiguous_nograd(x), *x2 = xc ? as_rows(xc) : NULL;
            al_tensor *gt = x2 ? al_transpose(g2, 0, 1) : NULL;
            al_tensor *gw = gt ? al_matmul(gt, x2) : NULL;
            al_accumulate_input(node, 1, gw);
            al_release(xc); al_release(x2); al_release(gt); al_release(gw);
        }
        if (g2 && al_input_needs_grad(node, 2)) {
            al_tensor *gb = al_sum(g2, 0, 0);
            al_accumulate_input(node, 2, gb);
            al_release(gb);
        }
        al_release(gc); al_release(g2);
    }
}

al_tensor *al_linear(const al_tensor *x, const al_tensor *weight, const al_tensor *bias) {
    CHECK_TENSOR("linear", x, "x");
    CHECK_TENSOR("linear", weight, "weight");
    if (weight->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != weight->shape[1]) {
        al_error("linear: input %s does not fit weight %s (need (..., %lld) for a weight (out, in))", TSHAPE(x),
                 TSHAPE(weight), weight->ndim == 2 ? (long long)weight->shape[1] : -1LL);
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != weight->shape[0])) {
        al_error("linear: bias %s does not fit weight %s (need {%lld})", TSHAPE(bias), TSHAPE(weight),
                 (long long)weight->shape[0]);
        return NULL;
    }
    if (x->dtype != weight->dtype || (bias && bias->dtype != weight->dtype) || !al_is_float(x->dtype)) {
        al_error("linear: input, weight and bias must share one float dtype (got %s, %s, %s)", al_dtype_name(x->dtype),
                 al_dtype_name(weight->dtype), bias ? al_dtype_name(bias->dtype) : "none");
        return NULL;
    }
    int prev = al_set_grad_enabled(0);
    al_tensor *xc = al_contiguous_nograd(x), *x2 = xc ? as_rows(xc) : NULL;
    al_tensor *wt = al_transpose(weight, 0, 1);
    al_tensor *y2 = x2 && wt ? al_matmul(x2, wt) : NULL;
    al_tensor *y = NULL;
    if (y2 && bias) {
        al_tensor *yb = al_add(y2, bias);
        al_release(y2);
        y2 = yb;
    }
    if (y2) {
        int64_t shape[AL_MAX_DIMS];
        for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
        shape[x->ndim - 1] = weight->shape[0];
        y = al_reshape(y2, x->ndim, shape);
    }
    al_set_grad_enabled(prev);
    al_release(xc); al_release(x2); al_release(wt); al_release(y2);
    if (y && (al_grad_needed2(x, weight) || al_grad_needed1(bias))) {
        const al_tensor *in[3] = {x, weight, bias};
        al_record(y, "linear", linear_backward, 3, in);
    }
    return y;
}
