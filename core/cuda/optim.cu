/* optim.cu -- the optimiser updates of optim.c on the device: SGD (momentum, Nesterov, weight
 * decay), Adam and AdamW, one thread per element with generic/optim_steps.h's arithmetic in the
 * same order and the same roundings of the hyperparameters to the element type; and the sum of a
 * gradient's squares for clip_grad_norm, in double, per block and then over the blocks in a fixed
 * order (the same bits every run).  optim.c validates everything first and hands over contiguous
 * tensors of one device. */
#include "cuda_internal.h"

/* d = g + wd p; buf = momentum buf + d; p -= lr (nesterov ? d + momentum buf : buf); no buf: p -= lr d */
template <typename T>
static __global__ void sgd_kernel(T *p, const T *g, T *buf, int64_t n, T lr, T mom, T wd, bool nesterov) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (!buf) {
            p[i] -= lr * (g[i] + wd * p[i]);
        } else {
            const T d = g[i] + wd * p[i];
            const T b = mom * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * (nesterov ? d + mom * b : b);
        }
    }
}

/* PyTorch's Adam per element (see generic/optim_steps.h): g (+ wd p when coupled); p *= 1 - lr wd when
 * decoupled; m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g g; p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps) */
template <typename T>
static __global__ void adam_kernel(T *p, T *m, T *v, const T *g, int64_t n, T w, T b2, T c2, T wd, T decay, T step_size,
                                   T inv_bc2_sqrt, T eps, bool coupled, bool decay_p) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const T gi = coupled ? g[i] + wd * p[i] : g[i];
        T pi = p[i];
        if (decay_p) pi *= decay;
        const T mi = m[i];
        const T mn = w < (T)0.5 ? mi + w * (gi - mi) : gi - (gi - mi) * ((T)1 - w);
        const T vn = v[i] * b2 + c2 * gi * gi;
        m[i] = mn;
        v[i] = vn;
        p[i] = pi - step_size * mn / (sqrt(vn) * inv_bc2_sqrt + eps);
    }
}

extern "C" int al_cuda_sgd_update(al_tensor *p, const al_tensor *g, al_tensor *buf, double lr, double momentum,
                                  double weight_decay, bool nesterov) {
    const int64_t n = al_numel(p);
    if (n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n, threads);
    cudaStream_t s = al_cuda_stream();
    if (p->dtype == AL_FLOAT32)
        sgd_kernel<float><<<blocks, threads, 0, s>>>((float *)al_ptr(p), (const float *)al_ptr(g),
                                                     buf ? (float *)al_ptr(buf) : NULL, n, (float)lr, (float)momentum,
                                                     (float)weight_decay, nesterov);
    else
        sgd_kernel<double><<<blocks, threads, 0, s>>>((double *)al_ptr(p), (const double *)al_ptr(g),
                                                      buf ? (double *)al_ptr(buf) : NULL, n, lr, momentum, weight_decay,
                                                      nesterov);
    return al_cuda_ok("sgd_step", cudaGetLastError()) ? 0 : -1;
}

template <typename T>
static void launch_adam(al_tensor *p, al_tensor *m, al_tensor *v, const al_tensor *g, int64_t n, double lr, double beta1,
                        double beta2, double eps, double weight_decay, bool decoupled, double bc1, double bc2) {
    /* the hyperparameters rounded to T exactly as generic/optim_steps.h rounds them */
    const T w = (T)(1 - beta1), b2 = (T)beta2, c2 = (T)(1 - beta2), wd = (T)weight_decay;
    const T decay = (T)(1 - lr * weight_decay), step_size = (T)(lr / bc1);
    const T inv_bc2_sqrt = (T)(1 / sqrt(bc2)), eps_ = (T)eps;
    const bool coupled = !decoupled && weight_decay != 0, decay_p = decoupled && weight_decay != 0;
    const int threads = 256;
    adam_kernel<T><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
        (T *)al_ptr(p), (T *)al_ptr(m), (T *)al_ptr(v), (const T *)al_ptr(g), n, w, b2, c2, wd, decay, step_size,
        inv_bc2_sqrt, eps_, coupled, decay_p);
}

extern "C" int al_cuda_adam_update(al_tensor *p, al_tensor *m, al_tensor *v, const al_tensor *g, double lr,
                                   double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                                   double bc1, double bc2) {
    const int64_t n = al_numel(p);
    if (n == 0) return 0;
    if (p->dtype == AL_FLOAT32) launch_adam<float>(p, m, v, g, n, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2);
    else launch_adam<double>(p, m, v, g, n, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2);
    return al_cuda_ok("adam_step", cudaGetLastError()) ? 0 : -1;
}

/* ---- sum of squares ------------------------------------------------------------------------------ */

enum { SQUARE_THREADS = 256, SQUARE_BLOCKS = 1024 };

/* The block's sum of its threads' values (blockDim.x == SQUARE_THREADS), a tree in shared memory. */
static __device__ double block_sum(double v) {
    __shared__ double part[SQUARE_THREADS];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = SQUARE_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    return part[0];
}

/* partial[block] = sum of x[i]^2 (in double) over the block's grid-stride share */
template <typename T>
static __global__ void sum_squares_kernel(const T *x, int64_t n, double *partial) {
    double s = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)x[i] * (double)x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* out = sum of partial[0 .. nblocks), one block */
static __global__ void sum_partials_kernel(const double *partial, int nblocks, double *out) {
    double s = 0;
    for (int i = threadIdx.x; i < nblocks; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = s;
}

extern "C" double al_cuda_sum_squares(const al_tensor *g) {
    const int64_t n = al_numel(g);
    if (n == 0) return 0;
    const int nblocks = (int)al_cuda_blocks(n, SQUARE_THREADS) < SQUARE_BLOCKS ? (int)al_cuda_blocks(n, SQUARE_THREADS)
                                                                               : SQUARE_BLOCKS;
    const int64_t pshape[1] = {nblocks + 1};   /* the blocks' sums, then the total */
    al_tensor *partial = al_new_tensor_on(1, pshape, AL_FLOAT64, AL_CUDA);
    if (!partial) return -1;
    double *pp = (double *)al_ptr(partial), total = -1;
    cudaStream_t s = al_cuda_stream();
    if (g->dtype == AL_FLOAT32)
        sum_squares_kernel<float><<<nblocks, SQUARE_THREADS, 0, s>>>((const float *)al_ptr(g), n, pp);
    else sum_squares_kernel<double><<<nblocks, SQUARE_THREADS, 0, s>>>((const double *)al_ptr(g), n, pp);
    sum_partials_kernel<<<1, SQUARE_THREADS, 0, s>>>(pp, nblocks, pp + nblocks);
    if (!al_cuda_ok("clip_grad_norm", cudaGetLastError()) ||
        al_cuda_memcpy("clip_grad_norm", &total, AL_CPU, pp + nblocks, AL_CUDA, sizeof total) < 0)
        total = -1;
    al_release(partial);
    return total;
}
