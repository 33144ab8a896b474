/* mma.h -- the part of CUDA's warp matrix functions (nvcuda::wmma) that core/cuda uses, emulated on
 * the CPU (make test-cuda-emulated): 16 x 16 x 16 tiles of bfloat16 with float accumulators; load,
 * store, fill and the multiply-add.
 *
 * On a GPU a fragment's elements are spread over the warp's 32 lanes in a layout the CUDA guide
 * leaves unspecified.  Here every lane holds the whole tile, row-major in x[] (num_elements is the
 * tile's size): an operation applied alike to every element of x[] (scaling an accumulator) means
 * the same either way, and that is all a kernel may do with x[].  The products are computed in
 * float from the exact bfloat16 values, in order over k; a tensor core's sums may round in another
 * order, so the tests compare with tolerances.
 *
 * What a GPU would not say, and this does (it stops the program, naming the line):
 *   - the tile operations are warp-collective: all 32 lanes reach the same call, as with a shuffle;
 *   - a tile's pointer is 256-bit (32-byte) aligned and its row stride ldm a multiple of 16 bytes
 *     (8 bfloat16, 4 floats).
 * And what it makes visible: a load reads the tile before the lanes meet, and a store writes only
 * the lane's share of the tile (elements e with e % 32 == lane) after they meet.  So a tile read
 * right after other lanes wrote it, without __syncwarp or __syncthreads between, reads what was
 * there before, in the emulation as it may on a GPU. */
#ifndef ATTNLAB_EMULATED_MMA_H
#define ATTNLAB_EMULATED_MMA_H

#include "cuda_runtime.h"
#include "cuda_bf16.h"
#include <stdint.h>
#include <type_traits>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

/* a tile's rows and columns for its use in D (m x n) = A (m x k) B (k x n) + C (m x n) */
template <typename Use, int m, int n, int k> struct tile_shape;
template <int m, int n, int k> struct tile_shape<matrix_a, m, n, k> { enum { rows = m, cols = k }; };
template <int m, int n, int k> struct tile_shape<matrix_b, m, n, k> { enum { rows = k, cols = n }; };
template <int m, int n, int k> struct tile_shape<accumulator, m, n, k> { enum { rows = m, cols = n }; };

template <typename Use, int m, int n, int k, typename T, typename Layout = void> struct fragment {
    static_assert(m == 16 && n == 16 && k == 16, "only 16 x 16 x 16 tiles are emulated");
    static_assert(std::is_same<T, __nv_bfloat16>::value || (std::is_same<Use, accumulator>::value && std::is_same<T, float>::value),
                  "bfloat16 operands with float accumulators are emulated");
    enum { rows = tile_shape<Use, m, n, k>::rows, cols = tile_shape<Use, m, n, k>::cols, num_elements = rows * cols };
    T x[num_elements];   /* (r, c) at x[r * cols + c] */
};

static inline float emulated_value(float v) { return v; }
static inline float emulated_value(__nv_bfloat16 v) { return __bfloat162float(v); }

/* the pointer and row stride of a tile: 32-byte aligned, ldm a multiple of 16 bytes */
template <typename T> static inline void emulated_check_tile(const char *file, int line, const T *p, unsigned ldm) {
    if ((uintptr_t)p % 32 != 0) emulated_misuse(file, line, "a tile's pointer that is not 32-byte aligned");
    if (ldm * sizeof(T) % 16 != 0) emulated_misuse(file, line, "a tile's row stride that is not a multiple of 16 bytes");
}

template <typename Use, int m, int n, int k, typename T, typename Layout>
static inline void emulated_load(const char *file, int line, fragment<Use, m, n, k, T, Layout> &f, const T *p, unsigned ldm,
                                 bool row_major_memory) {
    typedef fragment<Use, m, n, k, T, Layout> F;
    emulated_check_tile(file, line, p, ldm);
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++) f.x[r * F::cols + c] = row_major_memory ? p[r * ldm + c] : p[c * ldm + r];
    emulated_warp_meet(file, line);
}

/* A and B: the layout is the fragment's */
template <typename Use, int m, int n, int k, typename T, typename Layout>
static inline void load_matrix_sync_at(const char *file, int line, fragment<Use, m, n, k, T, Layout> &f, const T *p,
                                       unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "an accumulator's load names the memory layout");
    emulated_load(file, line, f, p, ldm, std::is_same<Layout, row_major>::value);
}
/* the accumulator: the layout is the call's */
template <int m, int n, int k>
static inline void load_matrix_sync_at(const char *file, int line, fragment<accumulator, m, n, k, float> &f, const float *p,
                                       unsigned ldm, layout_t layout) {
    emulated_load(file, line, f, p, ldm, layout == mem_row_major);
}

template <int m, int n, int k>
static inline void store_matrix_sync_at(const char *file, int line, float *p, const fragment<accumulator, m, n, k, float> &f,
                                        unsigned ldm, layout_t layout) {
    typedef fragment<accumulator, m, n, k, float> F;
    emulated_check_tile(file, line, p, ldm);
    emulated_warp_meet(file, line);
    for (int e = (int)emulated_lane(); e < F::num_elements; e += 32) {
        const int r = e / F::cols, c = e % F::cols;
        p[layout == mem_row_major ? r * ldm + c : c * ldm + r] = f.x[e];
    }
}

template <typename Use, int m, int n, int k, typename T, typename Layout, typename V>
static inline void fill_fragment(fragment<Use, m, n, k, T, Layout> &f, const V &value) {
    for (int e = 0; e < fragment<Use, m, n, k, T, Layout>::num_elements; e++) f.x[e] = value;
}

/* d = a b + c (d may be c) */
template <int m, int n, int k, typename T, typename LA, typename LB>
static inline void mma_sync_at(const char *file, int line, fragment<accumulator, m, n, k, float> &d,
                               const fragment<matrix_a, m, n, k, T, LA> &a, const fragment<matrix_b, m, n, k, T, LB> &b,
                               const fragment<accumulator, m, n, k, float> &c) {
    emulated_warp_meet(file, line);
    float out[m * n];
    for (int r = 0; r < m; r++)
        for (int col = 0; col < n; col++) {
            float acc = c.x[r * n + col];
            for (int kk = 0; kk < k; kk++) acc += emulated_value(a.x[r * k + kk]) * emulated_value(b.x[kk * n + col]);
            out[r * n + col] = acc;
        }
    for (int e = 0; e < m * n; e++) d.x[e] = out[e];
}

}  // namespace wmma
}  // namespace nvcuda

/* the call site names the collective operation, as with the shuffles */
#define load_matrix_sync(...) load_matrix_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define store_matrix_sync(...) store_matrix_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define mma_sync(...) mma_sync_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
