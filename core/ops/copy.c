/* copy.c -- copying and converting between layouts and dtypes, and the in-place fills that
 * optimisers and initialisers use.  Nothing here records on the graph except the public
 * al_contiguous / al_clone / al_to_dtype, which pass the gradient straight through. */
#include "../internal.h"
#include <string.h>

typedef struct { al_dtype to, from; } convert_arg;

static void convert_row(char **p, int64_t n, const int64_t *s, void *varg) {
    const convert_arg *arg = varg;
#define CONVERT(TO, FROM)                                                        \
    do {                                                                         \
        TO *d = (TO *)p[0]; const FROM *x = (const FROM *)p[1];                  \
        if (s[0] == 1 && s[1] == 1) for (int64_t i = 0; i < n; i++) d[i] = (TO)x[i]; \
        else for (int64_t i = 0; i < n; i++) d[i * s[0]] = (TO)x[i * s[1]];     \
    } while (0)
    switch (arg->to * 3 + arg->from) {
    case AL_FLOAT32 * 3 + AL_FLOAT32: CONVERT(float, float); break;
    case AL_FLOAT32 * 3 + AL_FLOAT64: CONVERT(float, double); break;
    case AL_FLOAT32 * 3 + AL_INT64: CONVERT(float, int64_t); break;
    case AL_FLOAT64 * 3 + AL_FLOAT32: CONVERT(double, float); break;
    case AL_FLOAT64 * 3 + AL_FLOAT64: CONVERT(double, double); break;
    case AL_FLOAT64 * 3 + AL_INT64: CONVERT(double, int64_t); break;
    case AL_INT64 * 3 + AL_FLOAT32: CONVERT(int64_t, float); break;
    case AL_INT64 * 3 + AL_FLOAT64: CONVERT(int64_t, double); break;
    case AL_INT64 * 3 + AL_INT64: CONVERT(int64_t, int64_t); break;
    }
#undef CONVERT
}

/* dst = src (or dst += src) for operands of one dtype, every row of the coalesced iteration walked
 * in this one loop.  Copies of permuted views (a head split or merge) come in rows as short as a
 * head, 32 floats, and through al_iter_run's call per row the call cost as much as the copy.  A
 * source of stride 0 along the row (an expanded gradient, as a sum's backward makes) is a fill,
 * which the compiler vectorises where the strided loop stayed scalar. */
#define ROWS_LOOP(T, OP)                                                                          \
    for (int64_t row = first; row < last; row++) {                                              \
        T *restrict d = (T *)pd; const T *restrict x = (const T *)px;                             \
        if (sd == 1 && sx == 1) for (int64_t i = 0; i < len; i++) d[i] OP x[i];                  \
        else if (sd == 1 && sx == 0) { const T v = x[0]; for (int64_t i = 0; i < len; i++) d[i] OP v; } \
        else for (int64_t i = 0; i < len; i++) d[i * sd] OP x[i * sx];                           \
        for (int k = nd - 2; k >= 0; k--) {   /* the odometer over the outer dimensions */      \
            pd += it->strides[0][k] * (int64_t)sizeof(T);                                        \
            px += it->strides[1][k] * (int64_t)sizeof(T);                                        \
            if (++idx[k] < it->shape[k]) break;                                                  \
            pd -= it->strides[0][k] * it->shape[k] * (int64_t)sizeof(T);                         \
            px -= it->strides[1][k] * it->shape[k] * (int64_t)sizeof(T);                         \
            idx[k] = 0;                                                                          \
        }                                                                                        \
    }
static void copy_rows(const al_iter *it, al_dtype dtype, bool add, int64_t first, int64_t last) {
    const int nd = it->ndim;
    const int64_t len = it->shape[nd - 1], sd = it->strides[0][nd - 1], sx = it->strides[1][nd - 1];
    const size_t es = al_dtype_size(dtype);
    int64_t idx[AL_MAX_DIMS] = {0}, r = first, od = 0, ox = 0;
    for (int k = nd - 2; k >= 0; k--) { idx[k] = r % it->shape[k]; r /= it->shape[k]; }
    for (int k = 0; k < nd - 1; k++) { od += idx[k] * it->strides[0][k]; ox += idx[k] * it->strides[1][k]; }
    char *pd = it->base[0] + od * (int64_t)es;
    const char *px = it->base[1] + ox * (int64_t)es;
    if (dtype == AL_FLOAT32) { if (add) { ROWS_LOOP(float, +=) } else { ROWS_LOOP(float, =) } }
    else if (dtype == AL_FLOAT64) { if (add) { ROWS_LOOP(double, +=) } else { ROWS_LOOP(double, =) } }
    else { if (add) { ROWS_LOOP(int64_t, +=) } else { ROWS_LOOP(int64_t, =) } }
}
#undef ROWS_LOOP

