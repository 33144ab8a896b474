/* attention.cu -- fused softmax attention on the GPU: FlashAttention-2 (Dao 2023, arXiv 2307.08691)
 * in its plainest form, float32, float64 and bfloat16, head dims up to AL_CUDA_ATTENTION_HEAD_MAX.
 * The kernels are templates on the element type T of q, k, v, the output and the gradients, and
 * compute in A = compute_type<T> (float for bfloat16, cuda_internal.h): tiles in shared memory,
 * the running max, sum and accumulators, and the row log-sum-exp L and D are A; only the loads and
 * the final stores convert.
 *
 * Forward, one block per (batch * head, tile of BLOCK_ROWS query rows), each warp owning
 * ROWS_PER_WARP of the rows; the block's Q rows and each tile of TILE_KEYS keys and values sit in
 * shared memory.  Lane l of a warp computes the logit of key j0 + l for the warp's row
 *   s = scale q_i . k_j (+ bias), -inf where the key is out of range, above the causal diagonal or masked
 * and the row's running maximum m and sum l take the tile (online softmax):
 *   m' = max(m, max_j s);  p = exp(s - m');  l = exp(m - m') l + sum_j p;  acc = exp(m - m') acc + p V
 * with acc's columns spread over the lanes (column c on lane c % 32), p_j handed from lane to lane by
 * shuffles.  At the end O = acc / l and L = m + log l, the row's log-sum-exp for the backward; a row
 * that sees no key gets O = 0 and L = +inf, as the CPU kernels give (dense.c, tiled.c).  Causal
 * attention stops at the last key the block's last row sees, so the tiles above the diagonal are
 * never loaded.
 *
 * Backward (the recompute scheme of tiled.c), with D_i = dO_i . O_i and P = exp(S - L) recomputed:
 *   dq kernel, per query tile, over the key tiles:  dS = P (dO V^T - D);  dQ = scale dS K;  dBias = dS
 *   dk/dv kernel, per key tile (lanes over 32 queries), over the query heads of its kv head and the
 *   query tiles:  dV = P^T dO;  dK = scale dS^T Q
 * Each block owns the rows it writes, so no atomics, and every gradient element is written once.
 *
 * Speed is not the point yet: no tensor cores, one logit per lane.  The point is a kernel whose
 * every step can be read against the formulas above and checked against the CPU (make test-cuda). */
#include "attention_problem.cuh"
#include <math.h>

enum {
    WARPS = 4,
    ROWS_PER_WARP = 4,
    BLOCK_ROWS = WARPS * ROWS_PER_WARP,   /* query rows of a forward / dq block, key rows of a dk/dv block */
    THREADS = WARPS * WARP,
    TILE_KEYS = WARP,                     /* keys (forward, dq) or queries (dk/dv) a lane each */
    COLS_PER_LANE = AL_CUDA_ATTENTION_HEAD_MAX / WARP,
};

static __device__ inline float log_of(float x) { return logf(x); }
static __device__ inline double log_of(double x) { return log(x); }
template <typename T> static __device__ inline T infinity_of() { return (T)INFINITY; }

/* ---- forward ---------------------------------------------------------------------------------- */

