/* memory.cu -- the CUDA device: whether there is one, its stream and cuBLAS handle, the caching
 * allocator behind every CUDA storage, copies between host and device, and CUDA errors as the
 * core's errors.
 *
 * The allocator keeps freed blocks on per-size lists, as the CPU one does (alloc.c) and for the
 * same reason: a training step allocates the same sizes every step, and cudaMalloc/cudaFree cost
 * tens of microseconds and synchronise the device.  Device memory cannot hold the list links (the
 * host cannot write it), so the lists live on the host.  Sizes round up to 512 bytes below 1 MiB
 * and to an eighth of the next power of two above, so nearby sizes share a list; when cudaMalloc
 * fails the cache is emptied and the allocation tried once more. */
#include "cuda_internal.h"
#include <stdlib.h>

static int availability = -1;             /* -1: not asked yet */
static char unavailable_reason[256];
static cudaStream_t stream;
static cublasHandle_t cublas;

bool al_cuda_ok(const char *fn, cudaError_t status) {
    if (status == cudaSuccess) return true;
    al_error("%s: CUDA error %s: %s", fn, cudaGetErrorName(status), cudaGetErrorString(status));
    return false;
}

bool al_cublas_ok(const char *fn, cublasStatus_t status) {
    if (status == CUBLAS_STATUS_SUCCESS) return true;
    al_error("%s: cuBLAS error %s: %s", fn, cublasGetStatusName(status), cublasGetStatusString(status));
    return false;
}

extern "C" int al_cuda_available(void) {
    if (availability >= 0) return availability;
    int n = 0;
    cudaError_t status = cudaGetDeviceCount(&n);
    if (status != cudaSuccess) {
        snprintf(unavailable_reason, sizeof unavailable_reason, "the CUDA runtime says %s: %s",
                 cudaGetErrorName(status), cudaGetErrorString(status));
        availability = 0;
    } else if (n == 0) {
        snprintf(unavailable_reason, sizeof unavailable_reason, "the CUDA runtime finds no GPU");
        availability = 0;
    } else if ((status = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(unavailable_reason, sizeof unavailable_reason, "cannot create a stream: %s",
                 cudaGetErrorString(status));
        availability = 0;
    } else {
        availability = 1;
    }
    return availability;
}

extern "C" const char *al_cuda_unavailable_reason(void) {
    if (al_cuda_available()) return "the device is available";
    return unavailable_reason;
}

cudaStream_t al_cuda_stream(void) { return stream; }

extern "C" int al_cuda_synchronize(void) {
    if (availability != 1) return 0;   /* nothing was ever queued */
    return al_cuda_ok("synchronize", cudaStreamSynchronize(stream)) ? 0 : -1;
}

cublasHandle_t al_cublas(const char *fn) {
    if (!cublas) {
        if (!al_cublas_ok(fn, cublasCreate(&cublas))) { cublas = NULL; return NULL; }
        if (!al_cublas_ok(fn, cublasSetStream(cublas, stream))) return NULL;
        /* float32 products stay float32 (no TF32) unless an option asks: results comparable with the CPU */
        if (!al_cublas_ok(fn, cublasSetMathMode(cublas, CUBLAS_PEDANTIC_MATH))) return NULL;
    }
    return cublas;
}

/* ---- the caching allocator ------------------------------------------------------------------ */

struct cached_block { void *p; cached_block *next; };
struct size_list { size_t nbytes; cached_block *head; };
enum { N_LISTS = 512 };
static size_list lists[N_LISTS];
static int64_t device_bytes_live, device_bytes_cached, device_bytes_peak;

/* a block handed to a tensor: counted live, and the peak follows */
static void count_live(size_t n) {
    device_bytes_live += (int64_t)n;
    if (device_bytes_live > device_bytes_peak) device_bytes_peak = device_bytes_live;
}

static size_t round_size(size_t n) {
    if (n <= ((size_t)1 << 20)) return (n + 511) & ~(size_t)511;
    size_t p = (size_t)1 << 20;
    while (p < n) p <<= 1;
    size_t step = p / 8;
    return (n + step - 1) / step * step;
}

static size_list *find_list(size_t nbytes, bool create) {
    size_t h = (nbytes / 512) * 2654435761u;
    for (int probe = 0; probe < N_LISTS; probe++) {
        size_list *l = &lists[(h + (size_t)probe) % N_LISTS];
        if (l->nbytes == nbytes) return l;
        if (l->nbytes == 0) {
            if (!create) return NULL;
            l->nbytes = nbytes;
            return l;
        }
    }
    return NULL;
}

static void empty_cache(void) {
    cudaStreamSynchronize(stream);
    for (int i = 0; i < N_LISTS; i++) {
        while (lists[i].head) {
            cached_block *b = lists[i].head;
            lists[i].head = b->next;
            cudaFree(b->p);
            free(b);
        }
    }
    device_bytes_cached = 0;
}

extern "C" void *al_cuda_alloc(size_t nbytes) {
    if (!al_cuda_available()) {
        al_error("tensor: no CUDA device (%s)", unavailable_reason);
        return NULL;
    }
    size_t n = round_size(nbytes ? nbytes : 1);
    size_list *l = find_list(n, false);
    if (l && l->head) {
        cached_block *b = l->head;
        void *p = b->p;
        l->head = b->next;
        free(b);
        device_bytes_cached -= (int64_t)n;
        count_live(n);
        return p;
    }
    void *p = NULL;
    cudaError_t status = cudaMalloc(&p, n);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();   /* clears it: an allocation failure does not poison the context */
        empty_cache();
        status = cudaMalloc(&p, n);
    }
    if (status != cudaSuccess) {
        cudaGetLastError();
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        al_error("tensor: cannot allocate %.1f MiB on the GPU (%s): %.1f MiB held by tensors, %.1f MiB free of %.1f MiB",
                 (double)n / 1048576.0, cudaGetErrorString(status), (double)device_bytes_live / 1048576.0,
                 (double)free_bytes / 1048576.0, (double)total / 1048576.0);
        return NULL;
    }
    count_live(n);
    return p;
}

