/* generic/dense_kernel.h -- the dense attention kernel of attention/dense.c, written once for a
 * scalar type `real`; dense.c includes it once per float dtype through float_types.h, after
 * generic/dense_rows.h (its row kernels), see reduce_lines.h for why plain functions rather than
 * macros.  The shapes and the formulas are at the top of dense.c.
 *
 * One (batch, kv head) group per thread.  With few queries per group (ROWS_PATH_QUERIES) the loops
 * walk the rows of k and v as they are, through the row kernels; from it on, each thread first
 * copies the group's keys and values transposed, so that every inner loop runs over the keys with
 * unit stride and vectorises, whatever the head size (the toy tasks' heads are 6 wide, too short
 * to vectorise along). */

/* dst (width, M) = the M rows of src_t (one (batch, kv head) of k or v) transposed */
ALWAYS_INLINE void SFX(load_transposed)(real *dst, const al_tensor *src_t, const real *src, int64_t b, int64_t hk,
                                        int64_t M, int64_t width) {
    for (int64_t j = 0; j < M; j++) {
        const real *r = src + row_offset(src_t, b, hk, j);
        for (int64_t c = 0; c < width; c++) dst[c * M + j] = r[c];
    }
}

/* O (B, H, N, dv) the output; P (B, H, N, M) the probabilities when the map is kept (else NULL: a
 * row of scratch serves); LSE (B, H, N) the rows' log-sum-exps when the backward will recompute
 * the rows (else NULL).  False when a thread got no scratch (the caller raises the error). */
static bool SFX(dense_forward)(const attention_problem *p, dense_normalisation kind, real *P, real *O,
                               real *LSE) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data, *V = p->v->storage->data;
    const real *Bias = p->bias ? (const real *)p->bias->storage->data : NULL;
    const real *Mask = p->mask ? (const real *)p->mask->storage->data : NULL;
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;
    const real scale = (real)p->scale, inv_norm = (real)(1.0 / p->norm);
    const bool parallel = dense_parallel(p), rows = dense_rows_path(p);
    bool failed = false;   /* a thread without scratch: raised by the caller */
    #pragma omp parallel if (parallel)
    {
        /* kt, vt: transposed keys and values; row: the probabilities when P is not kept */
        real *kt = malloc(sizeof(real) * (size_t)((d + dv + 1) * M + 1)), *vt = kt ? kt + d * M : NULL;
        real *row = kt ? vt + dv * M : NULL;
        #pragma omp for schedule(static)
        for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {
            if (scratch_missing(kt, &failed)) continue;
            const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;
            if (!rows) {
                SFX(load_transposed)(kt, p->k, K, b, hk, M, d);
                SFX(load_transposed)(vt, p->v, V, b, hk, M, dv);
            }
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                const int64_t bh = b * p->H + h;
                for (int64_t i = 0; i < N; i++) {
                    const real *q = Q + row_offset(p->q, b, h, i);
                    real *prow = P ? P + (bh * N + i) * M : row, *o = O + (bh * N + i) * dv;
                    int64_t lo;
                    const int64_t end = visible_range(p, i, &lo);
                    if (rows) {
                        SFX(dots)(q, K + row_offset(p->k, b, hk, lo), p->k->strides[2], d, end - lo, scale, prow + lo);
                    } else {
                        for (int64_t j = lo; j < end; j++) prow[j] = 0;
                        for (int64_t c = 0; c < d; c++) {
                            const real qc = q[c] * scale, *kc = kt + c * M;
                            for (int64_t j = lo; j < end; j++) prow[j] += qc * kc[j];
                        }
                    }
                    if (Bias) {
                        const real *br = Bias + row_offset(p->bias, b, h, i);
                        const int64_t bs = p->bias->strides[3];
                        for (int64_t j = lo; j < end; j++) prow[j] += br[j * bs];
                    }
                    if (Mask) {
                        const real *mr = Mask + row_offset(p->mask, b, h, i);
                        const int64_t ms = p->mask->strides[3];
                        for (int64_t j = lo; j < end; j++) if (mr[j * ms] == 0) prow[j] = -INFINITY;
                    }
                    if (kind == DENSE_SOFTMAX) {
                        real mx, z;
                        SFX(softmax_row_best)(prow + lo, end - lo, &mx, &z);
                        /* +inf for a row with nothing visible: exp(s - lse) is then 0 */
                        if (LSE) LSE[bh * N + i] = z > 0 ? mx + (real)log((double)z) : (real)INFINITY;
                    } else {
                        for (int64_t j = lo; j < end; j++)
                            prow[j] = prow[j] == -INFINITY ? (real)0 : prow[j] * inv_norm;
                    }
                    for (int64_t j = 0; j < lo; j++) prow[j] = 0;
                    for (int64_t j = end; j < M; j++) prow[j] = 0;
                    if (rows) {
                        SFX(weighted_rows)(prow + lo, V + row_offset(p->v, b, hk, lo), p->v->strides[2], dv, end - lo, (real)1, o);
                    } else {
                        for (int64_t c = 0; c < dv; c++) {
                            const real *vc = vt + c * M;
                            real acc = 0;
                            for (int64_t j = lo; j < end; j++) acc += prow[j] * vc[j];
                            o[c] = acc;
                        }
                    }
                }
            }
        }
        free(kt);
    }
    return !failed;
}

