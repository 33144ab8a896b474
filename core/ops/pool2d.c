/* pool2d.c -- max and average pooling over NCHW images, as PyTorch's max_pool2d and avg_pool2d:
 * kernel, stride, padding (both sides, at most half the kernel), dilation (max), ceil_mode and
 * count_include_pad (average).
 *
 * Output length per axis: floor((L + 2p - d (k - 1) - 1 + (ceil_mode ? s - 1 : 0)) / s) + 1, less one
 * when ceil_mode would start the last window past the input and its left padding (PyTorch's rule).
 * Max keeps each window's argmax (int64, iy * W + ix within the plane) for the backward, which adds
 * the gradient there; average spreads it evenly over the window's cells inside the input.
 *
 * Threads: the forward splits the (plane, output row) pairs; the backward adds into dx, where the
 * windows of neighbouring rows may overlap, so it splits whole planes (n, c) instead. */
#include "../internal.h"
#include "pool2d_window.h"
#include <math.h>
#include <string.h>

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static int64_t pooled_length(int64_t L, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
    int64_t out = floor_div(L + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= L + p) out--;   /* the last window must start inside the input or its left padding */
    return out;
}

/* Reads the options and x's shape into g; false with an error naming fn otherwise. */
static bool pool_geometry_of(const char *fn, const al_tensor *x, const al_pool2d_opts *o, bool is_max, pool_geometry *g) {
    if (x->ndim != 4 || !al_is_float(x->dtype)) {
        al_error("%s: x must be a 4-d float tensor (N, C, H, W) (got %s, %s; one image: x:unsqueeze(1))", fn, TSHAPE(x),
                 al_dtype_name(x->dtype));
        return false;
    }
    memset(g, 0, sizeof *g);
    g->kh = o->kernel[0]; g->kw = o->kernel[1];
    g->sh = o->stride[0] ? o->stride[0] : g->kh; g->sw = o->stride[1] ? o->stride[1] : g->kw;
    g->ph = o->padding[0]; g->pw = o->padding[1];
    g->dh = o->dilation[0] ? o->dilation[0] : 1; g->dw = o->dilation[1] ? o->dilation[1] : 1;
    g->ceil_mode = o->ceil_mode != 0;
    g->count_include_pad = o->count_include_pad != 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || g->ph < 0 || g->pw < 0) {
        al_error("%s: kernel, stride and dilation must be >= 1 and padding >= 0 (got kernel {%lld,%lld}, stride {%lld,%lld}, "
                 "padding {%lld,%lld}, dilation {%lld,%lld})", fn, (long long)g->kh, (long long)g->kw, (long long)g->sh,
                 (long long)g->sw, (long long)g->ph, (long long)g->pw, (long long)g->dh, (long long)g->dw);
        return false;
    }
    if (!is_max && (g->dh != 1 || g->dw != 1)) {
        al_error("%s: average pooling has no dilation (got {%lld,%lld})", fn, (long long)g->dh, (long long)g->dw);
        return false;
    }
    if (2 * g->ph > g->kh || 2 * g->pw > g->kw) {
        al_error("%s: padding {%lld,%lld} must be at most half the kernel {%lld,%lld}", fn, (long long)g->ph,
                 (long long)g->pw, (long long)g->kh, (long long)g->kw);
        return false;
    }
    g->planes = x->shape[0] * x->shape[1];
    g->H = x->shape[2]; g->W = x->shape[3];
    g->Ho = pooled_length(g->H, g->kh, g->sh, g->ph, g->dh, g->ceil_mode);
    g->Wo = pooled_length(g->W, g->kw, g->sw, g->pw, g->dw, g->ceil_mode);
    if (g->Ho < 1 || g->Wo < 1) {
        al_error("%s: the window (kernel {%lld,%lld}, dilation {%lld,%lld}) does not fit x %s with padding {%lld,%lld} "
                 "(output %lld x %lld)", fn, (long long)g->kh, (long long)g->kw, (long long)g->dh, (long long)g->dw, TSHAPE(x),
                 (long long)g->ph, (long long)g->pw, (long long)g->Ho, (long long)g->Wo);
        return false;
    }
    return true;
}

