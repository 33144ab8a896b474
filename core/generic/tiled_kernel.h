/* generic/tiled_kernel.h -- the tiled softmax attention of attention/tiled.c (FlashAttention-2),
 * written once for a scalar type `real`; tiled.c includes it once per float dtype through
 * float_types.h (see reduce_lines.h for why plain functions rather than macros).  The formulas,
 * the tile sizes and the work split are at the top of tiled.c; the tile products go through
 * gemm_float (the register kernel of small_gemm_avx512.h, else the BLAS) and gemm_double.
 *
 * Each thread's scratch is its own malloc; a thread that cannot get it marks the call failed (the
 * error is raised after the parallel region, by the calling thread, which owns the message). */

/* The logits of a tile as they leave the product: entries out of a row's range or masked become
 * -inf, the bias is added.  s is rows x cols with row stride TILE_K. */
static void SFX(finish_logits)(const attention_problem *p, int64_t b, int64_t h, int64_t i0, int64_t rows,
                               int64_t j0, int64_t cols, const int64_t *lo, const int64_t *end, real *s) {
    const real *Bias = p->bias ? (const real *)p->bias->storage->data : NULL;
    const real *Mask = p->mask ? (const real *)p->mask->storage->data : NULL;
    for (int64_t r = 0; r < rows; r++) {
        real *sr = s + r * TILE_K;
        int64_t a = lo[r] - j0, e = end[r] - j0;
        a = a < 0 ? 0 : (a > cols ? cols : a);
        e = e < a ? a : (e > cols ? cols : e);
        for (int64_t c = 0; c < a; c++) sr[c] = -INFINITY;
        for (int64_t c = e; c < cols; c++) sr[c] = -INFINITY;
        if (Bias) {
            const real *br = Bias + row_offset(p->bias, b, h, i0 + r) + j0 * p->bias->strides[3];
            const int64_t bs = p->bias->strides[3];
            for (int64_t c = a; c < e; c++) sr[c] += br[c * bs];
        }
        if (Mask) {
            const real *mr = Mask + row_offset(p->mask, b, h, i0 + r) + j0 * p->mask->strides[3];
            const int64_t ms = p->mask->strides[3];
            for (int64_t c = a; c < e; c++) if (mr[c * ms] == 0) sr[c] = -INFINITY;
        }
    }
}

