/* matmul.c -- batched matrix products with broadcasting, and small linear solves.
 *
 * The paths, chosen by shape and size (bench/RESULTS.md has the measurements behind the thresholds):
 *   - tiny matrices (the toy tasks' 6x6 heads): a plain C kernel, batches shared among threads;
 *     a BLAS call costs more than the arithmetic here;
 *   - many rows against a small right operand (k <= 32, a few widths m): a register-blocked
 *     panel kernel (measured 90 us faster than OpenBLAS on the toy tasks' three projections);
 *     for float with k <= 8, m <= 32 on AVX-512, B held in registers (matmul_avx512.h: ICL step
 *     0.49-0.55 -> 0.45-0.48 ms);
 *   - few rows and columns summed over a long k with A transposed (a linear map's weight
 *     gradient), float on AVX-512: a sum of outer products in registers (matmul_avx512.h: ICL
 *     step 0.67-0.73 -> 0.57-0.61 ms against OpenBLAS, which packs the transposed operand first);
 *   - many medium matrices: one BLAS call per matrix, batches shared among threads;
 *   - large matrices: the rows of each product split among threads, one BLAS call per slice.
 * OpenBLAS itself always runs single-threaded (see threads.c). */
#include "../internal.h"
#include "solve_system.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const char *a, *b; char *c;
    int64_t n, k, m;
    int64_t as0, as1, bs0, bs1;   /* element strides of A's rows/cols and B's rows/cols */
} matrix_job;

/* the largest B (k rows of m) that generic/matmul_small.h's kernels pack into a buffer on the stack */
enum { SMALL_K = 32, SMALL_M = 64 };

/* Products below this many multiply-adds run on one thread: waking a second one costs tens of
 * microseconds on a 2-vCPU VM, more than it saves (measured on the toy tasks' step: 1.33 ms with
 * the projections split over 2 threads, 0.95 ms on one). */
enum { SPLIT_WORK = 1 << 22 };

#include "matmul_avx512.h"

/* The small kernel and the panel kernel, once per dtype: small_matmul_float, panel_matmul_double, ... */
#define GENERIC_FILE "../generic/matmul_small.h"
#include "../generic/float_types.h"


/* Runs a kernel on a product, split by rows among the threads when the product is large enough to
 * pay for waking them (SPLIT_WORK) and the caller is not already splitting a batch. */
typedef void (*matrix_kernel)(const matrix_job *j, al_dtype dt);
static void run_split_rows(const matrix_job *j, al_dtype dt, bool may_split, matrix_kernel kernel) {
    if (!may_split || j->n * j->k * j->m < SPLIT_WORK || j->n < 16) { kernel(j, dt); return; }
    const size_t es = al_dtype_size(dt);
    #pragma omp parallel
    {
        int64_t first, last;
        al_thread_share(j->n, &first, &last);
        if (first < last) {
            matrix_job slice = *j;
            slice.n = last - first;
            slice.a = j->a + first * j->as0 * (int64_t)es;
            slice.c = j->c + first * j->m * (int64_t)es;
            kernel(&slice, dt);
        }
    }
}

static void panel_kernel(const matrix_job *j, al_dtype dt) {
    if (dt == AL_FLOAT32) panel_matmul_float(j); else panel_matmul_double(j);
}

/* The panel kernel, when it applies (k and m in its range); false otherwise. */
static bool panel_matmul(const matrix_job *j, al_dtype dt, bool may_split) {
    if (j->k > SMALL_K || j->k < 1) return false;
    switch (j->m) {
    case 4: case 6: case 8: case 12: case 16: case 24: case 32: case 48: case 64: break;
    default: return false;
    }
    run_split_rows(j, dt, may_split, panel_kernel);
    return true;
}

/* BLAS wants each operand with one unit stride; returns false when neither stride is 1. */
static bool blas_layout(int64_t s0, int64_t s1, int64_t rows, int64_t cols, CBLAS_TRANSPOSE *tr, int64_t *ld) {
    if (s1 == 1 && (s0 >= (cols > 1 ? cols : 1) || rows == 1)) { *tr = CblasNoTrans; *ld = s0 > cols ? s0 : (cols > 1 ? cols : 1); return true; }
    if (s0 == 1 && (s1 >= (rows > 1 ? rows : 1) || cols == 1)) { *tr = CblasTrans; *ld = s1 > rows ? s1 : (rows > 1 ? rows : 1); return true; }
    return false;
}

