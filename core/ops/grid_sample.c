/* grid_sample.c -- bilinear sampling of NCHW images at arbitrary points, as PyTorch's F.grid_sample
 * (mode 'bilinear', padding 'zeros' or 'border'): crops, zooms, warps and foveated glimpses, with
 * gradients for both the image and the sampling grid.
 *
 * grid (N, Ho, Wo, 2) holds (x, y) in [-1, 1] (-1: the left / top edge); unnormalised to pixels as
 *   align_corners = true:  ((c + 1) / 2) (size - 1)   (-1 and 1 are the centres of the corner pixels)
 *   align_corners = false: ((c + 1) size - 1) / 2     (-1 and 1 are the outer edges of the image)
 * then, for 'border', clamped to [0, size - 1] (its gradient 0 where it clamps, as PyTorch's).  The
 * four neighbours' weights are the bilinear ones; a neighbour outside the image contributes 0.
 *
 * Threads: the forward and the grid's gradient split the (image, output row) pairs; the image's
 * gradient adds into dx, where many points may share a pixel, so it splits the planes (n, c). */
#include "../internal.h"
#include "grid_sample_point.h"
#include <math.h>

/* The kernels, once per float dtype: sample_forward_float, ..., sample_backward_input_double */
#define GENERIC_FILE "../generic/grid_sample_points.h"
#include "../generic/float_types.h"

static int sample_threads(const sample_geometry *g) {
    return g->N * g->C * g->Ho * g->Wo >= AL_PARALLEL_GRAIN / 8 ? al_get_num_threads() : 1;
}

static void geometry_from_node(const al_node *node, sample_geometry *g) {
    const al_tensor *x = node->inputs[0];
    *g = (sample_geometry){x->shape[0], x->shape[1], x->shape[2], x->shape[3], node->out_shape[2], node->out_shape[3],
                           node->ints[0] != 0, node->ints[1] != 0};
}

static void grid_sample_backward(al_node *node, const al_tensor *grad) {
    sample_geometry g;
    geometry_from_node(node, &g);
    const al_tensor *x = node->inputs[0], *grid = node->inputs[1];
    const bool want_dx = al_input_needs_grad(node, 0), want_dgrid = al_input_needs_grad(node, 1);
    al_tensor *gc = al_contiguous_nograd(grad), *xc = want_dgrid ? al_contiguous_nograd(x) : NULL;
    al_tensor *gridc = al_contiguous_nograd(grid);
    const al_device dev = x->storage->device;
    al_tensor *dx = want_dx ? al_full_on(x->ndim, x->shape, 0, x->dtype, dev) : NULL;
    al_tensor *dgrid = want_dgrid ? al_new_tensor_on(grid->ndim, grid->shape, grid->dtype, dev) : NULL;
    const bool ready = gc && gridc && (!want_dgrid || (xc && dgrid)) && (!want_dx || dx);
    if (ready && dev == AL_CUDA) {   /* core/cuda/sample.cu: dx added into, dgrid written whole */
        if (al_cuda_grid_sample_backward(&g, xc, gridc, gc, dx, dgrid) == 0) {
            al_accumulate_input_take(node, 0, dx);
            al_accumulate_input_take(node, 1, dgrid);
            dx = dgrid = NULL;
        }
    } else if (ready) {
        #pragma omp parallel num_threads(sample_threads(&g))
        {
            int64_t first, last;
            if (dx) {
                al_thread_share(g.N * g.C, &first, &last);
                if (x->dtype == AL_FLOAT32) sample_backward_input_float(&g, al_ptr(gridc), al_ptr(gc), al_ptr(dx), first, last);
                else sample_backward_input_double(&g, al_ptr(gridc), al_ptr(gc), al_ptr(dx), first, last);
            }
            if (dgrid) {
                al_thread_share(g.N * g.Ho, &first, &last);
                if (x->dtype == AL_FLOAT32)
                    sample_backward_grid_float(&g, al_ptr(xc), al_ptr(gridc), al_ptr(gc), al_ptr(dgrid), first, last);
                else
                    sample_backward_grid_double(&g, al_ptr(xc), al_ptr(gridc), al_ptr(gc), al_ptr(dgrid), first, last);
            }
        }
        al_accumulate_input_take(node, 0, dx);
        al_accumulate_input_take(node, 1, dgrid);
        dx = dgrid = NULL;
    } else {
        al_error("grid_sample: out of memory in the backward");
    }
    al_release(gc); al_release(xc); al_release(gridc); al_release(dx); al_release(dgrid);
}

al_tensor *al_grid_sample(const al_tensor *x, const al_tensor *grid, int align_corners, int padding_mode) {
    CHECK_TENSOR("grid_sample", x, "x");
    CHECK_TENSOR("grid_sample", grid, "grid");
    if (!al_same_device("grid_sample", x, grid, NULL)) return NULL;   /* CPU or CUDA (core/cuda/sample.cu); no bfloat16 */
    if (x->ndim != 4 || grid->ndim != 4 || grid->shape[3] != 2 || grid->shape[0] != x->shape[0]) {
        al_error("grid_sample: need x (N, C, H, W) and grid (N, Ho, Wo, 2) with the same N (got x %s, grid %s)", TSHAPE(x),
                 TSHAPE(grid));
        return NULL;
    }
    if (x->dtype != grid->dtype || !al_is_float(x->dtype)) {
        al_error("grid_sample: x and grid must share one float dtype (got %s, %s)", al_dtype_name(x->dtype),
                 al_dtype_name(grid->dtype));
        return NULL;
    }
    if (padding_mode != 0 && padding_mode != 1) {
        al_error("grid_sample: unknown padding mode %d (0 zeros, 1 border)", padding_mode);
        return NULL;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        al_error("grid_sample: x %s has an empty image (H and W must be >= 1)", TSHAPE(x));
        return NULL;
    }
    sample_geometry g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], grid->shape[1], grid->shape[2],
                         align_corners != 0, padding_mode == 1};
    const int64_t shape[4] = {g.N, g.C, g.Ho, g.Wo};
    al_tensor *xc = al_contiguous_nograd(x), *gridc = al_contiguous_nograd(grid);
    al_tensor *y = xc && gridc ? al_new_tensor_on(4, shape, x->dtype, x->storage->device) : NULL;
    if (y && x->storage->device == AL_CUDA) {
        if (al_cuda_grid_sample(&g, xc, gridc, y) < 0) { al_release(y); y = NULL; }
    } else if (y) {
        #pragma omp parallel num_threads(sample_threads(&g))
        {
            int64_t first, last;
            al_thread_share(g.N * g.Ho, &first, &last);
            if (x->dtype == AL_FLOAT32) sample_forward_float(&g, al_ptr(xc), al_ptr(gridc), al_ptr(y), first, last);
            else sample_forward_double(&g, al_ptr(xc), al_ptr(gridc), al_ptr(y), first, last);
        }
    }
    al_release(xc); al_release(gridc);
    if (y && al_grad_needed2(x, grid)) {
        const al_tensor *in[2] = {x, grid};
        al_node *node = al_record(y, "grid_sample", grid_sample_backward, 2, in);
        if (node) {
            node->ints[0] = align_corners != 0;
            node->ints[1] = padding_mode;
            node->n_ints = 2;
        }
    }
    return y;
}
