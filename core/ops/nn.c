/* nn.c -- the building blocks of nn modules that are cheaper as one kernel than as a chain of
 * elementwise ops: layer norm, embedding lookup, gather and dropout. */
#include "../internal.h"
#include <math.h>
#include <string.h>

/* ---- layer norm over the last dimension ---------------------------------------------------------
 * y = (x - mean) * rstd * w + b.  Backward (per row of D, xhat = (x - mean) * rstd, gy = g * w):
 *   dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat));  dw = sum_rows g * xhat;  db = sum_rows g
 * The float kernels keep each row's sums in float (D terms, as PyTorch does) and say so to the
 * compiler (omp simd reduction: without it a float sum is a chain of dependent adds, 4 cycles each,
 * and the row's two passes were most of the op's time);
 * the sums over rows for dw and db run in double, per thread, and the threads' partial sums are
 * added in thread order, so a thread count always gives the same bits.  The double kernels are the
 * reference the gradient checks run against.  stats holds (mean, rstd) per row, in double. */
typedef struct {
    int64_t rows, D;
    double eps;
    const void *x, *w, *b;     /* w and b may be NULL */
    void *y;
    double *stats;
} layer_norm_forward_job;

static void layer_norm_forward_float(const layer_norm_forward_job *j, int64_t first, int64_t last) {
    const int64_t D = j->D;
    const float *restrict W = j->w, *restrict B = j->b;
    for (int64_t r = first; r < last; r++) {
        const float *restrict xr = (const float *)j->x + r * D;
        float *restrict yr = (float *)j->y + r * D;
        float sum = 0, var = 0;
        #pragma omp simd reduction(+:sum)
        for (int64_t i = 0; i < D; i++) sum += xr[i];
        const float mean = sum / (float)D;
        #pragma omp simd reduction(+:var)
        for (int64_t i = 0; i < D; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const float rstd = (float)(1.0 / sqrt((double)var / (double)D + j->eps));
        j->stats[2 * r] = mean;
        j->stats[2 * r + 1] = rstd;
        if (W && B) for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * rstd * W[i] + B[i];
        else if (W) for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * rstd * W[i];
        else for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * rstd + (B ? B[i] : 0.0f);
    }
}

static void layer_norm_forward_double(const layer_norm_forward_job *j, int64_t first, int64_t last) {
    const int64_t D = j->D;
    const double *W = j->w, *B = j->b;
    for (int64_t r = first; r < last; r++) {
        const double *xr = (const double *)j->x + r * D;
        double *yr = (double *)j->y + r * D;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < D; i++) mean += xr[i];
        mean /= (double)D;
        for (int64_t i = 0; i < D; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const double rstd = 1.0 / sqrt(var / (double)D + j->eps);
        j->stats[2 * r] = mean;
        j->stats[2 * r + 1] = rstd;
        for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mean) * rstd * (W ? W[i] : 1.0) + (B ? B[i] : 0.0);
    }
}

typedef struct {
    int64_t rows, D;
    const void *x, *g, *w;     /* w may be NULL */
    const double *stats;
    void *dx;                  /* NULL when x needs no gradient */
} layer_norm_backward_job;

/* The backward row kernel, once per float dtype: layer_norm_backward_float, layer_norm_backward_double */
#define GENERIC_FILE "../generic/layer_norm_rows.h"
#include "../generic/float_types.h"

/* The backward on CUDA: the same steps through core/cuda/nn.cu's kernels, which return the sums over
 * rows for dw and db as one (2, D) float64 tensor (the CPU's partial sums, already totalled). */
static void layer_norm_backward_cuda(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    const int64_t D = x->shape[x->ndim - 1];
    const bool want_dx = al_input_needs_grad(node, 0), want_dw = al_input_needs_grad(node, 1),
               want_db = al_input_needs_grad(node, 2);
    al_tensor *xc = al_contiguous_nograd(x), *gc = al_contiguous_nograd(g);
    al_tensor *wc = node->inputs[1] ? al_contiguous_nograd(node->inputs[1]) : NULL;
    al_tensor *dx = want_dx ? al_new_like(x) : NULL;
    const int64_t sshape[2] = {2, D};
    al_tensor *sums = want_dw || want_db ? al_new_tensor_on(2, sshape, AL_FLOAT64, AL_CUDA) : NULL;
    if (xc && gc && (!node->inputs[1] || wc) && (!want_dx || dx) && (!(want_dw || want_db) || sums) &&
        al_cuda_layer_norm_backward(xc, gc, wc, node->saved[0], dx, sums) == 0) {
        al_accumulate_input(node, 0, dx);
        for (int k = 0; k < 2; k++) {
            if (!(k == 0 ? want_dw : want_db)) continue;
            al_tensor *total = al_view_of(sums, 1, &D, (int64_t[]){1}, (int64_t)k * D);
            al_tensor *cast = total ? al_to_dtype_nograd(total, x->dtype) : NULL;
            al_accumulate_input(node, 1 + k, cast);
            al_release(total); al_release(cast);
        }
    }   /* else the allocator or the kernel has said why */
    al_release(xc); al_release(gc); al_release(wc); al_release(dx); al_release(sums);
}

