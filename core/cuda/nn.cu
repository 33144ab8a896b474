/* nn.cu -- the CUDA kernels of a transformer's training step besides matmul and attention: the
 * softmax family along any dim, layer norm, cross-entropy, embedding lookup and its scatter-add,
 * and dropout's mask from the core's counter-based generator.
 *
 * Written to be plainly correct rather than fast: one block per row (a softmax line, a layer-norm
 * row, a cross-entropy row) whose threads stride along the row and meet in a block reduction.  Each
 * kernel follows its CPU definition line for line (ops/reduce.c and generic/reduce_lines.h,
 * ops/nn.c and generic/layer_norm_rows.h, generic/loss_rows.h, rng.c), including which sums run in
 * double and how a line of -inf or an ignored row comes out, so the results agree with the CPU's to
 * rounding (sums in another order, the device's exp and log).  Sums over rows (layer norm's weight
 * and bias gradients, the cross-entropy total) are two-pass and in a fixed order, so they give the
 * same bits every run; only the embedding's scatter-add uses atomics (float32 and float64). */
#include "cuda_internal.h"

enum { ROW_THREADS = 256 };   /* threads per row block: a multiple of the warp size */

static unsigned row_blocks(int64_t rows) {
    return (unsigned)(rows < 1 ? 1 : rows > AL_CUDA_GRID_STRIDE_BLOCKS ? AL_CUDA_GRID_STRIDE_BLOCKS : rows);   /* the rest by grid stride */
}

/* ---- block reductions ------------------------------------------------------------------------- */

struct sum_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
/* NaN never wins (as the CPU's `if (v > m) m = v`): neither operand replaces a value by a NaN */
struct max_op {
    template <typename T> __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};

/* Every thread of the block gets op over the block's values.  Called by all threads (it
 * synchronises); the shared scratch is free again on return, so a kernel may call it repeatedly. */
template <typename T, typename Op> static __device__ T block_reduce(T v, Op op) {
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = part[lane < nwarps ? lane : 0];   /* lanes past the last warp hold no value: */
        for (int o = 16; o > 0; o >>= 1) {     /* a lane adds a partner only below nwarps */
            T other = __shfl_down_sync(0xffffffffu, v, o);
            if (lane + o < nwarps) v = op(v, other);
        }
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    const T result = part[0];
    __syncthreads();
    return result;
}

template <typename T> static __device__ T neg_inf() { return -(T)INFINITY; }

/* ---- softmax, log_softmax, logsumexp ---------------------------------------------------------
 * Line (a, i) of an (outer, R, inner) block: x[a R inner + r inner + i], r < R. */

template <typename T>
static __global__ void softmax_kernel(const T *x, T *o, int64_t outer, int64_t R, int64_t inner, softmax_kind kind) {
    for (int64_t line = blockIdx.x; line < outer * inner; line += gridDim.x) {
        const int64_t a = line / inner, i = line % inner;
        const T *xl = x + a * R * inner + i;
        T m = neg_inf<T>();
        for (int64_t r = threadIdx.x; r < R; r += blockDim.x)
            if (xl[r * inner] > m) m = xl[r * inner];
        m = block_reduce(m, max_op());
        const T ref = isinf(m) ? (T)0 : m;   /* a line of -inf: exp(-inf - 0) = 0, not NaN */
        double z = 0;
        for (int64_t r = threadIdx.x; r < R; r += blockDim.x) z += (double)exp(xl[r * inner] - ref);
        z = block_reduce(z, sum_op());
        const T lse = ref + (T)log(z);
        if (kind == SM_LOGSUMEXP) {
            if (threadIdx.x == 0) o[a * inner + i] = lse;
            continue;
        }
        T *ol = o + a * R * inner + i;
        if (kind == SM_SOFTMAX) {
            const T inv = z > 0 ? (T)(1.0 / z) : (T)0;
            for (int64_t r = threadIdx.x; r < R; r += blockDim.x) ol[r * inner] = exp(xl[r * inner] - ref) * inv;
        } else {
            for (int64_t r = threadIdx.x; r < R; r += blockDim.x) ol[r * inner] = xl[r * inner] - lse;
        }
    }
}

