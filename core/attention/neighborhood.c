/* neighborhood.c -- the "neighborhood" variant: 1-D neighborhood attention as NATTEN defines it
 * (Hassani et al. 2023; SHI-Labs/NATTEN get_window_start): query i sees the kernel_size = k keys
 * start(i) .. start(i) + k - 1 with start(i) = max(i - r, 0) + (i + r >= L ? L - i - r - 1 : 0),
 * r = k / 2, so the window shifts at the borders instead of shrinking; causal: 0 <= i - j < k, no
 * shift.  The dense kernel walks only those k keys: O(N k d).  Dilation, 2-D/3-D and the relative
 * position bias are not here yet.
 *
 * "strided_neighborhood" is GNA (Hassani et al. 2025; NATTEN flex single_dim_tiling_mask): queries
 * in groups of `stride` share the window of their group's leader (the centre query; the last one
 * when causal), any k; stride 1 gives the plain neighborhood, stride k (odd k) blocked attention.
 * The window rule itself is in dense.c (visible_range). */
#include "attention_internal.h"

al_tensor *attention_neighborhood_forward(const attention_problem *p, al_tensor **weights) {
    return attention_softmax_over_visible(p, "attention_neighborhood", "attention_neighborhood_tiled", weights);
}

al_tensor *attention_strided_neighborhood_forward(const attention_problem *p, al_tensor **weights) {
    return attention_softmax_over_visible(p, "attention_strided_neighborhood",
                                          "attention_strided_neighborhood_tiled", weights);
}
