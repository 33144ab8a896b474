/* internal.h -- what the files of the core share and users never see: the tensor and node
 * structs, the error macros, the strided-iteration helpers and the graph-recording helpers. */
#ifndef ATTNLAB_INTERNAL_H
#define ATTNLAB_INTERNAL_H

#include "attnlab.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Storage: one block of memory shared by every view onto it.
 * Invariant: refcount >= 1 while any tensor points at it; data is always its own (from the
 * allocator of its device, given back through `release` when the last reference goes:
 * al_from_buffer copies).  data is a device address when device is not AL_CPU: CPU code never
 * reads it, which is what al_require_cpu (below) enforces at the top of every op. */
typedef struct al_storage {
    void *data;
    size_t nbytes;
    int refcount;
    al_device device;
    void (*release)(void *data, size_t nbytes);
} al_storage;

typedef struct al_node al_node;

/* Tensor: a strided window onto a storage.
 * Invariants: 0 <= ndim <= AL_MAX_DIMS; shape[i] >= 0; every index reachable through shape and
 * strides lies inside the storage; grad_fn != NULL implies requires_grad (a non-leaf). */
struct al_tensor {
    int refcount;
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    int64_t strides[AL_MAX_DIMS];
    int64_t offset;          /* in elements */
    al_dtype dtype;
    al_storage *storage;
    bool requires_grad;
    al_tensor *grad;         /* accumulated gradient of a leaf (or NULL) */
    al_node *grad_fn;        /* the node that produced this tensor (NULL for leaves) */
};

/* A node of the autograd graph: one op application with one differentiable output.
 * It holds references to its inputs (so that they live until backward) and to whatever the
 * backward needs.  It never references its own output tensor (that would be a cycle): an op that
 * needs its output saves an alias made by al_alias(), which shares the storage only. */
enum { AL_NODE_MAX_INPUTS = 4, AL_NODE_MAX_SAVED = 6 };
typedef void (*al_backward_fn)(al_node *node, const al_tensor *grad_out);
struct al_node {
    int refcount;
    const char *name;
    al_backward_fn backward;
    int n_inputs;
    al_tensor *inputs[AL_NODE_MAX_INPUTS];
    al_tensor *saved[AL_NODE_MAX_SAVED];
    double scalars[4];
    int64_t ints[AL_MAX_DIMS * 2];
    int n_ints;
    void *ctx;                         /* op-owned memory, freed with free() */
    al_tensor *grad_accum;             /* gradient arriving at this node's output */
    int64_t out_shape[AL_MAX_DIMS];
    int out_ndim;
    al_dtype out_dtype;
    int pending;                       /* used by backward's topological walk */
    bool spent;                        /* backward has run and released the inputs */
    bool visited;
};

/* ---- errors ------------------------------------------------------------------------------ */
void al_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* How many errors this thread has raised: a caller that cannot see a callee's status (a backward
 * returns nothing) compares it before and after. */
int64_t al_error_count(void);
/* "{2,3,4}" for a shape, into a rotating set of static buffers (good for one message) */
const char *al_shape_str(int ndim, const int64_t *shape);
#define TSHAPE(t) al_shape_str((t)->ndim, (t)->shape)
#define CHECK_TENSOR(fn, t, argname)                                                \
    do { if (!(t)) { al_error("%s: argument '%s' is missing (nil)", fn, argname); return NULL; } } while (0)

/* The few rules that the CPU ops and the CUDA kernels share (ops/pool2d_window.h, ops/grid_sample_point.h)
 * are compiled for both: __host__ __device__ under nvcc, nothing elsewhere. */
#ifdef __CUDACC__
#define AL_HOST_DEVICE __host__ __device__
#else
#define AL_HOST_DEVICE
#endif

/* ---- text (json_read.c) ---------------------------------------------------------------------- */
/* Length of the valid UTF-8 sequence at p (at most avail bytes), or 0 when it is not valid
 * (overlong forms, surrogates and code points over U+10FFFF are not). */
int al_utf8_length(const unsigned char *p, size_t avail);

