/* sparse.cu -- softmax attention over explicit key lists (attention/sparse.c's problem: power-of-2
 * jumps, grid and dilated neighborhoods, top-k keys, clusters, LSH blocks plus samples) on the GPU.
 * The lists are CSR: query row r = (b, h, i) owns the entries start[r] .. start[r+1]-1, entry e naming
 * key keys[e] with the constant offsets[e] (or 0).  The formulas are sparse.c's:
 *   s_e = scale q_i . k_{j_e} + offset_e + key_bias[b, hk, j_e] + bias[b, h, i, j_e]   (mask 0: -inf)
 *   P_e = softmax over the row's entries (a row with no finite entry is all 0);  O_i = sum_e P_e v_{j_e}
 *   dP_e = dO_i . v_{j_e};  delta_i = sum_e P_e dP_e;  dS_e = P_e (dP_e - delta_i)
 *   dq_i = scale sum_e dS_e k_{j_e};  dk_{j_e} += scale dS_e q_i;  dv_{j_e} += P_e dO_i
 * Work and memory are O(nnz (d + dv)) for nnz entries, as on the CPU: no (N, M) array exists unless
 * the map is asked for.
 *
 * One warp per query row.  The lanes share the row's entries for the logits and dP (a lane computes
 * whole dot products), the row's max, sum and delta are warp reductions, and for O, dq, dk and dv the
 * lanes share the columns while the warp walks the entries in order.  P (nnz) is kept for the
 * backward and doubles as the logits' scratch; the backward keeps dS in a scratch of its own.  A key
 * is listed by many rows, so dk, dv and the key bias's gradient are added with atomics: their sums
 * are the CPU's up to the order of the additions (the CPU owns a key's rows per thread instead). */
#include "attention_problem.cuh"

template <typename T> struct key_lists {
    const int64_t *start, *keys;
    const double *offsets;   /* or NULL */
    const T *key_bias;       /* contiguous (B, Hkv, M), or NULL */
};

template <typename T> static key_lists<T> lists_of(const al_cuda_key_lists *l) {
    key_lists<T> L;
    L.start = (const int64_t *)al_ptr(l->start);
    L.keys = (const int64_t *)al_ptr(l->keys);
    L.offsets = l->offsets ? (const double *)al_ptr(l->offsets) : NULL;
    L.key_bias = l->key_bias ? (const T *)al_ptr(l->key_bias) : NULL;
    return L;
}

/* Where row r = (b, h, i) lives, and its kv head. */
struct row_of {
    int64_t b, h, i, hk;
    template <typename T> __device__ row_of(const problem<T> &p, int64_t r) {
        i = r % p.N;
        h = (r / p.N) % p.H;
        b = r / (p.N * p.H);
        hk = h / (p.H / p.Hkv);
    }
};

/* The warps of the grid take the rows in turn; every lane of a warp gets the same rows, so the
 * shuffles inside always see the whole warp. */
#define FOR_EACH_ROW_OF_THIS_WARP(r, rows)                                                                    \
    for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / WARP; r < (rows);                     \
         r += (int64_t)gridDim.x * blockDim.x / WARP)

template <typename T, typename A>
static __device__ inline A dot_of(const T *x, int64_t xs, const T *y, int64_t ys, int64_t n) {
    A s = 0;
    for (int64_t c = 0; c < n; c++) s += (A)x[c * xs] * (A)y[c * ys];
    return s;
}

