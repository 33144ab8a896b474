/* cuda_internal.h -- what the CUDA backend's files share: the core's internals (as C), the one
 * stream, the status check that turns a CUDA or cuBLAS failure into the core's error (never an
 * abort), and the launch geometry of the elementwise kernels. */
#ifndef ATTNLAB_CUDA_INTERNAL_H
#define ATTNLAB_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
extern "C" {
#include "internal.h"
}

/* Every kernel and copy goes on this stream, so the order of ops is the order of the calls, and a
 * copy back to the host (al_cuda_memcpy) waits for the kernels before it. */
cudaStream_t al_cuda_stream(void);
/* The cuBLAS handle bound to that stream; NULL with an error when cuBLAS cannot start. */
cublasHandle_t al_cublas(const char *fn);

/* false (with an error "fn: CUDA error NAME: message") when status is not cudaSuccess.  A kernel
 * launch is checked with cudaGetLastError() right after it; errors of the kernel's run surface at
 * the next synchronising call, which checks them the same way. */
bool al_cuda_ok(const char *fn, cudaError_t status);
bool al_cublas_ok(const char *fn, cublasStatus_t status);

/* The most blocks a launch with a grid-stride loop asks for; the loop covers the rest.  The CPU
 * emulation of the kernels (tests/cuda_emulation) builds with a small cap, so that the tests' sizes
 * take every grid-stride loop round more than once. */
#ifndef AL_CUDA_GRID_STRIDE_BLOCKS
#define AL_CUDA_GRID_STRIDE_BLOCKS (65535 * 8)
#endif

/* Grid size for n elements at `threads` per block, capped so that a grid-stride loop covers the rest. */
static inline unsigned al_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > AL_CUDA_GRID_STRIDE_BLOCKS ? AL_CUDA_GRID_STRIDE_BLOCKS : b);
}

/* A tensor's view as a kernel reads it: up to AL_MAX_DIMS sizes and element strides (0 on the
 * broadcast dims), passed by value. */
struct al_cuda_view {
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    int64_t strides[AL_MAX_DIMS];
};
/* The element offset of the i-th element (row-major over view.shape). */
__device__ static inline int64_t al_cuda_offset(const al_cuda_view &v, int64_t i) {
    int64_t off = 0;
    for (int d = v.ndim - 1; d >= 0; d--) {
        int64_t n = v.shape[d];
        off += (i % n) * v.strides[d];
        i /= n;
    }
    return off;
}

/* bfloat16 (al_dtype AL_BFLOAT16) as the kernels use it: stored as __nv_bfloat16, computed on as float.
 * convert<TO>::from(x) is the one conversion between the element types (round to nearest even into
 * bfloat16, straight from double too); add_of adds two elements of a type (bfloat16 through float). */
template <typename T> struct compute_type { typedef T type; };
template <> struct compute_type<__nv_bfloat16> { typedef float type; };
template <typename TO> struct convert {
    template <typename FROM> static __device__ inline TO from(FROM x) { return (TO)x; }
    static __device__ inline TO from(__nv_bfloat16 x) { return (TO)__bfloat162float(x); }
};
template <> struct convert<__nv_bfloat16> {
    template <typename FROM> static __device__ inline __nv_bfloat16 from(FROM x) { return __float2bfloat16((float)x); }
    static __device__ inline __nv_bfloat16 from(double x) { return __double2bfloat16(x); }
    static __device__ inline __nv_bfloat16 from(__nv_bfloat16 x) { return x; }
};
template <typename T> static __device__ inline T add_of(T a, T b) { return a + b; }
static __device__ inline __nv_bfloat16 add_of(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16(__bfloat162float(a) + __bfloat162float(b));
}

/* Windows over an axis (convolution, pooling): the output index whose window's tap k reads input i,
 * (i + pad - k dil) / stride when that divides and lands inside [0, n_out); -1 otherwise.  The
 * gradient kernels gather with it, a thread per input element, instead of scattering with atomics. */
static __device__ inline int64_t tap_source(int64_t i, int64_t pad, int64_t k, int64_t dil, int64_t stride, int64_t n_out) {
    const int64_t t = i + pad - k * dil;
    if (t < 0 || t % stride) return -1;
    return t / stride < n_out ? t / stride : -1;
}

#endif
