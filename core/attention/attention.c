/* attention.c -- al_attention: the argument checks every variant shares, then dispatch by name.
 * The catalogue is the list below: each variant's file defines its descriptor (name, forward,
 * summary, the options it owns; attention_internal.h), and this file knows nothing else about any
 * variant.  A new variant is its own file plus one line here (docs/adding-a-variant.md). */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The catalogue, in the order lab.attention.variants() lists it: X(name) for the descriptor
 * attention_<name> that <name>.c (or a file of its family) defines.  One variant a line, and a
 * comment last, so that adding one is adding one line. */
#define CATALOGUE(X)                                                                     \
    X(softmax)                                                                           \
    X(lsa)                                                                               \
    X(sliding_window)                                                                    \
    X(neighborhood)                                                                      \
    X(strided_neighborhood)                                                              \
    X(linear)                                                                            \
    /* the linear family and module-level variants (docs/attention-linear-family.md) */  \
    X(flow)                                                                              \
    X(local_linear)                                                                      \
    X(agent)                                                                             \
    X(moh)                                                                               \
    X(random_feature)                                                                    \
    X(tensor)                                                                            \
    X(delta)                                                                             \
    /* sparse, biased and routed variants */                                             \
    X(power)                                                                             \
    X(dynamic_mask)                                                                      \
    X(flashbias)                                                                         \
    X(relative)                                                                          \
    X(pointer)                                                                           \
    X(landmark)                                                                          \
    X(hyper)                                                                             \
    X(routing)                                                                           \
    /* a new variant: X(its_name) above this line */

#define DECLARE(name) extern const attention_variant attention_##name;
CATALOGUE(DECLARE)
#undef DECLARE
#define ENTRY(name) &attention_##name,
static const attention_variant *const variants[] = {CATALOGUE(ENTRY)};
#undef ENTRY
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };

int attention_catalogue_size(void) { return N_VARIANTS; }
const attention_variant *attention_catalogue(int i) { return i >= 0 && i < N_VARIANTS ? variants[i] : NULL; }

int al_attention_variant_count(void) { return N_VARIANTS; }
const char *al_attention_variant_name(int i) { return i >= 0 && i < N_VARIANTS ? variants[i]->name : NULL; }

static int option_count(const attention_variant *var) {
    int n = 0;
    for (const attention_option *o = var->options; o && o->name; o++) n++;
    return n;
}

int al_attention_describe(int variant, al_attention_variant_info *info) {
    const attention_variant *var = attention_catalogue(variant);
    if (!var || !info) {
        al_error("attention: no variant %d (the catalogue has %d)", variant, N_VARIANTS);
        return -1;
    }
    *info = (al_attention_variant_info){.name = var->name, .summary = var->summary, .n_options = option_count(var),
                                        .takes_bias = !(var->flags & ATTENTION_NO_LOGITS)};
    return 0;
}

int al_attention_describe_option(int variant, int option, al_attention_option_info *info) {
    const attention_variant *var = attention_catalogue(variant);
    if (!var || !info || option < 0 || option >= option_count(var)) {
        al_error("attention: no option %d of variant %d", option, variant);
        return -1;
    }
    const attention_option *o = &var->options[option];
    *info = (al_attention_option_info){.name = o->name, .kind = attention_option_kind_name(o->kind),
                                       .summary = o->summary, .required = o->required};
    attention_option_expects(o, info->expects, sizeof info->expects);
    return 0;
}

/* bias or mask: broadcast to (B, H, N, M) as a view, in the dtype of q */
static al_tensor *broadcast_operand(const char *what, const al_tensor *t, const int64_t *shape, al_dtype dt) {
    int nd; int64_t out[AL_MAX_DIMS];
    if (t->ndim > 4 || !al_broadcast_shapes("attention", t->ndim, t->shape, 4, shape, &nd, out) ||
        !al_shape_equal(nd, out, 4, shape)) {
        al_error("attention: %s of shape %s does not broadcast to (B, H, N, M) = %s", what, TSHAPE(t),
                 al_shape_str(4, shape));
        return NULL;
    }
    al_tensor *c = t->dtype == dt ? al_retain((al_tensor *)t) : al_to_dtype(t, dt);
    al_tensor *e = c ? al_expand(c, 4, shape) : NULL;
    al_release(c);
    return e;
}

/* q, k, v with a unit last stride (the kernels' inner loops need it) */
static al_tensor *unit_last_stride(const al_tensor *t) {
    if (t->strides[3] == 1 || t->shape[3] <= 1) return al_retain((al_tensor *)t);
    return al_contiguous(t);
}

