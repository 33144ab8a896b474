/* softmax.c -- the "softmax" variant, O = softmax(scale q k^T + bias, masked) v, and the choice of
 * kernel that every softmax-over-visible-keys variant (softmax, sliding_window, neighborhood,
 * strided_neighborhood) shares:
 *   dense (dense.c): the whole map at once; keeps it for the backward while it is small, returns it
 *     with weights = true, takes a trainable bias.  Its row path suits a few queries per head.
 *   tiled (tiled.c): online softmax over key tiles, never forms the map: O(N) memory, BLAS-speed
 *     tiles.
 * kernel = "auto" takes the tiled one when nothing needs the map (no weights, no trainable bias)
 * unless a kv head has fewer than TILED_MIN_QUERIES queries (its query heads' rows together): the
 * dense kernel's row path is made for those (the regression study's single query over 40 keys:
 * 0.81 ms forward + backward dense, 2.4 ms tiled), while from 8 x 8 maps up the tiled kernel was
 * 2-14x faster than the dense one (bench/RESULTS.md). */
#include "attention_internal.h"

enum { TILED_MIN_QUERIES = 8 };

/* dense_name, tiled_name: the graph node's name under each kernel (t:grad_fn() in Lua) */
al_tensor *attention_softmax_over_visible(const attention_problem *p, const char *dense_name,
                                          const char *tiled_name, al_tensor **weights) {
    /* on CUDA tensors one fused kernel serves every `kernel` choice (softmax_cuda.c) */
    if (p->q->storage->device == AL_CUDA) return attention_cuda_softmax_forward(p, weights);
    const bool trainable_bias = p->bias && p->bias->requires_grad;
    bool tiled = p->kernel == 2;
    if (p->kernel == 0) tiled = !weights && !trainable_bias && p->N * (p->H / p->Hkv) >= TILED_MIN_QUERIES;
    if (tiled && weights) {
        al_error("%s: the tiled kernel never forms the attention map; ask for weights with kernel = 'dense' "
                 "(or 'auto')", dense_name);
        return NULL;
    }
    return tiled ? attention_tiled_forward(p, tiled_name) : attention_dense_forward(p, DENSE_SOFTMAX, dense_name, weights);
}

typedef struct { int kernel; } softmax_options;
static const attention_option options[] = {KERNEL_OPTION(softmax_options), {0}};

static al_tensor *softmax_forward(attention_problem *p, al_tensor **weights) {
    p->kernel = ((const softmax_options *)p->options)->kernel;
    return attention_softmax_over_visible(p, "attention_softmax", "attention_softmax_tiled", weights);
}

const attention_variant attention_softmax = {
    .name = "softmax", .forward = softmax_forward, .cuda_forward = softmax_forward, .options = options,
    .options_size = sizeof(softmax_options),
    .summary = "scaled dot-product softmax attention (tiled online softmax, or dense when the map is wanted)"};
