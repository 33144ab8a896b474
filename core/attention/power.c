/* power.c -- the "power" variant: PowerAttention (Chen et al. 2025, arXiv 2503.03588), a static
 * causal sparse pattern whose receptive field doubles with each layer.  At block granularity
 * (block_size b tokens; query block I = t / b, key block J = j / b, t the query's diagonal
 * position: i, or i + M - N bottom-right):
 *   allowed iff j <= t and (I - J < local_blocks  or  I - J is a power of two)
 * The exact rule is our reading of the paper's description (the reference notes flag it as
 * unverified: no code was available); no attention sink.  Any distance is a sum of at most
 * log2(N/b) + 1 allowed hops, which is the paper's completeness claim (tested).
 * Each query lists its O((local_blocks + log2(N/b)) b) keys and the sparse kernel visits only
 * those: O(N log N) work and memory, never N x M.  Causal by definition: causal must be given. */
#include "attention_internal.h"
#include <stdlib.h>

/* the blocks before I that query block I sees, nearest first, into out (at most 64 + w) */
static int power_blocks(int64_t I, int64_t local_blocks, int64_t *out) {
    int n = 0;
    for (int64_t dist = 0; dist < local_blocks && dist <= I; dist++) out[n++] = I - dist;
    for (int64_t dist = 1; dist <= I && dist > 0; dist *= 2)
        if (dist >= local_blocks) out[n++] = I - dist;
    return n;
}

typedef struct { int64_t block_size, local_blocks; } power_options;
static const attention_option options[] = {
    {OPTION_FIELD(power_options, block_size), .kind = OPTION_INTEGER, .least = 1, .fallback = 1,
     .summary = "tokens per block (default 1)"},
    {OPTION_FIELD(power_options, local_blocks), .kind = OPTION_INTEGER, .least = 1, .most = 4096, .fallback = 1,
     .summary = "blocks of the local window before the power-of-2 jumps (default 1)"},
    {0},
};

static al_tensor *power_forward(attention_problem *p, al_tensor **weights) {
    const power_options *o = p->options;
    const int64_t b = o->block_size, w = o->local_blocks;
    if (!p->causal) {
        al_error("attention: variant 'power' is causal by definition: pass causal = true (or 'bottom_right')");
        return NULL;
    }
    key_list_builder kb;
    if (!key_lists_init(&kb, p->B * p->H * p->N, false)) return NULL;
    int64_t *blocks = malloc(sizeof(int64_t) * (size_t)(w + 64));
    if (!blocks) { key_lists_free(&kb); al_error("attention: out of memory"); return NULL; }
    /* every (b, h) has the same pattern: build one row set and repeat it */
    for (int64_t bh = 0; bh < p->B * p->H; bh++)
        for (int64_t i = 0; i < p->N; i++) {
            const int64_t t = i + (p->causal == 2 ? p->M - p->N : 0);
            if (t >= 0) {
                const int n = power_blocks(t / b, w, blocks);
                for (int c = n - 1; c >= 0; c--) {   /* ascending key order */
                    const int64_t first = blocks[c] * b;
                    int64_t last = first + b - 1;
                    if (last > t) last = t;
                    if (last > p->M - 1) last = p->M - 1;
                    for (int64_t j = first; j <= last; j++)
                        if (!key_lists_push(&kb, j, 0)) { free(blocks); key_lists_free(&kb); return NULL; }
                }
            }
            key_lists_end_row(&kb);
        }
    free(blocks);
    return attention_sparse_forward(p, &kb, NULL, "attention_power", weights);
}

const attention_variant attention_power = {
    .name = "power", .forward = power_forward, .cuda_forward = power_forward, .options = options,
    .options_size = sizeof(power_options),
    .summary = "PowerAttention: causal, a local window plus keys at power-of-2 block distances, O(N log N) (Chen "
               "et al. 2025)"};
