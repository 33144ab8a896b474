/* neighborhood.c -- the "neighborhood" variant: neighborhood attention as NATTEN defines it
 * (Hassani et al. 2023; SHI-Labs/NATTEN get_window_start), on a sequence or on a grid of up to 3
 * axes (opts.grid, row-major), with dilation.  Per axis, query coordinate x sees the k keys
 * start .. start + k - 1 of its own dilation group (x mod dilation; group coordinate x / dilation,
 * group length ceil((L - group) / dilation)), start = max(x - r, 0) + (x + r >= L ? L - x - r - 1 : 0)
 * in group coordinates, r = k / 2: the window shifts at the borders instead of shrinking; causal
 * (per axis): 0 <= x - j < k, no shift.  A query sees the Cartesian product of its axes' windows,
 * kh * kw (* kd) keys.  The relative position bias is not here.
 *
 * "strided_neighborhood" is GNA (Hassani et al. 2025; NATTEN flex single_dim_tiling_mask): on each
 * axis queries in groups of `stride` share the window of their group's leader (the centre query;
 * the last one when causal), any k; stride 1 gives the plain neighborhood, stride k (odd k) blocked
 * attention.  The per-axis rule is neighborhood_axis_window (attention_internal.h); the options
 * are checked in neighborhood_layout.c.
 *
 * Kernels: a 1-D undilated neighborhood is one key range per query, so it runs on the range
 * kernels (dense or tiled, opts.kernel), and on CUDA tensors on the fused softmax kernel with those
 * ranges; every other pattern lists each query's keys and runs on the key-list kernel (sparse.c),
 * on the CPU only.  All visit only the visible keys: O(N kh kw d) work. */
#include "attention_internal.h"

static bool is_one_range(const neighborhood_layout *l) { return l->ndim == 1 && l->dilation[0] == 1; }

/* The keys of coordinate x on axis a: count of them, the first at *first, then every dilation. */
static int64_t axis_keys(const neighborhood_layout *l, int a, int64_t x, int64_t *first) {
    const int64_t dil = l->dilation[a], group = x % dil;
    const int64_t group_length = (l->length[a] - group + dil - 1) / dil;
    int64_t lo;
    const int64_t end =
        neighborhood_axis_window(x / dil, group_length, l->kernel[a], l->stride[a], l->causal[a], &lo);
    *first = group + lo * dil;
    return end - lo;
}

/* Pushes the keys of token i (row-major over the grid) in ascending order: the product of the axes'
 * windows, the last axis fastest.  Unused leading axes of the 3 loops have one key at offset 0. */
static bool push_neighborhood(key_list_builder *kb, const neighborhood_layout *l, int64_t i) {
    int64_t first[NEIGHBORHOOD_MAX_AXES] = {0, 0, 0}, count[NEIGHBORHOOD_MAX_AXES] = {1, 1, 1};
    int64_t step[NEIGHBORHOOD_MAX_AXES] = {0, 0, 0}, rest = i, pitch = 1;
    for (int a = l->ndim - 1; a >= 0; a--) {
        const int slot = a + NEIGHBORHOOD_MAX_AXES - l->ndim;
        int64_t axis_first;
        count[slot] = axis_keys(l, a, rest % l->length[a], &axis_first);
        first[slot] = axis_first * pitch;
        step[slot] = l->dilation[a] * pitch;
        rest /= l->length[a];
        pitch *= l->length[a];
    }
    for (int64_t t0 = 0; t0 < count[0]; t0++)
        for (int64_t t1 = 0; t1 < count[1]; t1++)
            for (int64_t t2 = 0; t2 < count[2]; t2++)
                if (!key_lists_push(kb, first[0] + t0 * step[0] + first[1] + t1 * step[1] +
                                            first[2] + t2 * step[2], 0))
                    return false;
    return true;
}

static al_tensor *neighborhood_forward(attention_problem *p, const char *variant, bool strided,
                                       const char *dense_name, const char *tiled_name, const char *list_name,
                                       al_tensor **weights) {
    if (!neighborhood_resolve_layout(p, variant, strided)) return NULL;
    p->kernel = ((const neighborhood_options *)p->options)->kernel;
    /* one range per query: the range kernels, on either device (attention_softmax_over_visible); a grid
     * or a dilation: key lists (sparse.c, on either device) */
    if (is_one_range(&p->nbhd)) return attention_softmax_over_visible(p, dense_name, tiled_name, weights);
    if (p->kernel != 0) {
        al_error("%s: a grid or dilated neighborhood runs on the key-list kernel; opts.kernel ('dense' or "
                 "'tiled') chooses between the range kernels of a 1-D undilated neighborhood only", dense_name);
        return NULL;
    }
    key_list_builder kb;
    if (!key_lists_init(&kb, p->B * p->H * p->N, false)) return NULL;
    /* every (b, h) has the same pattern */
    for (int64_t bh = 0; bh < p->B * p->H; bh++)
        for (int64_t i = 0; i < p->N; i++) {
            if (!push_neighborhood(&kb, &p->nbhd, i)) { key_lists_free(&kb); return NULL; }
            key_lists_end_row(&kb);
        }
    return attention_sparse_forward(p, &kb, NULL, list_name, weights);
}

static al_tensor *plain_forward(attention_problem *p, al_tensor **weights) {
    return neighborhood_forward(p, "neighborhood", false, "attention_neighborhood", "attention_neighborhood_tiled",
                                "attention_neighborhood_lists", weights);
}

static al_tensor *strided_forward(attention_problem *p, al_tensor **weights) {
    return neighborhood_forward(p, "strided_neighborhood", true, "attention_strided_neighborhood",
                                "attention_strided_neighborhood_tiled", "attention_strided_neighborhood_lists", weights);
}

/* the two share their options (neighborhood_layout.c); the plain one refuses a stride, naming GNA */
const attention_variant attention_neighborhood = {
    .name = "neighborhood", .forward = plain_forward, .cuda_forward = plain_forward,
    .options = neighborhood_option_list,
    .options_size = sizeof(neighborhood_options),
    .summary = "neighborhood attention (NATTEN), 1-D or on a grid (opts.grid), dilated: each query sees "
               "kernel_size keys around it per axis, shifted at the borders"};

const attention_variant attention_strided_neighborhood = {
    .name = "strided_neighborhood", .forward = strided_forward, .cuda_forward = strided_forward,
    .options = neighborhood_option_list,
    .options_size = sizeof(neighborhood_options),
    .summary = "generalized neighborhood attention (GNA): groups of `stride` queries share their leader's window"};
