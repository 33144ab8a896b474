/* relative.c -- relative position representations: the "relative" variant (Shaw, Uszkoreit,
 * Vaswani 2018, arXiv 1803.02155) and its index primitives, including Music Transformer's skew
 * (Huang et al. 2018, arXiv 1809.04281).
 *
 * Shaw, clip distance k, a^K (2k+1, d) and a^V (2k+1, dv) (or one table per head, (H, 2k+1, .)):
 *   e_ij = scale q_i . (k_j + a^K[c(j - i)]),   z_i = sum_j P_ij (v_j + a^V[c(j - i)]),
 *   c(x) = clip(x, -k, k) + k  (bottom-right causal: the distance is j - i - (M - N))
 * in linear memory per relative position (never N x M x d): R = q a^K^T (N x (2k+1)) gathered to
 * the N x M logits (relative_gather), and for the values P bucket-summed by clipped distance
 * (relative_scatter, N x (2k+1)) times a^V.  The two index maps are adjoint, so each is the
 * other's backward.  The variant is composed of the core's differentiable ops (O(N M) like the
 * dense kernel; a^K, a^V may require grad), on either device (the index maps have a CUDA kernel,
 * core/cuda/relative.cu).
 *
 * Skew: X = q E_r^T (.., L, L), column r the distance r - (L - 1); skew(X)[i, j] = X[i, j - i + L - 1]
 * for j <= i (pad a zero column on the left, read as (L + 1) x L, drop the first row; above the
 * diagonal it is garbage, to be masked); unskew is its inverse on that triangle (pad a zero row on
 * top, read as L x (L + 1), drop the first column).  Views and a concatenation: backward free. */
#include "attention_internal.h"
#include <math.h>

/* ---- gather / scatter by clipped relative distance ---------------------------------------- */

/* the kernel, once per dtype: relative_index_float, relative_index_double */
#define GENERIC_FILE "../generic/relative_index_rows.h"
#include "../generic/float_types.h"

static al_tensor *relative_index(const al_tensor *t, int64_t N, int64_t M, int64_t W, int64_t shift, bool scatter);

static void relative_index_backward(al_node *node, const al_tensor *g) {
    const int64_t N = node->ints[0], M = node->ints[1], W = node->ints[2], shift = node->ints[3];
    al_tensor *d = relative_index(g, N, M, W, shift, !node->ints[4]);
    al_accumulate_input(node, 0, d);
    al_release(d);
}