/* The probabilities of one query row, recomputed for the backward when the forward kept only the
 * row's log-sum-exp (the map was too large to keep): the same logits as the forward (scale q.k,
 * plus bias, masked entries -inf), then exp(s - lse) (softmax) or s / norm (lsa), on [lo, end). */
static void SFX(recompute_row)(const attention_problem *p, dense_normalisation kind, const real *LSE,
                               int64_t b, int64_t h, int64_t hk, int64_t i, int64_t lo, int64_t end,
                               real *prow) {
    const real *Q = p->q->storage->data, *K = p->k->storage->data;
    const real *q = Q + row_offset(p->q, b, h, i);
    SFX(dots)(q, K + row_offset(p->k, b, hk, lo), p->k->strides[2], p->d, end - lo, (real)p->scale, prow + lo);
    if (p->bias) {
        const real *br = (const real *)p->bias->storage->data + row_offset(p->bias, b, h, i);
        for (int64_t j = lo; j < end; j++) prow[j] += br[j * p->bias->strides[3]];
    }
    if (p->mask) {
        const real *mr = (const real *)p->mask->storage->data + row_offset(p->mask, b, h, i);
        for (int64_t j = lo; j < end; j++) if (mr[j * p->mask->strides[3]] == 0) prow[j] = -INFINITY;
    }
    if (kind == DENSE_SOFTMAX) {
        const real lse = LSE[(b * p->H + h) * p->N + i];
        for (int64_t j = lo; j < end; j++) prow[j] = FAST_EXP(prow[j] - lse);
    } else {
        const real inv_norm = (real)(1.0 / p->norm);
        for (int64_t j = lo; j < end; j++) prow[j] = prow[j] == -INFINITY ? (real)0 : prow[j] * inv_norm;
    }
}

/* What both backward paths need of query row i of head h: its output gradient *go, its query *q, its
 * visible keys [*lo, *end), and (returned) its probabilities: P's row when the forward kept the map,
 * else the row recomputed into `row`. */
ALWAYS_INLINE const real *SFX(backward_query_row)(const attention_problem *p, dense_normalisation kind, const real *P,
                                                  const real *LSE, const real *dO, int64_t b, int64_t h, int64_t hk,
                                                  int64_t i, real *row, const real **go, const real **q, int64_t *lo,
                                                  int64_t *end) {
    const int64_t bhi = (b * p->H + h) * p->N + i;
    *go = dO + bhi * p->dv;
    *q = (const real *)p->q->storage->data + row_offset(p->q, b, h, i);
    *end = visible_range(p, i, lo);
    if (P) return P + bhi * p->M;
    SFX(recompute_row)(p, kind, LSE, b, h, hk, i, *lo, *end, row);
    return row;
}

/* dbias row (M) = dS on the visible keys [lo, end), 0 elsewhere */
ALWAYS_INLINE void SFX(write_dbias_row)(real *dbr, const real *ds, int64_t lo, int64_t end, int64_t M) {
    for (int64_t j = 0; j < lo; j++) dbr[j] = 0;
    for (int64_t j = lo; j < end; j++) dbr[j] = ds[j];
    for (int64_t j = end; j < M; j++) dbr[j] = 0;
}

/* The data both backward paths read and write: k, v and the mask (NULL when none) of the problem,
 * and the gradients' data (NULL for a gradient not wanted). */
