/* conv2d.c -- 2-D convolution (a cross-correlation, as PyTorch's conv2d) on NCHW images, with stride,
 * per-side zero padding, dilation and groups: directly where conv2d_direct_avx512.h applies (below),
 * else by im2col and a GEMM.
 *
 * The output positions of all images form one list of N * P columns (P = Ho * Wo).  For a slice of
 * at most `width` of them, im2col writes the columns col (K rows = Cin * kh * kw, grouped: group g
 * owns rows [g K_g, (g + 1) K_g), K_g = Cin/groups * kh * kw): each column holds what its window
 * sees, zero where the window hangs over the padding.  Then, per group,
 *   forward:  out_g (Cout_g, width) = W_g (Cout_g, K_g) col_g, written into y with the bias;
 *   backward: dW_g += dy_g col_g^T;  dcol_g = W_g^T dy_g, added back into dx by col2im;
 * and db is the sum of dy over images and positions.  A slice may span several images, so that small
 * images still make wide products; its width is set so that col and the output slice stay near
 * THREAD_COL_ELEMENTS (one thread's slice) or COL_ELEMENTS (a slice the threads share) whatever the
 * image size, and col is rebuilt in the backward rather than kept.
 *
 * Float32 with stride 1 and one group skips the columns: conv2d_direct_avx512.h sums the forward, the
 * input gradient and (1 x 1, 3 x 3, 5 x 5 kernels) the weight gradient in registers straight from
 * the rows, which the columns' copies (9x or 25x the input) cannot match, and
 * conv2d_wgrad_channels_last_avx512.h takes the weight gradient of layers with many channels; what
 * they decline comes here.
 *
 * Threads: each takes its own run of output positions and walks it in slices of its own, in its
 * own buffers, sized so that a slice's columns stay in the core's L2 cache from im2col to the
 * product (THREAD_COL_ELEMENTS).  The backward gives each thread whole images, so col2im's sums into
 * dx never meet another thread's, and each thread sums its dW into a buffer of its own, added up in
 * thread order afterwards.  An earlier layout shared every slice between the threads (channels for
 * im2col, columns for the products, barriers between), which moved each slice from one core's cache
 * to the other's and ran at 0.4-0.6x PyTorch's conv2d (bench/RESULTS.md).  With fewer images than
 * threads the backward keeps that shared layout (one image cannot be split without two threads
 * adding into one pixel).  Every sum has one order for a given thread count.  OpenBLAS itself runs
 * single-threaded (threads.c). */
#include "../internal.h"
#include <cblas.h>
#include <string.h>

enum { COL_ELEMENTS = 1 << 20, MIN_SLICE = 256 };
/* one thread's slice: col and the output slice near this many elements each (256 KiB of float32,
 * two of them within this machine's 1 MiB L2 per core) */
enum { THREAD_COL_ELEMENTS = 1 << 16, MIN_THREAD_SLICE = 64 };
/* below this many multiply-adds the op runs on one thread (waking the second costs more) */
enum { CONV_SPLIT_WORK = 1 << 22 };

typedef al_conv_geometry conv_geometry;   /* internal.h: the CUDA path (core/cuda/conv.cu) reads it too */