static void geometry_to_node(al_node *node, const pool_geometry *g) {
    const int64_t ints[10] = {g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->ceil_mode, g->count_include_pad};
    memcpy(node->ints, ints, sizeof ints);
    node->n_ints = 10;
}

static void geometry_from_node(const al_node *node, pool_geometry *g) {
    const al_tensor *x = node->inputs[0];
    memset(g, 0, sizeof *g);
    g->kh = node->ints[0]; g->kw = node->ints[1]; g->sh = node->ints[2]; g->sw = node->ints[3];
    g->ph = node->ints[4]; g->pw = node->ints[5]; g->dh = node->ints[6]; g->dw = node->ints[7];
    g->ceil_mode = node->ints[8] != 0; g->count_include_pad = node->ints[9] != 0;
    g->planes = x->shape[0] * x->shape[1]; g->H = x->shape[2]; g->W = x->shape[3];
    g->Ho = node->out_shape[2]; g->Wo = node->out_shape[3];
}

static int pool_threads(const pool_geometry *g) {
    return g->planes * g->Ho * g->Wo * g->kh * g->kw >= AL_PARALLEL_GRAIN ? al_get_num_threads() : 1;
}

/* The window kernels, once per float dtype: max_pool_forward_float, ..., avg_pool_backward_double */
#define GENERIC_FILE "../generic/pool2d_windows.h"
#include "../generic/float_types.h"

/* ---- max ------------------------------------------------------------------------------------ */

static void max_pool2d_backward(al_node *node, const al_tensor *grad) {
    pool_geometry g;
    geometry_from_node(node, &g);
    const al_tensor *x = node->inputs[0], *idx = node->saved[0];
    if (x->storage->device == AL_CUDA) {   /* core/cuda/pool.cu writes dx whole */
        al_tensor *gc = al_contiguous_nograd(grad), *dx = al_new_tensor_on(x->ndim, x->shape, x->dtype, AL_CUDA);
        if (gc && dx && al_cuda_max_pool2d_backward(&g, gc, idx, dx) == 0) { al_accumulate_input_take(node, 0, dx); dx = NULL; }
        al_release(gc); al_release(dx);
        return;
    }
    al_tensor *gc = al_contiguous_nograd(grad), *dx = al_full(x->ndim, x->shape, 0, x->dtype);
    if (gc && dx) {
        #pragma omp parallel num_threads(pool_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes, &first, &last);
            if (x->dtype == AL_FLOAT32) max_pool_backward_float(&g, al_ptr(gc), al_ptr(idx), al_ptr(dx), first, last);
            else max_pool_backward_double(&g, al_ptr(gc), al_ptr(idx), al_ptr(dx), first, last);
        }
        al_accumulate_input_take(node, 0, dx);
        dx = NULL;
    } else {
        al_error("max_pool2d: out of memory in the backward");
    }
    al_release(gc); al_release(dx);
}

al_tensor *al_max_pool2d(const al_tensor *x, const al_pool2d_opts *opts, al_tensor **indices) {
    if (indices) *indices = NULL;
    CHECK_TENSOR("max_pool2d", x, "x");
    if (!al_same_device("max_pool2d", x, NULL, NULL)) return NULL;   /* CPU or CUDA (core/cuda/pool.cu); no bfloat16 */
    if (!opts) { al_error("max_pool2d: the options (the kernel at least) are missing"); return NULL; }
    pool_geometry g;
    if (!pool_geometry_of("max_pool2d", x, opts, true, &g)) return NULL;
    const int64_t shape[4] = {x->shape[0], x->shape[1], g.Ho, g.Wo};
    const al_device dev = x->storage->device;
    al_tensor *xc = al_contiguous_nograd(x), *y = al_new_tensor_on(4, shape, x->dtype, dev);
    al_tensor *idx = al_new_tensor_on(4, shape, AL_INT64, dev);
    if (!xc || !y || !idx || (dev == AL_CUDA && al_cuda_max_pool2d(&g, xc, y, idx) < 0)) {
        al_release(xc); al_release(y); al_release(idx);
        return NULL;
    }
    if (dev == AL_CPU) {   /* the GPU filled y above */
        #pragma omp parallel num_threads(pool_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes * g.Ho, &first, &last);
            if (x->dtype == AL_FLOAT32) max_pool_forward_float(&g, al_ptr(xc), al_ptr(y), al_ptr(idx), first, last);
            else max_pool_forward_double(&g, al_ptr(xc), al_ptr(y), al_ptr(idx), first, last);
        }
    }
    al_release(xc);
    if (al_grad_needed1(x)) {
        al_node *node = al_record(y, "max_pool2d", max_pool2d_backward, 1, &x);
        if (node) { geometry_to_node(node, &g); al_node_save(node, 0, idx); }
    }
    if (indices) *indices = idx;
    else al_release(idx);
    return y;
}