typedef struct { const real *K, *V, *Mask; real *dQ, *dK, *dV; } SFX(backward_data);
ALWAYS_INLINE SFX(backward_data) SFX(backward_data_of)(const attention_problem *p, al_tensor *gq, al_tensor *gk,
                                                       al_tensor *gv) {
    const SFX(backward_data) data = {p->k->storage->data, p->v->storage->data,
                                     p->mask ? (const real *)p->mask->storage->data : NULL,
                                     gq ? (real *)gq->storage->data : NULL, gk ? (real *)gk->storage->data : NULL,
                                     gv ? (real *)gv->storage->data : NULL};
    return data;
}

/* Few queries per (batch, kv head), as in the toy tasks' single query: transposing the keys would
 * cost as much as the arithmetic, so these loops walk the rows of k and v as they are. */
static void SFX(dense_backward_rows)(const attention_problem *p, dense_normalisation kind, const real *P,
                                     const real *LSE, const real *dO, al_tensor *gq, al_tensor *gk,
                                     al_tensor *gv, real *dBias, int64_t b, int64_t hk, real *ds, real *row) {
    const SFX(backward_data) data = SFX(backward_data_of)(p, gq, gk, gv);
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;
    const real scale = (real)p->scale, inv_norm = (real)(1.0 / p->norm);
    /* row j of k (v, dk, dv) for this (b, hk) is at base + j * stride */
    const real *kb = data.K + row_offset(p->k, b, hk, 0), *vb = data.V + row_offset(p->v, b, hk, 0);
    const int64_t ks = p->k->strides[2], vs = p->v->strides[2];
    real *dkb = data.dK ? data.dK + row_offset(gk, b, hk, 0) : NULL, *dvb = data.dV ? data.dV + row_offset(gv, b, hk, 0) : NULL;
    const int64_t dks = data.dK ? gk->strides[2] : 0, dvs = data.dV ? gv->strides[2] : 0;
    /* with a single query per (batch, kv head), each row of dk and dv gets exactly one
     * contribution: assign it, with no zero fill and no read-modify-write */
    const int accumulate = N * group > 1;
    int64_t lo0 = 0, end0 = 0;   /* rows no single query writes start at 0: [0, lo0), [end0, M) */
    if (!accumulate) end0 = visible_range(p, 0, &lo0);
    /* two ranges, not one loop over M that skips the written rows: that loop's tests cost 2.5%
     * of the ICL step when it zeroed nothing */
    for (int part = 0; part < 2; part++) {
        const int64_t from = part ? end0 : 0, to = part ? M : lo0;
        for (int64_t j = from; j < to; j++) {
            if (dkb) for (int64_t c = 0; c < d; c++) dkb[j * dks + c] = 0;
            if (dvb) for (int64_t c = 0; c < dv; c++) dvb[j * dvs + c] = 0;
        }
    }
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        const int64_t bh = b * p->H + h;
        for (int64_t i = 0; i < N; i++) {
            const real *go, *q;
            int64_t lo, end;
            const real *prow = SFX(backward_query_row)(p, kind, P, LSE, dO, b, h, hk, i, row, &go, &q, &lo, &end);
            SFX(dots)(go, vb + lo * vs, vs, dv, end - lo, (real)1, ds + lo);   /* dP = dO v^T */
            const real delta = SFX(row_dot_best)(ds + lo, prow + lo, end - lo);
            if (dvb) SFX(scaled_rows)(dvb + lo * dvs, dvs, dv, end - lo, prow + lo, (real)1, go, accumulate); /* dV += P^T dO */
            for (int64_t j = lo; j < end; j++) {
                if (kind == DENSE_SOFTMAX) ds[j] = prow[j] * (ds[j] - delta);
                else ds[j] = data.Mask && data.Mask[row_offset(p->mask, b, h, i) + j * p->mask->strides[3]] == 0
                                 ? (real)0 : ds[j] * inv_norm;
            }
            if (dBias) SFX(write_dbias_row)(dBias + (bh * N + i) * M, ds, lo, end, M);
            if (data.dQ) {                          /* dq = scale dS k */
                real *dq = data.dQ + row_offset(gq, b, h, i);
                /* scaled in the kernel: a scalar pass over dq after the vector store stalled on
                 * store forwarding (9% of the backward) */
                SFX(weighted_rows)(ds + lo, kb + lo * ks, ks, d, end - lo, scale, dq);
            }
            if (dkb) SFX(scaled_rows)(dkb + lo * dks, dks, d, end - lo, ds + lo, scale, q, accumulate); /* dK += scale dS^T q */
        }
    }
}

/* The backward runs one (batch, kv head) per iteration, so the dk and dv of a group (shared by its
 * query heads) are accumulated by one thread, transposed in scratch, and written once at the end:
 * no zero fill and no atomics.  dS goes to dbias when the bias is trainable. */