template <typename T, typename A>
static __global__ void __launch_bounds__(THREADS) forward_kernel(problem<T> p, int64_t tiles, T *out, A *lse) {
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    const int64_t d = p.d, dv = p.dv;
    A *Qs = (A *)shared_bytes;                   /* BLOCK_ROWS x d */
    A *Ks = Qs + BLOCK_ROWS * d;                 /* TILE_KEYS x (d + 1): lane l reads row l */
    A *Vs = Ks + TILE_KEYS * (d + 1);            /* TILE_KEYS x dv: lane l reads column l */
    const int64_t bh = blockIdx.x / tiles, i0 = blockIdx.x % tiles * BLOCK_ROWS;
    const int64_t b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hkv);
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;

    stage_rows(Qs, d, p.q, p.qs, b, h, i0, BLOCK_ROWS, p.N, d);
    A m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][COLS_PER_LANE];
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        m[rr] = -infinity_of<A>();
        l[rr] = 0;
        for (int t = 0; t < COLS_PER_LANE; t++) acc[rr][t] = 0;
    }
    const int64_t end = key_end(p, i0, BLOCK_ROWS);
    for (int64_t j0 = key_start(p, i0); j0 < end; j0 += TILE_KEYS) {
        __syncthreads();   /* every warp is done with the previous tile */
        stage_rows(Ks, d + 1, p.k, p.ks, b, hk, j0, TILE_KEYS, p.M, d);
        stage_rows(Vs, dv, p.v, p.vs, b, hk, j0, TILE_KEYS, p.M, dv);
        __syncthreads();
        for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
            const int r = warp * ROWS_PER_WARP + rr;
            const int64_t i = i0 + r, j = j0 + lane;
            if (i >= p.N) continue;   /* the whole warp: its shuffles stay complete */
            A s = -infinity_of<A>();
            if (visible(p, b, h, i, j)) {
                A dot = 0;
                for (int64_t c = 0; c < d; c++) dot += Qs[r * d + c] * Ks[lane * (d + 1) + c];
                s = logit(p, b, h, i, j, dot);
            }
            /* no branch on the values below: a NaN could make lanes disagree, and the shuffles need all */
            const A mx = warp_max(s);
            const A mnew = mx > m[rr] ? mx : m[rr];
            const A pj = mnew == -infinity_of<A>() ? (A)0 : exp_of(s - mnew);
            const A alpha = m[rr] == -infinity_of<A>() ? (A)0 : exp_of(m[rr] - mnew);
            l[rr] = l[rr] * alpha + warp_sum(pj);
            for (int t = 0; t < COLS_PER_LANE; t++) acc[rr][t] *= alpha;
            for (int jj = 0; jj < TILE_KEYS; jj++) {
                const A w = __shfl_sync(FULL_WARP, pj, jj);
                for (int t = 0; t < COLS_PER_LANE; t++) {
                    const int64_t c = lane + t * WARP;
                    if (c < dv) acc[rr][t] += w * Vs[jj * dv + c];
                }
            }
            m[rr] = mnew;
        }
    }
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        const int64_t i = i0 + warp * ROWS_PER_WARP + rr;
        if (i >= p.N) continue;
        const A inv = l[rr] > 0 ? (A)1 / l[rr] : (A)0;
        for (int t = 0; t < COLS_PER_LANE; t++) {
            const int64_t c = lane + t * WARP;
            if (c < dv) out[(bh * p.N + i) * dv + c] = convert<T>::from(acc[rr][t] * inv);
        }
        if (lane == 0) lse[bh * p.N + i] = l[rr] > 0 ? m[rr] + log_of(l[rr]) : infinity_of<A>();
    }
}

/* ---- the map ----------------------------------------------------------------------------------- */

/* P = exp(S - L) on visible entries, 0 elsewhere: one thread per entry, straight from global memory
 * (the map is for looking at, a few heads at a time; this is not the hot path). */
template <typename T, typename A>
static __global__ void weights_kernel(problem<T> p, const A *lse, T *P, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = e % p.M, i = e / p.M % p.N, bh = e / (p.M * p.N);
        const int64_t b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hkv);
        A value = 0;
        if (visible(p, b, h, i, j)) {
            const T *q = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
            const T *k = p.k + b * p.ks[0] + hk * p.ks[1] + j * p.ks[2];
            A dot = 0;
            for (int64_t c = 0; c < p.d; c++) dot += convert<A>::from(q[c * p.qs[3]]) * convert<A>::from(k[c * p.ks[3]]);
            value = exp_of(logit(p, b, h, i, j, dot) - lse[bh * p.N + i]);
        }
        P[e] = convert<T>::from(value);
    }
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* D_i = dO_i . O_i, one thread per row (O and dO contiguous (B, H, N, dv)) */
template <typename T, typename A>
static __global__ void row_dot_kernel(const T *O, const T *dO, A *D, int64_t rows, int64_t dv) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        A acc = 0;
        for (int64_t c = 0; c < dv; c++) acc += convert<A>::from(O[r * dv + c]) * convert<A>::from(dO[r * dv + c]);
        D[r] = acc;
    }
}

/* dQ (B, H, N, d) and dBias (B, H, N, M, zero-filled beforehand: only visible entries are written),
 * either may be NULL; one block per (batch * head, query tile), as the forward. */