/* O (B, H, N, dv) and LSE (B, H, N), the rows' log-sum-exps for the backward */
static bool SFX(tiled_forward)(const attention_problem *p, real *O, real *LSE) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;
    const int64_t group = p->H / p->Hkv, N = p->N, d = p->d, dv = p->dv;
    const int64_t ldq = p->q->strides[2], ldk = p->k->strides[2], ldv = p->v->strides[2];
    const int64_t tiles_q = (N + TILE_Q - 1) / TILE_Q, units = p->B * p->H * tiles_q;
    const bool parallel = units > 1 && p->B * p->H * N * p->M * (d + dv) >= TILED_PARALLEL_WORK;
    bool failed = false;
    #pragma omp parallel if (parallel)
    {
        real *s = malloc(sizeof(real) * (size_t)(TILE_Q * TILE_K + TILE_Q * dv + 2 * TILE_Q));
        if (!s) {
            #pragma omp atomic write
            failed = true;
        }
        real *acc = s ? s + TILE_Q * TILE_K : NULL, *m = acc ? acc + TILE_Q * dv : NULL, *l = m ? m + TILE_Q : NULL;
        int64_t lo[TILE_Q], end[TILE_Q];
        #pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++) {
            if (!s) continue;
            const int64_t b = u / (p->H * tiles_q), h = u / tiles_q % p->H, hk = h / group;
            const int64_t i0 = u % tiles_q * TILE_Q, rows = N - i0 < TILE_Q ? N - i0 : TILE_Q;
            tile_ranges(p, i0, rows, lo, end);
            int64_t jlo = p->M, jhi = 0;
            for (int64_t r = 0; r < rows; r++)
                if (lo[r] < end[r]) { jlo = lo[r] < jlo ? lo[r] : jlo; jhi = end[r] > jhi ? end[r] : jhi; }
            for (int64_t r = 0; r < rows; r++) { m[r] = -INFINITY; l[r] = 0; }
            memset(acc, 0, sizeof(real) * (size_t)(rows * dv));
            const real *q = Q + row_offset(p->q, b, h, i0);
            for (int64_t j0 = jlo; j0 < jhi; j0 += TILE_K) {
                const int64_t cols = jhi - j0 < TILE_K ? jhi - j0 : TILE_K;
                if (!tile_visible(lo, end, rows, j0, cols)) continue;
                SFX(gemm)(CblasNoTrans, CblasTrans, rows, cols, d, (real)p->scale, q, ldq,
                         K + row_offset(p->k, b, hk, j0), ldk, 0, s, TILE_K);
                SFX(finish_logits)(p, b, h, i0, rows, j0, cols, lo, end, s);
                for (int64_t r = 0; r < rows; r++) {
                    real *sr = s + r * TILE_K, mx = -INFINITY;
                    #pragma omp simd reduction(max:mx)
                    for (int64_t c = 0; c < cols; c++) mx = sr[c] > mx ? sr[c] : mx;
                    const real mnew = mx > m[r] ? mx : m[r];
                    if (mnew == -INFINITY) { for (int64_t c = 0; c < cols; c++) sr[c] = 0; continue; }
                    real z = 0;
                    #pragma omp simd reduction(+:z)
                    for (int64_t c = 0; c < cols; c++) { sr[c] = FAST_EXP(sr[c] - mnew); z += sr[c]; }
                    if (mnew > m[r]) {        /* rescale what was summed under the old maximum */
                        const real alpha = m[r] == -INFINITY ? (real)0 : FAST_EXP(m[r] - mnew);
                        real *ar = acc + r * dv;
                        for (int64_t c = 0; c < dv; c++) ar[c] *= alpha;
                        l[r] *= alpha;
                        m[r] = mnew;
                    }
                    l[r] += z;
                }
                SFX(gemm)(CblasNoTrans, CblasNoTrans, rows, dv, cols, 1, s, TILE_K,
                         V + row_offset(p->v, b, hk, j0), ldv, 1, acc, dv);
            }
            const int64_t bh = b * p->H + h;
            for (int64_t r = 0; r < rows; r++) {
                const real inv = l[r] > 0 ? (real)1 / l[r] : (real)0;
                real *o = O + (bh * N + i0 + r) * dv, *ar = acc + r * dv;
                for (int64_t c = 0; c < dv; c++) o[c] = ar[c] * inv;
                LSE[bh * N + i0 + r] = l[r] > 0 ? m[r] + (real)log((double)l[r]) : (real)INFINITY;
            }
        }
        free(s);
    }
    return !failed;
}

/* dq, dk, dv: zero-filled gradients in their inputs' layouts (unit last stride), or NULL when
 * not wanted.  O and dO are contiguous (B, H, N, dv). */
