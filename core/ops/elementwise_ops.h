/* elementwise_ops.h -- the elementwise op codes, shared by the CPU kernels (elementwise.c) and the
 * CUDA ones (core/cuda/elementwise.cu), so that both sides switch on the same numbers. */
#ifndef ATTNLAB_ELEMENTWISE_OPS_H
#define ATTNLAB_ELEMENTWISE_OPS_H

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN } binary_op;

typedef enum {
    U_NEG, U_EXP, U_LOG, U_SQRT, U_TANH, U_SIGMOID, U_RELU, U_GELU, U_ABS,
    U_ADD_S, U_MUL_S, U_RSUB_S, U_RDIV_S, U_POW_S, U_CLAMP,
    U_SQUARE   /* pow with exponent 2, chosen inside the kernel: never recorded, no name */
} unary_op;

/* gelu, tanh form: 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi) */
#define GELU_C 0.7978845608028654

#endif
