/* view.c -- shape ops that share storage (reshape of contiguous data, transpose, permute, narrow,
 * select, unsqueeze, squeeze, expand) and the two that copy (cat, stack), with backward. */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>

/* The backward of every pure reshaping view: give the gradient the input's shape back. */
static void reshape_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    al_tensor *gx = al_reshape(g, x->ndim, x->shape);
    al_accumulate_input(node, 0, gx);
    al_release(gx);
}

static al_tensor *record_view(al_tensor *out, const al_tensor *in, const char *name, al_backward_fn bw) {
    if (out && al_grad_needed1(in)) al_record(out, name, bw, 1, &in);
    return out;
}

al_tensor *al_reshape(const al_tensor *t, int ndim, const int64_t *shape) {
    CHECK_TENSOR("reshape", t, "self");
    if (ndim < 0 || ndim > AL_MAX_DIMS || (ndim > 0 && !shape)) {
        al_error("reshape: %d dimensions given, at most %d are supported", ndim, AL_MAX_DIMS);
        return NULL;
    }
    int64_t full[AL_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        full[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) { al_error("reshape: only one size may be -1 (shape %s)", al_shape_str(ndim, shape)); return NULL; }
            infer = i;
        } else if (shape[i] < 0) {
            al_error("reshape: negative size %lld in shape %s", (long long)shape[i], al_shape_str(ndim, shape));
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    int64_t n = al_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known) {
            al_error("reshape: cannot reshape a tensor of shape %s (%lld elements) to %s", TSHAPE(t),
                     (long long)n, al_shape_str(ndim, shape));
            return NULL;
        }
        full[infer] = n / known;
    }
    if (!al_check_shape("reshape", ndim, full)) return NULL;
    if (al_shape_numel(ndim, full) != n) {
        al_error("reshape: cannot reshape a tensor of shape %s (%lld elements) to %s (%lld elements)",
                 TSHAPE(t), (long long)n, al_shape_str(ndim, full), (long long)al_shape_numel(ndim, full));
        return NULL;
    }
    al_tensor *c = al_contiguous_nograd(t);
    if (!c) return NULL;
    int64_t strides[AL_MAX_DIMS], s = 1;
    for (int i = ndim - 1; i >= 0; i--) { strides[i] = s; s *= full[i] ? full[i] : 1; }
    al_tensor *out = al_view_of(c, ndim, full, strides, c->offset);
    al_release(c);
    return record_view(out, t, "reshape", reshape_backward);
}

static void permute_backward(al_node *node, const al_tensor *g) {
    int inverse[AL_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inverse[node->ints[i]] = i;
    al_tensor *gx = al_permute(g, inverse);
    al_accumulate_input(node, 0, gx);
    al_release(gx);
}

al_tensor *al_permute(const al_tensor *t, const int *order) {
    CHECK_TENSOR("permute", t, "self");
    int64_t shape[AL_MAX_DIMS], strides[AL_MAX_DIMS];
    bool used[AL_MAX_DIMS] = {false};
    int norm[AL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int d = al_normalize_dim("permute", order[i], t->ndim);
        if (d < 0) return NULL;
        if (used[d]) {
            al_error("permute: dimension %d appears twice in the order for shape %s", d + 1, TSHAPE(t));
            return NULL;
        }
        used[d] = true;
        norm[i] = d;
        shape[i] = t->shape[d];
        strides[i] = t->strides[d];
    }
    al_tensor *out = al_view_of(t, t->ndim, shape, strides, t->offset);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, "permute", permute_backward, 1, &t);
        if (node) for (int i = 0; i < t->ndim; i++) node->ints[i] = norm[i];
    }
    return out;
}

al_tensor *al_transpose(const al_tensor *t, int dim0, int dim1) {
    CHECK_TENSOR("transpose", t, "self");
    int a = al_normalize_dim("transpose", dim0, t->ndim);
    int b = a < 0 ? -1 : al_normalize_dim("transpose", dim1, t->ndim);
    if (b < 0) return NULL;
    int order[AL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) order[i] = i;
    order[a] = b;
    order[b] = a;
    return al_permute(t, order);
}

static void narrow_backward(al_node *node, const al_tensor *g) {
    al_accumulate_input_window(node, 0, g, (int)node->ints[0], node->ints[1], node->ints[2] != 0);
}