/* softmax: dx = y (g - sum(g y)); log_softmax: dx = g - exp(y) sum(g); logsumexp: dx = g exp(x - y) */
template <typename T>
static __global__ void softmax_backward_kernel(const T *y, const T *g, const T *x, T *dx, int64_t outer, int64_t R,
                                               int64_t inner, softmax_kind kind) {
    for (int64_t line = blockIdx.x; line < outer * inner; line += gridDim.x) {
        const int64_t a = line / inner, i = line % inner, base = a * R * inner + i;
        if (kind == SM_LOGSUMEXP) {
            const T yy = y[a * inner + i], g1 = g[a * inner + i];
            for (int64_t r = threadIdx.x; r < R; r += blockDim.x)
                dx[base + r * inner] = isinf(yy) ? (T)0 : g1 * exp(x[base + r * inner] - yy);
            continue;
        }
        double acc = 0;
        for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
            const int64_t k = base + r * inner;
            acc += kind == SM_SOFTMAX ? (double)g[k] * y[k] : (double)g[k];
        }
        acc = block_reduce(acc, sum_op());
        for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
            const int64_t k = base + r * inner;
            dx[k] = kind == SM_SOFTMAX ? y[k] * (g[k] - (T)acc) : g[k] - exp(y[k]) * (T)acc;
        }
    }
}

extern "C" int al_cuda_softmax(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner,
                               softmax_kind kind) {
    if (outer * inner == 0) return 0;   /* (R = 0 still has lines: logsumexp gives -inf, as on the CPU) */
    const unsigned blocks = row_blocks(outer * inner);
    cudaStream_t s = al_cuda_stream();
    if (x->dtype == AL_FLOAT32)
        softmax_kernel<float><<<blocks, ROW_THREADS, 0, s>>>((const float *)al_ptr(x), (float *)al_ptr(out), outer, R,
                                                             inner, kind);
    else
        softmax_kernel<double><<<blocks, ROW_THREADS, 0, s>>>((const double *)al_ptr(x), (double *)al_ptr(out), outer,
                                                              R, inner, kind);
    return al_cuda_ok(kind == SM_SOFTMAX ? "softmax" : kind == SM_LOG_SOFTMAX ? "log_softmax" : "logsumexp",
                      cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_softmax_backward(const al_tensor *y, const al_tensor *g, const al_tensor *x, al_tensor *dx,
                                        int64_t outer, int64_t R, int64_t inner, softmax_kind kind) {
    if (outer * inner == 0) return 0;
    const unsigned blocks = row_blocks(outer * inner);
    cudaStream_t s = al_cuda_stream();
    if (dx->dtype == AL_FLOAT32)
        softmax_backward_kernel<float><<<blocks, ROW_THREADS, 0, s>>>(
            (const float *)al_ptr(y), (const float *)al_ptr(g), x ? (const float *)al_ptr(x) : NULL, (float *)al_ptr(dx),
            outer, R, inner, kind);
    else
        softmax_backward_kernel<double><<<blocks, ROW_THREADS, 0, s>>>(
            (const double *)al_ptr(y), (const double *)al_ptr(g), x ? (const double *)al_ptr(x) : NULL,
            (double *)al_ptr(dx), outer, R, inner, kind);
    return al_cuda_ok("softmax backward", cudaGetLastError()) ? 0 : -1;
}

/* ---- layer norm over the last dimension --------------------------------------------------------
 * As nn.c: each row's sums in the element type (two passes: mean, then the squared deviations),
 * rstd through double, (mean, rstd) per row saved in double. */

template <typename T>
static __global__ void layer_norm_kernel(const T *x, const T *w, const T *b, T *y, double *stats, int64_t rows,
                                         int64_t D, double eps) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * D;
        T *yr = y + row * D;
        T sum = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) sum += xr[i];
        const T mean = block_reduce(sum, sum_op()) / (T)D;
        T var = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) var += (xr[i] - mean) * (xr[i] - mean);
        var = block_reduce(var, sum_op());
        const T rstd = (T)(1.0 / sqrt((double)var / (double)D + eps));
        if (threadIdx.x == 0) { stats[2 * row] = mean; stats[2 * row + 1] = rstd; }
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
            yr[i] = (xr[i] - mean) * rstd * (w ? w[i] : (T)1) + (b ? b[i] : (T)0);
    }
}

