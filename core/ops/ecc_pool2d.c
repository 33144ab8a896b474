/* ecc_pool2d.c -- eccentricity-dependent pooling: the window of each output cell grows with the
 * cell's distance from a fixation point, in rings, as eccNET's CentreDependentPooling2D does
 * (Gupta et al. 2021, vs_model/ecc_net.py), but with the fixation anywhere instead of always at the
 * centre of a crop.
 *
 * The rings (attnlab.h has the formula): eccNET measures the eccentricity in output cells while
 * converting degrees with the layer input's pixels per degree, and so does this op, so that its
 * parameters are the paper's (slope 0.07 / 0.16 / 0.32 for pool3 / pool4 / pool5 with 8 / 4 / 2 px
 * per degree).  Where eccNET stops adding rings at the crop's edge and gives everything beyond one
 * last size, this op keeps adding them: with the fixation off-centre the far side of the image is
 * farther than any edge of a centred crop.  Windows sit where TensorFlow's 'same' padding puts them
 * (start oy stride - max(k - stride, 0) / 2), clipped to the input; the average is over the cells
 * inside, as TensorFlow's average pooling with 'same' padding counts them.
 *
 * Cost: the sizes come first, one int64 map (ceil(H / stride), ceil(W / stride)) per fixation (kept
 * for the backward).  The average takes each window's sum from a summed-area table of its plane (in
 * double), so a window of any size costs four lookups, and the backward spreads each cell's gradient
 * with four entries of a difference table and one prefix-sum pass: O(H W) per plane whatever the
 * sizes.  The maximum scans its window (O(k^2) per cell) and keeps the argmax for the backward.
 * Threads split the planes (n, c), each with tables of its own. */
#include "../internal.h"
#include "ecc_pool2d_window.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>


static bool check_options(const char *fn, const al_ecc_pool2d_opts *o, int64_t N) {
    if (!o || !o->fixation) { al_error("%s: the fixation is missing", fn); return false; }
    if (o->n_fixations != 1 && o->n_fixations != N) {
        al_error("%s: %lld fixations given for %lld images (give one for all, or one per image)", fn,
                 (long long)o->n_fixations, (long long)N);
        return false;
    }
    for (int64_t i = 0; i < 2 * o->n_fixations; i++)
        if (!isfinite(o->fixation[i])) {
            al_error("%s: fixation %lld is not finite (%g, %g)", fn, (long long)(i / 2 + 1), o->fixation[i & ~1LL],
                     o->fixation[i | 1]);
            return false;
        }
    if (o->stride < 1 || o->rf_min < 1) {
        al_error("%s: stride and rf_min must be >= 1 (got %lld, %lld)", fn, (long long)o->stride, (long long)o->rf_min);
        return false;
    }
    if (!(o->slope >= 0 && isfinite(o->slope)) || !(o->deg2px > 0 && isfinite(o->deg2px)) ||
        !(o->fovea >= 0 && isfinite(o->fovea)) || !(o->ring > 0 && isfinite(o->ring))) {
        al_error("%s: need slope >= 0, deg2px > 0, fovea >= 0 and ring > 0 (got slope %g, deg2px %g, fovea %g, ring %g)", fn,
                 o->slope, o->deg2px, o->fovea, o->ring);
        return false;
    }
    if (rint(o->ring * o->deg2px / 2) < 1) {
        al_error("%s: rings of %g degrees at %g px per degree are %g output cells wide (round(ring deg2px / 2) must be >= 1)",
                 fn, o->ring, o->deg2px, rint(o->ring * o->deg2px / 2));
        return false;
    }
    return true;
}

/* The window size of every output cell for fixation (fx, fy): sizes (Ho * Wo), row-major. */
static void ring_sizes(const al_ecc_pool2d_opts *o, double fx, double fy, int64_t Ho, int64_t Wo, int64_t *sizes) {
    const double r0 = rint(o->fovea * o->deg2px / 2), step = rint(o->ring * o->deg2px / 2);
    const double cx = fx / (double)o->stride, cy = fy / (double)o->stride;
    for (int64_t oy = 0; oy < Ho; oy++)
        for (int64_t ox = 0; ox < Wo; ox++) {
            const double e = hypot((double)ox + 0.5 - cx, (double)oy + 0.5 - cy);
            double k = (double)o->rf_min;
            if (e >= r0) {
                const double ring = floor((e - r0) / step) + 1, outer = r0 + ring * step;
                k = (double)o->rf_min + rint(o->slope * (2 * outer - o->fovea * o->deg2px));
            }
            if (k < 1) k = 1;
            if (k > 1e15) k = 1e15;   /* clipped to the input anyway; keeps the int64 conversion defined */
            sizes[oy * Wo + ox] = (int64_t)k;
        }
}

