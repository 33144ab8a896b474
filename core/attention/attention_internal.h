/* attention_internal.h -- what the attention variants share: the validated problem description
 * and the signature every variant implements. */
#ifndef ATTNLAB_ATTENTION_INTERNAL_H
#define ATTNLAB_ATTENTION_INTERNAL_H
#include "../internal.h"

/* The neighborhood variants' pattern, resolved per axis (neighborhood_layout.c): the N = M tokens
 * are a row-major grid of ndim axes (ndim 1: a sequence).  On axis a, coordinate x belongs to the
 * dilation group x mod dilation[a] (of length ceil((length[a] - group) / dilation[a])) and, within
 * it, sees the keys of neighborhood_axis_window; a query sees the Cartesian product over the axes.
 * ndim 0: not a neighborhood variant. */
enum { NEIGHBORHOOD_MAX_AXES = 3 };
typedef struct {
    int ndim;
    int64_t length[NEIGHBORHOOD_MAX_AXES], kernel[NEIGHBORHOOD_MAX_AXES];
    int64_t stride[NEIGHBORHOOD_MAX_AXES], dilation[NEIGHBORHOOD_MAX_AXES];
    bool causal[NEIGHBORHOOD_MAX_AXES];
} neighborhood_layout;

/* One attention call, after validation: q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), with
 * H a multiple of Hkv (grouped KV heads: query head h reads kv head h / (H / Hkv)).  bias and mask
 * are already expanded (as stride-0 views) to (B, H, N, M) and converted to q's dtype.  attention.c
 * fills the common part; a variant finishes it from its own options (window, nbhd, kernel, norm)
 * before it calls the shared kernels, which read those fields. */
typedef struct {
    const al_tensor *q, *k, *v, *bias, *mask;
    int64_t B, H, Hkv, N, M, d, dv;
    int causal;          /* 0 none, 1 top-left, 2 bottom-right */
    double scale;
    double norm;         /* DENSE_FIXED_NORM's divisor: the key count unless the variant sets it ("lsa") */
    int64_t window;      /* > 0: keys within this distance of the query's diagonal (sliding window) */
    neighborhood_layout nbhd; /* (strided_)neighborhood: the window rule per axis (else ndim 0) */
    int kernel;          /* 0 auto, 1 dense, 2 tiled (softmax over visible keys only) */
    const void *options; /* the variant's own options, checked into its struct (attention_variant) */
} attention_problem;

/* A variant's forward: records its own backward on the autograd graph, returns a new reference. */
typedef al_tensor *(*attention_forward_fn)(attention_problem *p, al_tensor **weights);

/* ---- the descriptors (in the manner of Lua's luaL_Reg) --------------------------------------
 * Each variant's file defines one `const attention_variant attention_<name>`: its name, forward,
 * summary and the options it owns, each with its kind, range and default.  attention.c lists the
 * descriptors and knows nothing else about any variant; option_check.c checks every call's options
 * against them, and al_attention_describe_option hands them to Lua.  docs/adding-a-variant.md walks
 * through adding one. */
typedef enum {
    OPTION_INTEGER,     /* int64_t: a whole number in [least, most] */
    OPTION_NUMBER,      /* double: a finite number in [least, most] (> least with above_least) */
    OPTION_TENSOR,      /* const al_tensor *: any tensor (the variant checks its shape, naming it) */
    OPTION_CHOICE,      /* int: the index of the word given among `choices` (not given: 0) */
    OPTION_AXES,        /* attention_axes: an integer in [least, most] for every axis, or a table of one
                           per axis of the variant's OPTION_GRID (which must then be given) */
    OPTION_GRID,        /* attention_axes: a table of 1 to ATTENTION_MAX_AXES axis lengths >= 1 */
    OPTION_AXIS_FLAGS,  /* attention_axes: a table of booleans (1 or 0), one per axis of the grid */
} attention_option_kind;

enum { ATTENTION_MAX_AXES = NEIGHBORHOOD_MAX_AXES };
/* count: the axes a table gave (0: a single value, or nothing, which holds for every axis) */
typedef struct { int count; int64_t value[ATTENTION_MAX_AXES]; } attention_axes;