/* P (nnz) the entries' probabilities; O (B, H, N, dv) contiguous */
template <typename T, typename A>
static __global__ void sparse_forward_kernel(problem<T> p, key_lists<T> L, T *P, T *O) {
    const int lane = threadIdx.x % WARP;
    FOR_EACH_ROW_OF_THIS_WARP(r, p.B * p.H * p.N) {
        const row_of at(p, r);
        const int64_t e0 = L.start[r], e1 = L.start[r + 1];
        const T *q = p.q + at.b * p.qs[0] + at.h * p.qs[1] + at.i * p.qs[2];
        const T *K = p.k + at.b * p.ks[0] + at.hk * p.ks[1], *V = p.v + at.b * p.vs[0] + at.hk * p.vs[1];
        A mx = -(A)INFINITY;
        for (int64_t e = e0 + lane; e < e1; e += WARP) {
            const int64_t j = L.keys[e];
            A s = p.scale * dot_of<T, A>(q, p.qs[3], K + j * p.ks[2], p.ks[3], p.d);
            if (L.offsets) s += (A)L.offsets[e];
            if (L.key_bias) s += L.key_bias[(at.b * p.Hkv + at.hk) * p.M + j];
            if (p.bias) s += p.bias[at.b * p.bs[0] + at.h * p.bs[1] + at.i * p.bs[2] + j * p.bs[3]];
            if (p.mask && p.mask[at.b * p.ms[0] + at.h * p.ms[1] + at.i * p.ms[2] + j * p.ms[3]] == 0) s = -(A)INFINITY;
            P[e] = (T)s;
            mx = s > mx ? s : mx;
        }
        mx = warp_max(mx);
        if (mx == -(A)INFINITY) mx = 0;   /* nothing visible: the row stays 0 */
        A z = 0;
        for (int64_t e = e0 + lane; e < e1; e += WARP) {
            const A pe = exp_of((A)P[e] - mx);
            P[e] = (T)pe;
            z += pe;
        }
        z = warp_sum(z);
        const A inv = z > 0 ? (A)1 / z : (A)0;
        for (int64_t e = e0 + lane; e < e1; e += WARP) P[e] = (T)((A)P[e] * inv);
        __syncwarp();   /* every lane reads every entry's P below */
        for (int64_t c = lane; c < p.dv; c += WARP) {
            A acc = 0;
            for (int64_t e = e0; e < e1; e++) acc += (A)P[e] * (A)V[L.keys[e] * p.vs[2] + c * p.vs[3]];
            O[r * p.dv + c] = (T)acc;
        }
    }
}

/* dO contiguous (B, H, N, dv); DS (nnz) scratch; dQ, dK, dV, dKB (B, Hkv, M), dBias (B, H, N, M)
 * contiguous and zeroed, or NULL */
template <typename T, typename A>
static __global__ void sparse_backward_kernel(problem<T> p, key_lists<T> L, const T *P, const T *dO, T *DS, T *dQ,
                                              T *dK, T *dV, T *dKB, T *dBias) {
    const int lane = threadIdx.x % WARP;
    FOR_EACH_ROW_OF_THIS_WARP(r, p.B * p.H * p.N) {
        const row_of at(p, r);
        const int64_t e0 = L.start[r], e1 = L.start[r + 1], kv0 = (at.b * p.Hkv + at.hk) * p.M;
        const T *q = p.q + at.b * p.qs[0] + at.h * p.qs[1] + at.i * p.qs[2], *go = dO + r * p.dv;
        const T *K = p.k + at.b * p.ks[0] + at.hk * p.ks[1], *V = p.v + at.b * p.vs[0] + at.hk * p.vs[1];
        A delta = 0;
        for (int64_t e = e0 + lane; e < e1; e += WARP) {
            const A dp = dot_of<T, A>(go, 1, V + L.keys[e] * p.vs[2], p.vs[3], p.dv);
            DS[e] = (T)dp;
            delta += (A)P[e] * dp;
        }
        delta = warp_sum(delta);
        for (int64_t e = e0 + lane; e < e1; e += WARP) DS[e] = (T)((A)P[e] * ((A)DS[e] - delta));
        __syncwarp();   /* every lane reads every entry's dS below */
        if (lane == 0)  /* one lane, in the entries' order: a key listed twice adds twice */
            for (int64_t e = e0; e < e1; e++) {
                if (dKB) atomicAdd(dKB + kv0 + L.keys[e], DS[e]);
                if (dBias) dBias[r * p.M + L.keys[e]] += DS[e];
            }
        if (dQ)
            for (int64_t c = lane; c < p.d; c += WARP) {
                A acc = 0;
                for (int64_t e = e0; e < e1; e++) acc += (A)DS[e] * (A)K[L.keys[e] * p.ks[2] + c * p.ks[3]];
                dQ[r * p.d + c] = (T)(p.scale * acc);
            }
        for (int64_t e = e0; e < e1; e++) {
            const int64_t kv_row = kv0 + L.keys[e];
            const A pe = P[e], sds = p.scale * (A)DS[e];
            if (dV)
                for (int64_t c = lane; c < p.dv; c += WARP) atomicAdd(dV + kv_row * p.dv + c, (T)(pe * (A)go[c]));
            if (dK)
                for (int64_t c = lane; c < p.d; c += WARP) atomicAdd(dK + kv_row * p.d + c, (T)(sds * (A)q[c * p.qs[3]]));
        }
    }
}

/* weights (B, H, N, M) contiguous and zeroed: each entry's P added at its key (a key listed twice gets both) */
template <typename T>
static __global__ void sparse_map_kernel(const int64_t *start, const int64_t *keys, const T *P, T *W, int64_t rows,
                                         int64_t M) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x)
        for (int64_t e = start[r]; e < start[r + 1]; e++) W[r * M + keys[e]] += P[e];
}

