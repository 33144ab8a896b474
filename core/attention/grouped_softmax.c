/* grouped_softmax.c -- softmax within groups of one dimension (landmark attention's grouped
 * softmax, epfml/landmark-attention landmark_grouped_softmax): along dim, the entries with one
 * group label form one softmax,
 *   y_j = exp(x_j - max_g) / sum_{j' in g} exp(x_j' - max_g),   g = group(j)
 * each group max-subtracted on its own; -inf entries get 0 and a group of only -inf entries is all 0
 * (the reference's empty-group case).  groups: int64 labels broadcastable to x (any values; only
 * equality matters).  Backward, per group: dx_j = y_j (g_j - sum_{j' in g} g_j' y_j').
 * Cost O(n log n) per line of n entries (the line's entries are sorted by label once); on CUDA
 * tensors O(n^2) a line, a thread per entry (core/cuda/grouped_softmax.cu). */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>

typedef struct { int64_t label, pos; } labelled;
static int by_label_then_pos(const void *a, const void *b) {
    const labelled *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* the line kernel, once per dtype: grouped_lines_float, grouped_lines_double */
#define GENERIC_FILE "../generic/grouped_softmax_lines.h"
#include "../generic/float_types.h"

/* y = grouped softmax of x (contiguous, groups along the last dim) into a new tensor;
 * backward: g given, x holds the saved y */
static al_tensor *grouped_run(const al_tensor *x, const al_tensor *labels, const al_tensor *g, bool backward) {
    const int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, lines = n ? al_numel(x) / n : 0;
    al_tensor *y = al_new_like(x);
    if (y && x->storage->device == AL_CUDA) {   /* a thread per entry (core/cuda/grouped_softmax.cu) */
        if (al_cuda_grouped_softmax(x, labels, g, y, lines, n, backward) < 0) { al_release(y); y = NULL; }
        return y;
    }
    labelled *order = malloc(sizeof(labelled) * (size_t)(n + 1));
    if (!y || !order) {
        free(order); al_release(y);
        al_error("grouped_softmax: out of memory for %s", TSHAPE(x));
        return NULL;
    }
    if (x->dtype == AL_FLOAT32)
        grouped_lines_float(al_ptr(x), al_ptr(labels), g ? al_ptr(g) : NULL, al_ptr(y), lines, n, backward, order);
    else
        grouped_lines_double(al_ptr(x), al_ptr(labels), g ? al_ptr(g) : NULL, al_ptr(y), lines, n, backward, order);
    free(order);
    return y;
}

static void grouped_softmax_backward(al_node *node, const al_tensor *g) {
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *dx = gc ? grouped_run(node->saved[0], node->saved[1], gc, true) : NULL;
    al_accumulate_input(node, 0, dx);
    al_release(gc); al_release(dx);
}

/* the op along the last dim of a contiguous-or-not x; labels already expanded to x's shape */
static al_tensor *grouped_softmax_last(const al_tensor *x, const al_tensor *labels) {
    al_tensor *xc = al_contiguous_nograd(x), *lc = al_contiguous_nograd(labels);
    al_tensor *y = xc && lc ? grouped_run(xc, lc, NULL, false) : NULL;
    if (y && al_grad_needed1(x)) {
        al_node *node = al_record(y, "grouped_softmax", grouped_softmax_backward, 1, &x);
        al_tensor *ya = node ? al_alias(y) : NULL;
        if (node) { al_node_save(node, 0, ya); al_node_save(node, 1, lc); }
        al_release(ya);
    }
    al_release(xc); al_release(lc);
    return y;
}

al_tensor *al_grouped_softmax(const al_tensor *x, const al_tensor *groups, int dim) {
    CHECK_TENSOR("grouped_softmax", x, "x");
    CHECK_TENSOR("grouped_softmax", groups, "groups");
    if (!al_same_device("grouped_softmax", x, groups, NULL)) return NULL;   /* CPU or CUDA; no bfloat16 */
    if (!al_is_float(x->dtype) || x->ndim < 1 || groups->dtype != AL_INT64) {
        al_error("grouped_softmax: needs a float tensor x and int64 group labels (got x %s %s, groups %s %s)",
                 TSHAPE(x), al_dtype_name(x->dtype), TSHAPE(groups), al_dtype_name(groups->dtype));
        return NULL;
    }
    const int d = al_normalize_dim("grouped_softmax", dim, x->ndim);
    if (d < 0) return NULL;
    al_tensor *ge = al_expand(groups, x->ndim, x->shape);
    if (!ge) {
        al_error("grouped_softmax: groups %s do not broadcast to x %s", TSHAPE(groups), TSHAPE(x));
        return NULL;
    }
    const int last = x->ndim - 1;
    al_tensor *xt = al_transpose(x, d, last), *gt = al_transpose(ge, d, last);
    al_tensor *yt = xt && gt ? grouped_softmax_last(xt, gt) : NULL;
    al_tensor *y = yt ? al_transpose(yt, d, last) : NULL;
    al_release(ge); al_release(xt); al_release(gt); al_release(yt);
    return y;
}