static void layer_norm_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0];
    if (x->storage->device == AL_CUDA) { layer_norm_backward_cuda(node, g); return; }
    al_tensor *xc = al_contiguous_nograd(x), *gc = al_contiguous_nograd(g);
    al_tensor *wc = node->inputs[1] ? al_contiguous_nograd(node->inputs[1]) : NULL;
    const int64_t D = x->shape[x->ndim - 1], rows = D ? al_numel(x) / D : 0;
    const bool want_dw = al_input_needs_grad(node, 1), want_db = al_input_needs_grad(node, 2);
    al_tensor *dx = al_input_needs_grad(node, 0) ? al_new_like(x) : NULL;
    /* per thread: dw then db partial sums over its rows, in double */
    const int threads = rows * D >= AL_PARALLEL_GRAIN ? al_get_num_threads() : 1;
    int64_t pshape[2] = {threads, 2 * D};
    al_tensor *partial = want_dw || want_db ? al_full(2, pshape, 0, AL_FLOAT64) : NULL;
    if (xc && gc && (!node->inputs[1] || wc) && (!al_input_needs_grad(node, 0) || dx) && (!(want_dw || want_db) || partial)) {
        const layer_norm_backward_job job = {rows, D, al_ptr(xc), al_ptr(gc), wc ? al_ptr(wc) : NULL,
                                             al_ptr(node->saved[0]), dx ? al_ptr(dx) : NULL};
        double *sums = partial ? al_ptr(partial) : NULL;
        #pragma omp parallel num_threads(threads) if (threads > 1)
        {
            int64_t first, last;
            al_thread_share(rows, &first, &last);
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            double *dw = want_dw ? sums + (int64_t)tid * 2 * D : NULL, *db = want_db ? sums + (int64_t)tid * 2 * D + D : NULL;
            if (x->dtype == AL_FLOAT32) layer_norm_backward_float(&job, first, last, dw, db);
            else layer_norm_backward_double(&job, first, last, dw, db);
        }
        for (int t = 1; t < threads; t++)
            for (int64_t i = 0; i < 2 * D; i++) sums[i] += sums[(int64_t)t * 2 * D + i];
        al_accumulate_input(node, 0, dx);
        for (int k = 0; k < 2; k++) {
            if (!(k == 0 ? want_dw : want_db)) continue;
            al_tensor *total = al_view_of(partial, 1, &D, (int64_t[]){1}, (int64_t)k * D);
            al_tensor *cast = total ? al_to_dtype_nograd(total, x->dtype) : NULL;
            al_accumulate_input(node, 1 + k, cast);
            al_release(total); al_release(cast);
        }
    } else {
        al_error("layer_norm: out of memory in the backward");
    }
    al_release(xc); al_release(gc); al_release(wc); al_release(dx); al_release(partial);
}