typedef struct {
    const char *name;           /* the key in lab.attention's opts, and the field in the struct */
    attention_option_kind kind;
    size_t offset;              /* where the checked value goes in the variant's options struct */
    const char *summary;        /* what it means, and its default (lab.attention.describe) */
    double least, most;         /* INTEGER, NUMBER, AXES: the range (most 0: no upper bound) */
    bool above_least;           /* NUMBER: least itself is refused */
    double fallback;            /* INTEGER, NUMBER, AXES (every axis): the value when not given */
    const char *choices;        /* CHOICE: the words, space-separated */
    bool required;              /* not given is an error naming the option */
} attention_option;
/* .name and .offset of the option stored in field `field` of the variant's struct `type` */
#define OPTION_FIELD(type, field) .name = #field, .offset = offsetof(type, field)
/* opts.kernel, of the variants that run on the softmax-over-visible-keys kernels (softmax.c) */
#define KERNEL_OPTION(type)                                                                         \
    {OPTION_FIELD(type, kernel), .kind = OPTION_CHOICE, .choices = "auto dense tiled",               \
     .summary = "the kernel: auto (default), dense (keeps the map) or tiled (online softmax, O(N) memory)"}

enum {
    ATTENTION_NO_LOGITS = 1,    /* never forms the N x M logits: bias and mask are refused */
};

typedef struct {
    const char *name;                 /* opts.variant */
    attention_forward_fn forward;     /* the CPU kernel (its backward is recorded by the forward) */
    const char *summary;              /* one line: method, source, cost */
    const attention_option *options;  /* its own options, ended by a row without name (NULL: none) */
    size_t options_size;              /* sizeof the struct they are checked into (p->options) */
    unsigned flags;                   /* ATTENTION_NO_LOGITS */
    attention_forward_fn cuda_forward;/* what runs on CUDA tensors (NULL: refused): often forward itself,
                                        when that is made of ops with CUDA kernels and of
                                        attention_softmax_over_visible, which dispatches on the device */
} attention_variant;

/* Checks opts' variant options against var (option_check.c) into `block` (var->options_size
 * bytes, zeroed): defaults first, then each given value; false with an error naming the option. */
bool attention_read_options(const attention_variant *var, const al_attention_opts *opts, void *block);
/* The catalogue (attention.c): count, and the i-th descriptor (NULL out of range). */
int attention_catalogue_size(void);
const attention_variant *attention_catalogue(int i);
/* An option's expected value as the errors say it ("an integer >= 1") into buf (option_check.c). */
void attention_option_expects(const attention_option *o, char *buf, size_t size);
const char *attention_option_kind_name(attention_option_kind kind);

/* element offsets of a (b, h, i) row of a 4-d tensor whose last stride is 1 */
static inline int64_t row_offset(const al_tensor *t, int64_t b, int64_t h, int64_t i) {
    return t->offset + b * t->strides[0] + h * t->strides[1] + i * t->strides[2];
}

/* NATTEN's window on one axis, in the coordinates of one dilation group of length L: query x sees
 * the keys [*lo, end).  This is GNA (NATTEN flex single_dim_tiling_mask): queries in groups of
 * `stride` share the window of their leader, the group's centre query (the right one of the two
 * for even stride; the last one when causal).  Non-causal, the window of k keys around the leader
 * is shifted at the borders instead of shrunk (left = k / 2 keys before it, k / 2 + k % 2 - 1
 * after); stride 1 is NATTEN's neighborhood, get_window_start.  Causal: j <= x and leader - j < k,
 * no shift, so early queries see fewer keys.  Needs L >= k. */
static inline int64_t neighborhood_axis_window(int64_t x, int64_t L, int64_t k, int64_t stride, bool causal,
                                               int64_t *lo) {
    const int64_t s = stride > 0 ? stride : 1;
    if (causal) {
        int64_t leader = x / s * s + s - 1;
        if (leader > L - 1) leader = L - 1;
        *lo = leader - k + 1 < 0 ? 0 : leader - k + 1;
        return x + 1;
    }
    int64_t leader = x / s * s + s / 2;
    if (leader > L - 1) leader = L - 1;
    const int64_t left = k / 2, right = k / 2 + k % 2 - 1;
    int64_t c = leader < left ? left : leader;
    if (c > L - 1 - right) c = L - 1 - right;
    *lo = c - left;
    return c + right + 1;
}