/* C (m x n, row stride ldc) = op(A) op(B) + beta C, row-major, in dtype dt */
static void gemm(al_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (lda < 1) lda = 1;   /* a zero-width operand (no input channels): the BLAS still wants lda >= 1 */
    if (ldb < 1) ldb = 1;
    const CBLAS_TRANSPOSE ta_ = ta ? CblasTrans : CblasNoTrans, tb_ = tb ? CblasTrans : CblasNoTrans;
    if (dt == AL_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta_, tb_, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta_, tb_, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* The slice [q0, q1) walked in runs along one output row: image n, output row oy, first output
 * column ox0, len columns, starting at column j of the slice.  len = 0 ends the walk. */
typedef struct { int64_t n, oy, ox0, len, j; } column_run;
static inline column_run run_at(const conv_geometry *g, int64_t q, int64_t q0, int64_t q1) {
    column_run r = {0, 0, 0, 0, q - q0};
    if (q >= q1) return r;
    const int64_t p = q % g->P;
    r.n = q / g->P;
    r.oy = p / g->Wo;
    r.ox0 = p % g->Wo;
    r.len = g->Wo - r.ox0 < q1 - q ? g->Wo - r.ox0 : q1 - q;
    return r;
}
static inline column_run first_run(const conv_geometry *g, int64_t q0, int64_t q1) { return run_at(g, q0, q0, q1); }
static inline column_run next_run(const conv_geometry *g, column_run r, int64_t q0, int64_t q1) {
    return run_at(g, q0 + r.j + r.len, q0, q1);
}

/* The output columns [*lo, *hi) of a run of len starting at ox0 whose input column ox sw + off lies
 * inside [0, W). */
static inline void inside_columns(int64_t ox0, int64_t len, int64_t sw, int64_t off, int64_t W, int64_t *lo, int64_t *hi) {
    /* ix = ox sw + off >= 0  <=>  ox >= ceil(-off / sw);  ix < W  <=>  ox <= floor((W - 1 - off) / sw) */
    int64_t first = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t last = W - 1 - off < 0 ? -1 : (W - 1 - off) / sw;   /* inclusive */
    *lo = first > ox0 ? first : ox0;
    *hi = last + 1 < ox0 + len ? last + 1 : ox0 + len;
    if (*hi < *lo) *hi = *lo;
}

#include "conv2d_direct_avx512.h"
#include "conv2d_wgrad_channels_last_avx512.h"

/* The direct kernel (conv2d_direct_avx512.h) takes float32 with stride 1, one group and kernels up to
 * DIRECT_MAX_KW wide; the rest go through the columns. */
static bool direct_applies(const conv_geometry *g, al_dtype dt) {
    return dt == AL_FLOAT32 && g->sh == 1 && g->sw == 1 && g->groups == 1 && g->kw <= DIRECT_MAX_KW;
}
static bool direct_forward(const conv_geometry *g, const float *x, const float *w, const float *b, float *y, bool parallel) {
    const direct_conv d = {g->N, g->Cin, g->Cout, g->H, g->W, g->Ho, g->Wo, g->kh, g->kw,
                           -g->pt, g->dh, -g->pl, g->dw, g->Cin * g->kh * g->kw, g->kh * g->kw};
    return direct_conv_float(&d, x, w, b, y, parallel);
}
static bool direct_input_gradient(const conv_geometry *g, const float *dy, const float *w, float *dx, bool parallel) {
    const direct_conv d = {g->N, g->Cout, g->Cin, g->Ho, g->Wo, g->H, g->W, g->kh, g->kw,
                           g->pt, -g->dh, g->pl, -g->dw, g->kh * g->kw, g->Cin * g->kh * g->kw};
    return direct_conv_float(&d, dy, w, NULL, dx, parallel);
}

static bool direct_weight_gradient(const conv_geometry *g, const float *x, const float *dy, float *dw, bool parallel) {
    const direct_wgrad d = {g->N, g->Cin, g->Cout, g->H, g->W, g->Ho, g->Wo, g->pt, g->pl, g->dh, g->dw};
    /* input channels in sixteens: vectors over them; the others (the first layer's one input
     * channel, 1 x 1 kernels): vectors over the positions */
    return channels_last_wgrad_float(&d, g->kh, g->kw, x, dy, dw, parallel) ||
           direct_wgrad_float(&d, g->kh, g->kw, x, dy, dw, parallel);
}

/* The column kernels, once per float dtype: im2col_float, im2col_double, col2im_..., move_slice_... */
#define GENERIC_FILE "../generic/conv2d_columns.h"
#include "../generic/float_types.h"

static void im2col(al_dtype dt, const conv_geometry *g, const void *x, void *col, int64_t width, int64_t q0,
                   int64_t q1, int64_t c0, int64_t c1) {
    if (dt == AL_FLOAT32) im2col_float(g, x, col, width, q0, q1, c0, c1);
    else im2col_double(g, x, col, width, q0, q1, c0, c1);
}
static void col2im(al_dtype dt, const conv_geometry *g, const void *col, void *dx, int64_t width, int64_t q0,
                   int64_t q1, int64_t c0, int64_t c1) {
    if (dt == AL_FLOAT32) col2im_float(g, col, dx, width, q0, q1, c0, c1);
    else col2im_double(g, col, dx, width, q0, q1, c0, c1);
}
static void move_slice(al_dtype dt, const conv_geometry *g, void *buf, void *t, const void *bias, int64_t width,
                       int64_t q0, int64_t q1, int64_t o0, int64_t o1, bool to_tensor) {
    if (dt == AL_FLOAT32) move_slice_float(g, buf, t, bias, width, q0, q1, o0, o1, to_tensor);
    else move_slice_double(g, buf, t, bias, width, q0, q1, o0, o1, to_tensor);
}

/* A slice's width: col (K rows) and the output slice (Cout rows) near `elements` each, at least
 * `min_width` columns (COL_ELEMENTS and MIN_SLICE for a slice the threads share, THREAD_COL_ELEMENTS
 * and MIN_THREAD_SLICE for one thread's) */
static int64_t slice_width(const conv_geometry *g, int64_t elements, int64_t min_width) {
    const int64_t rows = g->K > g->Cout ? g->K : g->Cout;
    int64_t width = elements / (rows > 0 ? rows : 1);
    if (width < min_width) width = min_width;
    const int64_t total = g->N * g->P;
    return width < total ? width : total;
}

/* the multiply-adds x 2 of one pass's products (the forward, dx or dW), for the profiler */
static double product_flops(const conv_geometry *g) {
    return 2.0 * (double)g->N * (double)g->P * (double)g->K_g * (double)g->Cout;
}

static int conv_threads(const conv_geometry *g) {
    const double work = (double)g->N * (double)g->P * (double)g->K_g * (double)g->Cout;
    return work >= CONV_SPLIT_WORK ? al_get_num_threads() : 1;
}

/* every thread's slice buffers in one block (per_thread bytes each), or NULL with the error raised */
static char *thread_buffers(const conv_geometry *g, size_t per_thread, int threads, int64_t width, const char *where) {
    char *buffers = al_alloc(per_thread * (size_t)threads);
    if (!buffers)
        al_error("conv2d: out of memory for the column buffers%s (%d x %lld x %lld)", where, threads, (long long)g->K,
                 (long long)width);
    return buffers;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* out_g (Cout_g, w_now) = W_g col_g for every group: the product of one slice */
static void forward_products(const conv_geometry *g, al_dtype dt, const void *w, const void *col, void *out, int64_t width,
                             int64_t first, int64_t last) {
    const size_t es = al_dtype_size(dt);
    for (int64_t gi = 0; gi < g->groups && first < last; gi++)
        gemm(dt, false, false, g->Cout_g, last - first, g->K_g, (const char *)w + (size_t)(gi * g->Cout_g * g->K_g) * es,
             g->K_g, (const char *)col + (size_t)(gi * g->K_g * width + first) * es, width, 0.0,
             (char *)out + (size_t)(gi * g->Cout_g * width + first) * es, width);
}

/* y = conv(x, w) + b; x, w, b contiguous (b may be NULL).  Each thread its own positions and
 * buffers (see the top of the file). */
static int conv_forward(const conv_geometry *g, al_dtype dt, const void *x, const void *w, const void *b, void *y) {
    const int64_t width = slice_width(g, THREAD_COL_ELEMENTS, MIN_THREAD_SLICE), total = g->N * g->P;
    const size_t es = al_dtype_size(dt), per_thread = (size_t)((g->K + g->Cout) * width) * es;
    if (total == 0) return 0;
    const int threads = conv_threads(g);
    if (direct_applies(g, dt) && direct_forward(g, x, w, b, y, threads > 1)) {
        al_count_flops(product_flops(g));
        return 0;
    }
    char *buffers = thread_buffers(g, per_thread, threads, width, "");
    if (!buffers) return -1;
    #pragma omp parallel num_threads(threads)
    {
        const int tid = thread_id();
        char *col = buffers + per_thread * (size_t)tid, *out = col + (size_t)(g->K * width) * es;
        int64_t mine0, mine1;
        al_thread_share(total, &mine0, &mine1);
        for (int64_t q0 = mine0; q0 < mine1; q0 += width) {
            const int64_t q1 = q0 + width < mine1 ? q0 + width : mine1;
            im2col(dt, g, x, col, width, q0, q1, 0, g->Cin);
            forward_products(g, dt, w, col, out, width, 0, q1 - q0);
            move_slice(dt, g, out, y, b, width, q0, q1, 0, g->Cout, true);
        }
    }
    al_free(buffers, per_thread * (size_t)threads);
    al_count_flops(product_flops(g));
    return 0;
}

/* dW_g += dy_g col_g^T for col's rows [first, last) (group by group: the same columns of dW_g) */
static void weight_products(const conv_geometry *g, al_dtype dt, const void *dyb, const void *col, void *dw, int64_t width,
                            int64_t w_now, int64_t first, int64_t last) {
    const size_t es = al_dtype_size(dt);
    for (int64_t gi = 0; gi < g->groups; gi++) {
        const int64_t r0 = first > gi * g->K_g ? first : gi * g->K_g;
        const int64_t r1 = last < (gi + 1) * g->K_g ? last : (gi + 1) * g->K_g;
        if (r0 >= r1) continue;
        gemm(dt, false, true, g->Cout_g, r1 - r0, w_now, (const char *)dyb + (size_t)(gi * g->Cout_g * width) * es,
             width, (const char *)col + (size_t)(r0 * width) * es, width, 1.0,
             (char *)dw + (size_t)(gi * g->Cout_g * g->K_g + (r0 - gi * g->K_g)) * es, g->K_g);
    }
}

/* dcol_g = W_g^T dy_g for the slice's columns [first, last), into col */
static void data_products(const conv_geometry *g, al_dtype dt, const void *w, const void *dyb, void *col, int64_t width,
                          int64_t first, int64_t last) {
    const size_t es = al_dtype_size(dt);
    for (int64_t gi = 0; gi < g->groups && first < last; gi++)
        gemm(dt, true, false, g->K_g, last - first, g->Cout_g, (const char *)w + (size_t)(gi * g->Cout_g * g->K_g) * es,
             g->K_g, (const char *)dyb + (size_t)(gi * g->Cout_g * width + first) * es, width, 0.0,
             (char *)col + (size_t)(gi * g->K_g * width + first) * es, width);
}

/* The backward with whole images per thread: each thread unfolds, multiplies and folds back its own
 * slices, dW summed per thread (thread 0 into dw itself, the others into their buffers, added in
 * thread order at the end). */
static int conv_backward_by_images(const conv_geometry *g, al_dtype dt, int threads, const void *x, const void *w,
                                   const void *dy, void *dx, void *dw) {
    const int64_t width = slice_width(g, THREAD_COL_ELEMENTS, MIN_THREAD_SLICE), dw_elems = g->Cout * g->K_g;
    const size_t es = al_dtype_size(dt);
    const size_t slice_bytes = (size_t)((g->K + g->Cout) * width) * es, dw_bytes = dw ? (size_t)dw_elems * es : 0;
    const size_t per_thread = slice_bytes + dw_bytes;
    char *buffers = thread_buffers(g, per_thread, threads, width, " in the backward");
    if (!buffers) return -1;
    #pragma omp parallel num_threads(threads)
    {
        const int tid = thread_id();
        char *col = buffers + per_thread * (size_t)tid, *dyb = col + (size_t)(g->K * width) * es;
        void *my_dw = NULL;
        if (dw) {
            my_dw = tid == 0 ? dw : (void *)(dyb + (size_t)(g->Cout * width) * es);
            if (tid != 0) memset(my_dw, 0, dw_bytes);
        }
        int64_t n0, n1;
        al_thread_share(g->N, &n0, &n1);
        for (int64_t q0 = n0 * g->P; q0 < n1 * g->P; q0 += width) {
            const int64_t q1 = q0 + width < n1 * g->P ? q0 + width : n1 * g->P, w_now = q1 - q0;
            move_slice(dt, g, dyb, (void *)dy, NULL, width, q0, q1, 0, g->Cout, false);
            if (dw) {
                im2col(dt, g, x, col, width, q0, q1, 0, g->Cin);
                weight_products(g, dt, dyb, col, my_dw, width, w_now, 0, g->K);
            }
            if (dx) {
                data_products(g, dt, w, dyb, col, width, 0, w_now);
                col2im(dt, g, col, dx, width, q0, q1, 0, g->Cin);
            }
        }
    }
    for (int t = 1; t < threads && dw; t++) {
        const char *part = buffers + per_thread * (size_t)t + slice_bytes;
        for (int64_t i = 0; i < dw_elems; i++) {
            if (dt == AL_FLOAT32) ((float *)dw)[i] += ((const float *)part)[i];
            else ((double *)dw)[i] += ((const double *)part)[i];
        }
    }
    al_free(buffers, per_thread * (size_t)threads);
    return 0;
}

/* dx = col2im(W^T dy) (when dx), dw = dy col^T (when dw); every tensor contiguous, dx and dw written whole.
 * Whole images per thread where there are enough of them, else every slice shared by the threads. */
static int conv_backward_data(const conv_geometry *g, al_dtype dt, const void *x, const void *w, const void *dy,
                              void *dx, void *dw) {
    const int64_t width = slice_width(g, COL_ELEMENTS, MIN_SLICE), total = g->N * g->P;
    const size_t es = al_dtype_size(dt);
    const int threads = conv_threads(g);
    if (total > 0 && dx && direct_applies(g, dt) && direct_input_gradient(g, dy, w, dx, threads > 1)) {
        al_count_flops(product_flops(g));
        dx = NULL;   /* done */
    }
    if (total > 0 && dw && direct_applies(g, dt) && direct_weight_gradient(g, x, dy, dw, threads > 1)) {
        al_count_flops(product_flops(g));
        dw = NULL;   /* done */
    }
    if (!dx && !dw) return 0;
    /* the columns below do what is left, adding into dx and dw: zero them first (the direct kernels
     * write every element, so the caller leaves them unset) */
    if (dx) memset(dx, 0, (size_t)(g->N * g->Cin * g->H * g->W) * es);
    if (dw) memset(dw, 0, (size_t)(g->Cout * g->K_g) * es);
    if (total == 0) return 0;   /* no output positions: zero gradients */
    if (threads == 1 || g->N >= threads) {
        const int rc = conv_backward_by_images(g, dt, threads, x, w, dy, dx, dw);
        if (rc == 0) al_count_flops(product_flops(g) * ((dx ? 1 : 0) + (dw ? 1 : 0)));
        return rc;
    }
    const size_t shared_bytes = (size_t)((g->K + g->Cout) * width) * es;
    char *col = thread_buffers(g, shared_bytes, 1, width, " in the backward");
    if (!col) return -1;
    char *dyb = col + (size_t)(g->K * width) * es;
    #pragma omp parallel num_threads(threads)
    {
        for (int64_t q0 = 0; q0 < total; q0 += width) {
            const int64_t q1 = q0 + width < total ? q0 + width : total, w_now = q1 - q0;
            int64_t first, last;
            al_thread_share(g->Cout, &first, &last);
            move_slice(dt, g, dyb, (void *)dy, NULL, width, q0, q1, first, last, false);
            if (dw) {
                al_thread_share(g->Cin, &first, &last);
                im2col(dt, g, x, col, width, q0, q1, first, last);
            }
            #pragma omp barrier
            if (dw) {
                /* this thread's rows [first, last) of col, group by group: the same columns of dW_g */
                al_thread_share(g->K, &first, &last);
                weight_products(g, dt, dyb, col, dw, width, w_now, first, last);
                #pragma omp barrier   /* col is overwritten by dcol below */
            }
            if (dx) {
                al_thread_share(w_now, &first, &last);
                data_products(g, dt, w, dyb, col, width, first, last);
                #pragma omp barrier
                al_thread_share(g->Cin, &first, &last);
                col2im(dt, g, col, dx, width, q0, q1, first, last);
            }
            #pragma omp barrier   /* col and dyb are rewritten by the next slice */
        }
    }
    al_free(col, shared_bytes);   /* dyb lies in the same block */
    al_count_flops(product_flops(g) * ((dx ? 1 : 0) + (dw ? 1 : 0)));
    return 0;
}

/* db[o] = the sum of dy[:, o] over images and positions, in double, the channels split among threads */
static void conv_backward_bias(const conv_geometry *g, al_dtype dt, const void *dy, void *db) {
    #pragma omp parallel if (g->N * g->P * g->Cout >= AL_PARALLEL_GRAIN)
    {
        int64_t first, last;
        al_thread_share(g->Cout, &first, &last);
        for (int64_t o = first; o < last; o++) {
            double sum = 0;
            for (int64_t n = 0; n < g->N; n++) {   /* in vector lanes: a serial double sum was 3% of a step */
                const int64_t base = (n * g->Cout + o) * g->P;
                if (dt == AL_FLOAT32) {
                    const float *row = (const float *)dy + base;
                    #pragma omp simd reduction(+:sum)
                    for (int64_t p = 0; p < g->P; p++) sum += row[p];
                } else {
                    const double *row = (const double *)dy + base;
                    #pragma omp simd reduction(+:sum)
                    for (int64_t p = 0; p < g->P; p++) sum += row[p];
                }
            }
            if (dt == AL_FLOAT32) ((float *)db)[o] = (float)sum;
            else ((double *)db)[o] = sum;
        }
    }
}

static void geometry_from_node(const al_node *node, conv_geometry *g) {
    const al_tensor *x = node->inputs[0], *w = node->inputs[1];
    memset(g, 0, sizeof *g);
    g->N = x->shape[0]; g->Cin = x->shape[1]; g->H = x->shape[2]; g->W = x->shape[3];
    g->Cout = w->shape[0]; g->kh = w->shape[2]; g->kw = w->shape[3];
    g->sh = node->ints[0]; g->sw = node->ints[1]; g->pt = node->ints[2]; g->pl = node->ints[3];
    g->dh = node->ints[4]; g->dw = node->ints[5]; g->groups = node->ints[6];
    g->Ho = node->out_shape[2]; g->Wo = node->out_shape[3];
    g->Cin_g = g->Cin / g->groups; g->Cout_g = g->Cout / g->groups;
    g->K_g = g->Cin_g * g->kh * g->kw; g->K = g->Cin * g->kh * g->kw; g->P = g->Ho * g->Wo;
}

static void conv2d_backward(al_node *node, const al_tensor *grad) {
    conv_geometry g;
    geometry_from_node(node, &g);
    const al_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    const bool want_dx = al_input_needs_grad(node, 0), want_dw = al_input_needs_grad(node, 1);
    const bool want_db = b && al_input_needs_grad(node, 2);
    const al_device dev = x->storage->device;
    al_tensor *gc = al_contiguous_nograd(grad);
    al_tensor *xc = want_dw ? al_contiguous_nograd(x) : NULL, *wc = want_dx ? al_contiguous_nograd(w) : NULL;
    /* every kernel writes dx, dw and db whole (the CPU's column path zeroes them before adding into them) */
    al_tensor *dx = want_dx ? al_new_tensor_on(x->ndim, x->shape, x->dtype, dev) : NULL;
    al_tensor *dw = want_dw ? al_new_tensor_on(w->ndim, w->shape, w->dtype, dev) : NULL;
    al_tensor *db = want_db ? al_new_tensor_on(1, b->shape, b->dtype, dev) : NULL;
    if (!gc || (want_dw && (!xc || !dw)) || (want_dx && (!wc || !dx)) || (want_db && !db)) {
        al_error("conv2d: out of memory in the backward");
    } else if (dev == AL_CUDA ? al_cuda_conv2d_backward(&g, xc, wc, gc, dx, dw, db) < 0
                              : (want_dx || want_dw) &&
                                    conv_backward_data(&g, x->dtype, xc ? al_ptr(xc) : NULL, wc ? al_ptr(wc) : NULL,
                                                       al_ptr(gc), dx ? al_ptr(dx) : NULL, dw ? al_ptr(dw) : NULL) < 0) {
        /* the error is set */
    } else {
        if (db && dev == AL_CPU) conv_backward_bias(&g, x->dtype, al_ptr(gc), al_ptr(db));
        al_accumulate_input_take(node, 0, dx);
        al_accumulate_input_take(node, 1, dw);
        al_accumulate_input_take(node, 2, db);
        dx = dw = db = NULL;
    }
    al_release(dx); al_release(dw); al_release(db);
    al_release(gc); al_release(xc); al_release(wc);
}

al_tensor *al_conv2d(const al_tensor *x, const al_tensor *weight, const al_tensor *bias, const al_conv2d_opts *opts) {
    CHECK_TENSOR("conv2d", x, "x");
    CHECK_TENSOR("conv2d", weight, "weight");
    if (!al_same_device("conv2d", x, weight, bias)) return NULL;   /* CPU or CUDA (core/cuda/conv.cu) */
    static const al_conv2d_opts defaults;   /* all zeros: every default */
    if (!opts) opts = &defaults;
    if (x->ndim != 4) {
        al_error("conv2d: x must be 4-d (N, C, H, W) (got %s; one image: x:unsqueeze(1))", TSHAPE(x));
        return NULL;
    }
    if (weight->ndim != 4) {
        al_error("conv2d: weight must be 4-d (Cout, Cin/groups, kh, kw) (got %s)", TSHAPE(weight));
        return NULL;
    }
    if (x->dtype != weight->dtype || (bias && bias->dtype != weight->dtype) || !al_is_float(x->dtype)) {
        al_error("conv2d: x, weight and bias must share one float dtype (got %s, %s, %s)", al_dtype_name(x->dtype),
                 al_dtype_name(weight->dtype), bias ? al_dtype_name(bias->dtype) : "none");
        return NULL;
    }
    conv_geometry g = {0};
    g.sh = opts->stride[0] ? opts->stride[0] : 1; g.sw = opts->stride[1] ? opts->stride[1] : 1;
    g.dh = opts->dilation[0] ? opts->dilation[0] : 1; g.dw = opts->dilation[1] ? opts->dilation[1] : 1;
    g.groups = opts->groups ? opts->groups : 1;
    g.pt = opts->padding[0]; g.pl = opts->padding[2];
    const int64_t pb = opts->padding[1], pr = opts->padding[3];
    if (g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.groups < 1 || g.pt < 0 || pb < 0 || g.pl < 0 || pr < 0) {
        al_error("conv2d: stride, dilation and groups must be >= 1 and padding >= 0 (got stride {%lld,%lld}, "
                 "padding {%lld,%lld,%lld,%lld}, dilation {%lld,%lld}, groups %lld)", (long long)g.sh, (long long)g.sw,
                 (long long)g.pt, (long long)pb, (long long)g.pl, (long long)pr, (long long)g.dh, (long long)g.dw,
                 (long long)g.groups);
        return NULL;
    }
    g.N = x->shape[0]; g.Cin = x->shape[1]; g.H = x->shape[2]; g.W = x->shape[3];
    g.Cout = weight->shape[0]; g.kh = weight->shape[2]; g.kw = weight->shape[3];
    if (g.Cin % g.groups || g.Cout % g.groups) {
        al_error("conv2d: groups = %lld must divide the input channels (x %s) and the output channels (weight %s)",
                 (long long)g.groups, TSHAPE(x), TSHAPE(weight));
        return NULL;
    }
    if (weight->shape[1] != g.Cin / g.groups || g.kh < 1 || g.kw < 1) {
        al_error("conv2d: weight %s does not fit x %s with groups = %lld (need (Cout, %lld, kh, kw), kh, kw >= 1)",
                 TSHAPE(weight), TSHAPE(x), (long long)g.groups, (long long)(g.Cin / g.groups));
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != g.Cout)) {
        al_error("conv2d: bias %s does not fit weight %s (need {%lld})", TSHAPE(bias), TSHAPE(weight), (long long)g.Cout);
        return NULL;
    }
    const int64_t span_h = g.dh * (g.kh - 1) + 1, span_w = g.dw * (g.kw - 1) + 1;
    const int64_t in_h = g.H + g.pt + pb, in_w = g.W + g.pl + pr;
    if (span_h > in_h || span_w > in_w) {
        al_error("conv2d: the kernel spans %lld x %lld (kernel %lld x %lld, dilation {%lld,%lld}), more than the padded "
                 "input %lld x %lld (x %s, padding {%lld,%lld,%lld,%lld})", (long long)span_h, (long long)span_w,
                 (long long)g.kh, (long long)g.kw, (long long)g.dh, (long long)g.dw, (long long)in_h, (long long)in_w,
                 TSHAPE(x), (long long)g.pt, (long long)pb, (long long)g.pl, (long long)pr);
        return NULL;
    }
    g.Ho = (in_h - span_h) / g.sh + 1; g.Wo = (in_w - span_w) / g.sw + 1;
    g.Cin_g = g.Cin / g.groups; g.Cout_g = g.Cout / g.groups;
    g.K_g = g.Cin_g * g.kh * g.kw; g.K = g.Cin * g.kh * g.kw; g.P = g.Ho * g.Wo;
    if (g.K > 2147483647 || g.Cout > 2147483647) {   /* the BLAS takes int sizes */
        al_error("conv2d: too large for the BLAS's int sizes (x %s, weight %s)", TSHAPE(x), TSHAPE(weight));
        return NULL;
    }
    int64_t shape[4] = {g.N, g.Cout, g.Ho, g.Wo};
    al_tensor *xc = al_contiguous_nograd(x), *wc = al_contiguous_nograd(weight);
    al_tensor *bc = bias ? al_contiguous_nograd(bias) : NULL;
    const bool on_cuda = x->storage->device == AL_CUDA;
    al_tensor *y = xc && wc && (bc || !bias) ? al_new_tensor_on(4, shape, x->dtype, x->storage->device) : NULL;
    if (y && (on_cuda ? al_cuda_conv2d_forward(&g, xc, wc, bc, y)
                      : conv_forward(&g, x->dtype, al_ptr(xc), al_ptr(wc), bc ? al_ptr(bc) : NULL, al_ptr(y))) < 0) {
        al_release(y);
        y = NULL;
    }
    al_release(xc); al_release(wc); al_release(bc);
    if (y && (al_grad_needed2(x, weight) || al_grad_needed1(bias))) {
        const al_tensor *in[3] = {x, weight, bias};
        al_node *node = al_record(y, "conv2d", conv2d_backward, 3, in);
        if (node) {
            const int64_t ints[7] = {g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.groups};
            memcpy(node->ints, ints, sizeof ints);
            node->n_ints = 7;
        }
    }
    return y;
}
