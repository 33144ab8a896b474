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

int al_cuda_synchronize(void) { return 0; }
int64_t al_cuda_bytes_in_use(void) { return 0; }
int64_t al_cuda_bytes_peak(void) { return 0; }
void al_cuda_reset_peak(void) {}

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

int al_cuda_sum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, double scale) {
    al_error("sum: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_argbest_lines(const al_tensor *x, al_tensor *vals, al_tensor *idx, int64_t outer, int64_t R,
                          int64_t inner, bool want_max) {
    al_error("max: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_scatter_best(al_tensor *gin, const al_tensor *g, const al_tensor *idx, int64_t outer, int64_t R,
                         int64_t inner) {
    al_error("max: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_matmul(const al_tensor *a, const al_tensor *b, al_tensor *out, int nb, const int64_t *batch,
                   const int64_t *a_batch_strides, const int64_t *b_batch_strides, int64_t n, int64_t k, int64_t m) {
    al_error("matmul: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
/* the training step's kernels (core/cuda/nn.cu, core/cuda/optim.cu) */
static int refuse(const char *fn) {
    al_error("%s: no CUDA device (%s)", fn, al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_softmax(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, softmax_kind kind) {
    return refuse("softmax");
}
int al_cuda_softmax_backward(const al_tensor *y, const al_tensor *g, const al_tensor *x, al_tensor *dx, int64_t outer,
                             int64_t R, int64_t inner, softmax_kind kind) {
    return refuse("softmax backward");
}
int al_cuda_layer_norm(const al_tensor *x, const al_tensor *w, const al_tensor *b, double eps, al_tensor *y,
                       al_tensor *stats) {
    return refuse("layer_norm");
}
int al_cuda_layer_norm_backward(const al_tensor *x, const al_tensor *g, const al_tensor *w, const al_tensor *stats,
                                al_tensor *dx, al_tensor *dw_db) {
    return refuse("layer_norm backward");
}
int al_cuda_check_ids(const char *fn, const al_tensor *ids, int64_t limit, int64_t ignore, bool use_ignore,
                      int64_t *first_bad, int64_t *bad_id, int64_t *counted) {
    return refuse(fn);
}
int al_cuda_cross_entropy(const al_tensor *logits, const al_tensor *ids, al_tensor *prob, int64_t ignore,
                          double *total) {
    return refuse("cross_entropy");
}
int al_cuda_embedding(const al_tensor *w, const al_tensor *ids, al_tensor *out) { return refuse("embedding"); }
int al_cuda_embedding_backward(al_tensor *gw, const al_tensor *ids, const al_tensor *g) {
    return refuse("embedding backward");
}
int al_cuda_dropout_mask(al_tensor *mask, double p, uint64_t key, uint64_t first) { return refuse("dropout"); }
int al_cuda_sgd_update(al_tensor *p, const al_tensor *g, al_tensor *buf, double lr, double momentum,
                       double weight_decay, bool nesterov) {
    return refuse("sgd_step");
}
int al_cuda_adam_update(al_tensor *p, al_tensor *m, al_tensor *v, const al_tensor *g, double lr, double beta1,
                        double beta2, double eps, double weight_decay, bool decoupled, double bc1, double bc2) {
    return refuse("adam_step");
}
double al_cuda_sum_squares(const al_tensor *g) { return refuse("clip_grad_norm"); }
/* fused softmax attention (core/cuda/attention.cu) */
int al_cuda_attention_forward(const al_cuda_attention_args *a, al_tensor *out, al_tensor *lse) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
const char *al_cuda_attention_kernel_used(void) { return "none"; }
int al_cuda_scatter_mean(const al_tensor *src, al_tensor *out, const al_tensor *index, const al_tensor *count, int64_t BH,
                         int64_t N, int64_t S, int64_t w, bool gather) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_topk_keep(const al_tensor *scores, al_tensor *keep, int64_t lines, int64_t n, int64_t k) {
    al_error("topk_mask: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_grouped_softmax(const al_tensor *x, const al_tensor *labels, const al_tensor *g, al_tensor *y, int64_t lines,
                            int64_t n, bool backward) {
    al_error("grouped_softmax: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_attention_merge(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                            al_tensor *o, al_tensor *lse) {
    al_error("attention_merge: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_attention_merge_backward(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                                     const al_tensor *g, al_tensor *d1, al_tensor *dl1, al_tensor *d2, al_tensor *dl2) {
    al_error("attention_merge: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_attention_merge_lse_backward(const al_tensor *l1, const al_tensor *l2, const al_tensor *g, al_tensor *dl1,
                                         al_tensor *dl2) {
    al_error("attention_merge: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_relative_index(const al_tensor *src, al_tensor *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                           int64_t shift, bool scatter) {
    al_error("%s: no CUDA device (%s)", scatter ? "relative_scatter" : "relative_gather", al_cuda_unavailable_reason());
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

int al_cuda_sparse_attention_forward(const al_cuda_attention_args *a, const al_cuda_key_lists *l, al_tensor *P,
                                     al_tensor *out) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_sparse_attention_backward(const al_cuda_attention_args *a, const al_cuda_key_lists *l, const al_tensor *P,
                                      const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv,
                                      al_tensor *dkey_bias, al_tensor *dbias) {
    al_error("attention: backward: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_sparse_attention_map(const al_cuda_key_lists *l, const al_tensor *P, al_tensor *weights) {
    al_error("attention: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_state_recurrence_forward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                     const al_tensor *v, const al_tensor *coef, al_tensor *y, al_tensor *checkpoints) {
    al_error("attention: state recurrence: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_state_recurrence_backward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                      const al_tensor *v, const al_tensor *coef, const al_tensor *checkpoints,
                                      const al_tensor *dy, al_tensor *dq, al_tensor *dk, al_tensor *dv, al_tensor *dcoef) {
    al_error("attention: state recurrence: backward: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_gather(const al_tensor *t, int d, const al_tensor *idx, al_tensor *out) {
    al_error("gather: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}
int al_cuda_gather_backward(al_tensor *gx, int d, const al_tensor *idx, const al_tensor *g) {
    al_error("gather: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_compare(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                    const int64_t *b_strides) {
    al_error("compare: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_where(al_tensor *out, const al_tensor *keep, const int64_t *keep_strides, const al_tensor *a,
                  const int64_t *a_strides, const al_tensor *b, const int64_t *b_strides) {
    al_error("where: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

int al_cuda_cumsum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, bool reverse) {
    al_error("cumsum: no CUDA device (%s)", al_cuda_unavailable_reason());
    return -1;
}

/* 2-D convolution (core/cuda/conv.cu) */
int al_cuda_conv2d_forward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *b,
                           al_tensor *y) {
    return refuse("conv2d");
}
int al_cuda_conv2d_backward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *dy,
                            al_tensor *dx, al_tensor *dw, al_tensor *db) {
    return refuse("conv2d");
}

/* pooling (core/cuda/pool.cu) */
int al_cuda_max_pool2d(const struct pool_geometry *g, const al_tensor *x, al_tensor *y, al_tensor *idx) {
    return refuse("max_pool2d");
}
int al_cuda_max_pool2d_backward(const struct pool_geometry *g, const al_tensor *dy, const al_tensor *idx, al_tensor *dx) {
    return refuse("max_pool2d");
}
int al_cuda_avg_pool2d(const struct pool_geometry *g, const al_tensor *x, al_tensor *y) { return refuse("avg_pool2d"); }
int al_cuda_avg_pool2d_backward(const struct pool_geometry *g, const al_tensor *dy, al_tensor *dx) {
    return refuse("avg_pool2d");
}

/* separable resampling (core/cuda/resample.cu) */
int al_cuda_resample(const al_tensor *x, const al_tensor *sources, al_tensor *y) { return refuse("interpolate"); }
int al_cuda_resample_backward(const al_tensor *dy, const al_tensor *sources, al_tensor *dx) { return refuse("interpolate"); }

/* grid_sample (core/cuda/sample.cu) */
int al_cuda_grid_sample(const struct sample_geometry *g, const al_tensor *x, const al_tensor *grid, al_tensor *y) {
    return refuse("grid_sample");
}
int al_cuda_grid_sample_backward(const struct sample_geometry *g, const al_tensor *x, const al_tensor *grid,
                                 const al_tensor *dy, al_tensor *dx, al_tensor *dgrid) {
    return refuse("grid_sample");
}

/* eccentricity pooling (core/cuda/ecc_pool.cu) */
int al_cuda_ecc_pool2d(const struct ecc_geometry *g, const al_tensor *x, const al_tensor *sizes, bool is_max, al_tensor *y,
                       al_tensor *idx) {
    return refuse("ecc_pool2d");
}
int al_cuda_ecc_pool2d_backward(const struct ecc_geometry *g, const al_tensor *dy, const al_tensor *sizes,
                                const al_tensor *idx, bool is_max, al_tensor *dx) {
    return refuse("ecc_pool2d");
}

/* solve (core/cuda/solve.cu) */
int al_cuda_solve(const al_tensor *A, al_tensor *work, int64_t n, int64_t k, int64_t nbatch) { return refuse("solve"); }
