/* softmax.c -- the "softmax" variant: O = softmax(scale q k^T + bias, masked) v.
 * Dense for now (attention/dense.c); the tiled online-softmax path for long sequences goes here. */
#include "attention_internal.h"

al_tensor *attention_softmax_forward(const attention_problem *p, al_tensor **weights) {
    return attention_dense_forward(p, DENSE_SOFTMAX, "attention_softmax", weights);
}