/* ---- storage and construction -------------------------------------------------------------- */
size_t al_dtype_size(al_dtype dtype);
bool al_is_float(al_dtype dtype);          /* float32 or float64: the dtypes the CPU kernels compute in */
bool al_is_floating_point(al_dtype dtype); /* those and bfloat16: the dtypes gradients flow through */
/* C (m x n, row stride ldc) = beta C + op(A) op(B), float, row-major, on the calling thread; op(A)
 * is A (m x k, lda) or, when a_trans, the transpose of A (k x m); likewise B.  False (doing
 * nothing) where the build has no AVX-512 (ops/sgemm_avx512.c) or its buffers cannot be made. */
bool al_sgemm_own(bool a_trans, bool b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
bool al_sgemm_own_available(void);
/* whether linear.c's float products go to al_sgemm_own (blas_info.c; read from the environment once) */
bool al_linear_uses_own_sgemm(void);
void *al_alloc(size_t nbytes);         /* caching allocator, 64-byte aligned */
void al_free(void *p, size_t nbytes);
al_tensor *al_new_tensor(int ndim, const int64_t *shape, al_dtype dtype); /* uninitialised */
al_tensor *al_new_like(const al_tensor *t);                              /* same shape & dtype */
al_tensor *al_new_like_layout(const al_tensor *t);  /* same shape, dtype and dense layout */
bool al_is_dense(const al_tensor *t);   /* a permutation of a contiguous layout */
al_tensor *al_alias(const al_tensor *t);   /* same storage and view, no grad history */
al_tensor *al_view_of(const al_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset);    /* raw view sharing t's storage, no grad */
int al_normalize_dim(const char *fn, int dim, int ndim); /* -1 with error when out of range */
bool al_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);
int64_t al_shape_numel(int ndim, const int64_t *shape);
bool al_check_shape(const char *fn, int ndim, const int64_t *shape);
/* Broadcast shapes a and b into out; false (with an error naming fn) when they do not match. */
bool al_broadcast_shapes(const char *fn, int na, const int64_t *a, int nb, const int64_t *b,
                         int *nout, int64_t *out);
/* Strides for reading t as if it had shape (ndim, shape) under broadcasting (0 on broadcast dims). */
void al_broadcast_strides(const al_tensor *t, int ndim, const int64_t *shape, int64_t *strides);
/* A new tensor of that shape and dtype whose storage lives on device (uninitialised), and one
 * filled with value (al_full on any device: zeros for a gradient, a scalar beside an operand). */
al_tensor *al_new_tensor_on(int ndim, const int64_t *shape, al_dtype dtype, al_device device);
al_tensor *al_full_on(int ndim, const int64_t *shape, double value, al_dtype dtype, al_device device);
/* The device rule of every op: an op reads and writes only memory of the device it runs on, so an
 * op without a kernel for a tensor's device refuses it before touching its memory.  True when each
 * of the given tensors (NULLs skipped) is on the CPU; otherwise an error naming fn and the shape of
 * the tensor on the device, and false. */
bool al_require_cpu(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c);
#define AL_REQUIRE_CPU(fn, a, b, c, fail) do { if (!al_require_cpu(fn, a, b, c)) return fail; } while (0)
/* For ops with kernels on both devices: true when the given tensors (NULLs skipped) share one
 * device and none is bfloat16; otherwise an error naming fn and both devices (no op copies across
 * devices by itself), or fn and the bfloat16 tensor. */
bool al_same_device(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c);
/* The same without the bfloat16 refusal, for the ops that take it: copies and conversions, the fused
 * attention, the backward's seed. */
bool al_same_device_any_dtype(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c);
/* bfloat16 reaches only the ops made for it (conversions and copies, fills, pad, the fused attention):
 * true, with an error naming fn and the tensor's shape, when one of the given tensors (NULLs
 * skipped) is bfloat16.  al_same_device calls it; ops that need no device check (one operand) call
 * it through AL_REFUSE_BFLOAT16.  tests/lua/test_bfloat16_rule.lua holds every function to it. */
bool al_refuse_bfloat16(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c);
#define AL_REFUSE_BFLOAT16(fn, t, fail) do { if (al_refuse_bfloat16(fn, t, NULL, NULL)) return fail; } while (0)
/* t on the CPU: t itself (retained) when it is there, else a contiguous copy (device.c). */
al_tensor *al_to_cpu_nograd(const al_tensor *t);

/* ---- the CUDA backend: the .cu files of core/cuda with `make CUDA=1`, core/cuda/absent.c without ---- */
void *al_cuda_alloc(size_t nbytes);            /* device memory from the caching allocator; NULL with an error */
void al_cuda_free(void *p, size_t nbytes);     /* back to the cache */
/* Copies nbytes from src (on src_device) to dst (on dst_device); 0, or -1 with an error naming fn. */
int al_cuda_memcpy(const char *fn, void *dst, al_device dst_device, const void *src, al_device src_device,
                   size_t nbytes);
