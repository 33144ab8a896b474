/* emulated_device.h -- the device side of the CUDA emulation: thread and block indices, launches,
 * __syncthreads, warp shuffles, atomics and shared memory, as the .cu files of core/cuda use them.
 *
 * A launch runs its blocks one after another on the calling thread; each block's threads are
 * fibers (blocks.cpp) that run until they reach a barrier, so that a barrier really separates what
 * comes before it from what comes after, in every thread.  The checks a GPU would not make loudly:
 *   - every thread of a block reaches the same __syncthreads (the same line), and no thread returns
 *     while others wait at one (a deadlock on a GPU): the program stops, naming the lines;
 *   - all 32 lanes of a warp reach the same shuffle (the same line, the same number of shuffles
 *     before it): a lane that skipped or repeated one stops the program;
 *   - shared memory (static and dynamic) starts every block as 0xff bytes (NaN in floating point),
 *     so a value read before any thread wrote it shows in the results; a dynamic shared array
 *     ends at an inaccessible page, so an access past the launch's size stops the program;
 *   - odd blocks run their threads in reverse order, so a read of another thread's write with no
 *     barrier between them gets the garbage in one order or the other;
 *   - the launch's geometry against the GPU's limits, dynamic shared memory beyond 48 KiB only
 *     after cudaFuncSetAttribute.
 * Atomics are plain read-modify-writes: fibers never interleave inside one. */
#ifndef ATTNLAB_EMULATED_DEVICE_H
#define ATTNLAB_EMULATED_DEVICE_H

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(max_threads)
/* alignment of the one __align__ use, the dynamic shared array: its buffer is 128-byte aligned */
#define __align__(n)
/* translate.sh's rewrite of `__shared__ TYPE NAME[N];`: one copy for the block, a static of the
 * function, filled with 0xff when first reached and before each block (the registration runs once
 * per function, by the first thread to get there, before any thread can have written to it) */
#define EMULATED_STATIC_SHARED(type, name, dims) \
    static type name dims;                      \
    static const bool name##_in_shared_memory __attribute__((unused)) = emulated_static_shared(name, sizeof name)
bool emulated_static_shared(void *p, size_t bytes);
/* translate.sh's rewrite of `extern __shared__ TYPE NAME[];`: the launch's dynamic shared memory */
#define EMULATED_DYNAMIC_SHARED(type, name) type *const name = (type *)emulated_dynamic_shared()
void *emulated_dynamic_shared(void);

/* the running thread's index (switched with the fiber) and its block's */
extern const uint3 *emulated_thread_index;
extern uint3 emulated_block_index;
extern dim3 emulated_block_dim, emulated_grid_dim;
#define threadIdx (*emulated_thread_index)
#define blockIdx (static_cast<const uint3 &>(emulated_block_index))
#define blockDim (static_cast<const dim3 &>(emulated_block_dim))
#define gridDim (static_cast<const dim3 &>(emulated_grid_dim))

/* ---- barriers and shuffles (blocks.cpp); the call site identifies the barrier ---- */
void emulated_syncthreads(const char *file, int line);
#define __syncthreads() emulated_syncthreads(__FILE__, __LINE__)

unsigned emulated_lane(void);
/* the running lane waits at file:line until all 32 lanes of its warp are there (blocks.cpp) */
void emulated_warp_meet(const char *file, int line);
#define __syncwarp() emulated_warp_meet(__FILE__, __LINE__)
/* stops the program: `what` at file:line is a misuse a GPU would not report */
void emulated_misuse(const char *file, int line, const char *what) __attribute__((noreturn));
/* Every lane of the warp hands in `size` bytes at `value` and gets those of lane `source` at `result`. */
void emulated_warp_exchange(unsigned mask, const void *value, size_t size, unsigned source, void *result,
                            const char *file, int line);
template <typename T> static inline T emulated_shuffle(unsigned mask, T value, unsigned source, const char *file, int line) {
    static_assert(std::is_arithmetic<T>::value && sizeof(T) <= 8, "the shuffles move 4- and 8-byte numbers");
    T result;
    emulated_warp_exchange(mask, &value, sizeof value, source, &result, file, line);
    return result;
}
/* width is always the whole warp here (the 4-argument forms are not emulated: using one fails the build) */
#define __shfl_sync(mask, value, src_lane) \
    emulated_shuffle(mask, value, (unsigned)(src_lane) & 31u, __FILE__, __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask) \
    emulated_shuffle(mask, value, (emulated_lane() ^ (unsigned)(lane_mask)) & 31u, __FILE__, __LINE__)
#define __shfl_down_sync(mask, value, delta) \
    emulated_shuffle(mask, value, emulated_lane() + (unsigned)(delta) < 32u ? emulated_lane() + (unsigned)(delta) : emulated_lane(), \
                     __FILE__, __LINE__)

/* ---- atomics: the overloads CUDA has for the types used; each returns the old value ---- */
static inline float atomicAdd(float *p, float v) { const float old = *p; *p = old + v; return old; }
static inline double atomicAdd(double *p, double v) { const double old = *p; *p = old + v; return old; }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    const unsigned long long old = *p; *p = old + v; return old;
}
static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    const unsigned long long old = *p; if (v < old) *p = v; return old;
}

/* ---- launches: translate.sh turns `kernel<<<grid, block, shared, stream>>>(args)` into
 * `emulated_launch(kernel, "kernel", grid, block, shared, stream)(args)` ---- */
struct emulated_launch_config {
    const void *kernel;    /* identifies the kernel for cudaFuncSetAttribute */
    const char *name;
    dim3 grid, block;
    size_t dynamic_shared;
    cudaStream_t stream;
};
/* Checks the geometry (false: the launch error is recorded, the kernel does not run), then runs
 * body(context) once per thread of every block. */
void emulated_run(const emulated_launch_config &config, void (*body)(void *), void *context);

template <typename K> struct emulated_launcher {
    K *kernel;
    emulated_launch_config config;
    /* each thread calls the kernel with its own copies of the arguments, as parameters are per thread */
    template <typename... A> void operator()(A &&...args) const {
        auto call = [&] { kernel(args...); };
        emulated_run(config, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
    }
};
template <typename K>
static inline emulated_launcher<K> emulated_launch(K *kernel, const char *name, dim3 grid, dim3 block,
                                                   size_t dynamic_shared = 0, cudaStream_t stream = 0) {
    static_assert(std::is_function<K>::value, "a kernel is a function");
    return emulated_launcher<K>{kernel, {reinterpret_cast<const void *>(kernel), name, grid, block, dynamic_shared, stream}};
}

#endif