/* dst = src or dst += src, same shape and dtype, any strides; the rows shared among threads. */
static void same_dtype_rows(al_tensor *dst, const al_tensor *src, const int64_t *src_strides, bool add) {
    al_iter it;
    al_iter_init(&it, dst->ndim, dst->shape);
    al_iter_add(&it, al_ptr(dst), dst->strides, al_dtype_size(dst->dtype));
    al_iter_add(&it, al_ptr(src), src_strides, al_dtype_size(src->dtype));
    for (int i = 0; i < it.ndim; i++)
        if (it.shape[i] == 0) return;
    al_iter_coalesce(&it);
    int64_t rows = 1;
    for (int i = 0; i < it.ndim - 1; i++) rows *= it.shape[i];
    /* (a parallel region costs about a microsecond even when it runs on one thread: small copies,
     * the common case, call the loop directly) */
    if (rows == 1 || rows * it.shape[it.ndim - 1] < AL_PARALLEL_GRAIN) { copy_rows(&it, dst->dtype, add, 0, rows); return; }
    #pragma omp parallel
    {
        int64_t first, last;
        al_thread_share(rows, &first, &last);
        if (first < last) copy_rows(&it, dst->dtype, add, first, last);
    }
}

/* dst += src in place, src broadcast to dst's shape and of dst's dtype (gradient slots and their windows). */
int al_add_into_(al_tensor *dst, const al_tensor *src) {
    int n; int64_t shape[AL_MAX_DIMS];
    if (!al_broadcast_shapes("add_", dst->ndim, dst->shape, src->ndim, src->shape, &n, shape)) return -1;
    if (!al_same_device_any_dtype("add_", dst, src, NULL)) return -1;
    if (dst->dtype != src->dtype || !al_shape_equal(n, shape, dst->ndim, dst->shape)) return al_add_scaled_(dst, src, 1.0);
    int64_t sstrides[AL_MAX_DIMS];
    al_broadcast_strides(src, dst->ndim, dst->shape, sstrides);
    if (dst->storage->device == AL_CUDA) return al_cuda_copy_into(dst, src, sstrides, true);
    same_dtype_rows(dst, src, sstrides, true);
    return 0;
}

/* dst (any layout) = src broadcast to dst's shape, converted to dst's dtype. */
static int copy_into(const char *fn, al_tensor *dst, const al_tensor *src) {
    int n; int64_t shape[AL_MAX_DIMS];
    if (!al_broadcast_shapes(fn, dst->ndim, dst->shape, src->ndim, src->shape, &n, shape)) return -1;
    if (!al_shape_equal(n, shape, dst->ndim, dst->shape)) {
        al_error("%s: source of shape %s does not fit a destination of shape %s", fn, TSHAPE(src),
                 TSHAPE(dst));
        return -1;
    }
    if (!al_same_device_any_dtype(fn, dst, src, NULL)) return -1;
    int64_t sstrides[AL_MAX_DIMS];
    al_broadcast_strides(src, dst->ndim, dst->shape, sstrides);
    if (dst->storage->device == AL_CUDA) return al_cuda_copy_into(dst, src, sstrides, false);   /* converts too */
    if (dst->dtype == src->dtype) { same_dtype_rows(dst, src, sstrides, false); return 0; }
    al_iter it;
    al_iter_init(&it, dst->ndim, dst->shape);
    al_iter_add(&it, al_ptr(dst), dst->strides, al_dtype_size(dst->dtype));
    al_iter_add(&it, al_ptr(src), sstrides, al_dtype_size(src->dtype));
    convert_arg arg = {dst->dtype, src->dtype};
    al_iter_run(&it, convert_row, &arg);
    return 0;
}

al_tensor *al_contiguous_nograd(const al_tensor *t) {
    if (al_is_contiguous(t)) return al_alias(t);
    al_tensor *c = al_new_like(t);
    if (c && copy_into("contiguous", c, t) < 0) { al_release(c); return NULL; }
    return c;
}