/* A contiguous copy of a CUDA tensor, on the device (t itself, retained, when contiguous). */
al_tensor *al_cuda_contiguous(const al_tensor *t);
/* The elementwise kernels (core/cuda/elementwise.cu); every tensor on the device, each call 0 or -1
 * with an error.  dst = src (or dst += src when add) with src read through src_strides (0 on broadcast
 * dims) over dst's shape, converting the dtype. */
int al_cuda_copy_into(al_tensor *dst, const al_tensor *src, const int64_t *src_strides, bool add);
int al_cuda_fill(al_tensor *t, double value);
/* out = a op b over out's shape (op: ops/elementwise_ops.h), a and b of out's dtype read through
 * their broadcast strides; out = op(a) with the scalars s0, s1 (a of out's dtype and shape). */
int al_cuda_binary(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                   const int64_t *b_strides);
int al_cuda_unary(int op, al_tensor *out, const al_tensor *a, double s0, double s1);
/* out = keep ? a : b, keep (0/1), a, b of out's dtype read through their broadcast strides */
int al_cuda_where(al_tensor *out, const al_tensor *keep, const int64_t *keep_strides, const al_tensor *a,
                  const int64_t *a_strides, const al_tensor *b, const int64_t *b_strides);
/* out (float32 or float64) = 1 where a op b (al_compare_op) holds, else 0; a and b of one dtype */
int al_cuda_compare(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                    const int64_t *b_strides);
/* Reductions over contiguous (outer, R, inner) lines (core/cuda/reduce.cu): out (outer, inner) =
 * scale * the sums; the max or min of each line and its index; max's backward, gin[a, idx, i] += g[a, i]. */
int al_cuda_sum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, double scale);
int al_cuda_argbest_lines(const al_tensor *x, al_tensor *vals, al_tensor *idx, int64_t outer, int64_t R,
                          int64_t inner, bool want_max);
int al_cuda_scatter_best(al_tensor *gin, const al_tensor *g, const al_tensor *idx, int64_t outer, int64_t R,
                         int64_t inner);
/* prefix sums along R of (outer, R, inner) lines (reverse: from the end), summed in double in order */
int al_cuda_cumsum_lines(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, bool reverse);
/* gather along dim d: out (idx's shape, contiguous) from t read through its strides, idx contiguous
 * int64 with checked ids; the backward adds g into a zeroed contiguous gx with atomics */
int al_cuda_gather(const al_tensor *t, int d, const al_tensor *idx, al_tensor *out);
int al_cuda_gather_backward(al_tensor *gx, int d, const al_tensor *idx, const al_tensor *g);
/* out (batch..., n, m) = a (..., n, k) b (..., k, m) through cuBLAS (core/cuda/matmul.cu): each
 * matrix with a unit stride along rows or columns, the batch read through the broadcast strides. */
int al_cuda_matmul(const al_tensor *a, const al_tensor *b, al_tensor *out, int nb, const int64_t *batch,
                   const int64_t *a_batch_strides, const int64_t *b_batch_strides, int64_t n, int64_t k, int64_t m);
/* The training step's kernels: softmax family, layer norm, cross-entropy, embedding, dropout masks
 * (core/cuda/nn.cu) and the optimiser updates (core/cuda/optim.cu).  Every tensor is on the device
 * and contiguous (the callers make it so); each call 0 or -1 with an error naming fn or the op. */
typedef enum { SM_SOFTMAX, SM_LOG_SOFTMAX, SM_LOGSUMEXP } softmax_kind;   /* reduce.c's softmax family */
/* x and out as (outer, R, inner) lines, R the reduced size; out is one value per line for logsumexp */
int al_cuda_softmax(const al_tensor *x, al_tensor *out, int64_t outer, int64_t R, int64_t inner, softmax_kind kind);
/* dx from the saved output y, the incoming g and (logsumexp only) the input x */
int al_cuda_softmax_backward(const al_tensor *y, const al_tensor *g, const al_tensor *x, al_tensor *dx, int64_t outer,
                             int64_t R, int64_t inner, softmax_kind kind);