al_tensor *al_narrow(const al_tensor *t, int dim, int64_t start, int64_t length) {
    CHECK_TENSOR("narrow", t, "self");
    int d = al_normalize_dim("narrow", dim, t->ndim);
    if (d < 0) return NULL;
    if (start < 0 || length < 0 || start + length > t->shape[d]) {
        al_error("narrow: start %lld and length %lld do not fit dimension %d of size %lld (shape %s)",
                 (long long)start + 1, (long long)length, d + 1, (long long)t->shape[d], TSHAPE(t));
        return NULL;
    }
    int64_t shape[AL_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = length;
    al_tensor *out = al_view_of(t, t->ndim, shape, t->strides, t->offset + start * t->strides[d]);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, "narrow", narrow_backward, 1, &t);
        if (node) { node->ints[0] = d; node->ints[1] = start; node->ints[2] = 0; }
    }
    return out;
}

al_tensor *al_select(const al_tensor *t, int dim, int64_t index) {
    CHECK_TENSOR("select", t, "self");
    int d = al_normalize_dim("select", dim, t->ndim);
    if (d < 0) return NULL;
    if (index < 0 || index >= t->shape[d]) {
        al_error("select: index %lld is out of range for dimension %d of size %lld (shape %s)",
                 (long long)index + 1, d + 1, (long long)t->shape[d], TSHAPE(t));
        return NULL;
    }
    int64_t shape[AL_MAX_DIMS], strides[AL_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) { shape[k] = t->shape[i]; strides[k] = t->strides[i]; k++; }
    al_tensor *out = al_view_of(t, k, shape, strides, t->offset + index * t->strides[d]);
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, "select", narrow_backward, 1, &t);
        if (node) { node->ints[0] = d; node->ints[1] = index; node->ints[2] = 1; }
    }
    return out;
}

al_tensor *al_unsqueeze(const al_tensor *t, int dim) {
    CHECK_TENSOR("unsqueeze", t, "self");
    if (t->ndim >= AL_MAX_DIMS) { al_error("unsqueeze: tensor already has %d dimensions", AL_MAX_DIMS); return NULL; }
    int d = al_normalize_dim("unsqueeze", dim, t->ndim + 1);
    if (d < 0) return NULL;
    int64_t shape[AL_MAX_DIMS], strides[AL_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[i] = 1;
            strides[i] = d < t->ndim ? t->strides[d] * t->shape[d] : 1;
        } else {
            shape[i] = t->shape[k];
            strides[i] = t->strides[k];
            k++;
        }
    }
    return record_view(al_view_of(t, t->ndim + 1, shape, strides, t->offset), t, "unsqueeze", reshape_backward);
}

al_tensor *al_squeeze(const al_tensor *t, int dim) {
    CHECK_TENSOR("squeeze", t, "self");
    int d = -1;
    if (dim != AL_ALL_DIMS) {
        d = al_normalize_dim("squeeze", dim, t->ndim);
        if (d < 0) return NULL;
    }
    int64_t shape[AL_MAX_DIMS], strides[AL_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        bool drop = t->shape[i] == 1 && (d < 0 || i == d);
        if (!drop) { shape[k] = t->shape[i]; strides[k] = t->strides[i]; k++; }
    }
    return record_view(al_view_of(t, k, shape, strides, t->offset), t, "squeeze", reshape_backward);
}

static void expand_backward(al_node *node, const al_tensor *g) {
    /* al_accumulate_input folds the broadcast dimensions back */
    al_accumulate_input(node, 0, g);
}

al_tensor *al_expand(const al_tensor *t, int ndim, const int64_t *shape) {
    CHECK_TENSOR("expand", t, "self");
    if (ndim < t->ndim || ndim > AL_MAX_DIMS || (ndim && !shape)) {
        al_error("expand: cannot expand a tensor of shape %s to %d dimensions", TSHAPE(t), ndim);
        return NULL;
    }
    int64_t full[AL_MAX_DIMS], strides[AL_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t have = i < lead ? 1 : t->shape[i - lead];
        int64_t want = shape[i] == -1 ? have : shape[i];
        if (want < 0 || (have != 1 && have != want) || (i < lead && shape[i] == -1)) {
            al_error("expand: cannot expand shape %s to %s (dimension %d: %lld to %lld)", TSHAPE(t),
                     al_shape_str(ndim, shape), i + 1, (long long)have, (long long)shape[i]);
            return NULL;
        }
        full[i] = want;
        strides[i] = i < lead || (have == 1 && want != 1) ? 0 : t->strides[i - lead];
    }
    if (!al_check_shape("expand", ndim, full)) return NULL;
    return record_view(al_view_of(t, ndim, full, strides, t->offset), t, "expand", expand_backward);
}

/* ---- cat and stack ------------------------------------------------------------------------ */

