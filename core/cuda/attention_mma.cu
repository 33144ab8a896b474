/* attention_mma.cu -- fused softmax attention on the tensor cores, for bfloat16: the FlashAttention-2
 * scheme of attention.cu (the same tiles' roles, the same formulas, the same row log-sum-exp L and
 * D = rowsum(dO o O)), with every product (Q K^T, P V; dO V^T, dS K; K Q^T, V dO^T, P^T dO, dS^T Q)
 * done by warp-wide 16 x 16 x 16 bfloat16 products with float accumulation (nvcuda::wmma), where
 * attention.cu computes one logit per lane.
 *
 * What it takes (attention_mma_applies): bfloat16 q, k, v with d = dv of 16, 32, 64 or 128, no bias,
 * no mask, no window and no row ranges; causal top-left or bottom-right, grouped kv heads, any
 * strides and N, M that are not multiples of the tiles are fine.  attention.cu runs everything else.
 *
 * A block is MMA_WARPS warps of 16 rows each: TILE = 64 query rows (forward, dq) or key rows (dk/dv),
 * and each step of its loop takes a tile of TILE keys (or queries).  The operands sit in shared
 * memory as bfloat16, in rows of d + 8 elements (a row stride that is a multiple of 16 bytes, as the
 * products need, and that spreads the rows over the banks).
 *
 * Where a fragment's elements lie among the lanes is not specified, so every step that works on rows
 * goes through shared memory: a warp stores its 16 x 64 tile of logits as float, two lanes per row
 * (32 columns each) compute on it (the online softmax's max and sum, P = exp(S - L), dS = P (dP - D))
 * and write P or dS as bfloat16, and the next product loads that.  The forward's output rows are
 * rescaled at each key tile, so they stay in shared memory too (float); the backward's accumulators
 * (dQ; dK and dV) are only ever added to, so they stay in fragments for the whole loop.  P and dS
 * are rounded to bfloat16 before their products, as FlashAttention's kernels do. */
#include "attention_problem.cuh"
#include <math.h>
#include <mma.h>

using namespace nvcuda;

enum {
    WIDE_Q = 1, WIDE_K = 2, WIDE_V = 4,   /* which operands' rows the kernels copy 16 bytes at a time */
    MMA_WARPS = 4,
    MMA_THREADS = MMA_WARPS * WARP,
    FRAG = 16,                   /* a product's tile side */
    TILE = MMA_WARPS * FRAG,     /* a block's rows; the keys (or queries) of a step */
    HALF = TILE / 2,             /* the columns of a warp's tile one lane works on */
    PAD_BF16 = 8,                /* row padding of the bfloat16 tiles: 16 bytes */
    PAD_FLOAT = 4,               /* and of the float tiles */
    LD_LOGITS = TILE + PAD_FLOAT,   /* a warp's 16 x TILE float tile (S, dP, their transposes) */
    LD_WEIGHTS = TILE + PAD_BF16,   /* a warp's 16 x TILE bfloat16 tile (P, dS) */
};
typedef __nv_bfloat16 bf16;
typedef wmma::fragment<wmma::matrix_a, FRAG, FRAG, FRAG, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, FRAG, FRAG, FRAG, bf16, wmma::row_major> frag_b;      /* B as stored */
typedef wmma::fragment<wmma::matrix_b, FRAG, FRAG, FRAG, bf16, wmma::col_major> frag_b_t;    /* B = the rows stored, transposed */
typedef wmma::fragment<wmma::accumulator, FRAG, FRAG, FRAG, float> frag_acc;

/* The sizes of the shared tiles for head size D: bfloat16 rows of D + 8, float rows of D + 4. */
template <int D> struct tiles {
    static const int ld = D + PAD_BF16;
    static const int ld_out = D + PAD_FLOAT;
};

/* C (16 x TILE, float, row stride LD_LOGITS) = A B^T: A the warp's 16 rows of D (row stride lda), B the
 * TILE rows of D at b (row stride ldb), both bfloat16 in shared memory. */
template <int D>
static __device__ void product_abt(float *c, const bf16 *a, int lda, const bf16 *b, int ldb) {
    frag_a fa[D / FRAG];
#pragma unroll
    for (int kk = 0; kk < D / FRAG; kk++) wmma::load_matrix_sync(fa[kk], a + kk * FRAG, lda);
#pragma unroll
    for (int n = 0; n < TILE / FRAG; n++) {
        frag_acc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / FRAG; kk++) {
            frag_b_t fb;
            wmma::load_matrix_sync(fb, b + n * FRAG * ldb + kk * FRAG, ldb);
            wmma::mma_sync(acc, fa[kk], fb, acc);
        }
        wmma::store_matrix_sync(c + n * FRAG, acc, LD_LOGITS, wmma::mem_row_major);
    }
}

