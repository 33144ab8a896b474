/* generic/sparse_kernel.h -- the key-list attention of attention/sparse.c, written once for a
 * scalar type `real`; sparse.c includes it once per float dtype through float_types.h (see
 * reduce_lines.h for why plain functions rather than macros).  The formulas are at the top of
 * sparse.c.  One (batch, kv head) per thread, so the dk, dv and dkey_bias rows it writes are its
 * own; each query row gathers the rows of k and v its list names. */

/* P (nnz) the probabilities of the listed entries, kept for the backward; O (B, H, N, dv) */
static void SFX(sparse_forward)(const attention_problem *p, const sparse_lists *L, real *P, real *O) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;
    const real *KB = L->key_bias;
    const int64_t group = p->H / p->Hkv, d = p->d, dv = p->dv;
    const real scale = (real)p->scale;
    const bool parallel = p->B * p->Hkv > 1 && L->start[p->B * p->H * p->N] * (d + dv) >= (1 << 18);
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {
        const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;
        for (int64_t h = hk * group; h < (hk + 1) * group; h++)
            for (int64_t i = 0; i < p->N; i++) {
                const int64_t r = (b * p->H + h) * p->N + i;
                /* the entries' logits, then their softmax, max-subtracted */
                const real *q = Q + row_offset(p->q, b, h, i);
                const real *br = p->bias ? (const real *)p->bias->storage->data + row_offset(p->bias, b, h, i) : NULL;
                const real *mr = p->mask ? (const real *)p->mask->storage->data + row_offset(p->mask, b, h, i) : NULL;
                const real *kbr = KB ? KB + (b * p->Hkv + hk) * p->M : NULL;
                const int64_t e0 = L->start[r], e1 = L->start[r + 1];
                real mx = -INFINITY;
                for (int64_t e = e0; e < e1; e++) {
                    const int64_t j = L->keys[e];
                    const real *restrict kr = K + row_offset(p->k, b, hk, j);
                    real s = 0;
                    #pragma omp simd reduction(+:s)
                    for (int64_t c = 0; c < d; c++) s += q[c] * kr[c];
                    s *= scale;
                    if (L->offsets) s += (real)L->offsets[e];
                    if (kbr) s += kbr[j];
                    if (br) s += br[j * p->bias->strides[3]];
                    if (mr && mr[j * p->mask->strides[3]] == 0) s = -INFINITY;
                    P[e] = s;
                    if (s > mx) mx = s;
                }
                if (mx == -INFINITY) mx = 0;    /* nothing visible: the row stays 0 */
                real z = 0;
                for (int64_t e = e0; e < e1; e++) { P[e] = FAST_EXP(P[e] - mx); z += P[e]; }
                const real inv = z > 0 ? (real)1 / z : (real)0;
                for (int64_t e = e0; e < e1; e++) P[e] *= inv;
                /* the sum in a local row (no store per key: o may alias nothing, but the
                 * compiler cannot know that of a pointer) */
                real acc[dv > 0 ? dv : 1];
                for (int64_t c = 0; c < dv; c++) acc[c] = 0;
                for (int64_t e = e0; e < e1; e++) {
                    const real *restrict vr = V + row_offset(p->v, b, hk, L->keys[e]), w = P[e];
                    #pragma omp simd
                    for (int64_t c = 0; c < dv; c++) acc[c] += w * vr[c];
                }
                real *o = O + r * dv;
                for (int64_t c = 0; c < dv; c++) o[c] = acc[c];
            }
    }
}

/* dQ, dK, dV, dKB (B, Hkv, M) and dBias (B, H, N, M) are contiguous and zeroed, or NULL. */
static void SFX(sparse_backward)(const attention_problem *p, const sparse_lists *L, const real *P,
                                 const real *dO, real *dQ, real *dK, real *dV, real *dKB, real *dBias) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;
    const real scale = (real)p->scale;
    const bool parallel = p->B * p->Hkv > 1 && L->start[p->B * p->H * N] * (d + dv) >= (1 << 18);
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {
        const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;
        for (int64_t h = hk * group; h < (hk + 1) * group; h++)
            for (int64_t i = 0; i < N; i++) {
                const int64_t r = (b * p->H + h) * N + i, e0 = L->start[r], e1 = L->start[r + 1];
                const real *go = dO + r * dv, *q = Q + row_offset(p->q, b, h, i);
                real delta = 0;
                for (int64_t e = e0; e < e1; e++) {
                    const real *restrict vr = V + row_offset(p->v, b, hk, L->keys[e]);
                    real dp = 0;
                    #pragma omp simd reduction(+:dp)
                    for (int64_t c = 0; c < dv; c++) dp += go[c] * vr[c];
                    delta += P[e] * dp;
                }
                real dq_row[d > 0 ? d : 1];   /* summed locally, written once */
                for (int64_t c = 0; c < d; c++) dq_row[c] = 0;
                for (int64_t e = e0; e < e1; e++) {
                    const int64_t j = L->keys[e], kv_row = (b * p->Hkv + hk) * M + j;
                    const real *restrict vr = V + row_offset(p->v, b, hk, j);
                    const real *restrict kr = K + row_offset(p->k, b, hk, j);
                    real dp = 0;
                    #pragma omp simd reduction(+:dp)
                    for (int64_t c = 0; c < dv; c++) dp += go[c] * vr[c];
                    const real ds = P[e] * (dp - delta), pe = P[e], sds = scale * ds;
                    if (dV) {
                        real *restrict dvr = dV + kv_row * dv;
                        #pragma omp simd
                        for (int64_t c = 0; c < dv; c++) dvr[c] += pe * go[c];
                    }
                    #pragma omp simd
                    for (int64_t c = 0; c < d; c++) dq_row[c] += sds * kr[c];
                    if (dK) {
                        real *restrict dkr = dK + kv_row * d;
                        #pragma omp simd
                        for (int64_t c = 0; c < d; c++) dkr[c] += sds * q[c];
                    }
                    if (dKB) dKB[kv_row] += ds;
                    if (dBias) dBias[r * M + j] += ds;
                }
                if (dQ) for (int64_t c = 0; c < d; c++) dQ[r * d + c] += dq_row[c];
            }
    }
}