static void blas_matmul_serial(const matrix_job *j, al_dtype dt) {
    CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;   /* matmul_nd checked both layouts */
    int64_t lda = 1, ldb = 1;
    blas_layout(j->as0, j->as1, j->n, j->k, &ta, &lda);
    blas_layout(j->bs0, j->bs1, j->k, j->m, &tb, &ldb);
    int64_t ldc = j->m > 1 ? j->m : 1;
    if (dt == AL_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)j->n, (int)j->m, (int)j->k, 1.0f, (const float *)j->a,
                    (int)lda, (const float *)j->b, (int)ldb, 0.0f, (float *)j->c, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)j->n, (int)j->m, (int)j->k, 1.0, (const double *)j->a,
                    (int)lda, (const double *)j->b, (int)ldb, 0.0, (double *)j->c, (int)ldc);
}

/* A batched (..., n, k) operand whose batch and row dimensions can be read as one (rows, k) matrix
 * without a copy; NULL when they cannot. */
static al_tensor *fold_rows(const al_tensor *t) {
    int nd = t->ndim, prev = -1;
    int64_t row_stride = t->strides[nd - 1] * t->shape[nd - 1];
    for (int i = 0; i < nd - 1; i++) {   /* size-1 dimensions take no part */
        if (t->shape[i] == 1) continue;
        if (prev >= 0 && t->strides[prev] != t->strides[i] * t->shape[i]) return NULL;
        prev = i;
        row_stride = t->strides[i];
    }
    int64_t shape[2] = {al_shape_numel(nd - 1, t->shape), t->shape[nd - 1]};
    int64_t strides[2] = {row_stride, t->strides[nd - 1]};
    return al_view_of(t, 2, shape, strides, t->offset);
}

/* Large products: slices of rows, one per thread (about 2x on two cores for a 512^3 product). */
static void blas_matmul(const matrix_job *j, al_dtype dt, bool may_split) {
    run_split_rows(j, dt, may_split, blas_matmul_serial);
}

static void matmul_backward(al_node *node, const al_tensor *g) {
    const al_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (al_input_needs_grad(node, 0)) {      /* dA = g B^T */
        al_tensor *bt = al_transpose(b, -1, -2);
        al_tensor *ga = bt ? al_matmul(g, bt) : NULL;
        al_accumulate_input(node, 0, ga);
        al_release(bt); al_release(ga);
    }
    if (al_input_needs_grad(node, 1)) {      /* dB = A^T g */
        /* a weight shared by every batch (b 2-d, a batched): one (k, rows) x (rows, m) product
         * instead of a product per batch followed by a sum over the batch */
        al_tensor *a2 = b->ndim == 2 && a->ndim > 2 ? fold_rows(a) : NULL;
        al_tensor *gc = a2 ? al_contiguous_nograd(g) : NULL;
        al_tensor *g2 = gc ? fold_rows(gc) : NULL;
        al_tensor *at = g2 ? al_transpose(a2, 0, 1) : al_transpose(a, -1, -2);
        al_tensor *gb = at ? al_matmul(at, g2 ? g2 : g) : NULL;
        al_accumulate_input(node, 1, gb);
        al_release(a2); al_release(gc); al_release(g2); al_release(at); al_release(gb);
    }
}