al_tensor *al_to_dtype_nograd(const al_tensor *t, al_dtype dtype) {
    if (t->dtype == dtype) return al_contiguous_nograd(t);
    al_tensor *c = al_new_tensor_on(t->ndim, t->shape, dtype, t->storage->device);
    if (c && copy_into("to", c, t) < 0) { al_release(c); return NULL; }
    return c;
}

static void pass_through_backward(al_node *node, const al_tensor *g) {
    al_accumulate_input(node, 0, g);
}

static void convert_back_backward(al_node *node, const al_tensor *g) {
    al_tensor *back = al_to_dtype_nograd(g, node->inputs[0]->dtype);
    if (back) al_accumulate_input(node, 0, back);
    al_release(back);
}

static al_tensor *copy_op(const char *fn, const al_tensor *t, al_dtype dtype, bool force_copy) {
    CHECK_TENSOR(fn, t, "self");
    if (!al_is_floating_point(dtype) && al_requires_grad(t) && al_is_grad_enabled()) {
        al_error("%s: cannot convert a tensor that requires grad to %s", fn, al_dtype_name(dtype));
        return NULL;
    }
    al_tensor *out;
    if (force_copy || t->dtype != dtype || !al_is_contiguous(t)) {
        out = al_new_tensor_on(t->ndim, t->shape, dtype, t->storage->device);
        if (out && copy_into(fn, out, t) < 0) { al_release(out); return NULL; }
    } else {
        out = al_alias(t);
    }
    if (out && al_grad_needed1(t))
        al_record(out, fn, t->dtype == dtype ? pass_through_backward : convert_back_backward, 1, &t);
    return out;
}

al_tensor *al_contiguous(const al_tensor *t) { return copy_op("contiguous", t, t ? t->dtype : AL_FLOAT32, false); }
al_tensor *al_clone(const al_tensor *t) { return copy_op("clone", t, t ? t->dtype : AL_FLOAT32, true); }
al_tensor *al_to_dtype(const al_tensor *t, al_dtype dtype) {
    if (dtype != AL_FLOAT32 && dtype != AL_FLOAT64 && dtype != AL_INT64 && dtype != AL_BFLOAT16) {
        al_error("to: unknown dtype %d", (int)dtype);
        return NULL;
    }
    return copy_op("to", t, dtype, false);
}

al_tensor *al_detach(const al_tensor *t) {
    CHECK_TENSOR("detach", t, "self");
    return al_alias(t);
}

/* ---- in place ------------------------------------------------------------------------------ */

/* Fills through the broadcasting copy from a float64 scalar, which converts to any dtype. */
int al_fill_(al_tensor *t, double value) {
    if (!t) { al_error("fill: tensor is missing"); return -1; }
    if (t->storage->device == AL_CUDA) return al_cuda_fill(t, value);
    if (value == 0 && al_is_dense(t)) {   /* zeros are all-zero bytes in every dtype */
        int64_t lowest = 0;   /* a dense view starts at its offset plus its negative strides */
        for (int i = 0; i < t->ndim; i++)
            if (t->strides[i] < 0) lowest += t->strides[i] * (t->shape[i] - 1);
        memset((char *)al_ptr(t) + lowest * (int64_t)al_dtype_size(t->dtype), 0,
               (size_t)al_numel(t) * al_dtype_size(t->dtype));
        return 0;
    }
    al_tensor *scalar = al_new_tensor(0, NULL, AL_FLOAT64);
    if (!scalar) return -1;
    *(double *)al_ptr(scalar) = value;
    int rc = copy_into("fill", t, scalar);
    al_release(scalar);
    return rc;
}

int al_copy_(al_tensor *dst, const al_tensor *src) {
    if (!dst || !src) { al_error("copy: tensor is missing"); return -1; }
    if (!al_same_device_any_dtype("copy_", dst, src, NULL)) return -1;
    if (dst->storage == src->storage && dst != src) {
        /* overlapping views: copy through a temporary */
        al_tensor *tmp = al_contiguous_nograd(src);
        if (!tmp) return -1;
        al_tensor *fresh = al_new_like(tmp);
        int rc = fresh ? copy_into("copy", fresh, tmp) : -1;
        if (rc == 0) rc = copy_into("copy", dst, fresh);
        al_release(tmp);
        al_release(fresh);
        return rc;
    }
    return copy_into("copy", dst, src);
}