al_tensor *al_layer_norm(const al_tensor *x, const al_tensor *weight, const al_tensor *bias, double eps) {
    CHECK_TENSOR("layer_norm", x, "x");
    if (!al_same_device("layer_norm", x, weight, bias)) return NULL;   /* CPU or CUDA (core/cuda/nn.cu) */
    if (x->ndim < 1 || !al_is_float(x->dtype)) {
        al_error("layer_norm: x must be a float tensor with at least 1 dimension (got %s, %s)", TSHAPE(x),
                 al_dtype_name(x->dtype));
        return NULL;
    }
    int64_t D = x->shape[x->ndim - 1];
    const al_tensor *params[2] = {weight, bias};
    const char *pname[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        const al_tensor *p = params[i];
        if (p && (p->ndim != 1 || p->shape[0] != D || p->dtype != x->dtype)) {
            al_error("layer_norm: %s of shape %s (%s) does not match the last dimension of x %s (%s)",
                     pname[i], TSHAPE(p), al_dtype_name(p->dtype), TSHAPE(x), al_dtype_name(x->dtype));
            return NULL;
        }
    }
    if (!(eps >= 0)) { al_error("layer_norm: eps must be >= 0 (got %g)", eps); return NULL; }
    int64_t rows = D ? al_numel(x) / D : 0;
    int64_t sshape[2] = {rows, 2};
    al_tensor *xc = al_contiguous_nograd(x);
    al_tensor *wc = weight ? al_contiguous_nograd(weight) : NULL;
    al_tensor *bc = bias ? al_contiguous_nograd(bias) : NULL;
    al_tensor *out = al_new_like(x), *stats = al_new_tensor_on(2, sshape, AL_FLOAT64, x->storage->device);
    if (xc && out && stats && (!weight || wc) && (!bias || bc) && x->storage->device == AL_CUDA) {
        if (al_cuda_layer_norm(xc, wc, bc, eps, out, stats) < 0) { al_release(out); out = NULL; }
    } else if (xc && out && stats && (!weight || wc) && (!bias || bc)) {
        const layer_norm_forward_job job = {rows, D, eps, al_ptr(xc), wc ? al_ptr(wc) : NULL, bc ? al_ptr(bc) : NULL,
                                            al_ptr(out), al_ptr(stats)};
        #pragma omp parallel if (rows * D >= AL_PARALLEL_GRAIN)
        {
            int64_t first, last;
            al_thread_share(rows, &first, &last);
            if (x->dtype == AL_FLOAT32) layer_norm_forward_float(&job, first, last);
            else layer_norm_forward_double(&job, first, last);
        }
    }
    al_release(xc); al_release(wc); al_release(bc);
    if (!out || !stats) { al_release(out); al_release(stats); return NULL; }
    bool need = al_grad_needed1(x) || al_grad_needed1(weight) || al_grad_needed1(bias);
    if (need) {
        const al_tensor *in[3] = {x, weight, bias};
        al_node *node = al_record(out, "layer_norm", layer_norm_backward, 3, in);
        if (node) { al_node_save(node, 0, stats); node->scalars[0] = eps; }
    }
    al_release(stats);
    return out;
}

/* ---- embedding and gather ------------------------------------------------------------------ */

static void report_bad_id(const char *fn, int64_t id, int64_t limit, const char *what) {
    al_error("%s: index %lld is out of range for %s of size %lld", fn, (long long)((uint64_t)id + 1), what,
             (long long)limit);
}

static bool check_ids(const char *fn, const al_tensor *ids, int64_t limit, const char *what) {
    if (ids->dtype != AL_INT64) {
        al_error("%s: indices must be int64 (got %s of shape %s)", fn, al_dtype_name(ids->dtype), TSHAPE(ids));
        return false;
    }
    al_tensor *c = al_contiguous_nograd(ids);
    if (!c) return false;
    const int64_t n = al_numel(c);
    if (c->storage->device == AL_CUDA) {   /* checked on the device; the first bad one comes back */
        int64_t first_bad, bad_id, counted;
        const int rc = al_cuda_check_ids(fn, c, limit, 0, false, &first_bad, &bad_id, &counted);
        al_release(c);
        if (rc == 0 && first_bad < n) report_bad_id(fn, bad_id, limit, what);
        return rc == 0 && first_bad == n;
    }
    const int64_t *p = al_ptr(c);
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= limit) {
            report_bad_id(fn, p[i], limit, what);
            al_release(c);
            return false;
        }
    al_release(c);
    return true;
}

