/* lsa.c -- the "lsa" variant, linear self-attention as in the in-context-learning theory papers
 * (von Oswald et al. 2023; Zhang, Frei, Bartlett 2024): the softmax is replaced by a fixed
 * normalisation, O = ((scale q k^T + bias) masked / norm) v, with norm the key count unless the
 * caller fixes it (e.g. the training context length, to study length generalisation).
 * Not to be confused with kernelised linear attention (elu+1 features, Katharopoulos et al.). */
#include "attention_internal.h"

al_tensor *attention_lsa_forward(const attention_problem *p, al_tensor **weights) {
    return attention_dense_forward(p, DENSE_FIXED_NORM, "attention_lsa", weights);
}
