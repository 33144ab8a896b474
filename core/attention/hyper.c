/* hyper.c -- the "hyper" variant: HyperAttention (Han et al. 2023, arXiv 2310.05869;
 * insuhan/hyper-attn), an estimator of softmax attention:
 *   1. sortLSH: angular LSH with r = lsh_bits random hyperplanes (drawn from the global generator,
 *      so lab.seed fixes them), code = sum_t 2^t [x . w_t > 0], bucket = the code's position in the
 *      Gray-code order (adjacent buckets differ in one bit); queries and keys sorted by bucket,
 *      stably.  lsh_bits 0 (or -1): no hyperplane, one bucket (the sort keeps the original order).
 *   2. blocks: the sorted keys cut into nb = ceil(M / block_size) blocks, the sorted queries into
 *      as many (sorted rank r goes to block floor(r nb / count)); each query attends exactly to the
 *      keys of its block.
 *   3. residual: m = samples key indices per (batch, head), uniform with replacement; each query
 *      also attends to the sampled keys outside its block, each weighted M / m (the importance
 *      weight, an additive log(M / m) on its logit; sampled keys inside the block are masked, as
 *      the reference's CPU path does -- its flash path double-counts them).
 *   The estimator is D~_i = sum_block e^s + (M/m) sum_{sample, not in block} e^s and
 *   O~_i = (sum_block e^s v + (M/m) sum_sample e^s v) / D~_i: the section-0 log-sum-exp merge of the
 *   block part and the weighted sample part, computed here in one pass of the sparse kernel (the
 *   tests check it equals lab.attention.merge of the two parts).  Unbiased for the sums, not for
 *   the ratio.  Exact when one block holds every key (block_size >= M, or a single block).
 * Causal: the same estimator restricted to keys j <= t (our masked form; the paper's causal
 * algorithm instead recurses on halves, exact below 4,096 tokens -- not implemented).
 * The gradient is that of the exact pieces (hashing, sorting and sampling are constants).
 * Cost O(N (b + m) (d + dv) + N log N + N d r) time, O(N (b + m)) memory.  On CUDA tensors the
 * hashing and the lists are the host's (from copies of q and k), and the lists run on the device
 * (core/cuda/sparse.cu). */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>