template <typename T, typename A>
static __global__ void __launch_bounds__(THREADS) dq_kernel(problem<T> p, int64_t tiles, const A *lse, const A *D,
                                                            const T *dO, T *dQ, T *dBias) {
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    const int64_t d = p.d, dv = p.dv;
    A *Qs = (A *)shared_bytes;                   /* BLOCK_ROWS x d */
    A *dOs = Qs + BLOCK_ROWS * d;                /* BLOCK_ROWS x dv */
    A *Ks = dOs + BLOCK_ROWS * dv;               /* TILE_KEYS x (d + 1) */
    A *Vs = Ks + TILE_KEYS * (d + 1);            /* TILE_KEYS x (dv + 1): lane l reads row l */
    const int64_t bh = blockIdx.x / tiles, i0 = blockIdx.x % tiles * BLOCK_ROWS;
    const int64_t b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hkv);
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const int64_t os[4] = {p.H * p.N * dv, p.N * dv, dv, 1};   /* dO's strides */

    stage_rows(Qs, d, p.q, p.qs, b, h, i0, BLOCK_ROWS, p.N, d);
    stage_rows(dOs, dv, dO, os, b, h, i0, BLOCK_ROWS, p.N, dv);
    A acc[ROWS_PER_WARP][COLS_PER_LANE];
    for (int rr = 0; rr < ROWS_PER_WARP; rr++)
        for (int t = 0; t < COLS_PER_LANE; t++) acc[rr][t] = 0;
    const int64_t end = key_end(p, i0, BLOCK_ROWS);
    for (int64_t j0 = key_start(p, i0); j0 < end; j0 += TILE_KEYS) {
        __syncthreads();
        stage_rows(Ks, d + 1, p.k, p.ks, b, hk, j0, TILE_KEYS, p.M, d);
        stage_rows(Vs, dv + 1, p.v, p.vs, b, hk, j0, TILE_KEYS, p.M, dv);
        __syncthreads();
        for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
            const int r = warp * ROWS_PER_WARP + rr;
            const int64_t i = i0 + r, j = j0 + lane;
            if (i >= p.N) continue;   /* the whole warp */
            A ds = 0;
            if (visible(p, b, h, i, j)) {
                A dot = 0, dp = 0;
                for (int64_t c = 0; c < d; c++) dot += Qs[r * d + c] * Ks[lane * (d + 1) + c];
                for (int64_t c = 0; c < dv; c++) dp += dOs[r * dv + c] * Vs[lane * (dv + 1) + c];
                const A pij = exp_of(logit(p, b, h, i, j, dot) - lse[bh * p.N + i]);
                ds = pij * (dp - D[bh * p.N + i]);
                if (dBias) dBias[(bh * p.N + i) * p.M + j] = convert<T>::from(ds);
            }
            for (int jj = 0; jj < TILE_KEYS; jj++) {
                const A w = __shfl_sync(FULL_WARP, ds, jj);
                for (int t = 0; t < COLS_PER_LANE; t++) {
                    const int64_t c = lane + t * WARP;
                    if (c < d) acc[rr][t] += w * Ks[jj * (d + 1) + c];
                }
            }
        }
    }
    if (!dQ) return;
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        const int64_t i = i0 + warp * ROWS_PER_WARP + rr;
        if (i >= p.N) continue;
        for (int t = 0; t < COLS_PER_LANE; t++) {
            const int64_t c = lane + t * WARP;
            if (c < d) dQ[(bh * p.N + i) * d + c] = convert<T>::from(p.scale * acc[rr][t]);
        }
    }
}

/* dK (B, Hkv, M, d) and dV (B, Hkv, M, dv), either may be NULL; one block per (batch * kv head, tile of
 * BLOCK_ROWS keys), each warp owning ROWS_PER_WARP keys; lane l takes query i0 + l of each query tile,
 * over every query head that reads this kv head. */