/* The kernels, once per float dtype: ecc_avg_forward_float, ..., ecc_max_backward_double */
#define GENERIC_FILE "../generic/ecc_pool2d_windows.h"
#include "../generic/float_types.h"

static int ecc_threads(const ecc_geometry *g) {
    return g->planes * g->H * g->W >= AL_PARALLEL_GRAIN / 4 ? al_get_num_threads() : 1;
}

/* Inside the parallel region of the forward or the backward: the calling thread's planes [first,
 * last), and its own summed-area table in `tables` (one of `table` bytes per thread; NULL for max
 * pooling, which needs none). */
static double *thread_share(const ecc_geometry *g, double *tables, size_t table, int64_t *first, int64_t *last) {
    al_thread_share(g->planes, first, last);
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    return tables ? tables + (size_t)tid * (table / sizeof(double)) : NULL;
}

static void geometry_from_node(const al_node *node, ecc_geometry *g) {
    const al_tensor *x = node->inputs[0];
    g->C = x->shape[1]; g->planes = x->shape[0] * x->shape[1]; g->H = x->shape[2]; g->W = x->shape[3];
    g->Ho = node->out_shape[2]; g->Wo = node->out_shape[3];
    g->stride = node->ints[0];
}

static void ecc_pool2d_backward(al_node *node, const al_tensor *grad) {
    ecc_geometry g;
    geometry_from_node(node, &g);
    const al_tensor *x = node->inputs[0], *sizes = node->saved[0], *idx = node->saved[1];
    const bool is_max = node->ints[1] != 0;
    const int64_t n_fix = sizes->shape[0], per_fix = g.Ho * g.Wo;
    if (x->storage->device == AL_CUDA) {   /* core/cuda/ecc_pool.cu adds into a zeroed dx */
        al_tensor *gc = al_contiguous_nograd(grad), *dx = al_full_on(x->ndim, x->shape, 0, x->dtype, AL_CUDA);
        if (gc && dx && al_cuda_ecc_pool2d_backward(&g, gc, sizes, idx, is_max, dx) == 0) {
            al_accumulate_input_take(node, 0, dx);
            dx = NULL;
        }
        al_release(gc); al_release(dx);
        return;
    }
    al_tensor *gc = al_contiguous_nograd(grad);
    al_tensor *dx = is_max ? al_full(x->ndim, x->shape, 0, x->dtype) : al_new_tensor(x->ndim, x->shape, x->dtype);
    const int threads = ecc_threads(&g);
    const size_t table = sizeof(double) * (size_t)((g.H + 1) * (g.W + 1));
    double *diff = is_max ? NULL : malloc(table * (size_t)threads);
    if (gc && dx && (is_max || diff)) {
        #pragma omp parallel num_threads(threads)
        {
            int64_t first, last;
            double *own = thread_share(&g, diff, table, &first, &last);
            if (x->dtype == AL_FLOAT32) {
                if (is_max) ecc_max_backward_float(&g, al_ptr(gc), al_ptr(idx), al_ptr(dx), first, last);
                else ecc_avg_backward_float(&g, al_ptr(gc), al_ptr(dx), al_ptr(sizes), per_fix, n_fix, own, first, last);
            } else {
                if (is_max) ecc_max_backward_double(&g, al_ptr(gc), al_ptr(idx), al_ptr(dx), first, last);
                else ecc_avg_backward_double(&g, al_ptr(gc), al_ptr(dx), al_ptr(sizes), per_fix, n_fix, own, first, last);
            }
        }
        al_accumulate_input_take(node, 0, dx);
        dx = NULL;
    } else {
        al_error("ecc_pool2d: out of memory in the backward");
    }
    free(diff);
    al_release(gc); al_release(dx);
}

al_tensor *al_ecc_pool2d_sizes(int64_t height, int64_t width, const al_ecc_pool2d_opts *opts) {
    if (height < 0 || width < 0) {
        al_error("ecc_pool2d_sizes: height and width must be >= 0 (got %lld x %lld)", (long long)height, (long long)width);
        return NULL;
    }
    if (!check_options("ecc_pool2d_sizes", opts, 1)) return NULL;
    const int64_t shape[2] = {(height + opts->stride - 1) / opts->stride, (width + opts->stride - 1) / opts->stride};
    al_tensor *sizes = al_new_tensor(2, shape, AL_INT64);
    if (sizes) ring_sizes(opts, opts->fixation[0], opts->fixation[1], shape[0], shape[1], al_ptr(sizes));
    return sizes;
}