/* Keys visible from query i form a range [lo, end): a prefix under either causal convention, cut
 * to the band |j - diag| <= window around the query's diagonal position with a sliding window
 * (diag = i, or i + M - N for bottom-right alignment), or the k keys of i's neighborhood (only a
 * 1-D undilated neighborhood is a range; the others take the key-list kernel).  Keys outside the
 * range are never visited. */
static inline int64_t visible_range(const attention_problem *p, int64_t i, int64_t *lo) {
    const int64_t N = p->N, M = p->M, diag = i + (p->causal == 2 ? M - N : 0);
    int64_t e = p->causal ? diag + 1 : M, l = 0;
    if (p->nbhd.ndim > 0) {   /* one axis of length N = M, dilation 1 */
        e = neighborhood_axis_window(i, M, p->nbhd.kernel[0], p->nbhd.stride[0], p->nbhd.causal[0], &l);
    } else if (p->window > 0) {
        l = diag - p->window;
        if (!p->causal && diag + p->window + 1 < e) e = diag + p->window + 1;
    }
    e = e < 0 ? 0 : (e > M ? M : e);
    l = l < 0 ? 0 : (l > e ? e : l);
    *lo = l;
    return e;
}

/* The options of the two neighborhood variants (one list, neighborhood_layout.c), and their
 * layout resolved against N = M into p->nbhd; false with an error naming the option and the shapes. */
typedef struct {
    attention_axes kernel_size, stride, dilation, grid, causal;
    int kernel;
} neighborhood_options;
extern const attention_option neighborhood_option_list[];
bool neighborhood_resolve_layout(attention_problem *p, const char *variant, bool strided);

/* Ranking for the top-k selections (topk_mask, dynamic_mask, routing): sorts n scored positions
 * by score, largest first, ties to the lower position, NaN last (topk_mask.c). */
typedef struct { double score; int64_t pos; } scored_position;
void rank_descending(scored_position *items, int64_t n);
/* the k first in rank order (the rest after them, unordered): O(n + k log k) */
void rank_top(scored_position *items, int64_t n, int64_t k);

/* S (B, H, N, M) with -inf where causal or opts.mask forbids (masked_logits.c); differentiable in S */
al_tensor *attention_mask_logits(const attention_problem *p, const al_tensor *S);

/* Softmax attention over the visible keys (softmax, sliding_window, neighborhood variants): picks
 * the tiled kernel or the dense one (softmax.c). */
al_tensor *attention_softmax_over_visible(const attention_problem *p, const char *dense_name,
                                          const char *tiled_name, al_tensor **weights);
/* The tiled online-softmax kernel (tiled.c): no map, O(N) memory beyond inputs and outputs. */
al_tensor *attention_tiled_forward(const attention_problem *p, const char *name);
/* The "softmax" and "sliding_window" variants on CUDA tensors (softmax_cuda.c, kernels in
 * core/cuda/attention.cu): the fused kernel, the map when weights is not NULL, a trainable bias. */
al_tensor *attention_cuda_softmax_forward(const attention_problem *p, al_tensor **weights);
/* What a recompute backward keeps on its node (tiled.c, softmax_cuda.c): saved[0] the output (an
 * alias: its storage without its grad history, which would be a cycle), saved[1] the row
 * log-sum-exp, saved[2] the bias, saved[3] the mask. */
void attention_save_for_recompute(al_node *node, const al_tensor *out, const al_tensor *lse, const attention_problem *p);

/* The prefix-state recurrence (recurrence.c): S_t = alpha_t S_{t-1} + w_t k_t^T with
 * w_t = beta_t (v_t - [delta] alpha_t S_{t-1} k_t), read as y_i = S_i (scale q_i) when causal (N = M)
 * or S_M (scale q_i) when not.  q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), coef (B, H, M, 2)
 * = [beta, alpha]; one differentiable op (gradients for all four), O(sqrt(M) d dv) memory per head;
 * on either device (on CUDA tensors core/cuda/recurrence.cu). */