/* rows of D: y, and (mean, rstd) per row into stats (rows, 2) float64; w, b may be NULL */
int al_cuda_layer_norm(const al_tensor *x, const al_tensor *w, const al_tensor *b, double eps, al_tensor *y,
                       al_tensor *stats);
/* dx (NULL: not wanted) and the sums over rows of g * xhat and g into dw_db (2, D) float64 (NULL: not wanted) */
int al_cuda_layer_norm_backward(const al_tensor *x, const al_tensor *g, const al_tensor *w, const al_tensor *stats,
                                al_tensor *dx, al_tensor *dw_db);
/* The first position of ids (int64) outside [0, limit), skipping ids equal to `ignore` when
 * use_ignore, into *first_bad (numel when none) with its id in *bad_id, and the number of ids not
 * ignored into *counted.  Reads the answer back to the host (a synchronisation). */
int al_cuda_check_ids(const char *fn, const al_tensor *ids, int64_t limit, int64_t ignore, bool use_ignore,
                      int64_t *first_bad, int64_t *bad_id, int64_t *counted);
/* Rows of C logits against ids (already checked): P = softmax - onehot (0 on ignored rows), and the
 * sum over counted rows of lse - logit[id] into *total (read back to the host). */
int al_cuda_cross_entropy(const al_tensor *logits, const al_tensor *ids, al_tensor *prob, int64_t ignore,
                          double *total);
/* out[i, :] = w[ids[i], :] (ids already checked); gw[ids[i], :] += g[i, :] with atomic adds */
int al_cuda_embedding(const al_tensor *w, const al_tensor *ids, al_tensor *out);
int al_cuda_embedding_backward(al_tensor *gw, const al_tensor *ids, const al_tensor *g);
/* dropout's mask: (u_i >= p ? 1/(1-p) : 0) with u_i the uniform of draw first + i under key (rng.c's al_rand) */
int al_cuda_dropout_mask(al_tensor *mask, double p, uint64_t key, uint64_t first);
/* The key of the current seed and the first of n draws, taken (rng.c): the device draws what al_rand would */
void al_rng_take(uint64_t n, uint64_t *key, uint64_t *first);
/* optim.c's updates on the device, element for element as generic/optim_steps.h (buf may be NULL) */
int al_cuda_sgd_update(al_tensor *p, const al_tensor *g, al_tensor *buf, double lr, double momentum,
                       double weight_decay, bool nesterov);
int al_cuda_adam_update(al_tensor *p, al_tensor *m, al_tensor *v, const al_tensor *g, double lr, double beta1,
                        double beta2, double eps, double weight_decay, bool decoupled, double bc1, double bc2);
/* sum of g's squares in double (read back to the host); -1 with an error */
double al_cuda_sum_squares(const al_tensor *g);
/* The element offsets of batch bi (row-major over the nb dims of batch) in two operands read
 * through their batch strides sa and sb (0 on broadcast dims): what batched products walk. */
static inline void al_batch_offsets(int64_t bi, int nb, const int64_t *batch, const int64_t *sa, const int64_t *sb,
                                    int64_t *a_offset, int64_t *b_offset) {
    int64_t aoff = 0, boff = 0, r = bi;
    for (int d = nb - 1; d >= 0; d--) {
        const int64_t idx = r % batch[d];
        r /= batch[d];
        aoff += idx * sa[d];
        boff += idx * sb[d];
    }
    *a_offset = aoff;
    *b_offset = boff;
}
static inline void *al_ptr(const al_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * al_dtype_size(t->dtype);
}
al_tensor *al_contiguous_nograd(const al_tensor *t); /* t itself (retained) when contiguous */
int al_add_into_(al_tensor *dst, const al_tensor *src);  /* dst += src in place, no graph (copy.c) */
al_tensor *al_to_dtype_nograd(const al_tensor *t, al_dtype dtype);
/* Sum a gradient of shape g down to (ndim, shape), undoing broadcasting. */
al_tensor *al_sum_to_shape(const al_tensor *g, int ndim, const int64_t *shape);
void al_rng_normal_fill(float *f32, double *f64, int64_t n);
/* Fused softmax attention (core/cuda/attention.cu): forward with the row log-sum-exp, the map on
 * request, and the backward; the op around them is core/attention/softmax_cuda.c.  Every tensor is on
 * the device; q, k, v (B, H, N, d), (B, Hkv, M, d), (B, Hkv, M, dv) of one float dtype with H a
 * multiple of Hkv and d, dv <= AL_CUDA_ATTENTION_HEAD_MAX; bias and mask NULL or (B, H, N, M) views
 * in q's dtype (stride 0 on broadcast dims; a mask entry 0 hides the key).  out (B, H, N, dv), lse
 * (B, H, N), weights (B, H, N, M), the gradients and dbias are contiguous and written whole (a row
 * that sees no key: output 0, lse +inf, weights 0).  Each call 0, or -1 with an error. */
