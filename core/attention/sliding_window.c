/* sliding_window.c -- the "sliding_window" variant: softmax attention in which query i sees only
 * the keys j with |j - i| <= window (j in [i - window, i] when causal; with bottom-right alignment
 * the diagonal is i + M - N).  The dense kernel walks only that band of each row, so the cost is
 * O(N * window * d), not O(N * M * d).  (Its backward keeps the N x M map only below the map limit;
 * above it, it recomputes each row from the saved log-sum-exp: see dense.c.) */
#include "attention_internal.h"

al_tensor *attention_sliding_window_forward(const attention_problem *p, al_tensor **weights) {
    return attention_softmax_over_visible(p, "attention_sliding_window", "attention_sliding_window_tiled", weights);
}