extern "C" int64_t al_cuda_bytes_in_use(void) { return device_bytes_live; }
extern "C" int64_t al_cuda_bytes_peak(void) { return device_bytes_peak; }
extern "C" void al_cuda_reset_peak(void) {
    if (availability == 1) empty_cache();
    device_bytes_peak = device_bytes_live;
}

/* Kernels still queued may read the block: it goes back on a list, and since every kernel runs
 * on the one stream, whatever takes it next is queued after them. */
extern "C" void al_cuda_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t n = round_size(nbytes ? nbytes : 1);
    device_bytes_live -= (int64_t)n;
    size_list *l = find_list(n, true);
    cached_block *b = (cached_block *)malloc(sizeof *b);
    if (!l || !b) {
        free(b);
        cudaStreamSynchronize(stream);
        cudaFree(p);
        return;
    }
    b->p = p;
    b->next = l->head;
    l->head = b;
    device_bytes_cached += (int64_t)n;
}

/* ---- copies ---------------------------------------------------------------------------------- */

extern "C" int al_cuda_memcpy(const char *fn, void *dst, al_device dst_device, const void *src,
                              al_device src_device, size_t nbytes) {
    if (!al_cuda_available()) {
        al_error("%s: no CUDA device (%s)", fn, unavailable_reason);
        return -1;
    }
    cudaMemcpyKind kind = src_device == AL_CPU ? (dst_device == AL_CPU ? cudaMemcpyHostToHost : cudaMemcpyHostToDevice)
                                               : (dst_device == AL_CPU ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice);
    if (!al_cuda_ok(fn, cudaMemcpyAsync(dst, src, nbytes, kind, stream))) return -1;
    /* to the host: the caller reads it next; from the host: the source may be freed after return */
    if (kind != cudaMemcpyDeviceToDevice && !al_cuda_ok(fn, cudaStreamSynchronize(stream))) return -1;
    return 0;
}