static bool SFX(tiled_backward)(const attention_problem *p, const real *O, const real *LSE, const real *dO,
                                al_tensor *gq, al_tensor *gk, al_tensor *gv) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;
    real *dQ = gq ? (real *)gq->storage->data : NULL, *dK = gk ? (real *)gk->storage->data : NULL;
    real *dV = gv ? (real *)gv->storage->data : NULL;
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;
    const int64_t ldq = p->q->strides[2], ldk = p->k->strides[2], ldv = p->v->strides[2];
    const real scale = (real)p->scale;
    const int64_t units = p->B * p->Hkv;
    const bool parallel = units > 1 && p->B * p->H * N * M * (d + dv) >= TILED_PARALLEL_WORK;
    bool failed = false;
    #pragma omp parallel if (parallel)
    {
        real *s = malloc(sizeof(real) * (size_t)(2 * TILE_Q * TILE_K + N));
        if (!s) {
            #pragma omp atomic write
            failed = true;
        }
        real *dp = s ? s + TILE_Q * TILE_K : NULL, *D = dp ? dp + TILE_Q * TILE_K : NULL;
        int64_t lo[TILE_Q], end[TILE_Q];
        #pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++) {
            if (!s) continue;
            const int64_t b = u / p->Hkv, hk = u % p->Hkv;
            const real *k = K + row_offset(p->k, b, hk, 0), *v = V + row_offset(p->v, b, hk, 0);
            real *dk = dK ? dK + row_offset(gk, b, hk, 0) : NULL, *dvp = dV ? dV + row_offset(gv, b, hk, 0) : NULL;
            const int64_t lddk = gk ? gk->strides[2] : 0, lddv = gv ? gv->strides[2] : 0;
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                const int64_t bh = b * p->H + h;
                const real *go = dO + bh * N * dv, *o = O + bh * N * dv, *lse = LSE + bh * N;
                const real *q = Q + row_offset(p->q, b, h, 0);
                real *dq = dQ ? dQ + row_offset(gq, b, h, 0) : NULL;
                const int64_t lddq = gq ? gq->strides[2] : 0;
                for (int64_t i = 0; i < N; i++) {   /* D_i = rowsum(dO_i o O_i), in vector lanes */
                    real acc = 0;
                    #pragma omp simd reduction(+:acc)
                    for (int64_t c = 0; c < dv; c++) acc += go[i * dv + c] * o[i * dv + c];
                    D[i] = acc;
                }
                for (int64_t j0 = 0; j0 < M; j0 += TILE_K) {
                    const int64_t cols = M - j0 < TILE_K ? M - j0 : TILE_K;
                    for (int64_t i0 = 0; i0 < N; i0 += TILE_Q) {
                        const int64_t rows = N - i0 < TILE_Q ? N - i0 : TILE_Q;
                        tile_ranges(p, i0, rows, lo, end);
                        if (!tile_visible(lo, end, rows, j0, cols)) continue;
                        SFX(gemm)(CblasNoTrans, CblasTrans, rows, cols, d, scale, q + i0 * ldq, ldq,
                                 k + j0 * ldk, ldk, 0, s, TILE_K);
                        SFX(finish_logits)(p, b, h, i0, rows, j0, cols, lo, end, s);
                        for (int64_t r = 0; r < rows; r++) {     /* P = exp(S - LSE) */
                            real *sr = s + r * TILE_K;
                            const real lr = lse[i0 + r];
                            for (int64_t c = 0; c < cols; c++) sr[c] = FAST_EXP(sr[c] - lr);
                        }
                        if (dvp)                                           /* dV_J += P^T dO_I */
                            SFX(gemm)(CblasTrans, CblasNoTrans, cols, dv, rows, 1, s, TILE_K,
                                     go + i0 * dv, dv, 1, dvp + j0 * lddv, lddv);
                        if (!dq && !dk) continue;
                        SFX(gemm)(CblasNoTrans, CblasTrans, rows, cols, dv, 1, go + i0 * dv, dv,
                                 v + j0 * ldv, ldv, 0, dp, TILE_K);        /* dP = dO_I V_J^T */
                        for (int64_t r = 0; r < rows; r++) {     /* dS = P (dP - D) */
                            real *dr = dp + r * TILE_K;
                            const real *sr = s + r * TILE_K, Dr = D[i0 + r];
                            for (int64_t c = 0; c < cols; c++) dr[c] = sr[c] * (dr[c] - Dr);
                        }
                        if (dq)                                     /* dQ_I += scale dS K_J */
                            SFX(gemm)(CblasNoTrans, CblasNoTrans, rows, d, cols, scale, dp, TILE_K,
                                     k + j0 * ldk, ldk, 1, dq + i0 * lddq, lddq);
                        if (dk)                                     /* dK_J += scale dS^T Q_I */
                            SFX(gemm)(CblasTrans, CblasNoTrans, cols, d, rows, scale, dp, TILE_K,
                                     q + i0 * ldq, ldq, 1, dk + j0 * lddk, lddk);
                    }
                }
            }
        }
        free(s);
    }
    return !failed;
}
