/* attention.c -- al_attention: argument checks shared by every variant, then dispatch by name.
 * The catalogue is the table below; each variant lives in a file of its own. */
#include "attention_internal.h"
#include <math.h>
#include <string.h>

typedef struct {
    const char *name;
    attention_forward_fn forward;
    const char *summary;
} attention_variant;

static const attention_variant variants[] = {
    {"softmax", attention_softmax_forward, "scaled dot-product softmax attention (tiled online softmax, or dense when the map is wanted)"},
    {"lsa", attention_lsa_forward,
     "linear self-attention: the softmax replaced by a fixed 1/norm (norm = key count by default)"},
    {"sliding_window", attention_sliding_window_forward,
     "softmax attention over the keys within `window` positions of the query's diagonal; the rest are never visited"},
    {"neighborhood", attention_neighborhood_forward,
     "neighborhood attention (NATTEN), 1-D or on a grid (opts.grid), dilated: each query sees kernel_size keys "
     "around it per axis, shifted at the borders"},
    {"strided_neighborhood", attention_strided_neighborhood_forward,
     "generalized neighborhood attention (GNA): groups of `stride` queries share their leader's window"},
    {"linear", attention_linear_forward,
     "kernelised linear attention, phi = elu + 1; causal by prefix sums (Katharopoulos et al. 2020)"},
    /* linear family and module-level variants (docs/attention-linear-family.md) */
    {"flow", attention_flow_forward,
     "Flow-Attention (Flowformer): sigmoid features, conserved incoming/outgoing flows, allocation and competition"},
    {"local_linear", attention_local_linear_forward,
     "local linear attention (LLA): per-query weighted ridge regression on (k, v) with softmax weights, read at q (opts.ridge)"},
    {"agent", attention_agent_forward,
     "agent attention: n agent tokens (opts.agents, or opts.agent_count pooled from q) gather from k/v, queries read the agents"},
    {"moh", attention_moh_forward,
     "mixture-of-head attention: softmax attention with per-token head gates (opts.gates; the router is nn.MultiHeadAttention's)"},
    {"random_feature", attention_random_feature_forward,
     "random-feature attention: relu(scale q.k) / key count; frozen random Q/K, trainable V in nn.MultiHeadAttention"},
    {"tensor", attention_tensor_forward,
     "triple-wise (Kronecker) attention: softmax over key pairs of scale sum_t q k1 k2, values v1 o v2 (opts.k2, opts.v2)"},
    {"delta", attention_delta_forward,
     "gated delta rule / Miras L2 memory: S_t = alpha_t S_{t-1}(I - beta_t k_t k_t^T) + beta_t v_t k_t^T, y = S q"},
    {"power", attention_power_forward,
     "PowerAttention: causal, a local window plus keys at power-of-2 block distances, O(N log N) (Chen et al. 2025)"},
    {"dynamic_mask", attention_dynamic_mask_forward,
     "dynamic mask attention (DMA): per query the top_k keys by a value-derived score z, which is also the bias"},
    {"flashbias", attention_flashbias_forward,
     "FlashBias: softmax attention plus a low-rank bias bias_q bias_k^T, exact, by concatenating the factors to q and k"},
    {"relative", attention_relative_forward,
     "relative position representations (Shaw et al. 2018): clipped-distance embeddings rel_key, rel_value"},
    {"pointer", attention_pointer_forward,
     "pointer network: the output is the (B, H, N, M) log-distribution over the keys (additive or dot scores); v unused"},
    {"landmark", attention_landmark_forward,
     "landmark attention: grouped softmax over the current block and earlier blocks' landmarks, then within blocks"},
    {"hyper", attention_hyper_forward,
     "HyperAttention (estimator): sortLSH blocks plus sampled residual keys weighted M/m, merged by log-sum-exp"},
    {"routing", attention_routing_forward,
     "Routing Transformer: queries and keys routed to k-means centroids (top cluster_size each), attention within clusters"},
};
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };

int al_attention_variant_count(void) { return N_VARIANTS; }
const char *al_attention_variant_name(int i) { return i >= 0 && i < N_VARIANTS ? variants[i].name : NULL; }

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
    const char *name = opts && opts->variant ? opts->variant : "softmax";
    const attention_variant *var = NULL;
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(variants[i].name, name) == 0) var = &variants[i];
    if (!var) {
        char list[256] = "";
        for (int i = 0; i < N_VARIANTS; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, variants[i].name, sizeof list - strlen(list) - 1);
        }
        al_error("attention: unknown variant '%s' (known: %s)", name, list);
        return NULL;
    }
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        al_error("attention: q, k, v must be 4-d (B, H, N, d), (B, H, M, d), (B, H, M, dv); got %s, %s, %s",
                 TSHAPE(q), TSHAPE(k), TSHAPE(v));
        return NULL;
    }
    if (!al_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype) {
        al_error("attention: q, k, v must share one float dtype; got %s, %s, %s", al_dtype_name(q->dtype),
                 al_dtype_name(k->dtype), al_dtype_name(v->dtype));
        return NULL;
    }
    static const al_attention_opts no_options = {0};
    /* q, k, v as given, for the checks' messages; replaced below by their unit-last-stride forms */
    attention_problem p = {.opts = opts ? opts : &no_options, .q = q, .k = k, .v = v};
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
    if (!attention_check_variant_options(var->name, p.opts)) return NULL;
    p.causal = opts ? opts->causal : 0;
    if (p.causal < 0 || p.causal > 2) {
        al_error("attention: causal must be 0 (none), 1 (top_left) or 2 (bottom_right), got %d", p.causal);
        return NULL;
    }
    p.scale = opts && opts->scale != 0 ? opts->scale : (p.d > 0 ? 1.0 / sqrt((double)p.d) : 1.0);
    if (!isfinite(p.scale)) { al_error("attention: scale %g is not finite", p.scale); return NULL; }
    p.norm = opts && opts->linear_norm > 0 ? opts->linear_norm : (double)(p.M > 0 ? p.M : 1);
    p.window = opts ? opts->window : 0;
    if (p.window < 0 || (var->forward == attention_sliding_window_forward && p.window == 0)) {
        al_error("attention: variant '%s' needs window >= 1 (got %lld)", var->name, (long long)p.window);
        return NULL;
    }
    const bool strided = var->forward == attention_strided_neighborhood_forward;
    if ((var->forward == attention_neighborhood_forward || strided) &&
        !neighborhood_resolve_layout(&p, var->name, strided))
        return NULL;
    p.kernel = opts ? opts->kernel : 0;
    if (p.kernel < 0 || p.kernel > 2) {
        al_error("attention: kernel must be 0 (auto), 1 (dense) or 2 (tiled), got %d", p.kernel);
        return NULL;
    }
    if (opts) {   /* the linear-family variants' options (option_owners.c checked who takes them) */
        p.beta = opts->beta; p.gate = opts->gate; p.agents = opts->agents; p.agent_count = opts->agent_count;
        p.k2 = opts->k2; p.v2 = opts->v2; p.head_gates = opts->head_gates; p.ridge = opts->ridge;
    }
    int64_t map[4] = {p.B, p.H, p.N, p.M};
    al_tensor *bias = NULL, *mask = NULL, *qc = NULL, *kc = NULL, *vc = NULL, *out = NULL;
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
    out = var->forward(&p, weights);
done:
    al_release(bias); al_release(mask); al_release(qc); al_release(kc); al_release(vc);
    return out;
}
