/* attention_internal.h -- what the attention variants share: the validated problem description
 * and the signature every variant implements. */
#ifndef ATTNLAB_ATTENTION_INTERNAL_H
#define ATTNLAB_ATTENTION_INTERNAL_H
#include "../internal.h"

/* One attention call, after validation: q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), with
 * H a multiple of Hkv (grouped KV heads: query head h reads kv head h / (H / Hkv)).  bias and mask
 * are already expanded (as stride-0 views) to (B, H, N, M) and converted to q's dtype. */
typedef struct {
    const al_tensor *q, *k, *v, *bias, *mask;
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;          /* 0 none, 1 top-left, 2 bottom-right */
    double scale;
    double norm;         /* fixed normaliser of the "lsa" variant */
    int64_t window;      /* > 0: keys within this distance of the query's diagonal (sliding window) */
    int64_t kernel_size; /* > 0: the query's neighborhood of this many keys (neighborhood) */
    int64_t stride;      /* strided_neighborhood: queries per shared window (1: plain neighborhood) */
    const al_attention_opts *opts; /* the caller's options, for the variants' own (never NULL) */
} attention_problem;

typedef al_tensor *(*attention_forward_fn)(const attention_problem *p, al_tensor **weights);

/* The variants (one file each). */
al_tensor *attention_softmax_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_lsa_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_linear_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_sliding_window_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_neighborhood_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_strided_neighborhood_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_power_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_dynamic_mask_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_flashbias_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_relative_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_pointer_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_landmark_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_hyper_forward(const attention_problem *p, al_tensor **weights);
al_tensor *attention_routing_forward(const attention_problem *p, al_tensor **weights);

/* Ranking for the top-k selections (topk_mask, dynamic_mask, routing): sorts n scored positions
 * by score, largest first, ties to the lower position, NaN last (topk_mask.c). */
typedef struct { double score; int64_t pos; } scored_position;
void rank_descending(scored_position *items, int64_t n);

/* k or v (B, Hkv, M, .) with its heads repeated to H query heads (differentiable; linear.c) */
al_tensor *attention_repeat_kv_heads(const al_tensor *t, int64_t H);

/* S (B, H, N, M) with -inf where causal or opts.mask forbids (masked_logits.c); differentiable in S */
al_tensor *attention_mask_logits(const attention_problem *p, const al_tensor *S);

/* An error naming the option when o holds an option of power ... pointer that `variant` does not take. */
bool attention_check_variant_options(const char *variant, const al_attention_opts *o);

/* The dense kernel both use: normalise = softmax over allowed keys, or a fixed 1/norm. */
typedef enum { DENSE_SOFTMAX, DENSE_FIXED_NORM } dense_normalisation;
al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights);

/* Softmax attention over an explicit list of keys per query (sparse.c), for the patterns that
 * are not a range: rows are the B*H*N queries in order (b, h, i); each row's keys are pushed, then
 * the row is ended.  offsets (optional) are constants added to each entry's logit. */
typedef struct {
    int64_t rows, row, nnz, cap;
    int64_t *start, *keys;
    double *offsets;
} key_list_builder;
bool key_lists_init(key_list_builder *kb, int64_t rows, bool with_offsets);
bool key_lists_push(key_list_builder *kb, int64_t key, double offset);
void key_lists_end_row(key_list_builder *kb);
void key_lists_free(key_list_builder *kb);
/* Runs the kernel and frees the builder.  key_bias (B, Hkv, M) (may be NULL) is added to every
 * query's logit for key j and is differentiable. */
al_tensor *attention_sparse_forward(const attention_problem *p, key_list_builder *kb,
                                    const al_tensor *key_bias, const char *name, al_tensor **weights);

#endif