al_tensor *al_ecc_pool2d(const al_tensor *x, const al_ecc_pool2d_opts *opts) {
    CHECK_TENSOR("ecc_pool2d", x, "x");
    if (!al_same_device("ecc_pool2d", x, NULL, NULL)) return NULL;   /* CPU or CUDA (core/cuda/ecc_pool.cu); no bfloat16 */
    if (x->ndim != 4 || !al_is_float(x->dtype)) {
        al_error("ecc_pool2d: x must be a 4-d float tensor (N, C, H, W) (got %s, %s; one image: x:unsqueeze(1))", TSHAPE(x),
                 al_dtype_name(x->dtype));
        return NULL;
    }
    if (!check_options("ecc_pool2d", opts, x->shape[0])) return NULL;
    ecc_geometry g = {x->shape[0] * x->shape[1], x->shape[1], x->shape[2], x->shape[3], 0, 0, opts->stride};
    g.Ho = (g.H + g.stride - 1) / g.stride;
    g.Wo = (g.W + g.stride - 1) / g.stride;
    const int64_t n_fix = opts->n_fixations, per_fix = g.Ho * g.Wo;
    const int64_t sshape[3] = {n_fix, g.Ho, g.Wo}, shape[4] = {x->shape[0], x->shape[1], g.Ho, g.Wo};
    const bool is_max = opts->max_pool != 0;
    const al_device dev = x->storage->device;
    al_tensor *sizes = al_new_tensor(3, sshape, AL_INT64), *xc = al_contiguous_nograd(x);   /* sizes: made on the host */
    al_tensor *y = al_new_tensor_on(4, shape, x->dtype, dev), *idx = is_max ? al_new_tensor_on(4, shape, AL_INT64, dev) : NULL;
    const int threads = ecc_threads(&g);
    const size_t table = sizeof(double) * (size_t)((g.H + 1) * (g.W + 1));
    double *sat = is_max || dev == AL_CUDA ? NULL : malloc(table * (size_t)threads);
    if (!sizes || !xc || !y || (is_max && !idx) || (!is_max && dev == AL_CPU && !sat)) {
        if (sizes && xc && y && (!is_max || idx)) al_error("ecc_pool2d: out of memory for the summed-area tables");
        al_release(sizes); al_release(xc); al_release(y); al_release(idx);
        free(sat);
        return NULL;
    }
    for (int64_t f = 0; f < n_fix; f++)
        ring_sizes(opts, opts->fixation[2 * f], opts->fixation[2 * f + 1], g.Ho, g.Wo, (int64_t *)al_ptr(sizes) + f * per_fix);
    if (dev == AL_CUDA) {   /* the sizes beside x, kept there for the backward */
        al_tensor *on_device = al_to_device(sizes, AL_CUDA);
        al_release(sizes);
        sizes = on_device;
        if (!sizes || al_cuda_ecc_pool2d(&g, xc, sizes, is_max, y, idx) < 0) {
            al_release(sizes); al_release(xc); al_release(y); al_release(idx);
            return NULL;
        }
    } else {
        #pragma omp parallel num_threads(threads)
        {
            int64_t first, last;
            double *own = thread_share(&g, sat, table, &first, &last);
            if (x->dtype == AL_FLOAT32) {
                if (is_max) ecc_max_forward_float(&g, al_ptr(xc), al_ptr(y), al_ptr(idx), al_ptr(sizes), per_fix, n_fix, first, last);
                else ecc_avg_forward_float(&g, al_ptr(xc), al_ptr(y), al_ptr(sizes), per_fix, n_fix, own, first, last);
            } else {
                if (is_max) ecc_max_forward_double(&g, al_ptr(xc), al_ptr(y), al_ptr(idx), al_ptr(sizes), per_fix, n_fix, first, last);
                else ecc_avg_forward_double(&g, al_ptr(xc), al_ptr(y), al_ptr(sizes), per_fix, n_fix, own, first, last);
            }
        }
    }
    free(sat);
    al_release(xc);
    if (al_grad_needed1(x)) {
        al_node *node = al_record(y, "ecc_pool2d", ecc_pool2d_backward, 1, &x);
        if (node) {
            node->ints[0] = g.stride;
            node->ints[1] = is_max;
            node->n_ints = 2;
            al_node_save(node, 0, sizes);
            al_node_save(node, 1, idx);
        }
    }
    al_release(sizes); al_release(idx);
    return y;
}