/* Both operands at least 2-D. */
static al_tensor *matmul_nd(const al_tensor *a, const al_tensor *b) {
    int64_t n = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t k2 = b->shape[b->ndim - 2], m = b->shape[b->ndim - 1];
    if (k != k2) {
        al_error("matmul: shapes %s and %s do not align (dim %d = %lld, dim %d = %lld)", TSHAPE(a),
                 TSHAPE(b), a->ndim, (long long)k, b->ndim - 1, (long long)k2);
        return NULL;
    }
    if (a->dtype != b->dtype || !al_is_float(a->dtype)) {
        al_error("matmul: operands are %s and %s; both must be the same float dtype",
                 al_dtype_name(a->dtype), al_dtype_name(b->dtype));
        return NULL;
    }
    if (b->ndim == 2 && a->ndim > 2) {
        /* (..., n, k) x (k, m): one (rows, k) x (k, m) product when a's rows fold without a copy */
        al_tensor *a2 = fold_rows(a);
        int prev = al_set_grad_enabled(0);   /* the node goes on the unfolded result below */
        al_tensor *flat = a2 ? matmul_nd(a2, b) : NULL;
        al_set_grad_enabled(prev);
        al_release(a2);
        if (flat) {
            int64_t shape[AL_MAX_DIMS];
            memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
            shape[a->ndim - 1] = m;
            al_tensor *out = al_view_of(flat, a->ndim, shape, (int64_t[AL_MAX_DIMS]){0}, 0);
            int64_t st = 1;
            for (int i = a->ndim - 1; i >= 0; i--) { out->strides[i] = st; st *= shape[i]; }
            out->offset = flat->offset;
            al_release(flat);
            if (al_grad_needed2(a, b)) {
                const al_tensor *in[2] = {a, b};
                al_record(out, "matmul", matmul_backward, 2, in);
            }
            return out;
        }
    }
    int nb; int64_t batch[AL_MAX_DIMS];
    if (!al_broadcast_shapes("matmul", a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nb, batch)) return NULL;
    int64_t oshape[AL_MAX_DIMS];
    memcpy(oshape, batch, sizeof(int64_t) * (size_t)nb);
    oshape[nb] = n;
    oshape[nb + 1] = m;
    if (!al_check_shape("matmul", nb + 2, oshape)) return NULL;

    /* operands whose matrices have no unit stride are copied once */
    int64_t dummy;
    CBLAS_TRANSPOSE tdummy;
    al_tensor *ca = blas_layout(a->strides[a->ndim - 2], a->strides[a->ndim - 1], n, k, &tdummy, &dummy)
                        ? al_retain((al_tensor *)a) : al_contiguous_nograd(a);
    al_tensor *cb = blas_layout(b->strides[b->ndim - 2], b->strides[b->ndim - 1], k, m, &tdummy, &dummy)
                        ? al_retain((al_tensor *)b) : al_contiguous_nograd(b);
    al_tensor *out = ca && cb ? al_new_tensor_on(nb + 2, oshape, a->dtype, a->storage->device) : NULL;
    if (!out) { al_release(ca); al_release(cb); return NULL; }

    int64_t abs_[AL_MAX_DIMS], bbs[AL_MAX_DIMS];
    al_tensor abatch = *ca, bbatch = *cb;   /* batch parts only, for broadcast strides */
    abatch.ndim = ca->ndim - 2;
    bbatch.ndim = cb->ndim - 2;
    al_broadcast_strides(&abatch, nb, batch, abs_);
    al_broadcast_strides(&bbatch, nb, batch, bbs);
    if (out->storage->device == AL_CUDA) {
        int rc = al_cuda_matmul(ca, cb, out, nb, batch, abs_, bbs, n, k, m);
        al_count_flops(2.0 * (double)al_shape_numel(nb, batch) * (double)(n * k * m));
        al_release(ca);
        al_release(cb);
        if (rc < 0) { al_release(out); return NULL; }
        if (al_grad_needed2(a, b)) {
            const al_tensor *in[2] = {a, b};
            al_record(out, "matmul", matmul_backward, 2, in);
        }
        return out;
    }
    int64_t nbatch = n == 0 || m == 0 ? 0 : al_shape_numel(nb, batch);  /* no elements: nothing to visit */
    size_t es = al_dtype_size(a->dtype);
    const char *abase = al_ptr(ca), *bbase = al_ptr(cb);
    char *cbase = al_ptr(out);
    const int64_t work = n * k * m;
    /* (measured: for the toy tasks' folded projections, (10240 x 6) x (6 x 24), OpenBLAS beats
     * this kernel by 15% of the whole training step, so only small products take it) */
    const bool tiny = work <= 32768;
    const bool batch_parallel = nbatch > 1 && (tiny ? nbatch * work >= AL_PARALLEL_GRAIN : work <= 128 * 128 * 128);

    #pragma omp parallel for schedule(static) if (batch_parallel)
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t aoff, boff;
        al_batch_offsets(bi, nb, batch, abs_, bbs, &aoff, &boff);
        matrix_job j = {abase + aoff * (int64_t)es, bbase + boff * (int64_t)es, cbase + bi * n * m * (int64_t)es,
                        n, k, m, ca->strides[ca->ndim - 2], ca->strides[ca->ndim - 1],
                        cb->strides[cb->ndim - 2], cb->strides[cb->ndim - 1]};
        if (n == 0 || m == 0) continue;
        if (k == 0) { memset(j.c, 0, (size_t)(n * m) * es); continue; }
        if (tiny) {
            if (a->dtype == AL_FLOAT32) small_matmul_float(&j); else small_matmul_double(&j);
        } else if (!outer_sum_matmul(&j, a->dtype) && !panel_matmul(&j, a->dtype, !batch_parallel)) {
            blas_matmul(&j, a->dtype, !batch_parallel);
        }
    }
    al_count_flops(2.0 * (double)nbatch * (double)work);
    al_release(ca);
    al_release(cb);
    if (al_grad_needed2(a, b)) {
        const al_tensor *in[2] = {a, b};
        al_record(out, "matmul", matmul_backward, 2, in);
    }
    return out;
}

