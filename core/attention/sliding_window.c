/* sliding_window.c -- the "sliding_window" variant: softmax attention in which query i sees only
 * the keys j with |j - i| <= window (j in [i - window, i] when causal; with bottom-right alignment
 * the diagonal is i + M - N).  The dense kernel walks only that band of each row, so the cost is
 * O(N * window * d), not O(N * M * d).  (Its backward keeps the N x M map only below the map limit;
 * above it, it recomputes each row from the saved log-sum-exp: see dense.c.) */
#include "attention_internal.h"

typedef struct { int64_t window; int kernel; } sliding_window_options;
static const attention_option options[] = {
    {OPTION_FIELD(sliding_window_options, window), .kind = OPTION_INTEGER, .least = 1, .required = true,
     .summary = "the keys within this distance of the query's diagonal"},
    KERNEL_OPTION(sliding_window_options),
    {0},
};

static al_tensor *sliding_window_forward(attention_problem *p, al_tensor **weights) {
    const sliding_window_options *o = p->options;
    p->window = o->window;
    p->kernel = o->kernel;
    return attention_softmax_over_visible(p, "attention_sliding_window", "attention_sliding_window_tiled", weights);
}

const attention_variant attention_sliding_window = {
    .name = "sliding_window", .forward = sliding_window_forward, .cuda_forward = sliding_window_forward,
    .options = options,
    .options_size = sizeof(sliding_window_options),
    .summary = "softmax attention over the keys within `window` positions of the query's diagonal; the rest are "
               "never visited"};
