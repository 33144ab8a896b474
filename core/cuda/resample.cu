/* resample.cu -- interpolate on the GPU: every output mixes two source rows and two source columns
 * with the weights ops/interpolate.c computed on the host (PyTorch's source rule, bilinear or
 * nearest), sent here as one (Ho + Wo, 4) float64 table: src0, src1, w0, w1 per output row, then per
 * output column.  A thread per output element, forward and backward; the backward adds an output's
 * gradient to its four sources with atomics (neighbouring outputs share sources), as embedding's and
 * gather's backwards do, so its sums have no fixed order. */
#include "cuda_internal.h"

struct resample_dims { int64_t H, W, Ho, Wo; };

/* the table's row r: two source indices and their weights */
struct source_pair { int64_t i0, i1; double w0, w1; };
static __device__ inline source_pair source_at(const double *table, int64_t r) {
    source_pair s;
    s.i0 = (int64_t)table[4 * r]; s.i1 = (int64_t)table[4 * r + 1];
    s.w0 = table[4 * r + 2]; s.w1 = table[4 * r + 3];
    return s;
}

template <typename T>
static __global__ void resample_kernel(resample_dims g, const T *x, const double *table, T *y, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        const source_pair sy = source_at(table, oy), sx = source_at(table, g.Ho + ox);
        const T *r0 = x + (plane * g.H + sy.i0) * g.W, *r1 = x + (plane * g.H + sy.i1) * g.W;
        y[e] = (T)(sy.w0 * (sx.w0 * (double)r0[sx.i0] + sx.w1 * (double)r0[sx.i1]) +
                   sy.w1 * (sx.w0 * (double)r1[sx.i0] + sx.w1 * (double)r1[sx.i1]));
    }
}

template <typename T>
static __global__ void resample_backward_kernel(resample_dims g, const T *dy, const double *table, T *dx, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ox = e % g.Wo, oy = e / g.Wo % g.Ho, plane = e / (g.Wo * g.Ho);
        const source_pair sy = source_at(table, oy), sx = source_at(table, g.Ho + ox);
        const double v = (double)dy[e];
        T *r0 = dx + (plane * g.H + sy.i0) * g.W, *r1 = dx + (plane * g.H + sy.i1) * g.W;
        atomicAdd(r0 + sx.i0, (T)(sy.w0 * sx.w0 * v));
        atomicAdd(r0 + sx.i1, (T)(sy.w0 * sx.w1 * v));
        atomicAdd(r1 + sx.i0, (T)(sy.w1 * sx.w0 * v));
        atomicAdd(r1 + sx.i1, (T)(sy.w1 * sx.w1 * v));
    }
}

static resample_dims dims_of(const al_tensor *in, const al_tensor *out) {
    resample_dims g = {in->shape[2], in->shape[3], out->shape[2], out->shape[3]};
    return g;
}

template <typename T> static int resample_typed(const al_tensor *x, const al_tensor *table, al_tensor *y) {
    const int64_t n = al_numel(y);
    if (n == 0) return 0;
    resample_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(dims_of(x, y), (const T *)al_ptr(x),
                                                                             (const double *)al_ptr(table), (T *)al_ptr(y), n);
    return al_cuda_ok("interpolate", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_resample(const al_tensor *x, const al_tensor *sources, al_tensor *y) {
    return x->dtype == AL_FLOAT32 ? resample_typed<float>(x, sources, y) : resample_typed<double>(x, sources, y);
}

template <typename T> static int resample_backward_typed(const al_tensor *dy, const al_tensor *table, al_tensor *dx) {
    const int64_t n = al_numel(dy);
    if (n == 0) return 0;
    resample_backward_kernel<T><<<al_cuda_blocks(n, 256), 256, 0, al_cuda_stream()>>>(
        dims_of(dx, dy), (const T *)al_ptr(dy), (const double *)al_ptr(table), (T *)al_ptr(dx), n);
    return al_cuda_ok("interpolate: backward", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_resample_backward(const al_tensor *dy, const al_tensor *sources, al_tensor *dx) {
    return dx->dtype == AL_FLOAT32 ? resample_backward_typed<float>(dy, sources, dx) : resample_backward_typed<double>(dy, sources, dx);
}
