/* moh.c -- the "moh" variant: the attention half of Mixture-of-Head attention (Jin et al. 2024,
 * arXiv 2410.11842): softmax attention whose per-head outputs are scaled by per-token gates before
 * the output projection, O[b, h, i] = gates[b, h, i] softmax(scale q_i k^T + bias, masked) v, with
 * opts.gates broadcast to (B, H, N) (may require grad; a gate of 0 switches a head off for a token).
 * The router that makes the gates (top-k routed heads plus shared heads, the two-way balance and the
 * load-balance loss) is module-level: nn.MultiHeadAttention{variant = "moh", shared_heads =,
 * active_heads =}.  Every head is computed (the dense kernel; gated-off heads are not skipped), so the
 * cost is softmax attention's.  Its map is the softmax map scaled by each row's gate. */
#include "attention_internal.h"

typedef struct { const al_tensor *gates; int kernel; } moh_options;
static const attention_option options[] = {
    {OPTION_FIELD(moh_options, gates), .kind = OPTION_TENSOR,
     .summary = "per-token head gates, broadcast to (B, H, N) (the module's router makes them)"},
    KERNEL_OPTION(moh_options),
    {0},
};

static al_tensor *moh_forward(attention_problem *p, al_tensor **weights) {
    const moh_options *opt = p->options;
    p->kernel = opt->kernel;
    if (!opt->gates) {
        al_error("attention: variant 'moh' needs opts.gates, per-token head gates broadcastable to (B, H, N) = %s",
                 al_shape_str(3, (int64_t[]){p->B, p->H, p->N}));
        return NULL;
    }
    op_scope s = {0};
    al_tensor *g = OP(&s, attention_broadcast_option("moh", "gates", opt->gates, 3, (int64_t[]){p->B, p->H, p->N},
                                                     "(B, H, N)", p->q->dtype));
    al_tensor *g4 = OP(&s, al_unsqueeze(g, 3));
    al_tensor *map = NULL;
    al_tensor *o = g4 ? OP(&s, attention_softmax_over_visible(p, "attention_moh", "attention_moh_tiled", weights ? &map : NULL)) : NULL;
    if (map) OP(&s, map);   /* held by the scope: released at the end */
    al_tensor *out = OP(&s, al_mul(o, g4));
    al_tensor *w = NULL;
    if (out && weights) {
        int prev = al_set_grad_enabled(0);
        w = OP(&s, al_mul(map, g4));
        al_set_grad_enabled(prev);
    }
    return scope_return(&s, out, weights, w);
}

const attention_variant attention_moh = {
    .name = "moh", .forward = moh_forward, .cuda_forward = moh_forward, .options = options,
    .options_size = sizeof(moh_options),
    .summary = "mixture-of-head attention: softmax attention with per-token head gates (opts.gates; the router is "
               "nn.MultiHeadAttention's)"};