enum { AL_CUDA_ATTENTION_HEAD_MAX = 128 };
typedef struct {
    const al_tensor *q, *k, *v, *bias, *mask;
    int causal;      /* 0 none, 1 top-left (j <= i), 2 bottom-right (j <= i + M - N) */
    double scale;
    int64_t window;  /* > 0: only keys with |j - diag(i)| <= window (diag(i) = i, or i + M - N bottom-right) */
    /* NULL, or an int64 (2, N) tensor on the device: query i sees the keys [ranges[0][i], ranges[1][i])
     * (before the mask), both bounds non-decreasing in i (a 1-D neighborhood's windows); it replaces
     * causal and window */
    const al_tensor *ranges;
} al_cuda_attention_args;
int al_cuda_attention_forward(const al_cuda_attention_args *a, al_tensor *out, al_tensor *lse);
int al_cuda_attention_weights(const al_cuda_attention_args *a, const al_tensor *lse, al_tensor *weights);
/* Which kernel the last CUDA attention forward or backward ran: "tiled" (any dtype and options) or
 * "tensor cores" (bfloat16 of the shapes attention_mma.cu takes); "none" before any; for the tests. */
const char *al_cuda_attention_kernel_used(void);
/* Softmax attention over explicit key lists (core/cuda/sparse.cu; the op is core/attention/sparse.c):
 * a's q, k, v, bias, mask and scale as above (causal, window and ranges unused: the lists say which
 * keys a query sees), float32 or float64; the lists in CSR on the device, query row r = (b, h, i)
 * owning the entries start[r] .. start[r+1]-1.  P (nnz) receives the entries' probabilities and the
 * backward reads them; out, the gradients (zeroed: dk, dv and dkey_bias are added to with atomics)
 * and the map (zeroed) are contiguous. */
typedef struct {
    const al_tensor *start, *keys;   /* int64 (rows + 1) and (nnz) */
    const al_tensor *offsets;        /* float64 (nnz): a constant added to each entry's logit; or NULL */
    const al_tensor *key_bias;       /* contiguous (B, Hkv, M) in q's dtype, or NULL */
} al_cuda_key_lists;
int al_cuda_sparse_attention_forward(const al_cuda_attention_args *a, const al_cuda_key_lists *l, al_tensor *P,
                                     al_tensor *out);
int al_cuda_sparse_attention_backward(const al_cuda_attention_args *a, const al_cuda_key_lists *l, const al_tensor *P,
                                      const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv,
                                      al_tensor *dkey_bias, al_tensor *dbias);
int al_cuda_sparse_attention_map(const al_cuda_key_lists *l, const al_tensor *P, al_tensor *weights);
/* The prefix-state recurrence of attention/recurrence.c (delta, causal flow) on the GPU
 * (core/cuda/recurrence.cu): its sizes, and every tensor float64, contiguous, on the device: q
 * (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv), coef (B, H, M, 2) holding [beta, alpha] per step,
 * y (B, H, N, dv), checkpoints (B, H, n_chunks, dv, d) (the state before each chunk of `chunk` steps;
 * zeroed).  The backward writes dq and dcoef whole and adds into dk and dv (zeroed). */
typedef struct {
    int64_t B, H, Hkv, N, M, d, dv, chunk, n_chunks;
    double scale;
    int causal, delta;
} al_recurrence_shape;
int al_cuda_state_recurrence_forward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                     const al_tensor *v, const al_tensor *coef, al_tensor *y, al_tensor *checkpoints);
int al_cuda_state_recurrence_backward(const al_recurrence_shape *r, const al_tensor *q, const al_tensor *k,
                                      const al_tensor *v, const al_tensor *coef, const al_tensor *checkpoints,
                                      const al_tensor *dy, al_tensor *dq, al_tensor *dk, al_tensor *dv, al_tensor *dcoef);
