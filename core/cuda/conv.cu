/* conv.cu -- 2-D convolution on the GPU: ops/conv2d.c's CUDA path, forward and backward, with stride,
 * per-side zero padding, dilation and groups (the geometry is ops/conv2d.c's, checked there).
 *
 * Direct sums, written to be read against the definition rather than to be fast (no im2col, no
 * tensor cores):
 *   forward, a thread per output element:  y[n,o,oy,ox] = b[o] + sum_{c,ky,kx} w[o,c,ky,kx] x[n, g Cin_g + c, iy, ix],
 *     iy = oy sh - pt + ky dh, ix = ox sw - pl + kx dw, terms outside the input are the padding's 0;
 *   input gradient, a thread per input element, gathering the outputs whose window covers it (no
 *     atomics): dx[n,ci,iy,ix] = sum_{o in ci's group, ky, kx} dy[n,o,oy,ox] w[o,ci - g Cin_g,ky,kx]
 *     over the (oy, ox) with oy sh = iy + pt - ky dh (and the same for x) inside the output;
 *   weight gradient, a block per weight, its threads over the N Ho Wo positions and a block sum:
 *     dw[o,c,ky,kx] = sum_{n,oy,ox} dy[n,o,oy,ox] x[n, g Cin_g + c, iy, ix];
 *   bias gradient, a block per output channel: db[o] = sum_{n,oy,ox} dy[n,o,oy,ox].
 * Sums accumulate in double for the block sums (as reduce.cu), in the element type elsewhere. */
#include "cuda_internal.h"

enum { SUM_THREADS = 256 };

/* the element offsets of the four NCHW tensors */
static __device__ inline int64_t x_at(const al_conv_geometry &g, int64_t n, int64_t c, int64_t iy, int64_t ix) {
    return ((n * g.Cin + c) * g.H + iy) * g.W + ix;
}
static __device__ inline int64_t y_at(const al_conv_geometry &g, int64_t n, int64_t o, int64_t oy, int64_t ox) {
    return ((n * g.Cout + o) * g.Ho + oy) * g.Wo + ox;
}
static __device__ inline int64_t w_at(const al_conv_geometry &g, int64_t o, int64_t c, int64_t ky, int64_t kx) {
    return ((o * g.Cin_g + c) * g.kh + ky) * g.kw + kx;
}

template <typename T>
static __global__ void forward_kernel(al_conv_geometry g, const T *x, const T *w, const T *b, T *y, int64_t n_out) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n_out; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, o = e / g.P % g.Cout, n = e / (g.P * g.Cout);
        const int64_t c0 = o / g.Cout_g * g.Cin_g;
        T acc = b ? b[o] : (T)0;
        for (int64_t c = 0; c < g.Cin_g; c++)
            for (int64_t ky = 0; ky < g.kh; ky++) {
                const int64_t iy = oy * g.sh - g.pt + ky * g.dh;
                if (iy < 0 || iy >= g.H) continue;
                for (int64_t kx = 0; kx < g.kw; kx++) {
                    const int64_t ix = ox * g.sw - g.pl + kx * g.dw;
                    if (ix >= 0 && ix < g.W) acc += w[w_at(g, o, c, ky, kx)] * x[x_at(g, n, c0 + c, iy, ix)];
                }
            }
        y[e] = acc;
    }
}

template <typename T>
static __global__ void input_grad_kernel(al_conv_geometry g, const T *dy, const T *w, T *dx, int64_t n_in) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n_in; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ix = e % g.W, iy = e / g.W % g.H, ci = e / (g.W * g.H) % g.Cin, n = e / (g.W * g.H * g.Cin);
        const int64_t group = ci / g.Cin_g, c = ci % g.Cin_g;
        T acc = 0;
        for (int64_t o = group * g.Cout_g; o < (group + 1) * g.Cout_g; o++)
            for (int64_t ky = 0; ky < g.kh; ky++) {
                const int64_t oy = tap_source(iy, g.pt, ky, g.dh, g.sh, g.Ho);
                if (oy < 0) continue;
                for (int64_t kx = 0; kx < g.kw; kx++) {
                    const int64_t ox = tap_source(ix, g.pl, kx, g.dw, g.sw, g.Wo);
                    if (ox >= 0) acc += dy[y_at(g, n, o, oy, ox)] * w[w_at(g, o, c, ky, kx)];
                }
            }
        dx[e] = acc;
    }
}

