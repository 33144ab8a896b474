/* neighborhood_layout.c -- the options of the neighborhood variants, checked and resolved into one
 * window rule per axis (neighborhood_layout): the layout (a sequence, or a grid of 1 to 3 axes
 * whose product is N = M), and per axis kernel_size, stride (GNA), dilation and causality.  A
 * scalar option applies to every axis; a table ({kh, kw} in Lua) gives one per grid axis.
 * NATTEN's conditions: kernel_size * dilation <= the axis length (so every dilation group is at
 * least kernel_size long), and odd kernel_size for the plain neighborhood unless the axis is
 * causal (NATTEN's own centred window); GNA takes any kernel_size. */
#include "attention_internal.h"
#include <stdio.h>

/* One list for both variants: the plain neighborhood takes stride only to refuse it by name. */
const attention_option neighborhood_option_list[] = {
    {OPTION_FIELD(neighborhood_options, kernel_size), .kind = OPTION_AXES, .least = 1, .required = true,
     .summary = "the keys per query along each axis (odd unless causal, for the plain neighborhood)"},
    {OPTION_FIELD(neighborhood_options, stride), .kind = OPTION_AXES, .least = 1,
     .summary = "strided_neighborhood: the queries (per axis) that share their leader's window"},
    {OPTION_FIELD(neighborhood_options, dilation), .kind = OPTION_AXES, .least = 1, .fallback = 1,
     .summary = "the interleaved groups each axis is split into (default 1: none)"},
    {OPTION_FIELD(neighborhood_options, grid), .kind = OPTION_GRID,
     .summary = "the N = M tokens as a row-major grid of these axis lengths (default: a sequence)"},
    {OPTION_FIELD(neighborhood_options, causal), .kind = OPTION_AXIS_FLAGS,
     .summary = "opts.causal as a table, with a grid: causal along the axes marked true"},
    KERNEL_OPTION(neighborhood_options),
    {0},
};

/* ", for N = M = 9" for a sequence, ", on grid axis 2 of length 8 in grid {4,8}" for a grid (errors) */
static void describe_axis(const neighborhood_layout *l, int a, bool grid, char *out, size_t size) {
    if (grid)
        snprintf(out, size, ", on grid axis %d of length %lld in grid %s", a + 1, (long long)l->length[a],
                 al_shape_str(l->ndim, l->length));
    else snprintf(out, size, ", for N = M = %lld", (long long)l->length[0]);
}

/* The axes (a sequence: one of length N; a grid: its product must be N).  option_check.c has checked
 * the grid's lengths and that every per-axis table has one entry per grid axis. */
static bool resolve_grid(attention_problem *p, const char *variant, const neighborhood_options *o) {
    neighborhood_layout *l = &p->nbhd;
    if (o->grid.count == 0) {
        l->ndim = 1;
        l->length[0] = p->N;
        return true;
    }
    l->ndim = o->grid.count;
    int64_t cells = 1;
    for (int a = 0; a < l->ndim; a++) {
        l->length[a] = o->grid.value[a];
        cells = cells > INT64_MAX / l->length[a] ? INT64_MAX : cells * l->length[a];
    }
    if (cells != p->N) {
        al_error("attention: variant '%s' needs a grid of positive lengths whose product is N = M; %s has "
                 "%lld cells, q has N = %lld tokens (q %s)", variant, al_shape_str(l->ndim, l->length),
                 (long long)cells, (long long)p->N, TSHAPE(p->q));
        return false;
    }
    return true;
}

bool neighborhood_resolve_layout(attention_problem *p, const char *variant, bool strided) {
    const neighborhood_options *o = p->options;
    neighborhood_layout *l = &p->nbhd;
    if (p->N != p->M) {
        al_error("attention: variant '%s' needs N = M (self-attention over one layout); got N = %lld, M = %lld "
                 "(q %s, k %s)", variant, (long long)p->N, (long long)p->M, TSHAPE(p->q), TSHAPE(p->k));
        return false;
    }
    if (!resolve_grid(p, variant, o)) return false;
    const bool grid = o->grid.count > 0;
    if (p->causal == 2) p->causal = 1;   /* N = M: the two conventions coincide */
    for (int a = 0; a < l->ndim; a++) {
        l->kernel[a] = o->kernel_size.value[a];
        l->stride[a] = o->stride.value[a];
        l->dilation[a] = o->dilation.value[a];
        l->causal[a] = p->causal != 0 || o->causal.value[a] != 0;
        char where[160];
        describe_axis(l, a, grid, where, sizeof where);
        const int64_t k = l->kernel[a], dil = l->dilation[a];
        if (k < 1 || dil < 1 || k > l->length[a] / dil || (!strided && !l->causal[a] && k % 2 == 0)) {
            al_error("attention: variant '%s' needs %s >= kernel_size * dilation, kernel_size >= 1%s and "
                     "dilation >= 1 (got kernel_size %lld, dilation %lld%s)", variant,
                     grid ? "each grid axis's length" : "N = M", strided ? "" : ", odd unless causal",
                     (long long)k, (long long)dil, where);
            return false;
        }
        if (strided ? l->stride[a] < 1 : l->stride[a] != 0) {
            al_error("attention: variant '%s' %s (got stride %lld%s)", variant,
                     strided ? "needs stride >= 1" : "takes no stride (see strided_neighborhood)",
                     (long long)l->stride[a], where);
            return false;
        }
    }
    return true;
}