/* cat keeps its inputs' sizes along dim in ints[] and cuts the gradient back into pieces. */
static void cat_backward(al_node *node, const al_tensor *g) {
    int d = (int)node->ints[0];
    int64_t start = 0;
    for (int i = 0; i < node->n_inputs; i++) {
        int64_t len = node->ints[1 + i];
        if (al_input_needs_grad(node, i)) {
            al_tensor *piece = al_narrow(g, d, start, len);
            al_accumulate_input(node, i, piece);
            al_release(piece);
        }
        start += len;
    }
}

static al_tensor *cat_copy(int n, al_tensor *const *ts, int d, const int64_t *shape, int ndim) {
    al_tensor *out = al_new_tensor_on(ndim, shape, ts[0]->dtype, ts[0]->storage->device);
    int64_t start = 0;
    for (int i = 0; out && i < n; i++) {
        al_tensor *window = al_view_of(out, ndim, shape, out->strides, out->offset + start * out->strides[d]);
        if (!window) { al_release(out); return NULL; }
        window->shape[d] = ts[i]->shape[d];
        int rc = al_copy_(window, ts[i]);
        al_release(window);
        if (rc < 0) { al_release(out); return NULL; }
        start += ts[i]->shape[d];
    }
    return out;
}

al_tensor *al_cat(int n, al_tensor *const *ts, int dim) {
    if (n < 1 || !ts) { al_error("cat: needs at least one tensor"); return NULL; }
    for (int i = 0; i < n; i++)
        if (!ts[i]) { al_error("cat: tensor %d of %d is missing", i + 1, n); return NULL; }
    for (int i = 1; i < n; i++)   /* copies into windows: any device, one for all */
        if (!al_same_device("cat", ts[0], ts[i], NULL)) return NULL;
    int d = al_normalize_dim("cat", dim, ts[0]->ndim);
    if (d < 0) return NULL;
    int64_t shape[AL_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    bool any_grad = false;
    for (int i = 0; i < n; i++) {
        const al_tensor *t = ts[i];
        bool ok = t->ndim == ts[0]->ndim && t->dtype == ts[0]->dtype;
        for (int k = 0; ok && k < t->ndim; k++)
            if (k != d && t->shape[k] != ts[0]->shape[k]) ok = false;
        if (!ok) {
            al_error("cat: tensor %d has shape %s (%s), which does not fit tensor 1's %s (%s) along dimension %d",
                     i + 1, TSHAPE(t), al_dtype_name(t->dtype), TSHAPE(ts[0]), al_dtype_name(ts[0]->dtype), d + 1);
            return NULL;
        }
        if (i) shape[d] += t->shape[d];
        any_grad |= t->requires_grad;
    }
    al_tensor *out = cat_copy(n, ts, d, shape, ts[0]->ndim);
    if (!out || !any_grad || !al_is_grad_enabled()) return out;
    /* a node holds at most AL_NODE_MAX_INPUTS inputs: join longer lists pairwise-recursively */
    if (n > AL_NODE_MAX_INPUTS) {
        al_release(out);
        int half = n / 2;
        al_tensor *left = al_cat(half, ts, d), *right = left ? al_cat(n - half, ts + half, d) : NULL;
        al_tensor *both[2] = {left, right};
        out = right ? al_cat(2, both, d) : NULL;
        al_release(left);
        al_release(right);
        return out;
    }
    al_node *node = al_record(out, "cat", cat_backward, n, (const al_tensor *const *)ts);
    if (node) {
        node->ints[0] = d;
        for (int i = 0; i < n; i++) node->ints[1 + i] = ts[i]->shape[d];
    }
    return out;
}

al_tensor *al_stack(int n, al_tensor *const *ts, int dim) {
    if (n < 1 || !ts) { al_error("stack: needs at least one tensor"); return NULL; }
    for (int i = 0; i < n; i++) {
        if (!ts[i]) { al_error("stack: tensor %d of %d is missing", i + 1, n); return NULL; }
        if (!al_same_device("stack", ts[0], ts[i], NULL)) return NULL;
        if (!al_shape_equal(ts[i]->ndim, ts[i]->shape, ts[0]->ndim, ts[0]->shape)) {
            al_error("stack: tensor %d has shape %s, tensor 1 has %s; stack needs equal shapes", i + 1,
                     TSHAPE(ts[i]), TSHAPE(ts[0]));
            return NULL;
        }
    }
    int d = al_normalize_dim("stack", dim, ts[0]->ndim + 1);
    if (d < 0) return NULL;
    al_tensor **un = calloc((size_t)n, sizeof *un);
    if (!un) { al_error("stack: out of memory"); return NULL; }
    al_tensor *out = NULL;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) ok = (un[i] = al_unsqueeze(ts[i], d)) != NULL;
    if (ok) out = al_cat(n, un, d);
    for (int i = 0; i < n; i++) al_release(un[i]);
    free(un);
    return out;
}