/* dx = rstd (gy - mean(gy) - xhat mean(gy xhat)), gy = g w, per row */
template <typename T>
static __global__ void layer_norm_dx_kernel(const T *x, const T *g, const T *w, const double *stats, T *dx,
                                            int64_t rows, int64_t D) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * D, *gr = g + row * D;
        const T mean = (T)stats[2 * row], rstd = (T)stats[2 * row + 1];
        T mg = 0, mgx = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            const T xh = (xr[i] - mean) * rstd, gy = w ? gr[i] * w[i] : gr[i];
            mg += gy;
            mgx += gy * xh;
        }
        mg = block_reduce(mg, sum_op()) / (T)D;
        mgx = block_reduce(mgx, sum_op()) / (T)D;
        T *dxr = dx + row * D;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            const T xh = (xr[i] - mean) * rstd, gy = w ? gr[i] * w[i] : gr[i];
            dxr[i] = rstd * (gy - mg - xh * mgx);
        }
    }
}

/* First pass of dw = sum_rows g xhat and db = sum_rows g: chunk blockIdx.y of rows_per_chunk rows,
 * one thread per column, in double, into partial[chunk][0 or 1][column]. */
template <typename T>
static __global__ void layer_norm_param_partial_kernel(const T *x, const T *g, const double *stats, double *partial,
                                                       int64_t rows, int64_t D, int64_t rows_per_chunk) {
    const int64_t chunk = blockIdx.y, r0 = chunk * rows_per_chunk;
    const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    for (int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; col < D; col += (int64_t)gridDim.x * blockDim.x) {
        double dw = 0, db = 0;
        for (int64_t r = r0; r < r1; r++) {
            const T mean = (T)stats[2 * r], rstd = (T)stats[2 * r + 1], gv = g[r * D + col];
            dw += (double)(gv * ((x[r * D + col] - mean) * rstd));
            db += (double)gv;
        }
        partial[(chunk * 2) * D + col] = dw;
        partial[(chunk * 2 + 1) * D + col] = db;
    }
}

/* Second pass: out[j] = sum over chunks of partial[chunk][j], j < 2 D, chunks in order. */
static __global__ void sum_chunks_kernel(const double *partial, double *out, int64_t nchunks, int64_t width) {
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < width; j += (int64_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (int64_t c = 0; c < nchunks; c++) s += partial[c * width + j];
        out[j] = s;
    }
}

extern "C" int al_cuda_layer_norm(const al_tensor *x, const al_tensor *w, const al_tensor *b, double eps, al_tensor *y,
                                  al_tensor *stats) {
    const int64_t D = x->shape[x->ndim - 1], rows = D ? al_numel(x) / D : 0;
    if (rows == 0) return 0;
    cudaStream_t s = al_cuda_stream();
    if (x->dtype == AL_FLOAT32)
        layer_norm_kernel<float><<<row_blocks(rows), ROW_THREADS, 0, s>>>(
            (const float *)al_ptr(x), w ? (const float *)al_ptr(w) : NULL, b ? (const float *)al_ptr(b) : NULL,
            (float *)al_ptr(y), (double *)al_ptr(stats), rows, D, eps);
    else
        layer_norm_kernel<double><<<row_blocks(rows), ROW_THREADS, 0, s>>>(
            (const double *)al_ptr(x), w ? (const double *)al_ptr(w) : NULL, b ? (const double *)al_ptr(b) : NULL,
            (double *)al_ptr(y), (double *)al_ptr(stats), rows, D, eps);
    return al_cuda_ok("layer_norm", cudaGetLastError()) ? 0 : -1;
}