/* The block's sum of v (every thread calls it): a tree in shared memory, in double. */
static __device__ inline double block_sum(double v) {
    __shared__ double partial[SUM_THREADS];
    partial[threadIdx.x] = v;
    __syncthreads();
    for (int half = SUM_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads();   /* every thread has read it before the next call writes */
    return total;
}

template <typename T>
static __global__ void __launch_bounds__(SUM_THREADS) weight_grad_kernel(al_conv_geometry g, const T *x, const T *dy, T *dw,
                                                                         int64_t n_w) {
    for (int64_t e = blockIdx.x; e < n_w; e += gridDim.x) {   /* the whole block on one weight */
        const int64_t kx = e % g.kw, ky = e / g.kw % g.kh, c = e / (g.kw * g.kh) % g.Cin_g, o = e / (g.kw * g.kh * g.Cin_g);
        const int64_t ci = o / g.Cout_g * g.Cin_g + c;
        double acc = 0;
        for (int64_t q = threadIdx.x; q < g.N * g.P; q += blockDim.x) {
            const int64_t n = q / g.P, oy = q % g.P / g.Wo, ox = q % g.Wo;
            const int64_t iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
            if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) acc += (double)dy[y_at(g, n, o, oy, ox)] * (double)x[x_at(g, n, ci, iy, ix)];
        }
        const double total = block_sum(acc);
        if (threadIdx.x == 0) dw[e] = (T)total;
    }
}

template <typename T>
static __global__ void __launch_bounds__(SUM_THREADS) bias_grad_kernel(al_conv_geometry g, const T *dy, T *db) {
    for (int64_t o = blockIdx.x; o < g.Cout; o += gridDim.x) {
        double acc = 0;
        for (int64_t q = threadIdx.x; q < g.N * g.P; q += blockDim.x) acc += (double)dy[y_at(g, q / g.P, o, q % g.P / g.Wo, q % g.Wo)];
        const double total = block_sum(acc);
        if (threadIdx.x == 0) db[o] = (T)total;
    }
}

/* blocks for a launch of one block per item, capped as the grid-stride kernels are */
static unsigned item_blocks(int64_t items) {
    return (unsigned)(items < 1 ? 1 : items > AL_CUDA_GRID_STRIDE_BLOCKS ? AL_CUDA_GRID_STRIDE_BLOCKS : items);
}

template <typename T>
static int forward_typed(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *b, al_tensor *y) {
    const int64_t n = al_numel(y);
    if (n == 0) return 0;
    forward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(x), (const T *)al_ptr(w),
                                                                            b ? (const T *)al_ptr(b) : NULL, (T *)al_ptr(y), n);
    return al_cuda_ok("conv2d", cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_conv2d_forward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *b,
                                      al_tensor *y) {
    return x->dtype == AL_FLOAT32 ? forward_typed<float>(g, x, w, b, y) : forward_typed<double>(g, x, w, b, y);
}

template <typename T>
static int backward_typed(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *dy,
                          al_tensor *dx, al_tensor *dw, al_tensor *db) {
    const char *fn = "conv2d: backward";
    cudaStream_t s = al_cuda_stream();
    const T *gy = (const T *)al_ptr(dy);
    const bool no_positions = g->N * g->P == 0;   /* the sums are empty: zeros */
    if (dx && al_numel(dx) > 0) {
        input_grad_kernel<T><<<al_cuda_blocks(al_numel(dx), 256), 256, 0, s>>>(*g, gy, (const T *)al_ptr(w), (T *)al_ptr(dx),
                                                                               al_numel(dx));
        if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
    }
    if (dw && al_numel(dw) > 0) {
        if (no_positions) { if (al_cuda_fill(dw, 0) < 0) return -1; }
        else {
            weight_grad_kernel<T><<<item_blocks(al_numel(dw)), SUM_THREADS, 0, s>>>(*g, (const T *)al_ptr(x), gy, (T *)al_ptr(dw),
                                                                                      al_numel(dw));
            if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
        }
    }
    if (db && al_numel(db) > 0) {
        if (no_positions) { if (al_cuda_fill(db, 0) < 0) return -1; }
        else {
            bias_grad_kernel<T><<<item_blocks(g->Cout), SUM_THREADS, 0, s>>>(*g, gy, (T *)al_ptr(db));
            if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
        }
    }
    return 0;
}

extern "C" int al_cuda_conv2d_backward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *dy,
                                       al_tensor *dx, al_tensor *dw, al_tensor *db) {
    return dy->dtype == AL_FLOAT32 ? backward_typed<float>(g, x, w, dy, dx, dw, db)
                                   : backward_typed<double>(g, x, w, dy, dx, dw, db);
}
