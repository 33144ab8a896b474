/* routing.c -- the "routing" variant: Routing Transformer attention (Roy, Saffar, Vaswani,
 * Grangier 2020, arXiv 2003.05997; lucidrains/routing-transformer KmeansAttention):
 *   routing: q~ = q / |q|, k~ = k / |k|; centroids mu (H, c, d) (opts.centroids, a buffer);
 *            each cluster takes its top-w queries by q~ . mu and its top-w keys by k~ . mu
 *            (w = cluster_size, default ceil(M / c); balanced clusters; ties to the lower index)
 *   attention within each cluster: softmax(scale q_i . k_j) over the cluster's keys (causal: the
 *            keys j <= t by original position, t = i or i + M - N); a token may be in several
 *   output: the mean of a query's cluster outputs (the reference's scatter_mean, without its 1e-5
 *           in the denominator); a query no cluster took gets 0.
 * Each (cluster, query) pair is one row of the sparse kernel (the queries gathered, differentiable)
 * and the rows are averaged back by scatter_mean below.  The routing (normalisation, top-w) is a
 * constant; the attention uses q and k as given (the reference's routed heads share Q = K and
 * attend with the normalised keys).  Cost O(N c d) routing plus O(c w^2 (d + dv)) attention:
 * O(N^1.5 d) with c = w = sqrt(N).
 * The centroids are trained outside the gradient by al_routing_update (lab.attention.routing_update):
 * an exponential moving average of spherical k-means steps, as the reference (update below).
 * On CUDA tensors the routing and the update run on host copies of q, k and the centroids; the
 * attention (core/cuda/sparse.cu) and the scatter_mean (core/cuda/scatter_mean.cu) on the device. */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>

/* element c of row i of the 4-d tensor t at (b, h), as a double */
static inline double elem4(const al_tensor *t, int64_t b, int64_t h, int64_t i, int64_t c) {
    const int64_t off = t->offset + b * t->strides[0] + h * t->strides[1] + i * t->strides[2] + c * t->strides[3];
    return t->dtype == AL_FLOAT32 ? ((const float *)t->storage->data)[off] : ((const double *)t->storage->data)[off];
}
static inline double centroid(const al_tensor *mu, int64_t h, int64_t cl, int64_t c) {
    const int64_t off = mu->offset + h * mu->strides[0] + cl * mu->strides[1] + c * mu->strides[2];
    return mu->dtype == AL_FLOAT32 ? ((const float *)mu->storage->data)[off] : ((const double *)mu->storage->data)[off];
}

/* cosine of row i of x (at b, h) with centroid cl of head hc (the centroid's norm not divided out) */
static double routing_score(const al_tensor *x, int64_t b, int64_t h, int64_t i, const al_tensor *mu, int64_t hc,
                            int64_t cl) {
    double dot = 0, norm = 0;
    for (int64_t c = 0; c < x->shape[3]; c++) {
        const double xc = elem4(x, b, h, i, c);
        dot += xc * centroid(mu, hc, cl, c);
        norm += xc * xc;
    }
    return norm > 0 ? dot / sqrt(norm) : 0;
}

/* ---- scatter_mean over the (cluster, query) rows ------------------------------------------- */

/* the kernel, once per dtype: scatter_mean_float, scatter_mean_double */
#define GENERIC_FILE "../generic/scatter_mean_rows.h"
#include "../generic/float_types.h"

/* x (B, H, S or N, w) contiguous -> (B, H, N or S, w); index and count on x's device (on CUDA
 * tensors the same sums in the same order, core/cuda/scatter_mean.cu) */
static al_tensor *scatter_mean_run(const al_tensor *x, const al_tensor *index, const al_tensor *count, bool gather) {
    const int64_t B = x->shape[0], H = x->shape[1], w = x->shape[3];
    const int64_t S = index->shape[2], N = count->shape[2];
    int64_t shape[4] = {B, H, gather ? S : N, w};
    al_tensor *out = al_full_on(4, shape, 0, x->dtype, x->storage->device);
    if (!out) return NULL;
    if (x->storage->device == AL_CUDA) {
        if (al_cuda_scatter_mean(x, out, index, count, B * H, N, S, w, gather) < 0) { al_release(out); return NULL; }
    } else if (x->dtype == AL_FLOAT32)
        scatter_mean_float(al_ptr(x), al_ptr(out), al_ptr(index), al_ptr(count), B * H, N, S, w, gather);
    else
        scatter_mean_double(al_ptr(x), al_ptr(out), al_ptr(index), al_ptr(count), B * H, N, S, w, gather);
    return out;
}