/* acc (16 x D, D / 16 fragments) += A B: A the warp's 16 x TILE bfloat16 weights (row stride
 * LD_WEIGHTS), B TILE rows of D (row stride ldb), both in shared memory. */
template <int D>
static __device__ void accumulate_ab(frag_acc (&acc)[D / FRAG], const bf16 *a, const bf16 *b, int ldb) {
#pragma unroll
    for (int kk = 0; kk < TILE / FRAG; kk++) {
        frag_a fa;
        wmma::load_matrix_sync(fa, a + kk * FRAG, LD_WEIGHTS);
#pragma unroll
        for (int n = 0; n < D / FRAG; n++) {
            frag_b fb;
            wmma::load_matrix_sync(fb, b + kk * FRAG * ldb + n * FRAG, ldb);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
}

/* Rows [r0, r0 + TILE) of a (b, h) slice into shared memory as bfloat16 (zeros past `limit`), every
 * thread of the block taking part: 16 bytes at a time when `wide` (rows of unit stride, each starting
 * on 16 bytes: wide_rows below), else element by element through the strides. */
template <int D>
static __device__ void stage(bf16 *dst, const bf16 *src, const int64_t *s, int64_t b, int64_t h, int64_t r0, int64_t limit,
                             bool wide) {
    if (!wide) {
        stage_rows(dst, tiles<D>::ld, src, s, b, h, r0, TILE, limit, D);
        return;
    }
    const int chunks = D / 8;   /* of 8 bfloat16 */
    const bf16 *base = src + b * s[0] + h * s[1];
    for (int e = threadIdx.x; e < TILE * chunks; e += blockDim.x) {
        const int r = e / chunks, c = e % chunks * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < limit) v = *(const uint4 *)(base + (r0 + r) * s[2] + c);
        *(uint4 *)(dst + r * tiles<D>::ld + c) = v;
    }
}

/* The warp's 16 x D float rows (row stride ld_out, in shared memory) to rows of a contiguous (.., rows, D)
 * tensor from row `first` (those at or past `limit` are not written), times `factor`; two lanes a row. */
template <int D>
static __device__ void write_rows(bf16 *dst, const float *rows, int64_t first, int64_t limit, float factor) {
    const int lane = threadIdx.x % WARP, r = lane / 2, c0 = lane % 2 * (D / 2);
    if (first + r >= limit) return;
    for (int c = c0; c < c0 + D / 2; c++) dst[(first + r) * D + c] = __float2bfloat16(rows[r * tiles<D>::ld_out + c] * factor);
}

/* ---- forward ---------------------------------------------------------------------------------- */

/* One block per (batch * head, tile of TILE queries); out (B, H, N, D) and lse (B, H, N) as attention.cu's. */
template <int D>
static __global__ void __launch_bounds__(MMA_THREADS) mma_forward_kernel(problem<bf16> p, int64_t query_tiles, int wide,
                                                                         bf16 *out, float *lse) {
    extern __shared__ __align__(128) unsigned char shared_bytes[];
    const int ld = tiles<D>::ld, ld_out = tiles<D>::ld_out;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    bf16 *Qs = (bf16 *)shared_bytes, *Ks = Qs + TILE * ld, *Vs = Ks + TILE * ld;
    float *S = (float *)(Vs + TILE * ld) + warp * FRAG * (LD_LOGITS + ld_out);   /* the warp's logits */
    float *O = S + FRAG * LD_LOGITS;                                               /* and its output rows */
    bf16 *P = (bf16 *)((float *)(Vs + TILE * ld) + MMA_WARPS * FRAG * (LD_LOGITS + ld_out)) + warp * FRAG * LD_WEIGHTS;
    const int64_t bh = blockIdx.x / query_tiles, i0 = blockIdx.x % query_tiles * TILE;
    const int64_t b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hkv);
    const int r0 = warp * FRAG, row = lane / 2, c0 = lane % 2 * HALF;   /* the lane's row of the warp's 16, its columns */
    const int64_t i = i0 + r0 + row;

    stage<D>(Qs, p.q, p.qs, b, h, i0, p.N, wide & WIDE_Q);
    for (int e = lane; e < FRAG * ld_out; e += WARP) O[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;   /* the row's running maximum and sum (the same in both lanes of a row) */
    const bool has_rows = i0 + r0 < p.N;
    const int64_t end = key_end(p, i0, TILE), warp_end = has_rows ? key_end(p, i0 + r0, FRAG) : 0;
    for (int64_t j0 = key_start(p, i0); j0 < end; j0 += TILE) {
        __syncthreads();   /* every warp is done with the previous tile (and O's zeros are written) */
        stage<D>(Ks, p.k, p.ks, b, hk, j0, p.M, wide & WIDE_K);
        stage<D>(Vs, p.v, p.vs, b, hk, j0, p.M, wide & WIDE_V);
        __syncthreads();
        if (!has_rows || j0 >= warp_end) continue;   /* the whole warp: no row of it sees these keys */
        product_abt<D>(S, Qs + r0 * ld, ld, Ks, ld);
        __syncwarp();
        float s[HALF], mx = -INFINITY;
        for (int t = 0; t < HALF; t++) {
            s[t] = visible(p, b, h, i, j0 + c0 + t) ? p.scale * S[row * LD_LOGITS + c0 + t] : -INFINITY;
            mx = fmaxf(mx, s[t]);
        }
        const float mnew = fmaxf(m, fmaxf(mx, __shfl_xor_sync(FULL_WARP, mx, 1)));
        float sum = 0.0f;
        for (int t = 0; t < HALF; t++) {
            const float pj = mnew == -INFINITY ? 0.0f : expf(s[t] - mnew);
            P[row * LD_WEIGHTS + c0 + t] = __float2bfloat16(pj);
            sum += pj;
        }
        sum += __shfl_xor_sync(FULL_WARP, sum, 1);
        const float alpha = m == -INFINITY ? 0.0f : expf(m - mnew);
        l = l * alpha + sum;
        m = mnew;
        for (int c = lane % 2 * (D / 2); c < (lane % 2 + 1) * (D / 2); c++) O[row * ld_out + c] *= alpha;
        __syncwarp();
        frag_acc acc[D / FRAG];
#pragma unroll
        for (int n = 0; n < D / FRAG; n++) wmma::load_matrix_sync(acc[n], O + n * FRAG, ld_out, wmma::mem_row_major);
        accumulate_ab<D>(acc, P, Vs, ld);
#pragma unroll
        for (int n = 0; n < D / FRAG; n++) wmma::store_matrix_sync(O + n * FRAG, acc[n], ld_out, wmma::mem_row_major);
        __syncwarp();
    }
    /* O = acc / l and L = m + log l; a row that sees no key gets O = 0 and L = +inf (attention.cu) */
    __syncwarp();   /* O's zeros are the other lanes' writes when no tile ran */
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    write_rows<D>(out + bh * p.N * D, O, i0 + r0, p.N, inv);
    if (lane % 2 == 0 && i < p.N) lse[bh * p.N + i] = l > 0 ? m + logf(l) : INFINITY;
}

/* ---- backward: dQ ----------------------------------------------------------------------------- */

/* One block per (batch * head, tile of TILE queries), as the forward:  dS = P (dO V^T - D);  dQ = scale dS K. */
template <int D>
static __global__ void __launch_bounds__(MMA_THREADS) mma_dq_kernel(problem<bf16> p, int64_t query_tiles, int wide,
                                                                    const float *lse, const float *Drow, const bf16 *dO, bf16 *dQ) {
    extern __shared__ __align__(128) unsigned char shared_bytes[];
    const int ld = tiles<D>::ld;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    bf16 *Qs = (bf16 *)shared_bytes, *dOs = Qs + TILE * ld, *Ks = dOs + TILE * ld, *Vs = Ks + TILE * ld;
    float *S = (float *)(Vs + TILE * ld) + warp * 2 * FRAG * LD_LOGITS, *dP = S + FRAG * LD_LOGITS;
    bf16 *dS = (bf16 *)((float *)(Vs + TILE * ld) + MMA_WARPS * 2 * FRAG * LD_LOGITS) + warp * FRAG * LD_WEIGHTS;
    const int64_t bh = blockIdx.x / query_tiles, i0 = blockIdx.x % query_tiles * TILE;
    const int64_t b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hkv);
    const int r0 = warp * FRAG, row = lane / 2, c0 = lane % 2 * HALF;
    const int64_t i = i0 + r0 + row;
    const int64_t os[4] = {p.H * p.N * D, p.N * D, D, 1};   /* dO's strides */

    stage<D>(Qs, p.q, p.qs, b, h, i0, p.N, wide & WIDE_Q);
    stage<D>(dOs, dO, os, b, h, i0, p.N, true);
    const float Li = i < p.N ? lse[bh * p.N + i] : INFINITY, Di = i < p.N ? Drow[bh * p.N + i] : 0.0f;
    frag_acc acc[D / FRAG];
#pragma unroll
    for (int n = 0; n < D / FRAG; n++) wmma::fill_fragment(acc[n], 0.0f);
    const bool has_rows = i0 + r0 < p.N;
    const int64_t end = key_end(p, i0, TILE), warp_end = has_rows ? key_end(p, i0 + r0, FRAG) : 0;
    for (int64_t j0 = key_start(p, i0); j0 < end; j0 += TILE) {
        __syncthreads();
        stage<D>(Ks, p.k, p.ks, b, hk, j0, p.M, wide & WIDE_K);
        stage<D>(Vs, p.v, p.vs, b, hk, j0, p.M, wide & WIDE_V);
        __syncthreads();
        if (!has_rows || j0 >= warp_end) continue;
        product_abt<D>(S, Qs + r0 * ld, ld, Ks, ld);
        product_abt<D>(dP, dOs + r0 * ld, ld, Vs, ld);
        __syncwarp();
        for (int t = 0; t < HALF; t++) {
            const int c = c0 + t;
            float ds = 0.0f;
            if (visible(p, b, h, i, j0 + c)) ds = expf(p.scale * S[row * LD_LOGITS + c] - Li) * (dP[row * LD_LOGITS + c] - Di);
            dS[row * LD_WEIGHTS + c] = __float2bfloat16(ds);
        }
        __syncwarp();
        accumulate_ab<D>(acc, dS, Ks, ld);
    }
    if (!has_rows) return;   /* the whole warp */
    __syncwarp();
    float *rows = S;   /* the logits' tiles hold the warp's 16 x D result (2 x 16 x LD_LOGITS >= 16 x (D + 4)) */
#pragma unroll
    for (int n = 0; n < D / FRAG; n++) wmma::store_matrix_sync(rows + n * FRAG, acc[n], tiles<D>::ld_out, wmma::mem_row_major);
    __syncwarp();
    write_rows<D>(dQ + bh * p.N * D, rows, i0 + r0, p.N, p.scale);
}