al_tensor *al_matmul(const al_tensor *a, const al_tensor *b) {
    CHECK_TENSOR("matmul", a, "a");
    CHECK_TENSOR("matmul", b, "b");
    if (!al_same_device("matmul", a, b, NULL)) return NULL;   /* CPU: OpenBLAS and our kernels; CUDA: cuBLAS */
    if (a->ndim == 0 || b->ndim == 0) {
        al_error("matmul: operands must have at least 1 dimension (shapes %s and %s)", TSHAPE(a), TSHAPE(b));
        return NULL;
    }
    /* numpy rules for vectors: a 1-D left operand is a row, a 1-D right operand a column, and
     * the added dimension is removed from the result */
    al_tensor *a2 = a->ndim == 1 ? al_unsqueeze(a, 0) : al_retain((al_tensor *)a);
    al_tensor *b2 = b->ndim == 1 ? al_unsqueeze(b, 1) : al_retain((al_tensor *)b);
    al_tensor *out = a2 && b2 ? matmul_nd(a2, b2) : NULL;
    if (out && b->ndim == 1) { al_tensor *s = al_squeeze(out, -1); al_release(out); out = s; }
    if (out && a->ndim == 1) { al_tensor *s = al_squeeze(out, out->ndim - (b->ndim == 1 ? 1 : 2)); al_release(out); out = s; }
    al_release(a2);
    al_release(b2);
    return out;
}

/* ---- batched small solves (Gaussian elimination with partial pivoting, in float64) ------------ */

al_tensor *al_solve(const al_tensor *a, const al_tensor *b) {
    CHECK_TENSOR("solve", a, "A");
    CHECK_TENSOR("solve", b, "B");
    if (!al_same_device("solve", a, b, NULL)) return NULL;   /* CPU or CUDA (core/cuda/solve.cu); no bfloat16 */
    if (a->ndim < 2 || a->shape[a->ndim - 1] != a->shape[a->ndim - 2] || b->ndim < 2 ||
        b->shape[b->ndim - 2] != a->shape[a->ndim - 1] || a->ndim != b->ndim) {
        al_error("solve: A must be (..., n, n) and B (..., n, k) with the same batch; got %s and %s",
                 TSHAPE(a), TSHAPE(b));
        return NULL;
    }
    for (int i = 0; i < a->ndim - 2; i++)
        if (a->shape[i] != b->shape[i]) {
            al_error("solve: batch shapes of A %s and B %s differ", TSHAPE(a), TSHAPE(b));
            return NULL;
        }
    int64_t n = a->shape[a->ndim - 1], kc = b->shape[b->ndim - 1];
    int64_t nbatch = al_shape_numel(a->ndim - 2, a->shape);
    al_tensor *A = al_to_dtype_nograd(a, AL_FLOAT64), *X = al_to_dtype_nograd(b, AL_FLOAT64);
    al_tensor *work = X ? al_clone(X) : NULL;
    int singular = 0;
    if (A && work && a->storage->device == AL_CUDA) {
        singular = al_cuda_solve(A, work, n, kc, nbatch);   /* the same elimination, a thread per system */
    } else if (A && work) {
        double *scratch = malloc(sizeof(double) * (size_t)(n * n > 0 ? n * n : 1));
        for (int64_t bi = 0; scratch && n > 0 && bi < nbatch; bi++) {   /* n = 0: nothing to solve */
            double *M = scratch, *R = (double *)al_ptr(work) + bi * n * kc;
            memcpy(M, (double *)al_ptr(A) + bi * n * n, sizeof(double) * (size_t)(n * n));
            if (!solve_system(M, R, n, kc)) { singular = 1; break; }
        }
        if (!scratch) { al_error("solve: out of memory"); singular = -1; }
        free(scratch);
    }
    al_tensor *out = NULL;
    if (singular == 1) al_error("solve: A (shape %s) is singular", TSHAPE(a));
    else if (A && work && singular == 0) out = al_to_dtype_nograd(work, a->dtype == AL_FLOAT64 ? AL_FLOAT64 : AL_FLOAT32);
    al_release(A); al_release(X); al_release(work);
    return out;
}
