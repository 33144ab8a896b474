/* linear.c -- the affine map of nn.Linear as one op: y = x W^T + b, x (..., in), W (out, in).
 *
 * As one node it needs no transposed view of W on the graph, so W's gradient arrives contiguous
 * (no copy into the leaf), and the batch is folded into the rows of a single product both ways:
 *   dx = g W;  dW = g^T x (summed over every row by the product itself);  db = sum of g's rows.
 *
 * Transformer-sized maps (every dimension at least BLAS_MIN_DIM) call the BLAS directly, the rows
 * (or, for dW, W's rows) split between the threads: the bias is written into y first and the
 * product adds onto it (beta = 1), and db is summed by the threads that compute dW, each over its
 * own outputs, so neither costs a pass of its own.  The float products go to attnlab's own AVX-512
 * product instead where OpenBLAS's kernel leaves AVX-512 unused (sgemm_avx512.c, blas_info.c).
 * Smaller maps (the toy tasks' 6-wide heads) go through al_matmul, whose small-matrix kernels beat
 * a BLAS call there. */
#include "../internal.h"
#include <cblas.h>
#include <string.h>

enum { BLAS_MIN_DIM = 64 };
/* below this many multiply-adds one thread does the product (waking the second costs more) */
enum { LINEAR_SPLIT_WORK = 1 << 22 };

/* (..., k) as (rows, k): contiguous inputs only (the caller makes them so) */
static al_tensor *as_rows(const al_tensor *t) {
    int64_t k = t->shape[t->ndim - 1];
    int64_t shape[2] = {k ? al_numel(t) / k : 0, k}, strides[2] = {k, 1};
    return al_view_of(t, 2, shape, strides, t->offset);
}

/* On the GPU every map goes through al_matmul (cuBLAS) and the elementwise kernels. */
static bool use_blas(const al_tensor *x, int64_t rows, int64_t nin, int64_t nout) {
    return x->storage->device == AL_CPU && rows >= BLAS_MIN_DIM && nin >= BLAS_MIN_DIM && nout >= BLAS_MIN_DIM;
}

