/* recurrence.cu -- the prefix-state recurrence of attention/recurrence.c (the "delta" variant and
 * causal "flow") on the GPU, forward and reverse pass, float64 as on the CPU.  The formulas, the
 * chunk checkpoints and the reverse recurrence are recurrence.c's (its header has them); what differs
 * is who does which part.
 *
 * The state S (dv x d) splits by rows: step t's u_a = S_a . k_t, w_a = beta (v_ta - delta alpha u_a),
 * S_a <- alpha S_a + w_a k_t and the readout y_ta = scale S_a . q_t touch row a alone.  So the
 * forward is one block per query head with each thread owning rows of S: no synchronisation at all,
 * the steps in order along the sequence (O(M d dv) per head, O(d) per thread and step).
 *
 * The reverse pass also needs sums over the rows: dq_t = scale S_t^T dy_t, dk_t = G^T w_t + S_{t-1}^T du
 * and the coefficients' dbeta_t, dalpha_t.  Those are column passes (thread c sums column c over the
 * rows) between row passes, with __syncthreads between them.  One block per (batch, kv head), taking
 * the query heads of its group in turn, so the dk and dv rows it adds to are its own (no atomics);
 * each block recomputes a chunk's states from its checkpoint into a scratch of its own, as the CPU's
 * thread does.
 *
 * Nothing here is a parallel scan over the sequence (the chunked forms of gated linear attention
 * and DeltaNet that use tensor cores): this is the recurrence as written, moved to the device so
 * that the variants built on it no longer copy q, k, v to the host and back. */
#include "cuda_internal.h"

/* Pointers of query head (b, h) and its kv head, as recurrence.c's HEAD_* */
struct head_ptrs {
    const double *q, *k, *v, *coef;
    template <typename R> __device__ head_ptrs(const R &r, const double *Q, const double *K, const double *V,
                                              const double *C, int64_t b, int64_t h) {
        const int64_t hk = h / (r.H / r.Hkv);
        q = Q + (b * r.H + h) * r.N * r.d;
        k = K + (b * r.Hkv + hk) * r.M * r.d;
        v = V + (b * r.Hkv + hk) * r.M * r.dv;
        coef = C + (b * r.H + h) * r.M * 2;
    }
};

/* One step on row a of a state (a row of d): u = S_a . k, w = beta (v_a - delta alpha u), S_a = alpha
 * S_a + w k.  from and to may be the same row. */
static __device__ inline void step_row(const al_recurrence_shape &r, const double *from, double *to, const double *k,
                                       double va, double beta, double alpha, double *u_out, double *w_out) {
    double u = 0;
    if (r.delta)
        for (int64_t c = 0; c < r.d; c++) u += from[c] * k[c];
    const double w = beta * (va - r.delta * alpha * u);
    for (int64_t c = 0; c < r.d; c++) to[c] = alpha * from[c] + w * k[c];
    if (u_out) *u_out = u;
    if (w_out) *w_out = w;
}

static __device__ inline double dot(const double *x, const double *y, int64_t n) {
    double s = 0;
    for (int64_t c = 0; c < n; c++) s += x[c] * y[c];
    return s;
}

/* Y (B, H, N, dv); CK (B, H, n_chunks, dv, d), the state before each chunk's first step; S (B, H, dv, d) scratch */
static __global__ void recurrence_forward_kernel(al_recurrence_shape r, const double *Q, const double *K, const double *V,
                                                 const double *C, double *Y, double *CK, double *S) {
    const int64_t sd = r.dv * r.d;
    for (int64_t bh = blockIdx.x; bh < r.B * r.H; bh += gridDim.x) {
        const head_ptrs x(r, Q, K, V, C, bh / r.H, bh % r.H);
        double *y = Y + bh * r.N * r.dv, *ck = CK + bh * r.n_chunks * sd;
        for (int64_t a = threadIdx.x; a < r.dv; a += blockDim.x) {
            double *row = S + bh * sd + a * r.d;
            for (int64_t c = 0; c < r.d; c++) row[c] = 0;
            for (int64_t t = 0; t < r.M; t++) {
                if (t % r.chunk == 0)
                    for (int64_t c = 0; c < r.d; c++) ck[(t / r.chunk) * sd + a * r.d + c] = row[c];
                step_row(r, row, row, x.k + t * r.d, x.v[t * r.dv + a], x.coef[2 * t], x.coef[2 * t + 1], NULL, NULL);
                if (r.causal) y[t * r.dv + a] = r.scale * dot(row, x.q + t * r.d, r.d);
            }
            if (!r.causal)
                for (int64_t i = 0; i < r.N; i++) y[i * r.dv + a] = r.scale * dot(row, x.q + i * r.d, r.d);
        }
    }
}

/* A block's scratch in the reverse pass, in doubles: G (sd), the chunk's states ((chunk + 1) sd), u and
 * w of its steps (chunk dv each), and du, dbeta's and dalpha's parts of one step (dv each). */