/* 2-D convolution (ops/conv2d.c checks and fills the geometry; core/cuda/conv.cu computes on the
 * GPU): x (N, Cin, H, W), w (Cout, Cin_g, kh, kw), b (Cout) or NULL, y and dy (N, Cout, Ho, Wo),
 * all contiguous and of one float dtype; dx, dw, db NULL when not wanted, else written whole. */
typedef struct {
    int64_t N, Cin, H, W, Cout, kh, kw, Ho, Wo;
    int64_t sh, sw, pt, pl, dh, dw, groups;   /* stride, top and left padding, dilation, groups */
    int64_t Cin_g, Cout_g, K_g, K, P;         /* per group; K_g = Cin_g kh kw, K = Cin kh kw, P = Ho Wo */
} al_conv_geometry;
int al_cuda_conv2d_forward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *b,
                           al_tensor *y);
int al_cuda_conv2d_backward(const al_conv_geometry *g, const al_tensor *x, const al_tensor *w, const al_tensor *dy,
                            al_tensor *dx, al_tensor *dw, al_tensor *db);

/* Max and average pooling (ops/pool2d.c checks the options into the geometry, ops/pool2d_window.h;
 * core/cuda/pool.cu computes): x and dx (planes, H, W), y, dy and idx (planes, Ho, Wo), contiguous,
 * idx int64 (the argmax iy W + ix within its plane, -1 for a window with no input cell), dx written whole. */
struct pool_geometry;
int al_cuda_max_pool2d(const struct pool_geometry *g, const al_tensor *x, al_tensor *y, al_tensor *idx);
int al_cuda_max_pool2d_backward(const struct pool_geometry *g, const al_tensor *dy, const al_tensor *idx, al_tensor *dx);
int al_cuda_avg_pool2d(const struct pool_geometry *g, const al_tensor *x, al_tensor *y);
int al_cuda_avg_pool2d_backward(const struct pool_geometry *g, const al_tensor *dy, al_tensor *dx);

/* Separable resampling (interpolate: ops/interpolate.c computes each output row's and column's two
 * sources and weights, core/cuda/resample.cu mixes them): x and dx (N, C, H, W), y and dy
 * (N, C, Ho, Wo), contiguous; sources a float64 (Ho + Wo, 4) tensor on the device, rows then columns,
 * each (src0, src1, w0, w1).  The backward adds into dx (zeroed by the caller), with atomics. */
int al_cuda_resample(const al_tensor *x, const al_tensor *sources, al_tensor *y);
int al_cuda_resample_backward(const al_tensor *dy, const al_tensor *sources, al_tensor *dx);

/* grid_sample (ops/grid_sample.c checks into the geometry, ops/grid_sample_point.h; core/cuda/sample.cu
 * computes): x and dx (N, C, H, W), grid and dgrid (N, Ho, Wo, 2), y and dy (N, C, Ho, Wo), contiguous;
 * dx NULL or zeroed by the caller (the points' gradients are added with atomics), dgrid NULL or written whole. */
struct sample_geometry;
int al_cuda_grid_sample(const struct sample_geometry *g, const al_tensor *x, const al_tensor *grid, al_tensor *y);
int al_cuda_grid_sample_backward(const struct sample_geometry *g, const al_tensor *x, const al_tensor *grid,
                                 const al_tensor *dy, al_tensor *dx, al_tensor *dgrid);

/* Eccentricity pooling (ops/ecc_pool2d.c computes the ring sizes, ops/ecc_pool2d_window.h the
 * windows; core/cuda/ecc_pool.cu pools): x and dx (planes, H, W), y, dy and idx (planes, Ho, Wo),
 * sizes int64 (n_fix, Ho, Wo) with n_fix 1 or one per image, all on the device and contiguous; idx
 * (max only) the argmax iy W + ix; dx zeroed by the caller (the backward adds with atomics). */
struct ecc_geometry;
int al_cuda_ecc_pool2d(const struct ecc_geometry *g, const al_tensor *x, const al_tensor *sizes, bool is_max, al_tensor *y,
                       al_tensor *idx);
int al_cuda_ecc_pool2d_backward(const struct ecc_geometry *g, const al_tensor *dy, const al_tensor *sizes,
                                const al_tensor *idx, bool is_max, al_tensor *dx);