static void scatter_mean_backward(al_node *node, const al_tensor *g) {
    al_tensor *gc = al_contiguous_nograd(g), *d = gc ? scatter_mean_run(gc, node->saved[0], node->saved[1], true) : NULL;
    al_accumulate_input(node, 0, d);
    al_release(gc); al_release(d);
}

static al_tensor *scatter_mean(const al_tensor *x, const al_tensor *index, const al_tensor *count) {
    al_tensor *xc = al_contiguous_nograd(x), *out = xc ? scatter_mean_run(xc, index, count, false) : NULL;
    if (out && al_grad_needed1(x)) {
        al_node *node = al_record(out, "routing_scatter_mean", scatter_mean_backward, 1, &x);
        if (node) { al_node_save(node, 0, index); al_node_save(node, 1, count); }
    }
    al_release(xc);
    return out;
}

/* ---- routing -------------------------------------------------------------------------------- */

static int by_pos(const void *a, const void *b) {
    const scored_position *x = a, *y = b;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* scores[i c + cl] = routing_score(x, b, h, i, mu, hc, cl) for every row and centroid at once, with
 * each row read once and the head's centroids from a contiguous copy (mu_block, c x d): the
 * element-by-element reads made routing's O(N c d) scoring most of its time at N = 16,384.  The
 * same sums in the same order as routing_score, so the same selections. */
static void routing_scores(const al_tensor *x, int64_t b, int64_t h, int64_t n, const double *mu_block, int64_t c,
                           double *row, double *scores) {
    const int64_t d = x->shape[3];
    for (int64_t i = 0; i < n; i++) {
        double norm = 0;
        for (int64_t e = 0; e < d; e++) { row[e] = elem4(x, b, h, i, e); norm += row[e] * row[e]; }
        const double len = norm > 0 ? sqrt(norm) : 0;
        for (int64_t cl = 0; cl < c; cl++) {
            const double *m = mu_block + cl * d;
            double dot = 0;
            for (int64_t e = 0; e < d; e++) dot += row[e] * m[e];
            scores[i * c + cl] = norm > 0 ? dot / len : 0;
        }
    }
}

/* the top-w rows by their score with centroid cl (scores as routing_scores fills them), in
 * position order, into out */
static void cluster_members(const double *scores, int64_t n, int64_t c, int64_t cl, int64_t w, scored_position *tmp,
                            int64_t *out) {
    for (int64_t i = 0; i < n; i++) tmp[i] = (scored_position){scores[i * c + cl], i};
    rank_top(tmp, n, w);
    qsort(tmp, (size_t)w, sizeof *tmp, by_pos);
    for (int64_t r = 0; r < w; r++) out[r] = tmp[r].pos;
}

typedef struct { const al_tensor *centroids; int64_t cluster_size; } routing_options;
static const attention_option options[] = {
    {OPTION_FIELD(routing_options, centroids), .kind = OPTION_TENSOR,
     .summary = "(H, c, d) cluster centroids, unit rows (the module keeps them as a buffer)"},
    {OPTION_FIELD(routing_options, cluster_size), .kind = OPTION_INTEGER, .least = 1,
     .summary = "queries and keys taken per cluster (default ceil(M / c))"},
    {0},
};

static al_tensor *routing_forward(attention_problem *p, al_tensor **weights) {
    const routing_options *o = p->options;
    const al_tensor *mu = o->centroids;
    if (!mu || mu->ndim != 3 || mu->shape[0] != p->H || mu->shape[1] < 1 || mu->shape[2] != p->d) {
        al_error("attention: variant 'routing' needs centroids of shape (H, c, d) = (%lld, c, %lld), c >= 1 (got %s)",
                 (long long)p->H, (long long)p->d, mu ? TSHAPE(mu) : "nil");
        return NULL;
    }
    /* the routing reads q, k and the centroids on the host: copies of CUDA tensors; its index tensors
     * are built there and moved beside q */
    al_tensor *qx = al_to_cpu_nograd(p->q), *kx = al_to_cpu_nograd(p->k), *muh = al_to_cpu_nograd(mu);
    mu = muh;
    const int64_t B = p->B, H = p->H, N = p->N, M = p->M, c = o->centroids->shape[1], d = p->d, group = H / p->Hkv;
    const int64_t w = o->cluster_size ? o->cluster_size : (M + c - 1) / c;
    const int64_t wq = w < N ? w : N, wk = w < M ? w : M, S = c * wq;
    int64_t is[4] = {B, H, S, d}, cs[3] = {B, H, N}, xs[3] = {B, H, S};
    al_tensor *gidx = al_new_tensor(4, is, AL_INT64), *index = al_new_tensor(3, xs, AL_INT64);
    al_tensor *count = al_full(3, cs, 0, AL_FLOAT64);
    scored_position *tmp = malloc(sizeof(scored_position) * (size_t)(N + M + 1));
    int64_t *qsel = malloc(sizeof(int64_t) * (size_t)(S + 1)), *ksel = malloc(sizeof(int64_t) * (size_t)(c * wk + 1));
    double *qscores = malloc(sizeof(double) * (size_t)((N + M) * c + c * d + d + 1));
    double *kscores = qscores ? qscores + N * c : NULL, *mu_block = kscores ? kscores + M * c : NULL;
    double *row = mu_block ? mu_block + c * d : NULL;
    key_list_builder kb = {0};
    bool ok = qx && kx && mu && gidx && index && count && tmp && qsel && ksel && qscores && key_lists_init(&kb, B * H * S, false);
    for (int64_t bh = 0; ok && bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H, hk = h / group;
        for (int64_t cl = 0; cl < c; cl++)
            for (int64_t e = 0; e < d; e++) mu_block[cl * d + e] = centroid(mu, h, cl, e);
        routing_scores(qx, b, h, N, mu_block, c, row, qscores);
        routing_scores(kx, b, hk, M, mu_block, c, row, kscores);
        for (int64_t cl = 0; cl < c; cl++) {
            cluster_members(qscores, N, c, cl, wq, tmp, qsel + cl * wq);
            cluster_members(kscores, M, c, cl, wk, tmp, ksel + cl * wk);
        }
        for (int64_t s = 0; ok && s < S; s++) {
            const int64_t i = qsel[s], cl = s / wq, t = !p->causal ? M - 1 : i + (p->causal == 2 ? M - N : 0);
            ((int64_t *)al_ptr(index))[bh * S + s] = i;
            ((double *)al_ptr(count))[bh * N + i] += 1;
            for (int64_t e = 0; e < d; e++) ((int64_t *)al_ptr(gidx))[(bh * S + s) * d + e] = i;
            for (int64_t r = 0; ok && r < wk; r++)
                if (ksel[cl * wk + r] <= t) ok = key_lists_push(&kb, ksel[cl * wk + r], 0);
            key_lists_end_row(&kb);
        }
    }
    if (!ok) al_error("attention: out of memory routing %lld queries into %lld clusters", (long long)N, (long long)c);
    free(tmp); free(qsel); free(ksel); free(qscores);
    al_release(qx); al_release(kx); al_release(muh);
    al_tensor **built[3] = {&gidx, &index, &count};
    for (int t = 0; ok && t < 3; t++) ok = (*built[t] = attention_on_device_of(p->q, *built[t])) != NULL;
    al_tensor *qr = ok ? al_gather(p->q, 2, gidx) : NULL, *rows = NULL, *out = NULL, *slot_map = NULL;
    if (qr) {
        attention_problem rp = *p;   /* the (cluster, query) rows; causality is in the lists */
        rp.q = qr; rp.N = S; rp.causal = 0;
        rows = attention_sparse_forward(&rp, &kb, NULL, "attention_routing", weights ? &slot_map : NULL);
    } else {
        key_lists_free(&kb);
    }
    if (rows) out = scatter_mean(rows, index, count);
    if (out && weights && slot_map) *weights = scatter_mean_run(slot_map, index, count, false);
    al_release(gidx); al_release(index); al_release(count); al_release(qr); al_release(rows); al_release(slot_map);
    return out;
}

const attention_variant attention_routing = {
    .name = "routing", .forward = routing_forward, .cuda_forward = routing_forward, .flags = ATTENTION_NO_LOGITS,
    .options = options, .options_size = sizeof(routing_options),
    .summary = "Routing Transformer: queries and keys routed to k-means centroids (top cluster_size each), "
               "attention within clusters"};

/* ---- the centroid update ------------------------------------------------------------------- */

/* One EMA step of spherical k-means per head: each row of q (B, H, N, d) and of k (B, Hkv, M, d)
 * (normalised; a kv head's keys count for each of its query heads) is assigned to its nearest centroid of head h (largest dot product; ties to the
 * lower index); a cluster that got rows moves to decay mu + (1 - decay) normalize(sum of its
 * rows), one that got none keeps mu (lucidrains' Kmeans.update; the paper's form weighs the q and
 * k sums by halves, here they are summed together).  decay 0 is one plain spherical k-means step.
 * Returns the new centroids; no gradient. */
static al_tensor *routing_update_host(const al_tensor *centroids, const al_tensor *q, const al_tensor *k, double decay);

al_tensor *al_routing_update(const al_tensor *centroids, const al_tensor *q, const al_tensor *k, double decay) {
    CHECK_TENSOR("routing_update", centroids, "centroids");
    CHECK_TENSOR("routing_update", q, "q");
    CHECK_TENSOR("routing_update", k, "k");
    if (!al_same_device("routing_update", centroids, q, k)) return NULL;   /* CPU or CUDA; no bfloat16 */
    if (centroids->storage->device == AL_CPU) return routing_update_host(centroids, q, k, decay);
    /* on CUDA tensors: the same step on host copies (a statistic of every row; no gradient), the
     * new centroids moved back */
    al_tensor *ch = al_to_cpu_nograd(centroids), *qh = al_to_cpu_nograd(q), *kh = al_to_cpu_nograd(k);
    al_tensor *next = ch && qh && kh ? routing_update_host(ch, qh, kh, decay) : NULL;
    al_tensor *out = next ? al_to_device(next, AL_CUDA) : NULL;
    al_release(ch); al_release(qh); al_release(kh); al_release(next);
    return out;
}

static al_tensor *routing_update_host(const al_tensor *centroids, const al_tensor *q, const al_tensor *k, double decay) {
    if (centroids->ndim != 3 || q->ndim != 4 || k->ndim != 4 || q->shape[1] != centroids->shape[0] ||
        q->shape[3] != centroids->shape[2] || k->shape[3] != centroids->shape[2] || k->shape[0] != q->shape[0] ||
        k->shape[1] < 1 || q->shape[1] % k->shape[1] != 0 || !al_is_float(centroids->dtype) ||
        !al_is_float(q->dtype) || !al_is_float(k->dtype) || !(decay >= 0 && decay <= 1)) {
        al_error("routing_update: needs centroids (H, c, d), q (B, H, N, d), k (B, Hkv, M, d) with Hkv dividing H, "
                 "floats, and 0 <= decay <= 1 (got %s, %s, %s, decay %g)", TSHAPE(centroids), TSHAPE(q), TSHAPE(k), decay);
        return NULL;
    }
    const int64_t H = centroids->shape[0], c = centroids->shape[1], d = centroids->shape[2];
    double *sums = calloc((size_t)(H * c * d + 1), sizeof(double));
    int64_t *hits = calloc((size_t)(H * c + 1), sizeof(int64_t));
    al_tensor *nograd = al_new_tensor(3, centroids->shape, centroids->dtype);
    if (nograd && al_copy_(nograd, centroids) != 0) { al_release(nograd); nograd = NULL; }
    if (!sums || !hits || !nograd) {
        free(sums); free(hits); al_release(nograd);
        al_error("routing_update: out of memory");
        return NULL;
    }
    const al_tensor *sides[2] = {q, k};
    for (int side = 0; side < 2; side++) {
        const al_tensor *x = sides[side];
        const int64_t group = H / x->shape[1];
        for (int64_t b = 0; b < x->shape[0]; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < x->shape[2]; i++) {
                    const int64_t hx = side == 0 ? h : h / group;
                    int64_t best = 0;
                    double best_score = -INFINITY, norm = 0;
                    for (int64_t e = 0; e < d; e++) norm += elem4(x, b, hx, i, e) * elem4(x, b, hx, i, e);
                    for (int64_t cl = 0; cl < c; cl++) {
                        const double s = routing_score(x, b, hx, i, centroids, h, cl);
                        if (s > best_score) { best_score = s; best = cl; }
                    }
                    if (norm == 0) continue;
                    hits[h * c + best]++;
                    for (int64_t e = 0; e < d; e++) sums[(h * c + best) * d + e] += elem4(x, b, hx, i, e) / sqrt(norm);
                }
    }
    for (int64_t hc = 0; hc < H * c; hc++) {
        if (!hits[hc]) continue;
        double norm = 0;
        for (int64_t e = 0; e < d; e++) norm += sums[hc * d + e] * sums[hc * d + e];
        norm = norm > 0 ? sqrt(norm) : 1;
        for (int64_t e = 0; e < d; e++) {
            const int64_t at = hc * d + e;
            if (nograd->dtype == AL_FLOAT32) {
                float *m = al_ptr(nograd);
                m[at] = (float)(decay * m[at] + (1 - decay) * sums[at] / norm);
            } else {
                double *m = al_ptr(nograd);
                m[at] = decay * m[at] + (1 - decay) * sums[at] / norm;
            }
        }
    }
    free(sums); free(hits);
    return nograd;
}