static void embedding_backward(al_node *node, const al_tensor *g) {
    const al_tensor *w = node->inputs[0], *ids = node->saved[0];
    if (w->storage->device == AL_CUDA) {   /* a scatter-add with atomics (core/cuda/nn.cu) */
        al_tensor *gw = al_full_on(w->ndim, w->shape, 0, w->dtype, AL_CUDA), *gc = al_contiguous_nograd(g);
        if (gw && gc && al_cuda_embedding_backward(gw, ids, gc) == 0)
            al_accumulate_input(node, 0, gw);
        al_release(gw);
        al_release(gc);
        return;
    }
    al_tensor *gw = al_full(w->ndim, w->shape, 0, w->dtype), *gc = al_contiguous_nograd(g);
    if (gw && gc) {
        int64_t n = al_numel(ids), D = w->shape[1];
        const int64_t *ip = al_ptr(ids);
        size_t es = al_dtype_size(w->dtype);
        for (int64_t i = 0; i < n; i++) {
            if (w->dtype == AL_FLOAT32) {
                float *dst = (float *)al_ptr(gw) + ip[i] * D; const float *src = (const float *)al_ptr(gc) + i * D;
                for (int64_t k = 0; k < D; k++) dst[k] += src[k];
            } else {
                double *dst = (double *)al_ptr(gw) + ip[i] * D; const double *src = (const double *)al_ptr(gc) + i * D;
                for (int64_t k = 0; k < D; k++) dst[k] += src[k];
            }
        }
        (void)es;
        al_accumulate_input(node, 0, gw);
    }
    al_release(gw);
    al_release(gc);
}

al_tensor *al_embedding(const al_tensor *weight, const al_tensor *ids) {
    CHECK_TENSOR("embedding", weight, "weight");
    CHECK_TENSOR("embedding", ids, "ids");
    if (!al_same_device("embedding", weight, ids, NULL)) return NULL;   /* CPU or CUDA (core/cuda/nn.cu) */
    if (weight->ndim != 2 || !al_is_float(weight->dtype)) {
        al_error("embedding: weight must be a 2-d float tensor (got %s, %s)", TSHAPE(weight), al_dtype_name(weight->dtype));
        return NULL;
    }
    if (ids->ndim + 1 > AL_MAX_DIMS) { al_error("embedding: ids have too many dimensions (%s)", TSHAPE(ids)); return NULL; }
    if (!check_ids("embedding", ids, weight->shape[0], "an embedding table")) return NULL;
    int64_t shape[AL_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    int64_t D = weight->shape[1];
    shape[ids->ndim] = D;
    al_tensor *wc = al_contiguous_nograd(weight), *ic = al_contiguous_nograd(ids);
    al_tensor *out = wc && ic ? al_new_tensor_on(ids->ndim + 1, shape, weight->dtype, weight->storage->device) : NULL;
    if (out && weight->storage->device == AL_CUDA && al_cuda_embedding(wc, ic, out) < 0) {
        al_release(out);
        out = NULL;
    } else if (out && weight->storage->device == AL_CPU) {
        int64_t n = al_numel(ic);
        size_t row = (size_t)D * al_dtype_size(weight->dtype);
        const int64_t *ip = al_ptr(ic);
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)al_ptr(out) + (size_t)i * row, (const char *)al_ptr(wc) + (size_t)ip[i] * row, row);
    }
    if (out && al_grad_needed1(weight)) {
        al_node *node = al_record(out, "embedding", embedding_backward, 1, &weight);
        if (node) al_node_save(node, 0, ic);
    }
    al_release(wc);
    al_release(ic);
    return out;
}

static void gather_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0], *idx = node->saved[0];
    int d = (int)node->ints[0];
    if (x->storage->device == AL_CUDA) {   /* a scatter-add with atomics (core/cuda/reduce.cu) */
        al_tensor *gx = al_full_on(x->ndim, x->shape, 0, x->dtype, AL_CUDA), *gc = al_contiguous_nograd(g);
        if (gx && gc && al_cuda_gather_backward(gx, d, idx, gc) == 0)
            al_accumulate_input(node, 0, gx);
        al_release(gx);
        al_release(gc);
        return;
    }
    al_tensor *gx = al_full(x->ndim, x->shape, 0, AL_FLOAT64), *gc = al_to_dtype_nograd(g, AL_FLOAT64);
    if (gx && gc) {
        int64_t n = al_numel(idx), pos[AL_MAX_DIMS] = {0};
        const int64_t *ip = al_ptr(idx);
        for (int64_t k = 0; k < n; k++) {
            int64_t off = 0;
            for (int i = 0; i < x->ndim; i++) off += (i == d ? ip[k] : pos[i]) * gx->strides[i];
            ((double *)al_ptr(gx))[off] += ((const double *)al_ptr(gc))[k];
            for (int i = idx->ndim - 1; i >= 0; i--) { if (++pos[i] < idx->shape[i]) break; pos[i] = 0; }
        }
        al_tensor *back = al_to_dtype_nograd(gx, x->dtype);
        al_accumulate_input(node, 0, back);
        al_release(back);
    }
    al_release(gx);
    al_release(gc);
}