typedef struct { int64_t bucket, pos; } hashed;
static int by_bucket_then_pos(const void *a, const void *b) {
    const hashed *x = a, *y = b;
    if (x->bucket != y->bucket) return x->bucket < y->bucket ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* the position of code c in the Gray-code sequence g(n) = n ^ (n >> 1) (the inverse map) */
static int64_t gray_rank(int64_t c) {
    int64_t n = c;
    for (int64_t s = c >> 1; s; s >>= 1) n ^= s;
    return n;
}

/* element c of row i of the (., ., n, width) tensor t at (b, h), as a double */
static inline double elem(const al_tensor *t, int64_t b, int64_t h, int64_t i, int64_t c) {
    const int64_t off = t->offset + b * t->strides[0] + h * t->strides[1] + i * t->strides[2] + c * t->strides[3];
    return t->dtype == AL_FLOAT32 ? ((const float *)t->storage->data)[off] : ((const double *)t->storage->data)[off];
}

/* rows 0..n-1 of x (at b, h) sorted by bucket; block_of[pos] = the block of that row */
static void sort_into_blocks(const al_tensor *x, int64_t b, int64_t h, int64_t n, const double *proj, int64_t r,
                             int64_t nb, hashed *order, int64_t *block_of) {
    for (int64_t i = 0; i < n; i++) {
        int64_t code = 0;
        for (int64_t t = 0; t < r; t++) {
            double dot = 0;
            for (int64_t c = 0; c < x->shape[3]; c++) dot += elem(x, b, h, i, c) * proj[c * r + t];
            if (dot > 0) code |= (int64_t)1 << t;
        }
        order[i] = (hashed){gray_rank(code), i};
    }
    qsort(order, (size_t)n, sizeof *order, by_bucket_then_pos);
    for (int64_t rank = 0; rank < n; rank++) block_of[order[rank].pos] = rank * nb / n;
}

typedef struct { int64_t block_size, samples, lsh_bits; } hyper_options;
static const attention_option options[] = {
    {OPTION_FIELD(hyper_options, block_size), .kind = OPTION_INTEGER, .least = 1, .fallback = 64,
     .summary = "the sortLSH block: keys per block (default 64)"},
    {OPTION_FIELD(hyper_options, samples), .kind = OPTION_INTEGER, .least = 0, .fallback = -1,
     .summary = "residual keys sampled per (batch, head) (default block_size; 0: none)"},
    {OPTION_FIELD(hyper_options, lsh_bits), .kind = OPTION_INTEGER, .least = -1, .most = 30, .fallback = 7,
     .summary = "random hyperplanes of the angular LSH (default 7; 0 or -1: one bucket)"},
    {0},
};

static al_tensor *hyper_forward(attention_problem *p, al_tensor **weights) {
    const hyper_options *o = p->options;
    const int64_t N = p->N, M = p->M, d = p->d, group = p->H / p->Hkv;
    const int64_t bsize = o->block_size;
    const int64_t r = o->lsh_bits < 0 ? 0 : o->lsh_bits;
    const int64_t m = o->samples < 0 ? bsize : o->samples;   /* -1: not given */
    const int64_t nb = M > 0 ? (M + bsize - 1) / bsize : 1;
    int64_t ps[2] = {d, r > 0 ? r : 1}, ss[3] = {p->B, p->H, m};
    al_tensor *proj = r > 0 ? al_randn(2, ps, AL_FLOAT64) : NULL;
    al_tensor *samples = m > 0 && M > 0 ? al_randint(0, M, 3, ss) : NULL;
    hashed *order = malloc(sizeof(hashed) * (size_t)(N + M + 1));
    int64_t *qblock = malloc(sizeof(int64_t) * (size_t)(N + 1)), *kblock = malloc(sizeof(int64_t) * (size_t)(M + 1));
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(nb + 1));   /* block g's keys: korder[first[g] .. first[g+1]) */
    hashed *korder = order + N;
    key_list_builder kb = {0};
    /* the hashing reads q and k on the host: copies of CUDA tensors (the lists are built there and
     * run on the device by core/cuda/sparse.cu) */
    al_tensor *qx = al_to_cpu_nograd(p->q), *kx = al_to_cpu_nograd(p->k);
    bool ok = qx && kx && (r == 0 || proj) && (m == 0 || M == 0 || samples) && order && qblock && kblock && first &&
              key_lists_init(&kb, p->B * p->H * N, true);
    const double log_weight = m > 0 ? log((double)M / (double)m) : 0;
    for (int64_t bh = 0; ok && bh < p->B * p->H; bh++) {
        const int64_t b = bh / p->H, h = bh % p->H, hk = h / group;
        const double *pr = proj ? al_ptr(proj) : NULL;
        sort_into_blocks(kx, b, hk, M, pr, r, nb, korder, kblock);
        sort_into_blocks(qx, b, h, N, pr, r, nb, order, qblock);
        for (int64_t g = 0, rank = 0; g <= nb; g++) {
            while (rank < M && kblock[korder[rank].pos] < g) rank++;
            first[g] = rank;
        }
        const int64_t *drawn = samples ? (const int64_t *)al_ptr(samples) + bh * m : NULL;
        for (int64_t i = 0; ok && i < N; i++) {
            const int64_t t = !p->causal ? M - 1 : i + (p->causal == 2 ? M - N : 0), g = qblock[i];
            for (int64_t e = first[g]; ok && e < first[g + 1]; e++)
                if (korder[e].pos <= t) ok = key_lists_push(&kb, korder[e].pos, 0);
            for (int64_t s = 0; ok && drawn && s < m; s++)
                if (drawn[s] <= t && kblock[drawn[s]] != g) ok = key_lists_push(&kb, drawn[s], log_weight);
            key_lists_end_row(&kb);
        }
    }
    if (!order || !qblock || !kblock || !first) al_error("attention: out of memory for the LSH blocks");
    free(order); free(qblock); free(kblock); free(first);
    al_release(proj); al_release(samples);
    al_release(qx); al_release(kx);
    if (!ok) { key_lists_free(&kb); return NULL; }
    return attention_sparse_forward(p, &kb, NULL, "attention_hyper", weights);
}

const attention_variant attention_hyper = {
    .name = "hyper", .forward = hyper_forward, .cuda_forward = hyper_forward, .options = options,
    .options_size = sizeof(hyper_options),
    .summary = "HyperAttention (estimator): sortLSH blocks plus sampled residual keys weighted M/m, merged by "
               "log-sum-exp"};
