/* interpolate.c -- resizing NCHW images, as PyTorch's F.interpolate: bilinear (align_corners true or
 * false) and the legacy 'nearest'.
 *
 * Each output row and column has its source computed once (PyTorch's area_pixel_compute_source_index):
 *   align_corners = false: src = max(scale (dst + 1/2) - 1/2, 0), scale = in / out, or 1 / scale_factor
 *                          when the caller gave one (PyTorch uses the given factor, not the ratio);
 *   align_corners = true:  src = dst (in - 1) / (out - 1) (0 when out = 1);
 * bilinear then mixes rows i0 = floor(src) and i0 + 1 (clamped) with weights 1 - f and f; nearest
 * takes floor(dst * scale) in float arithmetic as PyTorch does (so that the same pixel is chosen),
 * with PyTorch's shortcuts for out = in and out = 2 in.
 * The backward adds each output's gradient back to its sources with the same weights; it splits the
 * planes (n, c) among threads (neighbouring outputs share sources), the forward splits rows. */
#include "../internal.h"
#include <math.h>
#include <stdlib.h>

typedef struct {
    int64_t src0, src1;    /* the two source indices (equal at the edge) */
    double w0, w1;         /* their weights; nearest: 1 and 0 */
} source_1d;

static double source_scale(int64_t in, int64_t out, bool align_corners, double scale_factor) {
    if (align_corners) return out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
    return scale_factor > 0 ? 1.0 / scale_factor : (double)in / (double)out;
}

static void sources(int64_t in, int64_t out, int mode, bool align_corners, double scale_factor, source_1d *s) {
    if (mode == 1) {
        const float scale = scale_factor > 0 ? (float)(1.0 / scale_factor) : (float)in / (float)out;
        for (int64_t d = 0; d < out; d++) {
            int64_t i;
            if (out == in) i = d;
            else if (out == 2 * in) i = d >> 1;
            else {
                i = (int64_t)floorf((float)d * scale);
                if (i > in - 1) i = in - 1;
            }
            s[d] = (source_1d){i, i, 1.0, 0.0};
        }
        return;
    }
    const double scale = source_scale(in, out, align_corners, scale_factor);
    for (int64_t d = 0; d < out; d++) {
        double src = align_corners ? scale * (double)d : scale * ((double)d + 0.5) - 0.5;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src;
        if (i0 > in - 1) i0 = in - 1;
        const int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
        const double f = src - (double)i0;
        s[d] = (source_1d){i0, i1, 1.0 - f, f};
    }
}

typedef struct {
    int64_t planes, H, W, Ho, Wo;
    const source_1d *rows, *cols;
} resample_geometry;

/* The kernels, once per float dtype: resample_forward_float, ..., resample_backward_double */
#define GENERIC_FILE "../generic/interpolate_rows.h"
#include "../generic/float_types.h"

/* the per-axis sources for a node's or a call's geometry; false (error set) when out of memory */
static bool make_sources(resample_geometry *g, int mode, bool align_corners, double scale_h, double scale_w) {
    source_1d *rows = malloc(sizeof *rows * (size_t)(g->Ho + g->Wo + 1));
    if (!rows) { al_error("interpolate: out of memory"); return false; }
    sources(g->H, g->Ho, mode, align_corners, scale_h, rows);
    sources(g->W, g->Wo, mode, align_corners, scale_w, rows + g->Ho);
    g->rows = rows;
    g->cols = rows + g->Ho;
    return true;
}

/* The sources as the GPU takes them (al_cuda_resample): a float64 (Ho + Wo, 4) tensor on the
 * device, rows then columns, each (src0, src1, w0, w1); NULL with the error set. */
static al_tensor *sources_on_device(const resample_geometry *g) {
    const int64_t n = g->Ho + g->Wo, shape[2] = {n, 4};
    al_tensor *host = al_new_tensor(2, shape, AL_FLOAT64);
    if (!host) return NULL;
    double *t = al_ptr(host);
    for (int64_t r = 0; r < n; r++) {
        const source_1d s = r < g->Ho ? g->rows[r] : g->cols[r - g->Ho];
        t[4 * r] = (double)s.src0; t[4 * r + 1] = (double)s.src1; t[4 * r + 2] = s.w0; t[4 * r + 3] = s.w1;
    }
    al_tensor *dev = al_to_device(host, AL_CUDA);
    al_release(host);
    return dev;
}

static int resample_threads(const resample_geometry *g) {
    return g->planes * g->Ho * g->Wo >= AL_PARALLEL_GRAIN / 4 ? al_get_num_threads() : 1;
}