al_tensor *al_attention(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                        const al_attention_opts *opts, al_tensor **weights) {
    if (weights) *weights = NULL;
    CHECK_TENSOR("attention", q, "q");
    CHECK_TENSOR("attention", k, "k");
    CHECK_TENSOR("attention", v, "v");
    /* the device rule: every tensor on q's device (variants without a CUDA kernel refuse below;
     * bfloat16 exists on the CUDA device only, where the variants without a kernel for it refuse) */
    if (!al_same_device_any_dtype("attention", q, k, v)) return NULL;
    if (opts) {
        if (!al_same_device_any_dtype("attention", q, opts->bias, opts->mask)) return NULL;
        for (int i = 0; i < opts->n_options && opts->options; i++)
            if (opts->options[i].value.type == AL_VALUE_TENSOR &&
                !al_same_device("attention", q, opts->options[i].value.tensor, NULL))
                return NULL;
    }
    const char *name = opts && opts->variant ? opts->variant : "softmax";
    const attention_variant *var = NULL;
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(variants[i]->name, name) == 0) var = variants[i];
    if (!var) {
        char list[256] = "";
        for (int i = 0; i < N_VARIANTS; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, variants[i]->name, sizeof list - strlen(list) - 1);
        }
        al_error("attention: unknown variant '%s' (known: %s)", name, list);
        return NULL;
    }
    const bool on_cuda = q->storage->device == AL_CUDA;
    if (on_cuda && !var->cuda_forward) {
        al_error("attention: variant '%s' has no CUDA kernel yet (q %s is on cuda); move the tensors to the CPU "
                 "with :to(\"cpu\")", var->name, TSHAPE(q));
        return NULL;
    }
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        al_error("attention: q, k, v must be 4-d (B, H, N, d), (B, H, M, d), (B, H, M, dv); got %s, %s, %s",
                 TSHAPE(q), TSHAPE(k), TSHAPE(v));
        return NULL;
    }
    if (!al_is_floating_point(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype) {
        al_error("attention: q, k, v must share one float dtype; got %s, %s, %s", al_dtype_name(q->dtype),
                 al_dtype_name(k->dtype), al_dtype_name(v->dtype));
        return NULL;
    }
    /* q, k, v as given, for the checks' messages; replaced below by their unit-last-stride forms */
    attention_problem p = {.q = q, .k = k, .v = v};
    p.B = q->shape[0]; p.H = q->shape[1]; p.N = q->shape[2]; p.d = q->shape[3];
    p.Hkv = k->shape[1]; p.M = k->shape[2]; p.dv = v->shape[3];
    if (k->shape[0] != p.B || v->shape[0] != p.B || k->shape[3] != p.d || v->shape[1] != p.Hkv ||
        v->shape[2] != p.M) {
        al_error("attention: shapes q %s, k %s, v %s do not fit (B, H, N, d), (B, Hkv, M, d), (B, Hkv, M, dv)",
                 TSHAPE(q), TSHAPE(k), TSHAPE(v));
        return NULL;
    }
    if (p.Hkv == 0 || p.H % p.Hkv != 0) {
        al_error("attention: %lld query heads cannot share %lld key/value heads (q %s, k %s)", (long long)p.H,
                 (long long)p.Hkv, TSHAPE(q), TSHAPE(k));
        return NULL;
    }
    p.causal = opts ? opts->causal : 0;
    if (p.causal < 0 || p.causal > 2) {
        al_error("attention: causal must be 0 (none), 1 (top_left) or 2 (bottom_right), got %d", p.causal);
        return NULL;
    }
    p.scale = opts && opts->scale != 0 ? opts->scale : (p.d > 0 ? 1.0 / sqrt((double)p.d) : 1.0);
    if (!isfinite(p.scale)) { al_error("attention: scale %g is not finite", p.scale); return NULL; }
    p.norm = (double)(p.M > 0 ? p.M : 1);
    /* the variant's own options, checked into its struct (freed at the end: kernels copy what the
     * backward needs) */
    void *options = calloc(1, var->options_size ? var->options_size : 1);
    if (!options) { al_error("attention: out of memory"); return NULL; }
    p.options = options;
    al_tensor *bias = NULL, *mask = NULL, *qc = NULL, *kc = NULL, *vc = NULL, *out = NULL;
    if (!attention_read_options(var, opts, options)) goto done;
    if ((var->flags & ATTENTION_NO_LOGITS) && opts && (opts->bias || opts->mask)) {
        al_error("attention: variant '%s' takes no bias or mask (it never forms the N x M logits)", var->name);
        goto done;
    }
    int64_t map[4] = {p.B, p.H, p.N, p.M};
    if (opts && opts->bias && !(bias = broadcast_operand("bias", opts->bias, map, q->dtype))) goto done;
    if (opts && opts->mask) {
        al_tensor *m = al_detach(opts->mask);
        mask = m ? broadcast_operand("mask", m, map, q->dtype) : NULL;
        al_release(m);
        if (!mask) goto done;
    }
    qc = unit_last_stride(q); kc = unit_last_stride(k); vc = unit_last_stride(v);
    if (!qc || !kc || !vc) goto done;
    p.q = qc; p.k = kc; p.v = vc; p.bias = bias; p.mask = mask;
    out = on_cuda ? var->cuda_forward(&p, weights) : var->forward(&p, weights);
done:
    al_release(bias); al_release(mask); al_release(qc); al_release(kc); al_release(vc);
    free(options);
    return out;
}