/* ---- average ----------------------------------------------------------------------------------- */

static void avg_pool2d_backward(al_node *node, const al_tensor *grad) {
    pool_geometry g;
    geometry_from_node(node, &g);
    const al_tensor *x = node->inputs[0];
    if (x->storage->device == AL_CUDA) {   /* core/cuda/pool.cu writes dx whole */
        al_tensor *gc = al_contiguous_nograd(grad), *dx = al_new_tensor_on(x->ndim, x->shape, x->dtype, AL_CUDA);
        if (gc && dx && al_cuda_avg_pool2d_backward(&g, gc, dx) == 0) { al_accumulate_input_take(node, 0, dx); dx = NULL; }
        al_release(gc); al_release(dx);
        return;
    }
    al_tensor *gc = al_contiguous_nograd(grad), *dx = al_full(x->ndim, x->shape, 0, x->dtype);
    if (gc && dx) {
        #pragma omp parallel num_threads(pool_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes, &first, &last);
            if (x->dtype == AL_FLOAT32) avg_pool_backward_float(&g, al_ptr(gc), al_ptr(dx), first, last);
            else avg_pool_backward_double(&g, al_ptr(gc), al_ptr(dx), first, last);
        }
        al_accumulate_input_take(node, 0, dx);
        dx = NULL;
    } else {
        al_error("avg_pool2d: out of memory in the backward");
    }
    al_release(gc); al_release(dx);
}

al_tensor *al_avg_pool2d(const al_tensor *x, const al_pool2d_opts *opts) {
    CHECK_TENSOR("avg_pool2d", x, "x");
    if (!al_same_device("avg_pool2d", x, NULL, NULL)) return NULL;   /* CPU or CUDA (core/cuda/pool.cu); no bfloat16 */
    if (!opts) { al_error("avg_pool2d: the options (the kernel at least) are missing"); return NULL; }
    pool_geometry g;
    if (!pool_geometry_of("avg_pool2d", x, opts, false, &g)) return NULL;
    const int64_t shape[4] = {x->shape[0], x->shape[1], g.Ho, g.Wo};
    const al_device dev = x->storage->device;
    al_tensor *xc = al_contiguous_nograd(x), *y = xc ? al_new_tensor_on(4, shape, x->dtype, dev) : NULL;
    if (!y || (dev == AL_CUDA && al_cuda_avg_pool2d(&g, xc, y) < 0)) { al_release(xc); al_release(y); return NULL; }
    if (dev == AL_CPU) {   /* the GPU filled y above */
        #pragma omp parallel num_threads(pool_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes * g.Ho, &first, &last);
            if (x->dtype == AL_FLOAT32) avg_pool_forward_float(&g, al_ptr(xc), al_ptr(y), first, last);
            else avg_pool_forward_double(&g, al_ptr(xc), al_ptr(y), first, last);
        }
    }
    al_release(xc);
    if (al_grad_needed1(x)) {
        al_node *node = al_record(y, "avg_pool2d", avg_pool2d_backward, 1, &x);
        if (node) geometry_to_node(node, &g);
    }
    return y;
}
