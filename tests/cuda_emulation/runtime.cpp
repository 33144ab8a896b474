/* runtime.cpp -- the emulated CUDA runtime's host side (cuda_runtime.h): one device, errors by
 * name, streams that are already synchronous, device memory as host memory that remembers its
 * blocks, and copies that check each side is the memory its kind says. */
#include "cuda_runtime.h"
#include <map>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cudaError_t last_error = cudaSuccess;

cudaError_t emulated_failure(cudaError_t e, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "emulated CUDA: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    last_error = e;
    return e;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void) {
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

/* Every launch and copy completes before its call returns, so a stream orders nothing and
 * synchronising waits for nothing; the stream only has to exist. */
struct emulated_stream { unsigned flags; };

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new emulated_stream{flags};
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) { return cudaSuccess; }

/* ---- device memory: malloc'd, filled with 0xff bytes (NaN, -1) so that a kernel reading what
 * nobody wrote shows in its results; the live blocks by address, for the copies' checks ---- */

static std::map<const char *, size_t> blocks;   /* start -> size */
static const size_t total_bytes = (size_t)80 << 30;
static size_t live_bytes;

cudaError_t cudaMalloc(void **p, size_t nbytes) {
    *p = NULL;
    if (nbytes > total_bytes - live_bytes) return emulated_failure(cudaErrorMemoryAllocation, "cudaMalloc(%zu): more than the device has", nbytes);
    char *block = (char *)aligned_alloc(256, (nbytes + 255) / 256 * 256);   /* cudaMalloc aligns to 256 bytes */
    if (!block) return emulated_failure(cudaErrorMemoryAllocation, "cudaMalloc(%zu): the host is out of memory", nbytes);
    memset(block, 0xff, nbytes);
    blocks[block] = nbytes;
    live_bytes += nbytes;
    *p = block;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto b = blocks.find((const char *)p);
    if (b == blocks.end()) return emulated_failure(cudaErrorInvalidValue, "cudaFree(%p): not a block cudaMalloc returned", p);
    live_bytes -= b->second;
    blocks.erase(b);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    *free_bytes = total_bytes - live_bytes;
    *total = total_bytes;
    return cudaSuccess;
}

/* the live block that holds address p, or blocks.end() */
static std::map<const char *, size_t>::const_iterator block_of(const char *p) {
    auto b = blocks.upper_bound(p);
    if (b == blocks.begin()) return blocks.end();
    --b;
    return p < b->first + b->second ? b : blocks.end();
}

bool emulated_device_range(const void *p, size_t nbytes) {
    const char *c = (const char *)p;
    auto b = block_of(c);
    return b != blocks.end() && (size_t)(b->first + b->second - c) >= nbytes;
}

/* a copy's side: device memory must lie in one block; host memory must not touch any */
static bool side_ok(const char *what, const void *p, size_t nbytes, bool device) {
    if (device ? emulated_device_range(p, nbytes)
               : block_of((const char *)p) == blocks.end() && block_of((const char *)p + nbytes - 1) == blocks.end())
        return true;
    emulated_failure(cudaErrorInvalidValue, "cudaMemcpyAsync: the %s (%p, %zu bytes) is not %s memory", what, p, nbytes,
                     device ? "device" : "host");
    return false;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t nbytes, cudaMemcpyKind kind, cudaStream_t s) {
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice)
        return emulated_failure(cudaErrorInvalidMemcpyDirection, "cudaMemcpyAsync: kind %d", (int)kind);
    if (nbytes == 0) return cudaSuccess;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    if (!side_ok("source", src, nbytes, src_device) || !side_ok("destination", dst, nbytes, dst_device))
        return cudaErrorInvalidValue;
    const char *d = (const char *)dst, *c = (const char *)src;
    if (d < c + nbytes && c < d + nbytes)
        return emulated_failure(cudaErrorInvalidValue, "cudaMemcpyAsync: source and destination overlap");
    memcpy(dst, src, nbytes);
    return cudaSuccess;
}