static void interpolate_backward(al_node *node, const al_tensor *grad) {
    const al_tensor *x = node->inputs[0];
    resample_geometry g = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], node->out_shape[2], node->out_shape[3], 0, 0};
    al_tensor *gc = al_contiguous_nograd(grad), *dx = al_full_on(x->ndim, x->shape, 0, x->dtype, x->storage->device);
    if (gc && dx && x->storage->device == AL_CUDA) {   /* core/cuda/resample.cu adds into dx */
        al_tensor *table = NULL;
        if (make_sources(&g, (int)node->ints[0], node->ints[1] != 0, node->scalars[0], node->scalars[1])) {
            table = sources_on_device(&g);
            free((void *)g.rows);
        }
        if (table && al_cuda_resample_backward(gc, table, dx) == 0) { al_accumulate_input_take(node, 0, dx); dx = NULL; }
        al_release(table);
    } else if (gc && dx && make_sources(&g, (int)node->ints[0], node->ints[1] != 0, node->scalars[0], node->scalars[1])) {
        #pragma omp parallel num_threads(resample_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes, &first, &last);
            if (x->dtype == AL_FLOAT32) resample_backward_float(&g, al_ptr(gc), al_ptr(dx), first, last);
            else resample_backward_double(&g, al_ptr(gc), al_ptr(dx), first, last);
        }
        free((void *)g.rows);
        al_accumulate_input_take(node, 0, dx);
        dx = NULL;
    } else if (gc && dx) {
        /* make_sources set the error */
    } else {
        al_error("interpolate: out of memory in the backward");
    }
    al_release(gc); al_release(dx);
}

al_tensor *al_interpolate(const al_tensor *x, int64_t out_h, int64_t out_w, int mode, int align_corners, double scale_h,
                          double scale_w) {
    CHECK_TENSOR("interpolate", x, "x");
    if (!al_same_device("interpolate", x, NULL, NULL)) return NULL;   /* CPU or CUDA (core/cuda/resample.cu); no bfloat16 */
    if (x->ndim != 4 || !al_is_float(x->dtype)) {
        al_error("interpolate: x must be a 4-d float tensor (N, C, H, W) (got %s, %s; one image: x:unsqueeze(1))", TSHAPE(x),
                 al_dtype_name(x->dtype));
        return NULL;
    }
    if (mode != 0 && mode != 1) { al_error("interpolate: unknown mode %d (0 bilinear, 1 nearest)", mode); return NULL; }
    if (mode == 1 && align_corners) {
        al_error("interpolate: align_corners applies to bilinear resampling only, not nearest");
        return NULL;
    }
    if (out_h < 1 || out_w < 1) {
        al_error("interpolate: the output size must be at least 1 x 1 (got %lld x %lld for x %s)", (long long)out_h,
                 (long long)out_w, TSHAPE(x));
        return NULL;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        al_error("interpolate: x %s has an empty image (H and W must be >= 1)", TSHAPE(x));
        return NULL;
    }
    if (!(scale_h >= 0 && scale_w >= 0 && isfinite(scale_h) && isfinite(scale_w))) {
        al_error("interpolate: scale factors must be finite and > 0 (got %g, %g)", scale_h, scale_w);
        return NULL;
    }
    resample_geometry g = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], out_h, out_w, 0, 0};
    const int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
    al_tensor *xc = al_contiguous_nograd(x), *y = xc ? al_new_tensor_on(4, shape, x->dtype, x->storage->device) : NULL;
    if (!y || !make_sources(&g, mode, align_corners != 0, scale_h, scale_w)) {
        al_release(xc); al_release(y);
        return NULL;
    }
    if (x->storage->device == AL_CUDA) {
        al_tensor *table = sources_on_device(&g);
        if (!table || al_cuda_resample(xc, table, y) < 0) { al_release(y); y = NULL; }
        al_release(table);
    } else {
        #pragma omp parallel num_threads(resample_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.planes * g.Ho, &first, &last);
            if (x->dtype == AL_FLOAT32) resample_forward_float(&g, al_ptr(xc), al_ptr(y), first, last);
            else resample_forward_double(&g, al_ptr(xc), al_ptr(y), first, last);
        }
    }
    free((void *)g.rows);
    al_release(xc);
    if (!y) return NULL;
    if (al_grad_needed1(x)) {
        al_node *node = al_record(y, "interpolate", interpolate_backward, 1, &x);
        if (node) {
            node->ints[0] = mode;
            node->ints[1] = align_corners != 0;
            node->n_ints = 2;
            node->scalars[0] = scale_h;
            node->scalars[1] = scale_w;
        }
    }
    return y;
}