/* ---- backward: dK, dV ------------------------------------------------------------------------- */

/* One block per (batch * kv head, tile of TILE keys), over every query head that reads the kv head and
 * the query tiles that see the block's keys; in the transposed tiles (rows: keys, columns: queries)
 *   S^T = K Q^T,  dP^T = V dO^T,  P^T = exp(S^T - L),  dS^T = P^T (dP^T - D);  dV = P^T dO,  dK = scale dS^T Q. */
template <int D>
static __global__ void __launch_bounds__(MMA_THREADS) mma_dkv_kernel(problem<bf16> p, int64_t key_tiles, int wide,
                                                                     const float *lse, const float *Drow, const bf16 *dO, bf16 *dK,
                                                                     bf16 *dV) {
    extern __shared__ __align__(128) unsigned char shared_bytes[];
    const int ld = tiles<D>::ld;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    bf16 *Ks = (bf16 *)shared_bytes, *Vs = Ks + TILE * ld, *Qs = Vs + TILE * ld, *dOs = Qs + TILE * ld;
    float *Ls = (float *)(dOs + TILE * ld), *Ds = Ls + TILE;   /* the query tile's L and D */
    float *ST = Ds + TILE + warp * 2 * FRAG * LD_LOGITS, *dPT = ST + FRAG * LD_LOGITS;
    bf16 *PT = (bf16 *)(Ds + TILE + MMA_WARPS * 2 * FRAG * LD_LOGITS) + warp * 2 * FRAG * LD_WEIGHTS;
    bf16 *dST = PT + FRAG * LD_WEIGHTS;
    const int64_t bhk = blockIdx.x / key_tiles, j0 = blockIdx.x % key_tiles * TILE;
    const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv, group = p.H / p.Hkv;
    const int r0 = warp * FRAG, row = lane / 2, c0 = lane % 2 * HALF;
    const int64_t j = j0 + r0 + row;   /* the lane's key */
    const int64_t os[4] = {p.H * p.N * D, p.N * D, D, 1};

    stage<D>(Ks, p.k, p.ks, b, hk, j0, p.M, wide & WIDE_K);
    stage<D>(Vs, p.v, p.vs, b, hk, j0, p.M, wide & WIDE_V);
    frag_acc gk[D / FRAG], gv[D / FRAG];
#pragma unroll
    for (int n = 0; n < D / FRAG; n++) {
        wmma::fill_fragment(gk[n], 0.0f);
        wmma::fill_fragment(gv[n], 0.0f);
    }
    const bool has_keys = j0 + r0 < p.M;
    /* the first query that sees one of the warp's keys (causal: later for later warps) */
    const int64_t first = query_start(p, j0) / TILE * TILE, last = query_end(p, j0, TILE);
    const int64_t warp_first = has_keys ? query_start(p, j0 + r0) : last;
    for (int64_t hq = hk * group; hq < (hk + 1) * group; hq++) {
        const int64_t bh = b * p.H + hq;
        for (int64_t i0 = first; i0 < last; i0 += TILE) {
            __syncthreads();
            stage<D>(Qs, p.q, p.qs, b, hq, i0, p.N, wide & WIDE_Q);
            stage<D>(dOs, dO, os, b, hq, i0, p.N, true);
            if ((int)threadIdx.x < TILE) {
                const int64_t iq = i0 + threadIdx.x;
                Ls[threadIdx.x] = iq < p.N ? lse[bh * p.N + iq] : INFINITY;
                Ds[threadIdx.x] = iq < p.N ? Drow[bh * p.N + iq] : 0.0f;
            }
            __syncthreads();
            if (!has_keys || i0 + TILE <= warp_first) continue;   /* the whole warp */
            product_abt<D>(ST, Ks + r0 * ld, ld, Qs, ld);
            product_abt<D>(dPT, Vs + r0 * ld, ld, dOs, ld);
            __syncwarp();
            for (int t = 0; t < HALF; t++) {
                const int c = c0 + t;
                float pij = 0.0f, ds = 0.0f;
                if (visible(p, b, hq, i0 + c, j)) {
                    pij = expf(p.scale * ST[row * LD_LOGITS + c] - Ls[c]);
                    ds = pij * (dPT[row * LD_LOGITS + c] - Ds[c]);
                }
                PT[row * LD_WEIGHTS + c] = __float2bfloat16(pij);
                dST[row * LD_WEIGHTS + c] = __float2bfloat16(ds);
            }
            __syncwarp();
            accumulate_ab<D>(gv, PT, dOs, ld);
            accumulate_ab<D>(gk, dST, Qs, ld);
        }
    }
    if (!has_keys) return;   /* the whole warp */
    __syncwarp();
    float *rows = ST;   /* as in the dq kernel */
    if (dK) {
#pragma unroll
        for (int n = 0; n < D / FRAG; n++) wmma::store_matrix_sync(rows + n * FRAG, gk[n], tiles<D>::ld_out, wmma::mem_row_major);
        __syncwarp();
        write_rows<D>(dK + bhk * p.M * D, rows, j0 + r0, p.M, p.scale);
        __syncwarp();
    }
    if (dV) {
#pragma unroll
        for (int n = 0; n < D / FRAG; n++) wmma::store_matrix_sync(rows + n * FRAG, gv[n], tiles<D>::ld_out, wmma::mem_row_major);
        __syncwarp();
        write_rows<D>(dV + bhk * p.M * D, rows, j0 + r0, p.M, 1.0f);
    }
}