static __host__ __device__ inline int64_t scratch_per_block(const al_recurrence_shape &r) {
    return (r.chunk + 2) * r.dv * r.d + 2 * r.chunk * r.dv + 3 * r.dv;
}

/* the row loops and column loops of one block */
#define FOR_ROWS(a) for (int64_t a = threadIdx.x; a < r.dv; a += blockDim.x)
#define FOR_COLS(c) for (int64_t c = threadIdx.x; c < r.d; c += blockDim.x)

/* dY (B, H, N, dv); dQ (B, H, N, d) and dCOEF (B, H, M, 2) written; dK, dV (B, Hkv, M, .) zeroed, added to */
static __global__ void recurrence_backward_kernel(al_recurrence_shape r, const double *Q, const double *K,
                                                  const double *V, const double *C, const double *CK, const double *dY,
                                                  double *dQ, double *dK, double *dV, double *dC, double *scratch) {
    const int64_t sd = r.dv * r.d, group = r.H / r.Hkv;
    double *G = scratch + blockIdx.x * scratch_per_block(r), *states = G + sd, *us = states + (r.chunk + 1) * sd;
    double *ws = us + r.chunk * r.dv, *du = ws + r.chunk * r.dv, *part_beta = du + r.dv, *part_alpha = part_beta + r.dv;
    for (int64_t bk = blockIdx.x; bk < r.B * r.Hkv; bk += gridDim.x) {
        const int64_t b = bk / r.Hkv, hk = bk % r.Hkv;
        double *dk = dK + bk * r.M * r.d, *dv = dV + bk * r.M * r.dv;
        for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
            const head_ptrs x(r, Q, K, V, C, b, h);
            const int64_t bh = b * r.H + h;
            const double *ck = CK + bh * r.n_chunks * sd, *dy = dY + bh * r.N * r.dv;
            double *dq = dQ + bh * r.N * r.d, *dcoef = dC + bh * r.M * 2;
            __syncthreads();   /* the previous head's last column pass has read G, states and du */
            FOR_ROWS(a) for (int64_t c = 0; c < r.d; c++) G[a * r.d + c] = 0;
            if (!r.causal) {   /* every query read S_M: G = scale sum_i dy_i q_i^T, dq_i = scale S_M^T dy_i */
                const int64_t last = r.n_chunks - 1;
                FOR_ROWS(a) {
                    double *row = states + a * r.d;
                    for (int64_t c = 0; c < r.d; c++) row[c] = ck[last * sd + a * r.d + c];
                    for (int64_t t = last * r.chunk; t < r.M; t++)
                        step_row(r, row, row, x.k + t * r.d, x.v[t * r.dv + a], x.coef[2 * t], x.coef[2 * t + 1], NULL, NULL);
                    for (int64_t i = 0; i < r.N; i++)
                        for (int64_t c = 0; c < r.d; c++) G[a * r.d + c] += r.scale * dy[i * r.dv + a] * x.q[i * r.d + c];
                }
                __syncthreads();
                FOR_COLS(c) for (int64_t i = 0; i < r.N; i++) {
                    double s = 0;
                    for (int64_t a = 0; a < r.dv; a++) s += states[a * r.d + c] * dy[i * r.dv + a];
                    dq[i * r.d + c] = r.scale * s;
                }
                __syncthreads();   /* states is overwritten by the chunks below */
            }
            for (int64_t ch = r.n_chunks - 1; ch >= 0; ch--) {
                const int64_t t0 = ch * r.chunk, t1 = t0 + r.chunk < r.M ? t0 + r.chunk : r.M;
                /* states[s] = S_{t0 + s - 1}, the state before step t0 + s */
                FOR_ROWS(a) {
                    for (int64_t c = 0; c < r.d; c++) states[a * r.d + c] = ck[ch * sd + a * r.d + c];
                    for (int64_t t = t0; t < t1; t++) {
                        const int64_t s = t - t0;
                        step_row(r, states + s * sd + a * r.d, states + (s + 1) * sd + a * r.d, x.k + t * r.d,
                                 x.v[t * r.dv + a], x.coef[2 * t], x.coef[2 * t + 1], us + s * r.dv + a, ws + s * r.dv + a);
                    }
                }
                __syncthreads();
                for (int64_t t = t1 - 1; t >= t0; t--) {
                    const double *Sprev = states + (t - t0) * sd, *Scur = Sprev + sd, *kt = x.k + t * r.d;
                    const double *u = us + (t - t0) * r.dv, *w = ws + (t - t0) * r.dv;
                    const double beta = x.coef[2 * t], alpha = x.coef[2 * t + 1];
                    if (r.causal) {   /* the readout y_t = scale S_t q_t */
                        FOR_COLS(c) {
                            double s = 0;
                            for (int64_t a = 0; a < r.dv; a++) s += Scur[a * r.d + c] * dy[t * r.dv + a];
                            dq[t * r.d + c] = r.scale * s;
                        }
                        FOR_ROWS(a) for (int64_t c = 0; c < r.d; c++) G[a * r.d + c] += r.scale * dy[t * r.dv + a] * x.q[t * r.d + c];
                        __syncthreads();
                    }
                    FOR_COLS(c) {   /* dk from w k^T: G^T w */
                        double s = 0;
                        for (int64_t a = 0; a < r.dv; a++) s += G[a * r.d + c] * w[a];
                        dk[t * r.d + c] += s;
                    }
                    __syncthreads();   /* G is updated below */
                    FOR_ROWS(a) {
                        double *Ga = G + a * r.d;
                        const double dw = dot(Ga, kt, r.d);
                        dv[t * r.dv + a] += beta * dw;
                        part_beta[a] = dw * (x.v[t * r.dv + a] - r.delta * alpha * u[a]);
                        part_alpha[a] = dot(Ga, Sprev + a * r.d, r.d) - r.delta * beta * dw * u[a];
                        du[a] = -r.delta * alpha * beta * dw;
                        for (int64_t c = 0; c < r.d; c++) Ga[c] = alpha * Ga[c] + du[a] * kt[c];
                    }
                    __syncthreads();
                    if (r.delta) FOR_COLS(c) {   /* dk += S_{t-1}^T du */
                        double s = 0;
                        for (int64_t a = 0; a < r.dv; a++) s += Sprev[a * r.d + c] * du[a];
                        dk[t * r.d + c] += s;
                    }
                    if (threadIdx.x == 0) {
                        double db = 0, da = 0;
                        for (int64_t a = 0; a < r.dv; a++) { db += part_beta[a]; da += part_alpha[a]; }
                        dcoef[2 * t] = db;
                        dcoef[2 * t + 1] = da;
                    }
                    __syncthreads();   /* du and the parts are the next step's */
                }
            }
        }
    }
}

