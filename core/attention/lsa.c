/* lsa.c -- the "lsa" variant, linear self-attention as in the in-context-learning theory papers
 * (von Oswald et al. 2023; Zhang, Frei, Bartlett 2024): the softmax is replaced by a fixed
 * normalisation, O = ((scale q k^T + bias) masked / norm) v, with norm the key count unless the
 * caller fixes it (e.g. the training context length, to study length generalisation).
 * Not to be confused with kernelised linear attention (elu+1 features, Katharopoulos et al.). */
#include "attention_internal.h"

typedef struct { double norm; } lsa_options;
static const attention_option options[] = {
    {OPTION_FIELD(lsa_options, norm), .kind = OPTION_NUMBER, .least = 0, .above_least = true,
     .summary = "the divisor instead of the key count (e.g. the training context length)"},
    {0},
};

static al_tensor *lsa_forward(attention_problem *p, al_tensor **weights) {
    const lsa_options *o = p->options;
    if (o->norm > 0) p->norm = o->norm;
    return attention_dense_forward(p, DENSE_FIXED_NORM, "attention_lsa", weights);
}

const attention_variant attention_lsa = {
    .name = "lsa", .forward = lsa_forward, .options = options, .options_size = sizeof(lsa_options),
    .summary = "linear self-attention: the softmax replaced by a fixed 1/norm (norm = key count by default)"};