/* ---- launches ---------------------------------------------------------------------------------- */

bool attention_mma_applies(const problem<bf16> &p) {
    const bool head = p.d == p.dv && (p.d == 16 || p.d == 32 || p.d == 64 || p.d == 128);
    return head && !p.bias && !p.mask && !p.row_lo && p.window <= 0;
}

/* WIDE_Q | WIDE_K | WIDE_V for the operands whose rows can be copied 16 bytes at a time: unit stride
 * along the row, and every row's start on 16 bytes (the data pointer and the other strides). */
static int wide_rows(const problem<bf16> &p) {
    const bf16 *data[3] = {p.q, p.k, p.v};
    const int64_t *strides[3] = {p.qs, p.ks, p.vs};
    int wide = 0;
    for (int t = 0; t < 3; t++) {
        const int64_t *s = strides[t];
        if (s[3] == 1 && s[0] % 8 == 0 && s[1] % 8 == 0 && s[2] % 8 == 0 && (uintptr_t)data[t] % 16 == 0) wide |= 1 << t;
    }
    return wide;
}

/* A launch of `units` blocks with `bytes` of shared memory (beyond 48 KiB it must be asked for); false
 * with an error past the grid's limit or when the attribute cannot be set. */
template <typename K> static bool launchable(const char *fn, K kernel, int64_t units, size_t bytes) {
    if (units > 0x7fffffff) {
        al_error("%s: %lld tiles are more than one CUDA grid holds", fn, (long long)units);
        return false;
    }
    if (bytes <= 48 * 1024) return true;
    return al_cuda_ok(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int D> static int forward_at(const problem<bf16> &p, bf16 *out, float *lse) {
    const int64_t query_tiles = (p.N + TILE - 1) / TILE, units = p.B * p.H * query_tiles;
    const size_t bytes = sizeof(bf16) * 3 * TILE * tiles<D>::ld +
                         sizeof(float) * MMA_WARPS * FRAG * (LD_LOGITS + tiles<D>::ld_out) + sizeof(bf16) * MMA_WARPS * FRAG * LD_WEIGHTS;
    if (units == 0) return 0;
    if (!launchable("attention", mma_forward_kernel<D>, units, bytes)) return -1;
    mma_forward_kernel<D><<<(unsigned)units, MMA_THREADS, bytes, al_cuda_stream()>>>(p, query_tiles, wide_rows(p), out, lse);
    return al_cuda_ok("attention", cudaGetLastError()) ? 0 : -1;
}

int attention_mma_forward(const problem<bf16> &p, bf16 *out, float *lse) {
    switch (p.d) {
    case 16: return forward_at<16>(p, out, lse);
    case 32: return forward_at<32>(p, out, lse);
    case 64: return forward_at<64>(p, out, lse);
    default: return forward_at<128>(p, out, lse);   /* attention_mma_applies admits no other */
    }
}

template <int D>
static int backward_at(const problem<bf16> &p, const float *lse, const float *Drow, const bf16 *dO, bf16 *dQ, bf16 *dK, bf16 *dV) {
    const char *fn = "attention: backward";
    cudaStream_t stream = al_cuda_stream();
    if (dQ) {
        const int64_t query_tiles = (p.N + TILE - 1) / TILE, units = p.B * p.H * query_tiles;
        const size_t bytes = sizeof(bf16) * 4 * TILE * tiles<D>::ld + sizeof(float) * MMA_WARPS * 2 * FRAG * LD_LOGITS +
                             sizeof(bf16) * MMA_WARPS * FRAG * LD_WEIGHTS;
        if (!launchable(fn, mma_dq_kernel<D>, units, bytes)) return -1;
        mma_dq_kernel<D><<<(unsigned)units, MMA_THREADS, bytes, stream>>>(p, query_tiles, wide_rows(p), lse, Drow, dO, dQ);
        if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
    }
    if (dK || dV) {
        const int64_t key_tiles = (p.M + TILE - 1) / TILE, units = p.B * p.Hkv * key_tiles;
        const size_t bytes = sizeof(bf16) * 4 * TILE * tiles<D>::ld + sizeof(float) * (2 * TILE + MMA_WARPS * 2 * FRAG * LD_LOGITS) +
                             sizeof(bf16) * MMA_WARPS * 2 * FRAG * LD_WEIGHTS;
        if (!launchable(fn, mma_dkv_kernel<D>, units, bytes)) return -1;
        mma_dkv_kernel<D><<<(unsigned)units, MMA_THREADS, bytes, stream>>>(p, key_tiles, wide_rows(p), lse, Drow, dO, dK, dV);
        if (!al_cuda_ok(fn, cudaGetLastError())) return -1;
    }
    return 0;
}

int attention_mma_backward(const problem<bf16> &p, const float *lse, const float *D, const bf16 *dO, bf16 *dQ, bf16 *dK,
                           bf16 *dV) {
    switch (p.d) {
    case 16: return backward_at<16>(p, lse, D, dO, dQ, dK, dV);
    case 32: return backward_at<32>(p, lse, D, dO, dQ, dK, dV);
    case 64: return backward_at<64>(p, lse, D, dO, dQ, dK, dV);
    default: return backward_at<128>(p, lse, D, dO, dQ, dK, dV);
    }
}
