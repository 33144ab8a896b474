/* neighborhood_layout.c -- the options of the neighborhood variants, checked and resolved into one
 * window rule per axis (neighborhood_layout): the layout (a sequence, or a grid of 1 to 3 axes
 * whose product is N = M), and per axis kernel_size, stride (GNA), dilation and causality.  A
 * scalar option applies to every axis; opts.axis_* (a Lua table {kh, kw}) gives one per axis.
 * NATTEN's conditions: kernel_size * dilation <= the axis length (so every dilation group is at
 * least kernel_size long), and odd kernel_size for the plain neighborhood unless the axis is
 * causal (NATTEN's own centred window); GNA takes any kernel_size. */
#include "attention_internal.h"
#include <stdio.h>

static bool any_given(const int64_t *per_axis) {
    for (int a = 0; a < NEIGHBORHOOD_MAX_AXES; a++)
        if (per_axis[a] != 0) return true;
    return false;
}

/* ", for N = M = 9" for a sequence, ", on grid axis 2 of length 8 in grid {4,8}" for a grid (errors) */
static void describe_axis(const neighborhood_layout *l, int a, bool grid, char *out, size_t size) {
    if (grid)
        snprintf(out, size, ", on grid axis %d of length %lld in grid %s", a + 1, (long long)l->length[a],
                 al_shape_str(l->ndim, l->length));
    else snprintf(out, size, ", for N = M = %lld", (long long)l->length[0]);
}

static bool resolve_grid(attention_problem *p, const char *variant, const al_attention_opts *o) {
    neighborhood_layout *l = &p->nbhd;
    if (o->grid_ndim < 0 || o->grid_ndim > NEIGHBORHOOD_MAX_AXES) {
        al_error("attention: variant '%s' takes a grid of 1 to %d axes (got grid_ndim %d)", variant,
                 NEIGHBORHOOD_MAX_AXES, o->grid_ndim);
        return false;
    }
    if (o->grid_ndim == 0) {
        if (any_given(o->axis_kernel_size) || any_given(o->axis_stride) || any_given(o->axis_dilation) ||
            o->axis_causal[0] || o->axis_causal[1] || o->axis_causal[2]) {
            al_error("attention: variant '%s' takes per-axis kernel_size, stride, dilation or causal only with "
                     "a grid (opts.grid = {H, W}); N = %lld", variant, (long long)p->N);
            return false;
        }
        l->ndim = 1;
        l->length[0] = p->N;
        return true;
    }
    l->ndim = o->grid_ndim;
    int64_t cells = 1;
    bool positive = true;
    for (int a = 0; a < l->ndim; a++) {
        l->length[a] = o->grid[a];
        positive = positive && o->grid[a] >= 1;
        if (positive) cells = cells > INT64_MAX / o->grid[a] ? INT64_MAX : cells * o->grid[a];
    }
    if (!positive || cells != p->N) {
        al_error("attention: variant '%s' needs a grid of positive lengths whose product is N = M; %s has "
                 "%lld cells, q has N = %lld tokens (q %s)", variant, al_shape_str(l->ndim, l->length),
                 positive ? (long long)cells : 0LL, (long long)p->N, TSHAPE(p->q));
        return false;
    }
    return true;
}

bool neighborhood_resolve_layout(attention_problem *p, const char *variant, bool strided) {
    const al_attention_opts *o = p->opts;
    neighborhood_layout *l = &p->nbhd;
    if (p->N != p->M) {
        al_error("attention: variant '%s' needs N = M (self-attention over one layout); got N = %lld, M = %lld "
                 "(q %s, k %s)", variant, (long long)p->N, (long long)p->M, TSHAPE(p->q), TSHAPE(p->k));
        return false;
    }
    if (!resolve_grid(p, variant, o)) return false;
    const bool grid = o->grid_ndim > 0;
    if (p->causal == 2) p->causal = 1;   /* N = M: the two conventions coincide */
    for (int a = 0; a < l->ndim; a++) {
        l->kernel[a] = o->axis_kernel_size[a] ? o->axis_kernel_size[a] : o->kernel_size;
        l->stride[a] = o->axis_stride[a] ? o->axis_stride[a] : o->stride;
        l->dilation[a] = o->axis_dilation[a] ? o->axis_dilation[a] : (o->dilation ? o->dilation : 1);
        l->causal[a] = p->causal != 0 || o->axis_causal[a] != 0;
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