al_tensor *al_gather(const al_tensor *t, int dim, const al_tensor *indices) {
    CHECK_TENSOR("gather", t, "self");
    CHECK_TENSOR("gather", indices, "indices");
    if (!al_same_device("gather", t, indices, NULL)) return NULL;
    int d = al_normalize_dim("gather", dim, t->ndim);
    if (d < 0) return NULL;
    if (indices->ndim != t->ndim) {
        al_error("gather: indices %s must have as many dimensions as the tensor %s", TSHAPE(indices), TSHAPE(t));
        return NULL;
    }
    for (int i = 0; i < t->ndim; i++)
        if (i != d && indices->shape[i] > t->shape[i]) {
            al_error("gather: indices %s exceed the tensor %s in dimension %d", TSHAPE(indices), TSHAPE(t), i + 1);
            return NULL;
        }
    if (!check_ids("gather", indices, t->shape[d], "the gathered dimension")) return NULL;
    al_tensor *ic = al_contiguous_nograd(indices);
    al_tensor *out = ic ? al_new_tensor_on(ic->ndim, ic->shape, t->dtype, t->storage->device) : NULL;
    if (out && t->storage->device == AL_CUDA) {
        if (al_cuda_gather(t, d, ic, out) < 0) { al_release(out); out = NULL; }
        else if (al_grad_needed1(t)) {
            al_node *node = al_record(out, "gather", gather_backward, 1, &t);
            if (node) { node->ints[0] = d; al_node_save(node, 0, ic); }
        }
    } else if (out) {
        int64_t n = al_numel(ic), pos[AL_MAX_DIMS] = {0};
        const int64_t *ip = al_ptr(ic);
        size_t es = al_dtype_size(t->dtype);
        for (int64_t k = 0; k < n; k++) {
            int64_t off = t->offset;
            for (int i = 0; i < t->ndim; i++) off += (i == d ? ip[k] : pos[i]) * t->strides[i];
            memcpy((char *)al_ptr(out) + (size_t)k * es, (char *)t->storage->data + (size_t)off * es, es);
            for (int i = ic->ndim - 1; i >= 0; i--) { if (++pos[i] < ic->shape[i]) break; pos[i] = 0; }
        }
        if (al_grad_needed1(t)) {
            al_node *node = al_record(out, "gather", gather_backward, 1, &t);
            if (node) { node->ints[0] = d; al_node_save(node, 0, ic); }
        }
    }
    al_release(ic);
    return out;
}

/* ---- dropout: a kept element is scaled by 1/(1-p) so the expectation is unchanged ------------ */

/* On CUDA the mask is drawn on the device from the same generator (core/cuda/nn.cu ports rng.c's
 * draw): the same seed and counter give the CPU's mask, element for element, and the counter
 * advances as al_rand's would.  The mask is applied by al_mul, so the graph is the CPU's. */
static al_tensor *dropout_cuda(const al_tensor *x, double p) {
    if (!al_is_float(x->dtype)) {
        al_error("dropout: x of shape %s has dtype %s; dropout needs float32 or float64", TSHAPE(x),
                 al_dtype_name(x->dtype));
        return NULL;
    }
    al_tensor *mask = al_new_like(x);
    if (!mask) return NULL;
    uint64_t key, first;
    al_rng_take((uint64_t)al_numel(mask), &key, &first);
    al_tensor *out = al_cuda_dropout_mask(mask, p, key, first) == 0 ? al_mul(x, mask) : NULL;
    al_release(mask);
    return out;
}

al_tensor *al_dropout(const al_tensor *x, double p, int training) {
    CHECK_TENSOR("dropout", x, "x");
    if (!(p >= 0 && p < 1)) { al_error("dropout: p must be in [0, 1) (got %g)", p); return NULL; }
    if (!training || p == 0) return al_mul_scalar(x, 1.0);
    if (x->storage->device == AL_CUDA) return dropout_cuda(x, p);
    al_tensor *u = al_rand(x->ndim, x->shape, x->dtype);
    al_tensor *keep = u ? al_compare_scalar(u, p, AL_GE) : NULL;
    al_tensor *mask = keep ? al_mul_scalar(keep, 1.0 / (1.0 - p)) : NULL;
    al_tensor *out = mask ? al_mul(x, mask) : NULL;
    al_release(u); al_release(keep); al_release(mask);
    return out;
}
