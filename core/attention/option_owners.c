/* option_owners.c -- which variant takes which of the variants' own options (every field of
 * al_attention_opts below `weights`, and the neighborhood layout): an option given to a variant that
 * does not read it is an error (a silently ignored option is a wrong experiment). */
#include "attention_internal.h"
#include <string.h>

typedef struct {
    const char *option;
    bool (*given)(const al_attention_opts *o);
    const char *variants;   /* space-separated */
} variant_option;

#define GIVEN(field) static bool given_##field(const al_attention_opts *o) { return o->field != 0; }
GIVEN(block_size) GIVEN(local_blocks) GIVEN(top_k) GIVEN(dt_proj) GIVEN(dt_a) GIVEN(landmarks)
GIVEN(centroids) GIVEN(cluster_size) GIVEN(samples) GIVEN(lsh_bits) GIVEN(rel_key) GIVEN(rel_value)
GIVEN(bias_q) GIVEN(bias_k) GIVEN(pointer_w1) GIVEN(pointer_w2) GIVEN(pointer_v)
GIVEN(beta) GIVEN(gate) GIVEN(agents) GIVEN(agent_count) GIVEN(k2) GIVEN(v2) GIVEN(head_gates) GIVEN(ridge)
GIVEN(window) GIVEN(kernel_size) GIVEN(stride) GIVEN(kernel)
#undef GIVEN
/* the neighborhood variants' layout */
static bool given_dilation(const al_attention_opts *o) {
    for (int a = 0; a < NEIGHBORHOOD_MAX_AXES; a++)
        if (o->axis_dilation[a]) return true;
    return o->dilation != 0;
}
static bool given_grid(const al_attention_opts *o) { return o->grid_ndim != 0; }
static bool given_axis_options(const al_attention_opts *o) {
    for (int a = 0; a < NEIGHBORHOOD_MAX_AXES; a++)
        if (o->axis_kernel_size[a] || o->axis_stride[a] || o->axis_causal[a]) return true;
    return false;
}

static const variant_option options[] = {
    {"window", given_window, "sliding_window"},
    {"kernel_size", given_kernel_size, "neighborhood strided_neighborhood"},
    {"stride", given_stride, "neighborhood strided_neighborhood"},
    {"kernel", given_kernel, "softmax sliding_window neighborhood strided_neighborhood flashbias moh"},
    {"block_size", given_block_size, "power hyper"},
    {"local_blocks", given_local_blocks, "power"},
    {"top_k", given_top_k, "dynamic_mask"},
    {"dt_proj", given_dt_proj, "dynamic_mask"},
    {"dt_a", given_dt_a, "dynamic_mask"},
    {"landmarks", given_landmarks, "landmark"},
    {"centroids", given_centroids, "routing"},
    {"cluster_size", given_cluster_size, "routing"},
    {"samples", given_samples, "hyper"},
    {"lsh_bits", given_lsh_bits, "hyper"},
    {"rel_key", given_rel_key, "relative"},
    {"rel_value", given_rel_value, "relative"},
    {"bias_q", given_bias_q, "flashbias"},
    {"bias_k", given_bias_k, "flashbias"},
    {"pointer_w1", given_pointer_w1, "pointer"},
    {"pointer_w2", given_pointer_w2, "pointer"},
    {"pointer_v", given_pointer_v, "pointer"},
    {"beta", given_beta, "delta"},
    {"gate", given_gate, "delta"},
    {"agents", given_agents, "agent"},
    {"agent_count", given_agent_count, "agent"},
    {"k2", given_k2, "tensor"},
    {"v2", given_v2, "tensor"},
    {"gates", given_head_gates, "moh"},
    {"ridge", given_ridge, "local_linear"},
    {"dilation", given_dilation, "neighborhood strided_neighborhood"},
    {"grid", given_grid, "neighborhood strided_neighborhood"},
    {"per-axis kernel_size, stride or causal", given_axis_options, "neighborhood strided_neighborhood"},
};

static bool word_in(const char *word, const char *list) {
    const size_t n = strlen(word);
    for (const char *s = list; (s = strstr(s, word)) != NULL; s += n)
        if ((s == list || s[-1] == ' ') && (s[n] == ' ' || s[n] == 0)) return true;
    return false;
}

bool attention_check_variant_options(const char *variant, const al_attention_opts *o) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (options[i].given(o) && !word_in(variant, options[i].variants)) {
            al_error("attention: %s is an option of the variant(s) %s, not of '%s'", options[i].option,
                     options[i].variants, variant);
            return false;
        }
    return true;
}