/* solve (ops/matmul.c; core/cuda/solve.cu): A (nbatch, n, n) and work (nbatch, n, k), float64,
 * contiguous, on the device; work holds B and is overwritten with X.  0, 1 when some A is singular
 * (the CPU's test: a zero pivot), -1 with an error. */
int al_cuda_solve(const al_tensor *A, al_tensor *work, int64_t n, int64_t k, int64_t nbatch);

/* attention/relative.c's gather (scatter false: dst (rows, M) from src (rows, W)) and scatter (its
 * adjoint) by clipped relative distance on the GPU (core/cuda/relative.cu); float32 or float64,
 * both contiguous and on the device. */
int al_cuda_relative_index(const al_tensor *src, al_tensor *dst, int64_t rows, int64_t N, int64_t M, int64_t W,
                           int64_t shift, bool scatter);

/* attention/merge.c's log-sum-exp merge on the GPU (core/cuda/merge.cu), forward and its two
 * backward passes; every tensor contiguous, float32 or float64, rows of dv (o) or 1 (l). */
int al_cuda_attention_merge(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                            al_tensor *o, al_tensor *lse);
int al_cuda_attention_merge_backward(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                                     const al_tensor *g, al_tensor *d1, al_tensor *dl1, al_tensor *d2, al_tensor *dl2);
int al_cuda_attention_merge_lse_backward(const al_tensor *l1, const al_tensor *l2, const al_tensor *g, al_tensor *dl1,
                                         al_tensor *dl2);

/* topk_mask's keep mask (1 where the entry's rank in its line of n is below k; scores and keep
 * contiguous (lines, n)) and the grouped softmax along lines of n (labels int64, g NULL forward; with
 * backward, x holds the saved y and y receives dx), on the GPU (core/cuda/topk.cu,
 * core/cuda/grouped_softmax.cu). */
int al_cuda_topk_keep(const al_tensor *scores, al_tensor *keep, int64_t lines, int64_t n, int64_t k);
int al_cuda_grouped_softmax(const al_tensor *x, const al_tensor *labels, const al_tensor *g, al_tensor *y, int64_t lines,
                            int64_t n, bool backward);

/* routing's scatter_mean (attention/routing.c) on the GPU (core/cuda/scatter_mean.cu): src (B H, S, w)
 * averaged into out (B H, N, w) by index (B H, S) and count (B H, N, float64), or with gather the
 * adjoint; every tensor contiguous and on the device, out zero-filled. */
int al_cuda_scatter_mean(const al_tensor *src, al_tensor *out, const al_tensor *index, const al_tensor *count, int64_t BH,
                         int64_t N, int64_t S, int64_t w, bool gather);

/* dq, dk, dv, dbias: NULL when not wanted; dout contiguous (B, H, N, dv) */
int al_cuda_attention_backward(const al_cuda_attention_args *a, const al_tensor *out, const al_tensor *lse,
                               const al_tensor *dout, al_tensor *dq, al_tensor *dk, al_tensor *dv, al_tensor *dbias);

/* ---- strided iteration ------------------------------------------------------------------- */
/* Calls fn(row_ptrs, inner_len, inner_strides, arg) for every innermost row of up to
 * AL_ITER_MAX_OPERANDS operands laid over a common shape; strides are in elements. */
enum { AL_ITER_MAX_OPERANDS = 4 };
typedef struct {
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    int n;
    char *base[AL_ITER_MAX_OPERANDS];
    int64_t strides[AL_ITER_MAX_OPERANDS][AL_MAX_DIMS]; /* in elements */
    size_t esize[AL_ITER_MAX_OPERANDS];
} al_iter;
void al_iter_init(al_iter *it, int ndim, const int64_t *shape);
void al_iter_add(al_iter *it, void *base, const int64_t *strides, size_t esize);
typedef void (*al_row_fn)(char **ptrs, int64_t len, const int64_t *strides, void *arg);
void al_iter_run(al_iter *it, al_row_fn fn, void *arg);
/* Merges the dimensions every operand walks contiguously (al_iter_run does it first). */
void al_iter_coalesce(al_iter *it);

/* ---- autograd recording -------------------------------------------------------------------- */
bool al_grad_needed1(const al_tensor *a);
bool al_grad_needed2(const al_tensor *a, const al_tensor *b);
/* Creates a node with the given inputs (retained) and attaches it to out as its grad_fn. */
al_node *al_record(al_tensor *out, const char *name, al_backward_fn backward, int n_inputs,
                   const al_tensor *const *inputs);