template <typename T>
static void launch_layer_norm_backward(const al_tensor *x, const al_tensor *g, const al_tensor *w, const double *stats,
                                       al_tensor *dx, double *partial, double *dw_db, int64_t rows, int64_t D,
                                       int64_t nchunks, int64_t rows_per_chunk) {
    cudaStream_t s = al_cuda_stream();
    if (dx)
        layer_norm_dx_kernel<T><<<row_blocks(rows), ROW_THREADS, 0, s>>>(
            (const T *)al_ptr(x), (const T *)al_ptr(g), w ? (const T *)al_ptr(w) : NULL, stats, (T *)al_ptr(dx), rows, D);
    if (dw_db) {
        const int threads = 256;
        const dim3 grid((unsigned)((D + threads - 1) / threads < 65535 ? (D + threads - 1) / threads : 65535),
                        (unsigned)nchunks);
        layer_norm_param_partial_kernel<T><<<grid, threads, 0, s>>>((const T *)al_ptr(x), (const T *)al_ptr(g), stats,
                                                                    partial, rows, D, rows_per_chunk);
        sum_chunks_kernel<<<al_cuda_blocks(2 * D, threads), threads, 0, s>>>(partial, dw_db, nchunks, 2 * D);
    }
}

extern "C" int al_cuda_layer_norm_backward(const al_tensor *x, const al_tensor *g, const al_tensor *w,
                                           const al_tensor *stats, al_tensor *dx, al_tensor *dw_db) {
    const int64_t D = x->shape[x->ndim - 1], rows = D ? al_numel(x) / D : 0;
    if (dw_db && al_cuda_fill(dw_db, 0) < 0) return -1;   /* no rows: the sums are 0 */
    if (rows == 0) return 0;
    /* at most 1024 chunks of at least 64 rows: the chunk index is a grid dimension (<= 65535) */
    int64_t rows_per_chunk = (rows + 1023) / 1024;
    if (rows_per_chunk < 64) rows_per_chunk = 64;
    const int64_t nchunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    const int64_t pshape[3] = {nchunks, 2, D};
    al_tensor *partial = dw_db ? al_new_tensor_on(3, pshape, AL_FLOAT64, AL_CUDA) : NULL;
    if (dw_db && !partial) return -1;
    const double *st = (const double *)al_ptr(stats);
    double *pp = partial ? (double *)al_ptr(partial) : NULL, *out = dw_db ? (double *)al_ptr(dw_db) : NULL;
    if (x->dtype == AL_FLOAT32)
        launch_layer_norm_backward<float>(x, g, w, st, dx, pp, out, rows, D, nchunks, rows_per_chunk);
    else launch_layer_norm_backward<double>(x, g, w, st, dx, pp, out, rows, D, nchunks, rows_per_chunk);
    const bool ok = al_cuda_ok("layer_norm backward", cudaGetLastError());
    al_release(partial);   /* back to the cache; the stream orders its reuse after these kernels */
    return ok ? 0 : -1;
}

/* ---- ids: range checks for embedding and cross-entropy -----------------------------------------
 * result[0]: the first position with an id outside [0, limit) (not counting ignored ones), n when
 * none; result[1]: how many ids are not ignored. */

static __global__ void check_ids_kernel(const long long *ids, int64_t n, int64_t limit, int64_t ignore, bool use_ignore,
                                        unsigned long long *result) {
    unsigned long long counted = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const long long id = ids[i];
        if (use_ignore && id == ignore) continue;
        counted++;
        if (id < 0 || id >= limit) atomicMin(&result[0], (unsigned long long)i);
    }
    if (counted) atomicAdd(&result[1], counted);
}

extern "C" int al_cuda_check_ids(const char *fn, const al_tensor *ids, int64_t limit, int64_t ignore, bool use_ignore,
                                 int64_t *first_bad, int64_t *bad_id, int64_t *counted) {
    const int64_t n = al_numel(ids);
    *first_bad = n;
    *bad_id = 0;
    *counted = 0;
    if (n == 0) return 0;
    const int64_t rshape[1] = {2};
    al_tensor *result = al_new_tensor_on(1, rshape, AL_INT64, AL_CUDA);
    if (!result) return -1;
    unsigned long long host[2] = {(unsigned long long)n, 0};
    int rc = al_cuda_memcpy(fn, al_ptr(result), AL_CUDA, host, AL_CPU, sizeof host);
    if (rc == 0) {
        const int threads = 256;
        check_ids_kernel<<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
            (const long long *)al_ptr(ids), n, limit, ignore, use_ignore, (unsigned long long *)al_ptr(result));
        rc = al_cuda_ok(fn, cudaGetLastError()) ? 0 : -1;
    }
    if (rc == 0) rc = al_cuda_memcpy(fn, host, AL_CPU, al_ptr(result), AL_CUDA, sizeof host);
    if (rc == 0) {
        *first_bad = (int64_t)host[0];
        *counted = (int64_t)host[1];
        if (*first_bad < n)
            rc = al_cuda_memcpy(fn, bad_id, AL_CPU, (const int64_t *)al_ptr(ids) + *first_bad, AL_CUDA, sizeof *bad_id);
    }
    al_release(result);
    return rc;
}