static const int THREADS = 128, ROWS_PER_BLOCK = THREADS / WARP;

static bool checked(const al_cuda_attention_args *a, const char *fn) {
    if (a->q->dtype == AL_FLOAT32 || a->q->dtype == AL_FLOAT64) return true;
    al_error("%s: the GPU key-list kernel takes float32 or float64, not %s", fn, al_dtype_name(a->q->dtype));
    return false;
}

template <typename T>
static void forward_typed(const al_cuda_attention_args *a, const al_cuda_key_lists *l, al_tensor *P, al_tensor *out) {
    const problem<T> p = problem_of<T>(a);
    const int64_t rows = p.B * p.H * p.N;
    sparse_forward_kernel<T, T><<<al_cuda_blocks(rows, ROWS_PER_BLOCK), THREADS, 0, al_cuda_stream()>>>(
        p, lists_of<T>(l), (T *)al_ptr(P), (T *)al_ptr(out));
}
extern "C" int al_cuda_sparse_attention_forward(const al_cuda_attention_args *a, const al_cuda_key_lists *l,
                                                al_tensor *P, al_tensor *out) {
    if (!checked(a, "attention")) return -1;
    if (al_numel(out) == 0) return 0;
    if (a->q->dtype == AL_FLOAT32) forward_typed<float>(a, l, P, out);
    else forward_typed<double>(a, l, P, out);
    return al_cuda_ok("attention: key-list forward", cudaGetLastError()) ? 0 : -1;
}

template <typename T> static T *ptr_or_null(al_tensor *t) { return t ? (T *)al_ptr(t) : NULL; }

template <typename T>
static void backward_typed(const al_cuda_attention_args *a, const al_cuda_key_lists *l, const al_tensor *P,
                           const al_tensor *dO, al_tensor *dS, al_tensor *dq, al_tensor *dk, al_tensor *dv,
                           al_tensor *dkb, al_tensor *dbias) {
    const problem<T> p = problem_of<T>(a);
    const int64_t rows = p.B * p.H * p.N;
    sparse_backward_kernel<T, T><<<al_cuda_blocks(rows, ROWS_PER_BLOCK), THREADS, 0, al_cuda_stream()>>>(
        p, lists_of<T>(l), (const T *)al_ptr(P), (const T *)al_ptr(dO), (T *)al_ptr(dS), ptr_or_null<T>(dq),
        ptr_or_null<T>(dk), ptr_or_null<T>(dv), ptr_or_null<T>(dkb), ptr_or_null<T>(dbias));
}
extern "C" int al_cuda_sparse_attention_backward(const al_cuda_attention_args *a, const al_cuda_key_lists *l,
                                                 const al_tensor *P, const al_tensor *dO, al_tensor *dq, al_tensor *dk,
                                                 al_tensor *dv, al_tensor *dkb, al_tensor *dbias) {
    if (!checked(a, "attention")) return -1;
    if (al_numel(dO) == 0) return 0;
    al_tensor *dS = al_new_tensor_on(1, P->shape, P->dtype, AL_CUDA);
    if (!dS) return -1;
    if (a->q->dtype == AL_FLOAT32) backward_typed<float>(a, l, P, dO, dS, dq, dk, dv, dkb, dbias);
    else backward_typed<double>(a, l, P, dO, dS, dq, dk, dv, dkb, dbias);
    const bool ok = al_cuda_ok("attention: key-list backward", cudaGetLastError());
    al_release(dS);   /* the allocator hands it out again only to work queued after this kernel */
    return ok ? 0 : -1;
}

extern "C" int al_cuda_sparse_attention_map(const al_cuda_key_lists *l, const al_tensor *P, al_tensor *weights) {
    const int64_t rows = l->start->shape[0] - 1, M = weights->shape[3];
    if (rows <= 0) return 0;
    const int64_t *start = (const int64_t *)al_ptr(l->start), *keys = (const int64_t *)al_ptr(l->keys);
    if (P->dtype == AL_FLOAT32)
        sparse_map_kernel<float><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(
            start, keys, (const float *)al_ptr(P), (float *)al_ptr(weights), rows, M);
    else
        sparse_map_kernel<double><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(
            start, keys, (const double *)al_ptr(P), (double *)al_ptr(weights), rows, M);
    return al_cuda_ok("attention: key-list map", cudaGetLastError()) ? 0 : -1;
}