void al_node_save(al_node *node, int slot, const al_tensor *t); /* retains t */
/* Adds g to the gradient flowing into input i of node (skips inputs that need no grad). */
void al_accumulate_input(al_node *node, int i, const al_tensor *g);
void al_accumulate_input_take(al_node *node, int i, al_tensor *g); /* hands g over (see autograd.c) */
/* Adds g into the window of input i's gradient that a narrow (squeezed: a select) took at start along dim. */
void al_accumulate_input_window(al_node *node, int i, const al_tensor *g, int dim, int64_t start, bool squeezed);
bool al_input_needs_grad(const al_node *node, int i);
void al_node_release(al_node *node);

/* ---- the profiler (profile.c) ----------------------------------------------------------------- */
extern int al_profiling;
extern double al_profile_flops;
/* Counts floating-point operations for the op being timed; safe inside parallel regions. */
static inline void al_count_flops(double flops) {
    if (al_profiling) {
        #pragma omp atomic
        al_profile_flops += flops;
    }
}
/* Backward of one node, timed under its name when the profiler is on (autograd.c calls it). */
void al_profile_backward(al_node *node);

/* A helper that must be inlined at every call, so that a constant argument (an op, a row width)
 * folds its switch away and each call site compiles to its own loop (generic/elementwise_rows.h,
 * generic/dense_rows.h). */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- fast math ------------------------------------------------------------------------------ */
/* exp for float32 that vectorises (libm's expf is a call per element): 2^k * p(r) with
 * k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2] and p the degree-6 Taylor polynomial
 * (truncation error < 1.2e-7 relative, about one ulp).  exp(-inf) and anything below -87.3 give 0,
 * as softmax over masked entries needs. */
static inline float al_expf(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    float k = __builtin_rintf(xc * 1.44269504088896341f);
    float r = __builtin_fmaf(k, -0.693145751953125f, xc);
    r = __builtin_fmaf(k, -1.428606765330187e-06f, r);
    float p = 1.0f / 720;
    p = __builtin_fmaf(p, r, 1.0f / 120);
    p = __builtin_fmaf(p, r, 1.0f / 24);
    p = __builtin_fmaf(p, r, 1.0f / 6);
    p = __builtin_fmaf(p, r, 0.5f);
    p = __builtin_fmaf(p, r, 1.0f);
    p = __builtin_fmaf(p, r, 1.0f);
    union { int32_t i; float f; } scale = {.i = (int32_t)((uint32_t)((int32_t)k + 127) << 23)};  /* unsigned: NaN gives k < 0 */
    return x < -87.3f ? 0.0f : p * scale.f;
}

/* tanh for float32 that vectorises (libm's tanhf is a call per element and was half of a small
 * transformer's training step, through gelu): an odd series below |x| = 0.25 (terms to x^11,
 * truncation < 1e-8 relative), else (1 - e) / (1 + e) with e = exp(-2|x|) (within about 2 ulp). */
static inline float al_tanhf(float x) {
    const float ax = __builtin_fabsf(x), x2 = x * x;
    float series = -1382.0f / 155925;
    series = __builtin_fmaf(series, x2, 62.0f / 2835);
    series = __builtin_fmaf(series, x2, -17.0f / 315);
    series = __builtin_fmaf(series, x2, 2.0f / 15);
    series = __builtin_fmaf(series, x2, -1.0f / 3);
    series = __builtin_fmaf(series, x2, 1.0f) * ax;
    const float e = al_expf(-2.0f * ax), ratio = (1.0f - e) / (1.0f + e);
    return __builtin_copysignf(ax < 0.25f ? series : ratio, x);
}

/* ---- threads ----------------------------------------------------------------------------- */
/* True when a loop of `work` cheap element operations is worth a parallel region. */
#define AL_PARALLEL_GRAIN 262144

/* Inside a parallel region: this thread's share [*first, *last) of n items, in equal contiguous
 * pieces (a static split, so one thread count always gives the same split and the same sums). */
static inline void al_thread_share(int64_t n, int64_t *first, int64_t *last) {
    int nt = 1, tid = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    tid = omp_get_thread_num();
#endif
    int64_t per = (n + nt - 1) / nt;
    *first = tid * per < n ? tid * per : n;
    *last = *first + per < n ? *first + per : n;
}

#endif