/* ---- cross-entropy -----------------------------------------------------------------------------
 * As generic/loss_rows.h, per row: m = the max (from x[0], so a NaN there stays, as on the CPU),
 * p = exp(x - m) in the element type, z = their sum in double, loss = m + log z - x[id],
 * P = p / z - onehot(id).  An ignored row gets P = 0 and adds nothing. */

template <typename T>
static __global__ void cross_entropy_kernel(const T *X, const long long *Y, T *P, double *row_loss, int64_t rows,
                                            int64_t C, int64_t ignore) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *x = X + row * C;
        T *p = P + row * C;
        const long long id = Y[row];
        if (id == ignore) {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) p[c] = 0;
            if (threadIdx.x == 0) row_loss[row] = 0;
            continue;
        }
        T m = x[0];
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            if (x[c] > m) m = x[c];
        m = block_reduce(m, max_op());
        double z = 0;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            p[c] = exp(x[c] - m);
            z += p[c];
        }
        z = block_reduce(z, sum_op());
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            T q = (T)(p[c] / z);
            if (c == id) q -= (T)1;
            p[c] = q;
        }
        if (threadIdx.x == 0) row_loss[row] = m + log(z) - x[id];
    }
}

/* One block: the sum of n doubles, each thread's share in order, then the block's tree. */
static __global__ void sum_doubles_kernel(const double *v, int64_t n, double *out) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
    s = block_reduce(s, sum_op());
    if (threadIdx.x == 0) *out = s;
}

extern "C" int al_cuda_cross_entropy(const al_tensor *logits, const al_tensor *ids, al_tensor *prob, int64_t ignore,
                                     double *total) {
    const int64_t C = logits->shape[logits->ndim - 1], rows = al_numel(ids);
    *total = 0;
    if (rows == 0) return 0;
    const int64_t lshape[1] = {rows + 1};   /* the rows' losses, then their sum */
    al_tensor *losses = al_new_tensor_on(1, lshape, AL_FLOAT64, AL_CUDA);
    if (!losses) return -1;
    double *lp = (double *)al_ptr(losses);
    cudaStream_t s = al_cuda_stream();
    if (logits->dtype == AL_FLOAT32)
        cross_entropy_kernel<float><<<row_blocks(rows), ROW_THREADS, 0, s>>>(
            (const float *)al_ptr(logits), (const long long *)al_ptr(ids), (float *)al_ptr(prob), lp, rows, C, ignore);
    else
        cross_entropy_kernel<double><<<row_blocks(rows), ROW_THREADS, 0, s>>>(
            (const double *)al_ptr(logits), (const long long *)al_ptr(ids), (double *)al_ptr(prob), lp, rows, C, ignore);
    sum_doubles_kernel<<<1, ROW_THREADS, 0, s>>>(lp, rows, lp + rows);
    int rc = al_cuda_ok("cross_entropy", cudaGetLastError()) ? 0 : -1;
    if (rc == 0) rc = al_cuda_memcpy("cross_entropy", total, AL_CPU, lp + rows, AL_CUDA, sizeof *total);
    al_release(losses);
    return rc;
}

/* ---- embedding ---------------------------------------------------------------------------------- */

template <typename T>
static __global__ void embedding_kernel(const T *w, const long long *ids, T *out, int64_t n, int64_t D) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n * D; k += (int64_t)gridDim.x * blockDim.x)
        out[k] = w[ids[k / D] * D + k % D];
}

