/* sample.cu -- grid_sample on the GPU: bilinear sampling at the grid's points, with the CPU's rule for
 * a point (ops/grid_sample_point.h, compiled here for the device: unnormalising, 'zeros' or 'border'
 * padding, the neighbours outside the image reading 0).  A thread per (image, point) for the forward
 * (every channel) and for the grid's gradient (summed over channels, no atomics); a thread per
 * (image, channel, point) for the image's gradient, which adds to the point's four neighbours with
 * atomics (many points may share a pixel), so its sums have no fixed order. */
#include "cuda_internal.h"
#include "ops/grid_sample_point.h"

template <typename T> static __device__ inline double value_at(const sample_geometry &g, const T *plane, int64_t y, int64_t x) {
    return inside(&g, y, x) ? (double)plane[y * g.W + x] : 0.0;
}

template <typename T>
static __global__ void forward_kernel(sample_geometry g, const T *x, const T *grid, T *y, int64_t points) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < points; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / (g.Ho * g.Wo), o = e % (g.Ho * g.Wo);
        const sample_point p = point_at(&g, (double)grid[e * 2], (double)grid[e * 2 + 1]);
        for (int64_t c = 0; c < g.C; c++) {
            const T *plane = x + (n * g.C + c) * g.H * g.W;
            const double nw = value_at(g, plane, p.y0, p.x0), ne = value_at(g, plane, p.y0, p.x0 + 1);
            const double sw = value_at(g, plane, p.y0 + 1, p.x0), se = value_at(g, plane, p.y0 + 1, p.x0 + 1);
            y[(n * g.C + c) * g.Ho * g.Wo + o] = (T)((1 - p.fy) * ((1 - p.fx) * nw + p.fx * ne) + p.fy * ((1 - p.fx) * sw + p.fx * se));
        }
    }
}

/* dgrid: the slope of the bilinear surface, summed over channels, times d pixel / d grid */
template <typename T>
static __global__ void grid_grad_kernel(sample_geometry g, const T *x, const T *grid, const T *dy, T *dgrid, int64_t points) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < points; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / (g.Ho * g.Wo), o = e % (g.Ho * g.Wo);
        const sample_point p = point_at(&g, (double)grid[e * 2], (double)grid[e * 2 + 1]);
        double gx = 0, gy = 0;
        for (int64_t c = 0; c < g.C; c++) {
            const T *plane = x + (n * g.C + c) * g.H * g.W;
            const double go = (double)dy[(n * g.C + c) * g.Ho * g.Wo + o];
            const double nw = value_at(g, plane, p.y0, p.x0), ne = value_at(g, plane, p.y0, p.x0 + 1);
            const double sw = value_at(g, plane, p.y0 + 1, p.x0), se = value_at(g, plane, p.y0 + 1, p.x0 + 1);
            gx += go * ((1 - p.fy) * (ne - nw) + p.fy * (se - sw));
            gy += go * ((1 - p.fx) * (sw - nw) + p.fx * (se - ne));
        }
        dgrid[e * 2] = (T)(gx * p.sx);
        dgrid[e * 2 + 1] = (T)(gy * p.sy);
    }
}

/* dx: each (channel, point)'s gradient to its four neighbours inside the image */
template <typename T>
static __global__ void input_grad_kernel(sample_geometry g, const T *grid, const T *dy, T *dx, int64_t n_out) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n_out; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t plane = e / (g.Ho * g.Wo), o = e % (g.Ho * g.Wo), n = plane / g.C;
        const int64_t at = n * g.Ho * g.Wo + o;
        const sample_point p = point_at(&g, (double)grid[at * 2], (double)grid[at * 2 + 1]);
        const double go = (double)dy[e];
        const double w[4] = {(1 - p.fy) * (1 - p.fx), (1 - p.fy) * p.fx, p.fy * (1 - p.fx), p.fy * p.fx};
        T *dp = dx + plane * g.H * g.W;
        for (int k = 0; k < 4; k++) {
            const int64_t yy = p.y0 + (k >> 1), xx = p.x0 + (k & 1);
            if (inside(&g, yy, xx)) atomicAdd(dp + yy * g.W + xx, (T)(w[k] * go));
        }
    }
}

template <typename T>
static int forward_typed(const sample_geometry *g, const al_tensor *x, const al_tensor *grid, al_tensor *y) {
    const int64_t points = g->N * g->Ho * g->Wo;
    if (points == 0 || g->C == 0) return 0;
    forward_kernel<T><<<al_cuda_blocks(points, 256), 256, 0, al_cuda_stream()>>>(*g, (const T *)al_ptr(x), (const T *)al_ptr(grid),
                                                                                (T *)al_ptr(y), points);
    return al_cuda_ok("grid_sample", cudaGetLastError()) ? 0 : -1;
}
extern "C" int al_cuda_grid_sample(const sample_geometry *g, const al_tensor *x, const al_tensor *grid, al_tensor *y) {
    return x->dtype == AL_FLOAT32 ? forward_typed<float>(g, x, grid, y) : forward_typed<double>(g, x, grid, y);
}

template <typename T>
static int backward_typed(const sample_geometry *g, const al_tensor *x, const al_tensor *grid, const al_tensor *dy, al_tensor *dx,
                          al_tensor *dgrid) {
    const char *fn = "grid_sample: backward";
    const int64_t points = g->N * g->Ho * g->Wo, n_out = points * g->C;
    cudaStream_t s = al_cuda_stream();
    if (dx && n_out > 0) {
        input_grad_kernel<T><<<al_cuda_blocks(n_out, 256), 256, 0, s>>>(*g, (const T *)al_ptr(grid), (const T *)al_ptr(dy),
                                                                         (T *)al_ptr(dx), n_out);
        if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
    }
    if (dgrid && points > 0) {
        grid_grad_kernel<T><<<al_cuda_blocks(points, 256), 256, 0, s>>>(*g, (const T *)al_ptr(x), (const T *)al_ptr(grid),
                                                                         (const T *)al_ptr(dy), (T *)al_ptr(dgrid), points);
        if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
    }
    return 0;
}
extern "C" int al_cuda_grid_sample_backward(const sample_geometry *g, const al_tensor *x, const al_tensor *grid,
                                            const al_tensor *dy, al_tensor *dx, al_tensor *dgrid) {
    return dy->dtype == AL_FLOAT32 ? backward_typed<float>(g, x, grid, dy, dx, dgrid)
                                   : backward_typed<double>(g, x, grid, dy, dx, dgrid);
}
