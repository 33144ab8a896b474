/* cuda_runtime.h -- the part of the CUDA runtime API that the .cu files of core/cuda use, emulated on the CPU
 * so that the kernels' logic runs and is checked against the CPU ops without a GPU
 * (make test-cuda-emulated; docs/cuda.md, "Testing without a GPU").
 *
 * The .cu files include it as <cuda_runtime.h> (through cuda_internal.h) when built with
 * -Itests/cuda_emulation; translate.sh first rewrites the CUDA syntax that C++ cannot parse or
 * would read otherwise (launches and __shared__ declarations).  Device memory is host memory.  Only what the
 * kernels use is declared: anything else they start to use fails the build here, never silently
 * does nothing.  The device side (thread indices, barriers, shuffles, atomics, shared memory,
 * launches) is emulated_device.h. */
#ifndef ATTNLAB_EMULATED_CUDA_RUNTIME_H
#define ATTNLAB_EMULATED_CUDA_RUNTIME_H

#include <math.h>   /* the device's math functions are the host's libm (exp, log, tanh, ... and their float overloads) */
#include <stddef.h>
#include <stdint.h>

/* the real runtime's numbers, so that messages read the same as on a GPU */
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamNonBlocking 0x01

struct emulated_stream;
typedef emulated_stream *cudaStream_t;

struct uint3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };   /* the 16-byte vector of the kernels' wide copies */
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/* ---- host API (runtime.cpp) ---- */
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
/* the error of the last failed launch or call, reset by reading it (as the real one, for non-sticky errors) */
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t nbytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
/* checks that each side lies inside one allocation of its kind (device: cudaMalloc's; host: none of them) */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t nbytes, cudaMemcpyKind kind, cudaStream_t s);
/* records e as the last error, says why on stderr ("emulated CUDA: ..."), returns e */
cudaError_t emulated_failure(cudaError_t e, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* whether [p, p + nbytes) lies inside one live cudaMalloc block (the emulated cuBLAS checks its operands) */
bool emulated_device_range(const void *p, size_t nbytes);
/* cudaFuncSetAttribute's one attribute, for the launch's check of dynamic shared memory (blocks.cpp) */
cudaError_t emulated_set_max_dynamic_shared(const void *kernel, int bytes);
template <typename K> static inline cudaError_t cudaFuncSetAttribute(K *kernel, cudaFuncAttribute attr, int value) {
    static_assert(sizeof(K *) == sizeof(void *), "a kernel is a function");
    return attr == cudaFuncAttributeMaxDynamicSharedMemorySize
               ? emulated_set_max_dynamic_shared(reinterpret_cast<const void *>(kernel), value)
               : cudaErrorInvalidValue;
}

#include "emulated_device.h"

#endif