/* gather: t (..., N, W) -> (..., N, M); scatter: t (..., N, M) -> (..., N, W) */
static al_tensor *relative_index(const al_tensor *t, int64_t N, int64_t M, int64_t W, int64_t shift, bool scatter) {
    al_tensor *c = al_contiguous_nograd(t);
    if (!c) return NULL;
    int64_t shape[AL_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    shape[t->ndim - 1] = scatter ? W : M;
    const int64_t rows = al_numel(t) / (t->shape[t->ndim - 1] ? t->shape[t->ndim - 1] : 1);
    const al_device device = t->storage->device;
    al_tensor *out = al_new_tensor_on(t->ndim, shape, t->dtype, device);
    if (out && rows > 0 && device == AL_CUDA) {   /* the same loop, a thread per row (core/cuda/relative.cu) */
        if (al_cuda_relative_index(c, out, rows, N, M, W, shift, scatter) < 0) { al_release(out); out = NULL; }
    } else if (out && rows > 0) {
        if (t->dtype == AL_FLOAT32) relative_index_float(al_ptr(c), al_ptr(out), rows, N, M, W, shift, scatter);
        else relative_index_double(al_ptr(c), al_ptr(out), rows, N, M, W, shift, scatter);
    }
    if (out && al_grad_needed1(t)) {
        al_node *node = al_record(out, scatter ? "relative_scatter" : "relative_gather", relative_index_backward, 1, &t);
        if (node) {
            node->ints[0] = N; node->ints[1] = M; node->ints[2] = W; node->ints[3] = shift; node->ints[4] = scatter;
            node->n_ints = 5;
        }
    }
    al_release(c);
    return out;
}

static bool relative_args(const char *fn, const al_tensor *t, int64_t W) {
    if (t->ndim < 2 || !al_is_float(t->dtype) || W < 1 || W % 2 == 0) {
        al_error("%s: needs a float tensor of at least 2 dims and an odd width 2k+1 >= 1 (got %s %s, width %lld)", fn,
                 TSHAPE(t), al_dtype_name(t->dtype), (long long)W);
        return false;
    }
    return true;
}

al_tensor *al_relative_gather(const al_tensor *r, int64_t M, int64_t shift) {
    if (!r) { al_error("relative_gather: argument 'r' is missing (nil)"); return NULL; }
    if (!al_same_device("relative_gather", r, NULL, NULL)) return NULL;   /* CPU or CUDA; no bfloat16 */
    if (!relative_args("relative_gather", r, r->ndim ? r->shape[r->ndim - 1] : 0)) return NULL;
    if (M < 0) { al_error("relative_gather: key count %lld < 0", (long long)M); return NULL; }
    return relative_index(r, r->shape[r->ndim - 2], M, r->shape[r->ndim - 1], shift, false);
}

al_tensor *al_relative_scatter(const al_tensor *g, int64_t W, int64_t shift) {
    if (!g) { al_error("relative_scatter: argument 'g' is missing (nil)"); return NULL; }
    if (!al_same_device("relative_scatter", g, NULL, NULL)) return NULL;   /* CPU or CUDA; no bfloat16 */
    if (!relative_args("relative_scatter", g, W)) return NULL;
    return relative_index(g, g->shape[g->ndim - 2], g->shape[g->ndim - 1], W, shift, true);
}

/* ---- skew / unskew (Music Transformer) ------------------------------------------------------ */

/* x (..., L, L) padded with a zero column (first = 1: on the left) or row (on top) */
static al_tensor *pad_one(const al_tensor *x, int dim) {
    int64_t shape[AL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[dim] = 1;
    al_tensor *z = al_full_on(x->ndim, shape, 0, x->dtype, x->storage->device);
    al_tensor *parts[2] = {z, (al_tensor *)x};
    al_tensor *out = z ? al_cat(2, parts, dim) : NULL;
    al_release(z);
    return out;
}

static al_tensor *skew_or_unskew(const char *fn, const al_tensor *x, bool skew) {
    if (!x) { al_error("%s: argument 'x' is missing (nil)", fn); return NULL; }
    if (!al_same_device(fn, x, NULL, NULL)) return NULL;   /* views and a concatenation: either device; no bfloat16 */
    const int nd = x->ndim;
    if (nd < 2 || nd >= AL_MAX_DIMS || x->shape[nd - 1] != x->shape[nd - 2] || !al_is_float(x->dtype)) {
        al_error("%s: needs a float tensor (..., L, L) (got %s %s)", fn, TSHAPE(x), al_dtype_name(x->dtype));
        return NULL;
    }
    const int64_t L = x->shape[nd - 1];
    int64_t shape[AL_MAX_DIMS];
    for (int d = 0; d < nd; d++) shape[d] = x->shape[d];
    /* skew: (L, L+1) read as (L+1, L), drop row 0; unskew: (L+1, L) read as (L, L+1), drop column 0 */
    shape[nd - 2] = skew ? L + 1 : L;
    shape[nd - 1] = skew ? L : L + 1;
    al_tensor *padded = pad_one(x, skew ? nd - 1 : nd - 2);
    al_tensor *re = padded ? al_reshape(padded, nd, shape) : NULL;
    al_tensor *out = re ? al_narrow(re, skew ? nd - 2 : nd - 1, 1, L) : NULL;
    al_release(padded); al_release(re);
    return out;
}

al_tensor *al_relative_skew(const al_tensor *x) { return skew_or_unskew("skew", x, true); }
al_tensor *al_relative_unskew(const al_tensor *x) { return skew_or_unskew("unskew", x, false); }

/* ---- the "relative" variant ----------------------------------------------------------------- */

/* a table (W, width) or (H, W, width) in q's dtype; W = 2k+1 */
static bool relative_table(const char *name, const al_tensor *t, const attention_problem *p, int64_t width) {
    const bool per_head = t->ndim == 3;
    if ((t->ndim != 2 && !per_head) || (per_head && t->shape[0] != p->H) || t->shape[t->ndim - 1] != width ||
        t->shape[t->ndim - 2] % 2 == 0 || t->dtype != p->q->dtype) {
        al_error("attention: variant 'relative' needs %s of shape (2k+1, %lld) or (H, 2k+1, %lld) = (%lld, 2k+1, %lld) "
                 "in %s (got %s %s)", name, (long long)width, (long long)width, (long long)p->H, (long long)width,
                 al_dtype_name(p->q->dtype), TSHAPE(t), al_dtype_name(t->dtype));
        return false;
    }
    return true;
}

typedef struct { const al_tensor *rel_key, *rel_value; } relative_options;
static const attention_option options[] = {
    {OPTION_FIELD(relative_options, rel_key), .kind = OPTION_TENSOR,
     .summary = "a^K (2k+1, d) or (H, 2k+1, d): the key embeddings of the clipped distances -k..k"},
    {OPTION_FIELD(relative_options, rel_value), .kind = OPTION_TENSOR,
     .summary = "a^V (2k+1, dv) or (H, 2k+1, dv), optional"},
    {0},
};

static al_tensor *relative_forward(attention_problem *p, al_tensor **weights) {
    const relative_options *o = p->options;
    const al_tensor *ak = o->rel_key, *av = o->rel_value;
    if (!ak) {
        al_error("attention: variant 'relative' needs rel_key (2k+1, d) or (H, 2k+1, d) (got nil)");
        return NULL;
    }
    if (!relative_table("rel_key", ak, p, p->d) || (av && !relative_table("rel_value", av, p, p->dv))) return NULL;
    const int64_t W = ak->shape[ak->ndim - 2], shift = p->causal == 2 ? p->M - p->N : 0;
    if (av && av->shape[av->ndim - 2] != W) {
        al_error("attention: variant 'relative' needs rel_key and rel_value of one clip distance (got %s and %s)",
                 TSHAPE(ak), TSHAPE(av));
        return NULL;
    }
    al_tensor *k = attention_repeat_heads(p->k, p->H), *v = k ? attention_repeat_heads(p->v, p->H) : NULL;
    al_tensor *kt = v ? al_transpose(k, 2, 3) : NULL, *qk = kt ? al_matmul(p->q, kt) : NULL;
    al_tensor *akt = qk ? al_transpose(ak, -2 + ak->ndim, -1 + ak->ndim) : NULL;
    al_tensor *rel = akt ? al_matmul(p->q, akt) : NULL;                       /* (B, H, N, 2k+1) */
    al_tensor *relm = rel ? al_relative_gather(rel, p->M, shift) : NULL;      /* (B, H, N, M) */
    al_tensor *sum = relm ? al_add(qk, relm) : NULL, *S = sum ? al_mul_scalar(sum, p->scale) : NULL;
    al_tensor *Sb = S && p->bias ? al_add(S, p->bias) : (S ? al_retain(S) : NULL);
    al_tensor *Sm = Sb ? attention_mask_logits(p, Sb) : NULL, *P = Sm ? al_softmax(Sm, 3) : NULL;
    al_tensor *out = P ? al_matmul(P, v) : NULL;
    if (out && av) {   /* + sum_j P_ij a^V[c(j - i)] = (P bucket-summed by distance) a^V */
        al_tensor *buckets = al_relative_scatter(P, W, shift), *pv = buckets ? al_matmul(buckets, av) : NULL;
        al_tensor *total = pv ? al_add(out, pv) : NULL;
        al_release(out); al_release(buckets); al_release(pv);
        out = total;
    }
    if (out && weights) *weights = al_detach(P);
    al_release(k); al_release(v); al_release(kt); al_release(qk); al_release(akt); al_release(rel);
    al_release(relm); al_release(sum); al_release(S); al_release(Sb); al_release(Sm); al_release(P);
    return out;
}

const attention_variant attention_relative = {
    .name = "relative", .forward = relative_forward, .cuda_forward = relative_forward, .options = options,
    .options_size = sizeof(relative_options),
    .summary = "relative position representations (Shaw et al. 2018): clipped-distance embeddings rel_key, "
               "rel_value"};