al_tensor *attention_state_recurrence(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                                      const al_tensor *coef, double scale, int causal, bool delta);

/* Helpers the variants share (variant_helpers.c). */
/* k or v with Hkv heads repeated to H query heads (differentiable; t itself when Hkv == H) */
al_tensor *attention_repeat_heads(const al_tensor *t, int64_t H);
/* An option tensor broadcast (differentiably) to ndim/shape in dtype dt, or an error naming the
 * variant, the option, its shape and the expected one (`expected` spells it, e.g. "(B, H, M)"). */
al_tensor *attention_broadcast_option(const char *variant, const char *option, const al_tensor *t, int ndim,
                                      const int64_t *shape, const char *expected, al_dtype dt);
/* The causal mask as a (N, M) tensor of 1 (j <= i [+ M - N for bottom_right]) and 0, dtype dt, on q's device. */
al_tensor *attention_causal_keep(const attention_problem *p, al_dtype dt);
/* t (a constant built on the host: a mask, an arange) on near's device: t itself when it is there,
 * else a copy moved there (t released); NULL passes through.  For the variants composed of ops,
 * whose constants must sit beside their operands (the device rule). */
al_tensor *attention_on_device_of(const al_tensor *near, al_tensor *t);

/* Temporaries of a variant composed of ops: each result is held until scope_end, and after the
 * first failure nothing more is computed (the first error message stands).  Use as
 *     op_scope s = {0};  al_tensor *x = OP(&s, al_exp(q));  ...  return scope_return(&s, y, weights, map); */
enum { OP_SCOPE_MAX = 128 };
typedef struct { al_tensor *held[OP_SCOPE_MAX]; int n; bool failed; } op_scope;
static inline al_tensor *scope_keep(op_scope *s, al_tensor *t) {
    if (t && s->n == OP_SCOPE_MAX) { al_error("attention: internal scope overflow"); al_release(t); t = NULL; }
    if (!t) { s->failed = true; return NULL; }
    return s->held[s->n++] = t;
}
#define OP(s, expr) ((s)->failed ? NULL : scope_keep((s), (expr)))
static inline void scope_end(op_scope *s) {
    for (int i = 0; i < s->n; i++) al_release(s->held[i]);
    s->n = 0;
}
/* The end of a composed variant: out (and, when weights is not NULL, the map) outlive the scope;
 * after any failure neither does, and the result is NULL. */
static inline al_tensor *scope_return(op_scope *s, al_tensor *out, al_tensor **weights, al_tensor *map) {
    bool ok = !s->failed && out && (!weights || map);
    if (ok) {
        al_retain(out);
        if (weights) *weights = al_retain(map);
    }
    scope_end(s);
    return ok ? out : NULL;
}

/* The dense kernel both use: normalise = softmax over allowed keys, or a fixed 1/norm. */
typedef enum { DENSE_SOFTMAX, DENSE_FIXED_NORM } dense_normalisation;
al_tensor *attention_dense_forward(const attention_problem *p, dense_normalisation kind,
                                   const char *name, al_tensor **weights);

/* Softmax attention over an explicit list of keys per query (sparse.c), for the patterns that
 * are not a range: rows are the B*H*N queries in order (b, h, i); each row's keys are pushed, then
 * the row is ended.  offsets (optional) are constants added to each entry's logit. */
typedef struct {
    int64_t rows, row, nnz, cap;
    int64_t *start, *keys;
    double *offsets;
} key_list_builder;
bool key_lists_init(key_list_builder *kb, int64_t rows, bool with_offsets);
bool key_lists_push(key_list_builder *kb, int64_t key, double offset);
void key_lists_end_row(key_list_builder *kb);
void key_lists_free(key_list_builder *kb);
/* Runs the kernel (the CPU's, or core/cuda/sparse.cu on CUDA tensors) and frees the builder.
 * key_bias (B, Hkv, M) (may be NULL) is added to every query's logit for key j and is differentiable. */
al_tensor *attention_sparse_forward(const attention_problem *p, key_list_builder *kb,
                                    const al_tensor *key_bias, const char *name, al_tensor **weights);

#endif