template <typename T, typename A>
static __global__ void __launch_bounds__(THREADS) dkv_kernel(problem<T> p, int64_t tiles, const A *lse, const A *D,
                                                             const T *dO, T *dK, T *dV) {
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    const int64_t d = p.d, dv = p.dv;
    A *Ks = (A *)shared_bytes;                   /* BLOCK_ROWS x d: the block's keys */
    A *Vs = Ks + BLOCK_ROWS * d;                 /* BLOCK_ROWS x dv */
    A *Qs = Vs + BLOCK_ROWS * dv;                /* TILE_KEYS x (d + 1): lane l reads row l */
    A *dOs = Qs + TILE_KEYS * (d + 1);           /* TILE_KEYS x (dv + 1) */
    A *Ls = dOs + TILE_KEYS * (dv + 1);          /* TILE_KEYS: the query rows' L */
    A *Ds = Ls + TILE_KEYS;                      /* TILE_KEYS: and D */
    const int64_t bhk = blockIdx.x / tiles, j0 = blockIdx.x % tiles * BLOCK_ROWS;
    const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv, group = p.H / p.Hkv;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const int64_t os[4] = {p.H * p.N * dv, p.N * dv, dv, 1};

    stage_rows(Ks, d, p.k, p.ks, b, hk, j0, BLOCK_ROWS, p.M, d);
    stage_rows(Vs, dv, p.v, p.vs, b, hk, j0, BLOCK_ROWS, p.M, dv);
    A gk[ROWS_PER_WARP][COLS_PER_LANE], gv[ROWS_PER_WARP][COLS_PER_LANE];
    for (int rr = 0; rr < ROWS_PER_WARP; rr++)
        for (int t = 0; t < COLS_PER_LANE; t++) gk[rr][t] = gv[rr][t] = 0;
    const int64_t first = query_start(p, j0) / TILE_KEYS * TILE_KEYS, last = query_end(p, j0, BLOCK_ROWS);
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        const int64_t bh = b * p.H + h;
        for (int64_t i0 = first; i0 < last; i0 += TILE_KEYS) {
            __syncthreads();
            stage_rows(Qs, d + 1, p.q, p.qs, b, h, i0, TILE_KEYS, p.N, d);
            stage_rows(dOs, dv + 1, dO, os, b, h, i0, TILE_KEYS, p.N, dv);
            if ((int)threadIdx.x < TILE_KEYS) {
                const int64_t i = i0 + threadIdx.x;
                Ls[threadIdx.x] = i < p.N ? lse[bh * p.N + i] : infinity_of<A>();
                Ds[threadIdx.x] = i < p.N ? D[bh * p.N + i] : (A)0;
            }
            __syncthreads();
            for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
                const int r = warp * ROWS_PER_WARP + rr;
                const int64_t j = j0 + r, i = i0 + lane;
                if (j >= p.M) continue;   /* the whole warp */
                A pij = 0, ds = 0;
                if (visible(p, b, h, i, j)) {
                    A dot = 0, dp = 0;
                    for (int64_t c = 0; c < d; c++) dot += Qs[lane * (d + 1) + c] * Ks[r * d + c];
                    for (int64_t c = 0; c < dv; c++) dp += dOs[lane * (dv + 1) + c] * Vs[r * dv + c];
                    pij = exp_of(logit(p, b, h, i, j, dot) - Ls[lane]);
                    ds = pij * (dp - Ds[lane]);
                }
                for (int ii = 0; ii < TILE_KEYS; ii++) {
                    const A wp = __shfl_sync(FULL_WARP, pij, ii), ws = __shfl_sync(FULL_WARP, ds, ii);
                    for (int t = 0; t < COLS_PER_LANE; t++) {
                        const int64_t c = lane + t * WARP;
                        if (c < dv) gv[rr][t] += wp * dOs[ii * (dv + 1) + c];
                        if (c < d) gk[rr][t] += ws * Qs[ii * (d + 1) + c];
                    }
                }
            }
        }
    }
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        const int64_t j = j0 + warp * ROWS_PER_WARP + rr;
        if (j >= p.M) continue;
        for (int t = 0; t < COLS_PER_LANE; t++) {
            const int64_t c = lane + t * WARP;
            if (dK && c < d) dK[(bhk * p.M + j) * d + c] = convert<T>::from(p.scale * gk[rr][t]);
            if (dV && c < dv) dV[(bhk * p.M + j) * dv + c] = convert<T>::from(gv[rr][t]);
        }
    }
}

/* ---- launches ---------------------------------------------------------------------------------- */

/* Blocks of one launch for units of work (rows of a tile each); false with an error past the grid's limit. */
static bool grid_of(const char *fn, int64_t units, unsigned *blocks) {
    if (units > 0x7fffffff) {
        al_error("%s: %lld tiles are more than one CUDA grid holds", fn, (long long)units);
        return false;
    }
    *blocks = (unsigned)units;
    return true;
}

/* A kernel's dynamic shared memory: beyond 48 KiB it must be asked for (float64 tiles of 128-wide
 * heads need about 100 KiB; an H100 block may have 227 KiB). */