/* repeated ids add into the same row: atomics (double atomicAdd is native from sm_60) */
template <typename T>
static __global__ void embedding_backward_kernel(T *gw, const long long *ids, const T *g, int64_t n, int64_t D) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n * D; k += (int64_t)gridDim.x * blockDim.x)
        atomicAdd(&gw[ids[k / D] * D + k % D], g[k]);
}

extern "C" int al_cuda_embedding(const al_tensor *w, const al_tensor *ids, al_tensor *out) {
    const int64_t n = al_numel(ids), D = w->shape[1];
    if (n * D == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n * D, threads);
    cudaStream_t s = al_cuda_stream();
    if (w->dtype == AL_FLOAT32)
        embedding_kernel<float><<<blocks, threads, 0, s>>>((const float *)al_ptr(w), (const long long *)al_ptr(ids),
                                                           (float *)al_ptr(out), n, D);
    else
        embedding_kernel<double><<<blocks, threads, 0, s>>>((const double *)al_ptr(w), (const long long *)al_ptr(ids),
                                                            (double *)al_ptr(out), n, D);
    return al_cuda_ok("embedding", cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_embedding_backward(al_tensor *gw, const al_tensor *ids, const al_tensor *g) {
    const int64_t n = al_numel(ids), D = gw->shape[1];
    if (n * D == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n * D, threads);
    cudaStream_t s = al_cuda_stream();
    if (gw->dtype == AL_FLOAT32)
        embedding_backward_kernel<float><<<blocks, threads, 0, s>>>((float *)al_ptr(gw), (const long long *)al_ptr(ids),
                                                                    (const float *)al_ptr(g), n, D);
    else
        embedding_backward_kernel<double><<<blocks, threads, 0, s>>>(
            (double *)al_ptr(gw), (const long long *)al_ptr(ids), (const double *)al_ptr(g), n, D);
    return al_cuda_ok("embedding backward", cudaGetLastError()) ? 0 : -1;
}

/* ---- dropout's mask ------------------------------------------------------------------------------
 * rng.c's draw(key, index), bit for bit (NASAM over a Weyl sequence), and al_rand's uniforms from
 * it: the top 24 (float32) or 53 (float64) bits scaled to [0, 1).  The CPU's dropout keeps an
 * element when u >= p (p rounded to the element type) and scales it by 1/(1-p) rounded the same. */

static __device__ uint64_t rotr64(uint64_t x, int r) { return (x >> r) | (x << (64 - r)); }

static __device__ uint64_t draw(uint64_t key, uint64_t index) {
    uint64_t x = (index * 0x9E3779B97F4A7C15ull) ^ key;
    x ^= rotr64(x, 25) ^ rotr64(x, 47);
    x *= 0x9E6C63D0676A9A99ull;
    x ^= (x >> 23) ^ (x >> 51);
    x *= 0x9E6D62D06F6A9A9Bull;
    x ^= (x >> 23) ^ (x >> 51);
    return x;
}

static __device__ float uniform_of(float *, uint64_t x) { return (float)(int32_t)(x >> 40) * 0x1p-24f; }
static __device__ double uniform_of(double *, uint64_t x) { return (double)(int64_t)(x >> 11) * 0x1p-53; }

template <typename T>
static __global__ void dropout_mask_kernel(T *mask, int64_t n, uint64_t key, uint64_t first, T p, T scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const T u = uniform_of((T *)NULL, draw(key, first + (uint64_t)i));
        mask[i] = u >= p ? scale : (T)0;
    }
}

extern "C" int al_cuda_dropout_mask(al_tensor *mask, double p, uint64_t key, uint64_t first) {
    const int64_t n = al_numel(mask);
    if (n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n, threads);
    const double scale = 1.0 / (1.0 - p);
    cudaStream_t s = al_cuda_stream();
    if (mask->dtype == AL_FLOAT32)
        dropout_mask_kernel<float><<<blocks, threads, 0, s>>>((float *)al_ptr(mask), n, key, first, (float)p, (float)scale);
    else dropout_mask_kernel<double><<<blocks, threads, 0, s>>>((double *)al_ptr(mask), n, key, first, p, scale);
    return al_cuda_ok("dropout", cudaGetLastError()) ? 0 : -1;
}
