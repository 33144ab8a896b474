/* pad.c -- constant padding of the last dimensions, as PyTorch's F.pad(mode='constant'), negative
 * pads cropping: the one op behind borders, crops, and crops that reach past the image (a window
 * centred on a fixation near the edge: part crop, part padding).
 *
 * The output is filled with the value, then the part of x that survives the crops is copied into
 * its place (two strided views, one copy).  The backward takes the same window out of the gradient. */
#include "../internal.h"
#include <string.h>

/* The surviving window: its shape, and where it starts in x and in the output (element offsets). */
static void window_of(const al_tensor *x, const al_tensor *out, int n_pairs, const int64_t *pads, int64_t *shape,
                      int64_t *from_x, int64_t *from_out) {
    *from_x = x->offset;
    *from_out = out->offset;
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    for (int i = 0; i < n_pairs; i++) {
        const int d = x->ndim - 1 - i;
        const int64_t before = pads[2 * i], after = pads[2 * i + 1];
        const int64_t cut_before = before < 0 ? -before : 0, cut_after = after < 0 ? -after : 0;
        int64_t len = x->shape[d] - cut_before - cut_after;
        if (len < 0) len = 0;
        shape[d] = len;
        *from_x += cut_before * x->strides[d];
        *from_out += (before > 0 ? before : 0) * out->strides[d];
    }
}

static bool window_empty(int ndim, const int64_t *shape) {
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) return true;
    return false;
}

static void pad_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    const int n_pairs = node->n_ints / 2;
    al_tensor *dx = al_full_on(x->ndim, x->shape, 0, x->dtype, x->storage->device);
    if (!dx) return;
    int64_t shape[AL_MAX_DIMS], from_x, from_g;
    /* the window's offsets into g follow g's own strides (g may be any view) */
    window_of(dx, g, n_pairs, node->ints, shape, &from_x, &from_g);
    if (!window_empty(x->ndim, shape)) {
        al_tensor *src = al_view_of(g, x->ndim, shape, g->strides, from_g);
        al_tensor *dst = al_view_of(dx, x->ndim, shape, dx->strides, from_x);
        if (src && dst) al_copy_(dst, src);
        al_release(src); al_release(dst);
    }
    al_accumulate_input_take(node, 0, dx);
}

al_tensor *al_pad(const al_tensor *x, int n_pairs, const int64_t *pads, double value) {
    CHECK_TENSOR("pad", x, "x");   /* any device: a fill and a copy into a window, both with kernels on each */
    if (n_pairs < 0 || n_pairs > x->ndim) {
        al_error("pad: %d (before, after) pairs given for x %s of %d dimensions", n_pairs, TSHAPE(x), x->ndim);
        return NULL;
    }
    if (n_pairs > 0 && !pads) { al_error("pad: the pads are missing"); return NULL; }
    int64_t shape[AL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    for (int i = 0; i < n_pairs; i++) {
        const int d = x->ndim - 1 - i;
        shape[d] = x->shape[d] + pads[2 * i] + pads[2 * i + 1];
        if (shape[d] < 0) {
            al_error("pad: pads (%lld, %lld) crop more than dimension %d of x %s holds", (long long)pads[2 * i],
                     (long long)pads[2 * i + 1], d + 1, TSHAPE(x));
            return NULL;
        }
    }
    al_tensor *out = al_full_on(x->ndim, shape, value, x->dtype, x->storage->device);
    if (!out) return NULL;
    int64_t wshape[AL_MAX_DIMS], from_x, from_out;
    window_of(x, out, n_pairs, pads, wshape, &from_x, &from_out);
    if (!window_empty(x->ndim, wshape)) {
        al_tensor *src = al_view_of(x, x->ndim, wshape, x->strides, from_x);
        al_tensor *dst = al_view_of(out, x->ndim, wshape, out->strides, from_out);
        const int rc = src && dst ? al_copy_(dst, src) : -1;
        al_release(src); al_release(dst);
        if (rc < 0) { al_release(out); return NULL; }
    }
    if (al_grad_needed1(x)) {
        al_node *node = al_record(out, "pad", pad_backward, 1, &x);
        if (node) {
            memcpy(node->ints, pads, sizeof(int64_t) * (size_t)(2 * n_pairs));
            node->n_ints = 2 * n_pairs;
        }
    }
    return out;
}