template <typename K> static bool allow_shared(const char *fn, K kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return true;
    return al_cuda_ok(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* Which kernel the last forward or backward ran ("tiled" or "tensor cores"), for the tests. */
static const char *kernel_used = "none";
extern "C" const char *al_cuda_attention_kernel_used(void) { return kernel_used; }

/* The tensor-core kernels take the bfloat16 problems of their shape (attention_mma.cu): 1 when they
 * ran, 0 when the problem is not theirs (the kernels of this file run it), -1 on an error. */
template <typename T, typename A> static int forward_on_tensor_cores(const problem<T> &, T *, A *) { return 0; }
static int forward_on_tensor_cores(const problem<__nv_bfloat16> &p, __nv_bfloat16 *out, float *lse) {
    if (!attention_mma_applies(p)) return 0;
    kernel_used = "tensor cores";
    return attention_mma_forward(p, out, lse) < 0 ? -1 : 1;
}
template <typename T, typename A>
static int backward_on_tensor_cores(const problem<T> &, const A *, const A *, const T *, T *, T *, T *, T *) { return 0; }
static int backward_on_tensor_cores(const problem<__nv_bfloat16> &p, const float *L, const float *D, const __nv_bfloat16 *dO,
                                    __nv_bfloat16 *dQ, __nv_bfloat16 *dK, __nv_bfloat16 *dV, __nv_bfloat16 *dBias) {
    if (dBias || !attention_mma_applies(p)) return 0;
    kernel_used = "tensor cores";
    return attention_mma_backward(p, L, D, dO, dQ, dK, dV) < 0 ? -1 : 1;
}

template <typename T> static int forward_typed(const al_cuda_attention_args *a, al_tensor *out, al_tensor *lse) {
    typedef typename compute_type<T>::type A;
    const problem<T> p = problem_of<T>(a);
    const int on_tensor_cores = forward_on_tensor_cores(p, (T *)al_ptr(out), (A *)al_ptr(lse));
    if (on_tensor_cores != 0) return on_tensor_cores < 0 ? -1 : 0;
    kernel_used = "tiled";
    const int64_t tiles = (p.N + BLOCK_ROWS - 1) / BLOCK_ROWS;
    unsigned blocks;
    if (p.B * p.H * tiles == 0) return 0;
    if (!grid_of("attention", p.B * p.H * tiles, &blocks)) return -1;
    const size_t bytes = sizeof(A) * (size_t)(BLOCK_ROWS * p.d + TILE_KEYS * (p.d + 1) + TILE_KEYS * p.dv);
    if (!allow_shared("attention", forward_kernel<T, A>, bytes)) return -1;
    forward_kernel<T, A><<<blocks, THREADS, bytes, al_cuda_stream()>>>(p, tiles, (T *)al_ptr(out), (A *)al_ptr(lse));
    return al_cuda_ok("attention", cudaGetLastError()) ? 0 : -1;
}

/* q's dtype, which k, v, the output and the gradients share (attention.c checks), as one of the
 * element types above; false with an error for any other */
static bool element_type_known(al_dtype dtype) {
    if (dtype == AL_FLOAT32 || dtype == AL_FLOAT64 || dtype == AL_BFLOAT16) return true;
    al_error("attention: no CUDA kernel for %s tensors", al_dtype_name(dtype));
    return false;
}

extern "C" int al_cuda_attention_forward(const al_cuda_attention_args *a, al_tensor *out, al_tensor *lse) {
    if (!element_type_known(a->q->dtype)) return -1;
    return a->q->dtype == AL_FLOAT32   ? forward_typed<float>(a, out, lse)
           : a->q->dtype == AL_FLOAT64 ? forward_typed<double>(a, out, lse)
                                       : forward_typed<__nv_bfloat16>(a, out, lse);
}

template <typename T> static int weights_typed(const al_cuda_attention_args *a, const al_tensor *lse, al_tensor *P) {
    typedef typename compute_type<T>::type A;
    const problem<T> p = problem_of<T>(a);
    const int64_t n = al_numel(P);
    if (n == 0) return 0;
    const int threads = 256;
    weights_kernel<T, A><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(p, (const A *)al_ptr(lse),
                                                                                      (T *)al_ptr(P), n);
    return al_cuda_ok("attention", cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_attention_weights(const al_cuda_attention_args *a, const al_tensor *lse, al_tensor *weights) {
    if (!element_type_known(a->q->dtype)) return -1;
    return a->q->dtype == AL_FLOAT32   ? weights_typed<float>(a, lse, weights)
           : a->q->dtype == AL_FLOAT64 ? weights_typed<double>(a, lse, weights)
                                       : weights_typed<__nv_bfloat16>(a, lse, weights);
}

template <typename T>
static int backward_typed(const al_cuda_attention_args *a, const al_tensor *out, const al_tensor *lse,
                          const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv, al_tensor *dbias) {
    typedef typename compute_type<T>::type A;
    const char *fn = "attention: backward";
    const problem<T> p = problem_of<T>(a);
    cudaStream_t stream = al_cuda_stream();
    if (dbias && al_cuda_fill(dbias, 0) < 0) return -1;
    const int64_t rows = p.B * p.H * p.N;
    if (rows == 0 || p.M == 0) {   /* no logits: the gradients of q, k, v are zeros */
        if (dq && al_cuda_fill(dq, 0) < 0) return -1;
        if (dk && al_cuda_fill(dk, 0) < 0) return -1;
        if (dv && al_cuda_fill(dv, 0) < 0) return -1;
        return 0;
    }
    const int64_t rs[1] = {rows};
    al_tensor *D = al_new_tensor_on(1, rs, lse->dtype, AL_CUDA);   /* in the compute type, as L */
    if (!D) return -1;
    const A *L = (const A *)al_ptr(lse);
    const T *dO = (const T *)al_ptr(dout);
    bool ok = true;
    row_dot_kernel<T, A><<<al_cuda_blocks(rows, 256), 256, 0, stream>>>((const T *)al_ptr(out), dO, (A *)al_ptr(D),
                                                                           rows, p.dv);
    ok = al_cuda_ok(fn, cudaGetLastError());
    const int on_tensor_cores = ok ? backward_on_tensor_cores(p, L, (const A *)al_ptr(D), dO, dq ? (T *)al_ptr(dq) : NULL,
                                                              dk ? (T *)al_ptr(dk) : NULL, dv ? (T *)al_ptr(dv) : NULL,
                                                              dbias ? (T *)al_ptr(dbias) : NULL)
                                    : 0;
    if (on_tensor_cores != 0) {
        al_release(D);
        return on_tensor_cores < 0 ? -1 : 0;
    }
    kernel_used = "tiled";
    if (ok && (dq || dbias)) {
        const int64_t tiles = (p.N + BLOCK_ROWS - 1) / BLOCK_ROWS;
        const size_t bytes = sizeof(A) * (size_t)(BLOCK_ROWS * (p.d + p.dv) + TILE_KEYS * (p.d + 1 + p.dv + 1));
        unsigned blocks;
        ok = grid_of(fn, p.B * p.H * tiles, &blocks) && allow_shared(fn, dq_kernel<T, A>, bytes);
        if (ok) {
            dq_kernel<T, A><<<blocks, THREADS, bytes, stream>>>(p, tiles, L, (const A *)al_ptr(D), dO,
                                                                dq ? (T *)al_ptr(dq) : NULL, dbias ? (T *)al_ptr(dbias) : NULL);
            ok = al_cuda_ok(fn, cudaGetLastError());
        }
    }
    if (ok && (dk || dv)) {
        const int64_t tiles = (p.M + BLOCK_ROWS - 1) / BLOCK_ROWS;
        const size_t bytes =
            sizeof(A) * (size_t)(BLOCK_ROWS * (p.d + p.dv) + TILE_KEYS * (p.d + 1 + p.dv + 1) + 2 * TILE_KEYS);
        unsigned blocks;
        ok = grid_of(fn, p.B * p.Hkv * tiles, &blocks) && allow_shared(fn, dkv_kernel<T, A>, bytes);
        if (ok) {
            dkv_kernel<T, A><<<blocks, THREADS, bytes, stream>>>(p, tiles, L, (const A *)al_ptr(D), dO,
                                                                 dk ? (T *)al_ptr(dk) : NULL, dv ? (T *)al_ptr(dv) : NULL);
            ok = al_cuda_ok(fn, cudaGetLastError());
        }
    }
    al_release(D);   /* the stream orders the kernels before any later use of its memory */
    return ok ? 0 : -1;
}

extern "C" int al_cuda_attention_backward(const al_cuda_attention_args *a, const al_tensor *out, const al_tensor *lse,
                                          const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv,
                                          al_tensor *dbias) {
    if (!element_type_known(a->q->dtype)) return -1;
    return a->q->dtype == AL_FLOAT32   ? backward_typed<float>(a, out, lse, dout, dq, dk, dv, dbias)
           : a->q->dtype == AL_FLOAT64 ? backward_typed<double>(a, out, lse, dout, dq, dk, dv, dbias)
                                       : backward_typed<__nv_bfloat16>(a, out, lse, dout, dq, dk, dv, dbias);
}