/* C (m x n, row stride ldc) = alpha op(A) op(B) + beta C, row-major, in the tensors' dtype */
static void gemm(al_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    const CBLAS_TRANSPOSE ta_ = ta ? CblasTrans : CblasNoTrans, tb_ = tb ? CblasTrans : CblasNoTrans;
    if (dt == AL_FLOAT32 && al_linear_uses_own_sgemm() &&
        al_sgemm_own(ta, tb, m, n, k, a, lda, b, ldb, (float)beta, c, ldc))
        return;
    if (dt == AL_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta_, tb_, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta_, tb_, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static int split_threads(int64_t work) { return work >= LINEAR_SPLIT_WORK ? al_get_num_threads() : 1; }

/* y (rows, out) = x (rows, in) W^T + b, x and W contiguous */
static void linear_forward_blas(const al_tensor *x, const al_tensor *w, const al_tensor *b, al_tensor *y) {
    const int64_t rows = al_numel(x) / x->shape[x->ndim - 1], nin = w->shape[1], nout = w->shape[0];
    const size_t es = al_dtype_size(x->dtype);
    const char *X = al_ptr(x), *W = al_ptr(w), *B = b ? al_ptr(b) : NULL;
    char *Y = al_ptr(y);
    #pragma omp parallel num_threads(split_threads(rows * nin * nout))
    {
        int64_t first, last;
        al_thread_share(rows, &first, &last);
        if (first < last) {
            if (B)
                for (int64_t r = first; r < last; r++) memcpy(Y + (size_t)(r * nout) * es, B, (size_t)nout * es);
            gemm(x->dtype, false, true, last - first, nout, nin, X + (size_t)(first * nin) * es, nin, W, nin, B ? 1.0 : 0.0,
                 Y + (size_t)(first * nout) * es, nout);
        }
    }
    al_count_flops(2.0 * (double)rows * (double)nin * (double)nout);
}

/* dx = g W (when dx), and dW = g^T x with db = the column sums of g (when dw / db), g (rows, out) */
static void linear_backward_blas(const al_tensor *g, const al_tensor *x, const al_tensor *w, al_tensor *dx,
                                 al_tensor *dw, al_tensor *db) {
    const int64_t rows = al_numel(g) / g->shape[g->ndim - 1], nin = w->shape[1], nout = w->shape[0];
    const size_t es = al_dtype_size(g->dtype);
    const char *G = al_ptr(g), *X = al_ptr(x), *W = al_ptr(w);
    #pragma omp parallel num_threads(split_threads(rows * nin * nout))
    {
        int64_t first, last;
        if (dx) {
            al_thread_share(rows, &first, &last);
            if (first < last)
                gemm(g->dtype, false, false, last - first, nin, nout, G + (size_t)(first * nout) * es, nout, W, nin, 0.0,
                     (char *)al_ptr(dx) + (size_t)(first * nin) * es, nin);
        }
        al_thread_share(nout, &first, &last);
        if (dw && first < last)
            gemm(g->dtype, true, false, last - first, nin, rows, G + (size_t)first * es, nout, X, nin, 0.0,
                 (char *)al_ptr(dw) + (size_t)(first * nin) * es, nin);
        if (db && first < last) {
            /* this thread's outputs, summed down the rows in double; the order is fixed */
            double sums[512];
            for (int64_t o0 = first; o0 < last; o0 += 512) {
                const int64_t n = last - o0 < 512 ? last - o0 : 512;
                for (int64_t o = 0; o < n; o++) sums[o] = 0;
                for (int64_t r = 0; r < rows; r++) {
                    if (g->dtype == AL_FLOAT32) {
                        const float *gr = (const float *)G + r * nout + o0;
                        for (int64_t o = 0; o < n; o++) sums[o] += gr[o];
                    } else {
                        const double *gr = (const double *)G + r * nout + o0;
                        for (int64_t o = 0; o < n; o++) sums[o] += gr[o];
                    }
                }
                for (int64_t o = 0; o < n; o++) {
                    if (g->dtype == AL_FLOAT32) ((float *)al_ptr(db))[o0 + o] = (float)sums[o];
                    else ((double *)al_ptr(db))[o0 + o] = sums[o];
                }
            }
        }
    }
    al_count_flops(2.0 * (double)rows * (double)nin * (double)nout * ((dx ? 1 : 0) + (dw ? 1 : 0)));
}

static al_tensor *linear_by_matmul(const al_tensor *x, const al_tensor *weight, const al_tensor *bias);

static void linear_backward(al_node *node, const al_tensor *g) {
    const al_tensor *x = node->inputs[0], *w = node->inputs[1];
    const int64_t nin = w->shape[1], nout = w->shape[0], rows = nin ? al_numel(x) / nin : 0;
    if (use_blas(x, rows, nin, nout)) {
        al_tensor *gc = al_contiguous_nograd(g), *xc = al_contiguous_nograd(x), *wc = al_contiguous_nograd(w);
        al_tensor *dx = al_input_needs_grad(node, 0) ? al_new_tensor(x->ndim, x->shape, x->dtype) : NULL;
        al_tensor *dw = al_input_needs_grad(node, 1) ? al_new_tensor(2, w->shape, w->dtype) : NULL;
        const al_tensor *b = node->inputs[2];
        al_tensor *db = b && al_input_needs_grad(node, 2) ? al_new_tensor(1, b->shape, b->dtype) : NULL;
        if (gc && xc && wc && (dx || !al_input_needs_grad(node, 0)) && (dw || !al_input_needs_grad(node, 1)) &&
            (db || !b || !al_input_needs_grad(node, 2))) {
            linear_backward_blas(gc, xc, wc, dx, dw, db);
            al_accumulate_input_take(node, 0, dx);
            al_accumulate_input_take(node, 1, dw);
            al_accumulate_input_take(node, 2, db);
        } else {
            al_error("linear: out of memory in the backward");
            al_release(dx); al_release(dw); al_release(db);
        }
        al_release(gc); al_release(xc); al_release(wc);
        return;
    }
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
    if (!al_same_device("linear", x, weight, bias)) return NULL;
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
    const int64_t nin = weight->shape[1], nout = weight->shape[0], rows = nin ? al_numel(x) / nin : 0;
    al_tensor *y = NULL;
    if (use_blas(x, rows, nin, nout)) {
        al_tensor *xc = al_contiguous_nograd(x), *wc = al_contiguous_nograd(weight);
        al_tensor *bc = bias ? al_contiguous_nograd(bias) : NULL;
        int64_t shape[AL_MAX_DIMS];
        for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
        shape[x->ndim - 1] = nout;
        y = xc && wc && (bc || !bias) ? al_new_tensor(x->ndim, shape, x->dtype) : NULL;
        if (y) linear_forward_blas(xc, wc, bc, y);
        al_release(xc); al_release(wc); al_release(bc);
    } else {
        y = linear_by_matmul(x, weight, bias);
    }
    if (y && (al_grad_needed2(x, weight) || al_grad_needed1(bias))) {
        const al_tensor *in[3] = {x, weight, bias};
        al_record(y, "linear", linear_backward, 3, in);
    }
    return y;
}

/* the small maps: through al_matmul and its small-matrix kernels */
static al_tensor *linear_by_matmul(const al_tensor *x, const al_tensor *weight, const al_tensor *bias) {
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
    return y;
}