static const int THREADS = 128;

extern "C" int al_cuda_state_recurrence_forward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                                const al_tensor *v, const al_tensor *coef, al_tensor *y,
                                                al_tensor *checkpoints) {
    if (r->B * r->H == 0) return 0;
    const int64_t sshape[1] = {r->B * r->H * r->dv * r->d};
    al_tensor *S = al_new_tensor_on(1, sshape, AL_FLOAT64, AL_CUDA);
    if (!S) return -1;
    const unsigned blocks = al_cuda_blocks(r->B * r->H, 1);
    recurrence_forward_kernel<<<blocks, THREADS, 0, al_cuda_stream()>>>(
        *r, (const double *)al_ptr(q), (const double *)al_ptr(k), (const double *)al_ptr(v), (const double *)al_ptr(coef),
        (double *)al_ptr(y), (double *)al_ptr(checkpoints), (double *)al_ptr(S));
    const bool ok = al_cuda_ok("attention: state recurrence", cudaGetLastError());
    al_release(S);   /* reused only by work queued after this kernel (one stream) */
    return ok ? 0 : -1;
}

/* The reverse pass's scratch is a block's: at most this many blocks, so that it stays a bounded size
 * (the grid-stride loop over the (batch, kv head) pairs does the rest). */
static const int64_t SCRATCH_BYTES_CAP = (int64_t)256 << 20;

extern "C" int al_cuda_state_recurrence_backward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                                 const al_tensor *v, const al_tensor *coef,
                                                 const al_tensor *checkpoints, const al_tensor *dy, al_tensor *dq,
                                                 al_tensor *dk, al_tensor *dv, al_tensor *dcoef) {
    const int64_t pairs = r->B * r->Hkv, per_block = scratch_per_block(*r);
    if (pairs == 0) return 0;
    int64_t blocks = SCRATCH_BYTES_CAP / (per_block * (int64_t)sizeof(double));
    blocks = blocks < 1 ? 1 : blocks > pairs ? pairs : blocks;
    blocks = al_cuda_blocks(blocks, 1);
    const int64_t sshape[1] = {blocks * per_block};
    al_tensor *scratch = al_new_tensor_on(1, sshape, AL_FLOAT64, AL_CUDA);
    if (!scratch) return -1;
    recurrence_backward_kernel<<<(unsigned)blocks, THREADS, 0, al_cuda_stream()>>>(
        *r, (const double *)al_ptr(q), (const double *)al_ptr(k), (const double *)al_ptr(v), (const double *)al_ptr(coef),
        (const double *)al_ptr(checkpoints), (const double *)al_ptr(dy), (double *)al_ptr(dq), (double *)al_ptr(dk),
        (double *)al_ptr(dv), (double *)al_ptr(dcoef), (double *)al_ptr(scratch));
    const bool ok = al_cuda_ok("attention: state recurrence: backward", cudaGetLastError());
    al_release(scratch);
    return ok ? 0 : -1;
}
