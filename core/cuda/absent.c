/* absent.c -- the CUDA backend's entry points in a build without it (`make` without CUDA=1).
 *
 * No CUDA tensor can be made in such a build (al_new_tensor_on and al_to_device ask
 * al_cuda_available first), so these are reached only by the device rule's test tensor
 * (al_unreadable_device_tensor): each one refuses, and none touches the memory it is given. */
#include "internal.h"

int al_cuda_available(void) { return 0; }
const char *al_cuda_unavailable_reason(void) {
    return "this build has no CUDA backend: build it with `make CUDA=1` on a machine with nvcc";
}

void *al_cuda_alloc(size_t nbytes) {
    al_error("tensor: no CUDA device (%s)", al_cuda_unavailable_reason());
    return NULL;
}
void al_cuda_free(void *p, size_t nbytes) {}

int al_cuda_memcpy(const char *fn, void *dst, al_device dst_device, const void *src, al_device src_device,
                   size_t nbytes) {
    al_error("%s: no CUDA device (%s)", fn, al_cuda_unavailable_reason());
    return -1;
}

al_tensor *al_cuda_contiguous(const al_tensor *t) {
    al_error("to: no CUDA device (%s)", al_cuda_unavailable_reason());
    return NULL;
}

int al_cuda_copy_into(al_tensor *dst, const al_tensor *src, const int64_t *src_strides, bool add) {
    al_error("copy: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_fill(al_tensor *t, double value) {
    al_error("fill_: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_binary(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                   const int64_t *b_strides) {
    al_error("elementwise op: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_unary(int op, al_tensor *out, const al_tensor *a, double s0, double s1) {
    al_error("elementwise op: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

/* fused softmax attention (core/cuda/attention.cu) */
int al_cuda_attention_forward(const al_cuda_attention_args *a, al_tensor *out, al_tensor *lse) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_attention_weights(const al_cuda_attention_args *a, const al_tensor *lse, al_tensor *weights) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_attention_backward(const al_cuda_attention_args *a, const al_tensor *out, const al_tensor *lse,
                               const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv, al_tensor *dbias) {
    al_error("attention: backward: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