static bool SFX(dense_backward)(const attention_problem *p, dense_normalisation kind, const real *P,
                                const real *LSE, const real *dO, al_tensor *gq, al_tensor *gk,
                                al_tensor *gv, real *dBias) {
    const SFX(backward_data) data = SFX(backward_data_of)(p, gq, gk, gv);
    const int64_t group = p->H / p->Hkv, N = p->N, M = p->M, d = p->d, dv = p->dv;
    const real scale = (real)p->scale, inv_norm = (real)(1.0 / p->norm);
    const bool parallel = dense_parallel(p), rows = dense_rows_path(p);
    bool failed = false;   /* a thread without scratch: raised by the caller */
    #pragma omp parallel if (parallel)
    {
        real *kt = malloc(sizeof(real) * (size_t)(2 * (d + dv) * M + 2 * M + 1));
        real *vt = kt + d * M, *dkt = vt + dv * M, *dvt = dkt + d * M, *ds = dvt + dv * M;
        real *row = ds + M;   /* the recomputed probabilities when P is not kept */
        #pragma omp for schedule(static)
        for (int64_t bk = 0; bk < p->B * p->Hkv; bk++) {
            if (scratch_missing(kt, &failed)) continue;
            const int64_t b = bk / p->Hkv, hk = bk % p->Hkv;
            if (rows) {
                SFX(dense_backward_rows)(p, kind, P, LSE, dO, gq, gk, gv, dBias, b, hk, ds, row);
                continue;
            }
            SFX(load_transposed)(kt, p->k, data.K, b, hk, M, d);
            SFX(load_transposed)(vt, p->v, data.V, b, hk, M, dv);
            memset(dkt, 0, sizeof(real) * (size_t)((d + dv) * M));
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                const int64_t bh = b * p->H + h;
                for (int64_t i = 0; i < N; i++) {
                    const real *go, *q;
                    int64_t lo, end;
                    const real *prow = SFX(backward_query_row)(p, kind, P, LSE, dO, b, h, hk, i, row, &go, &q, &lo, &end);
                    for (int64_t j = lo; j < end; j++) ds[j] = 0;
                    for (int64_t c = 0; c < dv; c++) {   /* dP = dO v^T;  dV += P^T dO */
                        const real g = go[c], *vc = vt + c * M;
                        real *dvc = dvt + c * M;
                        for (int64_t j = lo; j < end; j++) { ds[j] += g * vc[j]; dvc[j] += g * prow[j]; }
                    }
                    if (kind == DENSE_SOFTMAX) {
                        real delta = 0;
                        for (int64_t j = lo; j < end; j++) delta += ds[j] * prow[j];
                        for (int64_t j = lo; j < end; j++) ds[j] = prow[j] * (ds[j] - delta);
                    } else {
                        for (int64_t j = lo; j < end; j++) ds[j] *= inv_norm;
                        if (data.Mask) {
                            const real *mr = data.Mask + row_offset(p->mask, b, h, i);
                            const int64_t ms = p->mask->strides[3];
                            for (int64_t j = lo; j < end; j++) if (mr[j * ms] == 0) ds[j] = 0;
                        }
                    }
                    if (dBias) SFX(write_dbias_row)(dBias + (bh * N + i) * M, ds, lo, end, M);
                    if (data.dQ) {
                        real *dq = data.dQ + row_offset(gq, b, h, i);
                        for (int64_t c = 0; c < d; c++) {
                            const real *kc = kt + c * M;
                            real acc = 0;
                            for (int64_t j = lo; j < end; j++) acc += ds[j] * kc[j];
                            dq[c] = scale * acc;
                        }
                    }
                    for (int64_t c = 0; c < d; c++) {    /* dK += scale dS^T q */
                        const real qc = scale * q[c];
                        real *dkc = dkt + c * M;
                        for (int64_t j = lo; j < end; j++) dkc[j] += qc * ds[j];
                    }
                }
            }
            for (int64_t j = 0; j < M; j++) {
                if (data.dK) { real *r = data.dK + row_offset(gk, b, hk, j); for (int64_t c = 0; c < d; c++) r[c] = dkt[c * M + j]; }
                if (data.dV) { real *r = data.dV + row_offset(gv, b, hk, j); for (int64_t c = 0; c < dv; c++) r[c] = dvt[c * M + j]; }
            }
        }
        free(kt);
    }
    return !failed;
}
