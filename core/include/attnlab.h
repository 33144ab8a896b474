/* attnlab.h -- the one public header of libattnlab, the attnlab C core.
 *
 * Everything the Lua side may call is declared here; lua/attnlab/core.lua feeds the part between
 * the AL_FFI_BEGIN/AL_FFI_END markers to ffi.cdef, so keep that part free of preprocessor lines.
 *
 * Why one header of over 500 lines: it is the core's whole contract with its users (the Lua module,
 * the viewer, the C tests), read in one place, with the conventions below stated once for all of
 * it, and its FFI part is one block that the Lua module takes as it is.  Split into one header per
 * source file it would need the markers and the conventions in each, and a new op would have to
 * find its header; the sections below (errors, creation, ops by family, attention, files, the run
 * log) are its rooms.
 *
 * Conventions (stated once, true for every function below):
 *   - A tensor is a strided view (shape, strides in elements, offset, dtype, device) onto a
 *     refcounted storage.  Functions that return `al_tensor *` return a NEW reference that the
 *     caller releases with al_release(); arguments are borrowed.
 *   - Dimensions are 0-based in C; a negative dimension counts from the end (-1 is the last).
 *     The Lua layer converts its 1-based dimensions before calling.
 *   - Errors never abort.  A function that fails returns NULL (or a negative status) and leaves a
 *     message in al_last_error() that names the function, the argument and the shapes, e.g.
 *     "matmul: shapes {4,5} and {6,3} do not align (dim 2 = 5, dim 1 = 6)".
 *   - No function calls back into Lua or longjmps, so every one is safe to call through the FFI.
 *   - Ops that see an input with requires_grad (while grad mode is on) record a node on the
 *     autograd graph; al_backward() walks it and frees it.
 *   - The library is single-threaded from the caller's side (it uses OpenMP internally).
 */
#ifndef ATTNLAB_H
#define ATTNLAB_H

#include <stdint.h>
#include <stddef.h>

#define AL_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* AL_FFI_BEGIN */
enum { AL_MAX_DIMS = 8 };

/* bfloat16 is a storage dtype of the CUDA device only: tensors of it are made there (al_to_dtype of a
 * CUDA tensor), converted back with al_to_dtype, and computed on by the fused attention (float
 * accumulation); every other op refuses it, naming itself. */
typedef enum { AL_FLOAT32 = 0, AL_FLOAT64 = 1, AL_INT64 = 2, AL_BFLOAT16 = 3 } al_dtype;
typedef enum { AL_CPU = 0, AL_CUDA = 1 } al_device;

typedef struct al_tensor al_tensor;

/* ---- errors, version, threads ---------------------------------------------------------- */
const char *al_last_error(void);
void al_clear_error(void);
const char *al_version(void);
void al_set_num_threads(int n);
int al_get_num_threads(void);
int al_cuda_available(void);
/* why there is no CUDA device (no backend built, no driver, no GPU), for messages */
const char *al_cuda_unavailable_reason(void);
/* Waits until the GPU has finished the work queued so far (kernels run asynchronously: a timer
 * read without it measures the launches only); 0, or -1 with the error of a kernel that failed.
 * Returns 0 at once where no CUDA device is in use. */
int al_cuda_synchronize(void);
/* Bytes of GPU memory held by tensors now (the caching allocator's blocks in use, not its cache),
 * and their peak since the start or the last al_cuda_reset_peak (which also empties the cache);
 * 0 where no CUDA device is in use.  PyTorch's memory_allocated / max_memory_allocated. */
int64_t al_cuda_bytes_in_use(void);
int64_t al_cuda_bytes_peak(void);
void al_cuda_reset_peak(void);
/* the OpenBLAS kernel that runs the products ("Haswell", "SkylakeX"...), and NULL or a sentence
 * saying that this CPU has faster kernels than the one chosen (core/blas_info.c) */
const char *al_blas_kernel(void);
const char *al_blas_advice(void);
/* what runs nn.Linear's float products: "attnlab-avx512" (core/ops/sgemm_avx512.c) or "openblas";
 * NULL, with the error set, when ATTNLAB_SGEMM holds a value it does not take (core/blas_info.c) */
const char *al_linear_kernel(void);

/* ---- lifetime and introspection -------------------------------------------------------- */
al_tensor *al_retain(al_tensor *t);
void al_release(al_tensor *t);
int al_ndim(const al_tensor *t);
int64_t al_size(const al_tensor *t, int dim);
int64_t al_stride(const al_tensor *t, int dim);
int64_t al_numel(const al_tensor *t);
al_dtype al_dtype_of(const al_tensor *t);
al_device al_device_of(const al_tensor *t);
int al_is_contiguous(const al_tensor *t);
const char *al_dtype_name(al_dtype dtype);
/* A pointer to the first element (storage data + offset).  For reading contiguous tensors. */
void *al_data(const al_tensor *t);
/* Writes the shape as "{2,3,4}" into buf (always NUL-terminated); returns buf. */
char *al_shape_string(const al_tensor *t, char *buf, size_t bufsize);
/* Bytes of tensor storage now allocated (live and cached), and the peak since start. */
int64_t al_bytes_in_use(void);
int64_t al_bytes_peak(void);
/* Empties the cache and restarts the peak from the bytes live now, so that the next peak reading is
 * what the computations in between needed. */
void al_reset_peak(void);
/* Bytes handed out (fresh or from the cache) since the last call: the Lua layer paces its garbage
 * collector by it, so that dead tensors return to the cache before it runs dry. */
int64_t al_take_allocation_count(void);
/* Empties the allocator's cache of freed blocks. */
void al_trim_cache(void);
/* The most memory all tensors together may hold (default: 80% of RAM); allocations past it fail
 * with an error rather than waking the kernel's OOM killer. */
void al_set_memory_limit(int64_t bytes);
int64_t al_get_memory_limit(void);

/* ---- creation ------------------------------------------------------------------------- */
al_tensor *al_empty(int ndim, const int64_t *shape, al_dtype dtype);
al_tensor *al_full(int ndim, const int64_t *shape, double value, al_dtype dtype);
/* Copies numel values of src (laid out contiguously in the given dtype). */
al_tensor *al_from_buffer(int ndim, const int64_t *shape, al_dtype dtype, const void *src);
al_tensor *al_arange(double start, double end, double step, al_dtype dtype);
al_tensor *al_eye(int64_t n, al_dtype dtype);

/* ---- random numbers: one global, counter-based generator (see rng.c) -------------------- */
void al_seed(uint64_t seed);
/* The generator's whole state, for checkpoints: {seed, counter}. */
void al_rng_get_state(uint64_t *seed, uint64_t *counter);
void al_rng_set_state(uint64_t seed, uint64_t counter);
al_tensor *al_randn(int ndim, const int64_t *shape, al_dtype dtype);
al_tensor *al_rand(int ndim, const int64_t *shape, al_dtype dtype);
/* Uniform integers in [low, high) as int64. */
al_tensor *al_randint(int64_t low, int64_t high, int ndim, const int64_t *shape);

/* ---- element access ------------------------------------------------------------------- */
/* idx has ndim 0-based indices.  Returns 0 and writes *out, or -1 on a bad index. */
int al_get(const al_tensor *t, const int64_t *idx, double *out);
int al_set(al_tensor *t, const int64_t *idx, double value);
/* The value of a one-element tensor; sets an error and returns NaN otherwise. */
double al_item(const al_tensor *t);
/* Copies every element, in row-major order, into dst as float64 values. */
int al_copy_to_doubles(const al_tensor *t, double *dst, int64_t n);

/* ---- views (no copy; record a node when the input requires grad) ------------------------- */
al_tensor *al_reshape(const al_tensor *t, int ndim, const int64_t *shape); /* one -1 allowed */
al_tensor *al_transpose(const al_tensor *t, int dim0, int dim1);
al_tensor *al_permute(const al_tensor *t, const int *order);
al_tensor *al_narrow(const al_tensor *t, int dim, int64_t start, int64_t length);
al_tensor *al_select(const al_tensor *t, int dim, int64_t index);
al_tensor *al_unsqueeze(const al_tensor *t, int dim);
al_tensor *al_squeeze(const al_tensor *t, int dim); /* dim = AL_ALL_DIMS squeezes all size-1 dims */
al_tensor *al_expand(const al_tensor *t, int ndim, const int64_t *shape); /* -1 keeps a size */
al_tensor *al_contiguous(const al_tensor *t);
al_tensor *al_clone(const al_tensor *t);
al_tensor *al_to_dtype(const al_tensor *t, al_dtype dtype);
/* A copy on device (t itself, retained, when it is there already); gradients flow back across.
 * Fails with an error when the device is not available (al_cuda_available). */
al_tensor *al_to_device(const al_tensor *t, al_device device);
al_tensor *al_detach(const al_tensor *t);
al_tensor *al_cat(int n, al_tensor *const *ts, int dim);
al_tensor *al_stack(int n, al_tensor *const *ts, int dim);

/* ---- elementwise (broadcasting) --------------------------------------------------------- */
al_tensor *al_add(const al_tensor *a, const al_tensor *b);
al_tensor *al_sub(const al_tensor *a, const al_tensor *b);
al_tensor *al_mul(const al_tensor *a, const al_tensor *b);
al_tensor *al_div(const al_tensor *a, const al_tensor *b);
al_tensor *al_maximum(const al_tensor *a, const al_tensor *b);
al_tensor *al_minimum(const al_tensor *a, const al_tensor *b);
al_tensor *al_add_scalar(const al_tensor *a, double s);        /* a + s */
al_tensor *al_mul_scalar(const al_tensor *a, double s);        /* a * s */
al_tensor *al_rsub_scalar(double s, const al_tensor *a);       /* s - a */
al_tensor *al_rdiv_scalar(double s, const al_tensor *a);       /* s / a */
al_tensor *al_pow_scalar(const al_tensor *a, double p);        /* a ^ p */
al_tensor *al_neg(const al_tensor *a);
al_tensor *al_exp(const al_tensor *a);
al_tensor *al_log(const al_tensor *a);
al_tensor *al_sqrt(const al_tensor *a);
al_tensor *al_tanh(const al_tensor *a);
al_tensor *al_sigmoid(const al_tensor *a);
al_tensor *al_relu(const al_tensor *a);
al_tensor *al_gelu(const al_tensor *a);                        /* tanh approximation */
al_tensor *al_abs(const al_tensor *a);
al_tensor *al_clamp(const al_tensor *a, double lo, double hi);
/* comparisons: 1 where true, 0 elsewhere, in a's float dtype (float32 for int64 inputs); no grad */
typedef enum { AL_EQ, AL_NE, AL_LT, AL_LE, AL_GT, AL_GE } al_compare_op;
al_tensor *al_compare(const al_tensor *a, const al_tensor *b, al_compare_op op);
al_tensor *al_compare_scalar(const al_tensor *a, double s, al_compare_op op);
/* where(cond, a, b): a where cond != 0, else b (broadcasting) */
al_tensor *al_where(const al_tensor *cond, const al_tensor *a, const al_tensor *b);

/* ---- in place, never recorded (optimisers, initialisation, no_grad code) ------------------ */
int al_fill_(al_tensor *t, double value);
int al_copy_(al_tensor *dst, const al_tensor *src);            /* src broadcasts to dst */
int al_add_scaled_(al_tensor *dst, const al_tensor *src, double alpha); /* dst += alpha*src */
int al_mul_scalar_(al_tensor *t, double s);

/* ---- reductions ----------------------------------------------------------------------- */
enum { AL_ALL_DIMS = 127 };
al_tensor *al_sum(const al_tensor *t, int dim, int keepdim);   /* dim = AL_ALL_DIMS: all */
al_tensor *al_mean(const al_tensor *t, int dim, int keepdim);
/* max along dim: values (differentiable) and 0-based int64 indices (*indices may be NULL) */
al_tensor *al_max(const al_tensor *t, int dim, int keepdim, al_tensor **indices);
al_tensor *al_min(const al_tensor *t, int dim, int keepdim, al_tensor **indices);
al_tensor *al_argmax(const al_tensor *t, int dim, int keepdim);
al_tensor *al_softmax(const al_tensor *t, int dim);
al_tensor *al_log_softmax(const al_tensor *t, int dim);
al_tensor *al_logsumexp(const al_tensor *t, int dim, int keepdim);
al_tensor *al_cumsum(const al_tensor *t, int dim);   /* inclusive prefix sums along dim */

/* ---- linear algebra ------------------------------------------------------------------- */
/* Batched matrix product over leading dims with broadcasting; 1-D operands as in numpy. */
al_tensor *al_matmul(const al_tensor *a, const al_tensor *b);
/* Solves A X = B for batches of small square systems (A: (..., n, n), B: (..., n, k)); no grad. */
al_tensor *al_solve(const al_tensor *a, const al_tensor *b);

/* ---- nn building blocks ---------------------------------------------------------------- */
/* y = x W^T + b with x (..., in), weight (out, in), bias (out) or NULL */
al_tensor *al_linear(const al_tensor *x, const al_tensor *weight, const al_tensor *bias);
al_tensor *al_layer_norm(const al_tensor *x, const al_tensor *weight, const al_tensor *bias,
                         double eps); /* over the last dim; weight, bias may be NULL */
/* rows of weight (n, dim) picked by 0-based int64 ids of any shape: (ids..., dim) */
al_tensor *al_embedding(const al_tensor *weight, const al_tensor *ids);
/* gather along dim with 0-based int64 indices of the same rank */
al_tensor *al_gather(const al_tensor *t, int dim, const al_tensor *indices);
al_tensor *al_dropout(const al_tensor *x, double p, int training);

/* ---- vision: convolution, pooling, resampling (images NCHW: (N, C, H, W)) ------------------ */
/* Each option that is 0 takes its default (stride 1, dilation 1, groups 1); padding is per side. */
typedef struct al_conv2d_opts {
    int64_t stride[2];        /* (h, w) */
    int64_t padding[4];       /* top, bottom, left, right: zeros added around the input */
    int64_t dilation[2];      /* (h, w) */
    int64_t groups;
} al_conv2d_opts;
/* x (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), bias (Cout) or NULL -> (N, Cout, Ho, Wo),
 * Ho = (H + top + bottom - dilation_h (kh - 1) - 1) / stride_h + 1 (PyTorch's conv2d). */
al_tensor *al_conv2d(const al_tensor *x, const al_tensor *weight, const al_tensor *bias, const al_conv2d_opts *opts);
/* kernel (h, w) >= 1; stride 0 means the kernel; padding (h, w) on both sides, at most half the
 * kernel; dilation 0 means 1 (max only); ceil_mode as PyTorch's; count_include_pad (avg only)
 * divides by the window's size including padding, else by the cells inside the input. */
typedef struct al_pool2d_opts {
    int64_t kernel[2];
    int64_t stride[2];
    int64_t padding[2];
    int64_t dilation[2];
    int ceil_mode;
    int count_include_pad;
} al_pool2d_opts;
/* x (N, C, H, W) -> (N, C, Ho, Wo); *indices (may be NULL): int64 (N, C, Ho, Wo), the 0-based
 * position iy * W + ix of each window's maximum (the first one on ties; NaN wins, as in PyTorch). */
al_tensor *al_max_pool2d(const al_tensor *x, const al_pool2d_opts *opts, al_tensor **indices);
al_tensor *al_avg_pool2d(const al_tensor *x, const al_pool2d_opts *opts);
/* Eccentricity-dependent pooling (eccNET's CentreDependentPooling2D, with the fixation anywhere):
 * output cell (oy, ox) pools a k x k window, k growing in rings with the cell's distance e from the
 * fixation, e measured in output cells between the cell's centre (ox + 1/2, oy + 1/2) and the
 * fixation / stride.  Radii r_0 = round(fovea deg2px / 2), r_i = r_0 + i round(ring deg2px / 2)
 * (round half to even, as Python's); e < r_0: k = rf_min; r_{i-1} <= e < r_i:
 * k = rf_min + round(slope (2 r_i - fovea deg2px)), at least 1.  The window covers rows
 * oy stride - max(k - stride, 0) / 2 ... + k - 1 (TensorFlow's 'same' placement), clipped to the
 * input; average: the mean of the cells inside, max: their maximum.  Ho = ceil(H / stride). */
typedef struct al_ecc_pool2d_opts {
    const double *fixation;   /* (x, y) pairs in input pixels from the top-left corner (pixel (i, j),
                                 0-based, covers [j, j+1) x [i, i+1)): one pair for every image, or one per image */
    int64_t n_fixations;      /* 1 or N */
    int64_t stride;           /* >= 1 */
    int64_t rf_min;           /* the fovea's window, >= 1 */
    double slope;             /* >= 0 */
    double deg2px;            /* pixels per degree (> 0) */
    double fovea;             /* fovea diameter in degrees (>= 0) */
    double ring;              /* ring width in degrees; round(ring deg2px / 2) must be >= 1 */
    int max_pool;             /* 0: average (eccNET's choice), 1: maximum */
} al_ecc_pool2d_opts;
/* x (N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride)) */
al_tensor *al_ecc_pool2d(const al_tensor *x, const al_ecc_pool2d_opts *opts);
/* The window size k of every output cell for an input of height x width and the first fixation:
 * int64 (ceil(height / stride), ceil(width / stride)). */
al_tensor *al_ecc_pool2d_sizes(int64_t height, int64_t width, const al_ecc_pool2d_opts *opts);
/* Resampling to (out_h, out_w), PyTorch's F.interpolate: mode 0 bilinear, 1 nearest (the legacy
 * 'nearest', floor(dst * scale)).  scale_h, scale_w: 0 computes the source scale from the sizes,
 * > 0 is PyTorch's scale_factor (the source scale is then 1 / scale_factor).  align_corners:
 * bilinear only. */
al_tensor *al_interpolate(const al_tensor *x, int64_t out_h, int64_t out_w, int mode, int align_corners,
                          double scale_h, double scale_w);
/* PyTorch's F.grid_sample, bilinear: x (N, C, H, W), grid (N, Ho, Wo, 2) of (x, y) in [-1, 1] ->
 * (N, C, Ho, Wo).  padding_mode 0: zeros outside, 1: border (coordinates clamped). */
al_tensor *al_grid_sample(const al_tensor *x, const al_tensor *grid, int align_corners, int padding_mode);
/* Constant padding of the last n_pairs dimensions, PyTorch's F.pad order: pads = (before, after)
 * of the last dimension, then of the one before it, ...; a negative pad crops. */
al_tensor *al_pad(const al_tensor *x, int n_pairs, const int64_t *pads, double value);

/* ---- losses --------------------------------------------------------------------------- */
al_tensor *al_mse(const al_tensor *pred, const al_tensor *target);
/* logits (..., C), target 0-based int64 ids (...); mean over positions whose id != ignore_index */
al_tensor *al_cross_entropy(const al_tensor *logits, const al_tensor *target, int64_t ignore_index);

/* ---- attention ------------------------------------------------------------------------ */
/* A value given for one of a variant's own options, tagged with the type the caller gave (the Lua
 * layer passes its table entries as they come).  al_attention checks it against the option's kind
 * and range in the variant's descriptor (core/attention/<variant>.c), so every variant's options are
 * checked in one place and fail in one shape: "attention: opts.window must be an integer >= 1 (got 1.5)". */
typedef enum {
    AL_VALUE_NUMBER = 1, AL_VALUE_BOOLEAN = 2, AL_VALUE_STRING = 3, AL_VALUE_TENSOR = 4, AL_VALUE_LIST = 5,
    AL_VALUE_OTHER = 6        /* anything else (a function, ...): always refused, by its spelling */
} al_value_type;
typedef struct al_value {
    al_value_type type;
    double number;            /* NUMBER; BOOLEAN: 1 (true) or 0 */
    const char *string;       /* STRING */
    const al_tensor *tensor;  /* TENSOR */
    int count;                /* LIST: entries items[0 .. count - 1] */
    const struct al_value *items;
    const char *spelling;     /* how the caller writes the value, for messages; may be NULL */
} al_value;
typedef struct al_attention_option {
    const char *name;         /* e.g. "window"; al_attention_describe_option lists each variant's */
    al_value value;
} al_attention_option;
typedef struct al_attention_opts {
    const char *variant;      /* "softmax" (default when NULL); al_attention_describe names them */
    int causal;               /* 0: none, 1: top-left (j <= i), 2: bottom-right (j <= i + M - N) */
    double scale;             /* 0 means 1/sqrt(d) */
    const al_tensor *bias;    /* added to the logits, broadcast to (B, H, N, M); may be NULL */
    const al_tensor *mask;    /* nonzero = may attend, broadcast to (B, H, N, M); may be NULL */
    int n_options;            /* the variant's own options (window, kernel_size, top_k, ...), each */
    const al_attention_option *options; /* name at most once; an option of another variant is an error */
} al_attention_opts;
/* q (B, H, N, d), k (B, Hkv, M, d), v (B, Hkv, M, dv) -> (B, H, N, dv).  weights, when not NULL,
 * also receives the (B, H, N, M) map, detached (NULL for a variant that has none). */
al_tensor *al_attention(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                        const al_attention_opts *opts, al_tensor **weights);
/* Attention maps (B, H, N, M) larger than this many bytes (default 64 MiB) are not kept for the
 * backward: the forward keeps each row's log-sum-exp and the backward recomputes the row. */
void al_attention_set_map_limit(int64_t bytes);
/* The catalogue, for help texts and for callers that build options (Lua asks here rather than
 * keeping its own lists).  Variants are numbered 0 .. count - 1 in catalogue order; the info calls
 * return 0, or -1 (with an error) for an index out of range.  Strings are static. */
int al_attention_variant_count(void);
const char *al_attention_variant_name(int i);
typedef struct al_attention_variant_info {
    const char *name;
    const char *summary;      /* one line: the method, its source, its cost */
    int n_options;
    int takes_bias;           /* 0: it never forms the N x M logits, and refuses bias and mask */
} al_attention_variant_info;
typedef struct al_attention_option_info {
    const char *name;
    const char *kind;         /* "integer", "number", "tensor", "choice", "per-axis integer", "grid",
                                 "per-axis booleans" */
    const char *summary;      /* what it means, and its default */
    int required;
    char expects[160];        /* what a value must be, as the errors say it: "an integer >= 1" */
} al_attention_option_info;
int al_attention_describe(int variant, al_attention_variant_info *info);
int al_attention_describe_option(int variant, int option, al_attention_option_info *info);
/* Primitives of the attention variants (each differentiable):
 * relative_gather: r (..., N, 2k+1) -> (..., N, M), out[i, j] = r[i, clip(j - i - shift, -k, k) + k];
 * relative_scatter: its adjoint, g (..., N, M) -> (..., N, width) summing g by clipped distance;
 * relative_skew: x (..., L, L) -> s with s[i, j] = x[i, j - i + L - 1] for j <= i (Music Transformer;
 * entries above the diagonal are garbage to be masked); relative_unskew: its inverse on j <= i. */
al_tensor *al_relative_gather(const al_tensor *r, int64_t M, int64_t shift);
al_tensor *al_relative_scatter(const al_tensor *g, int64_t width, int64_t shift);
al_tensor *al_relative_skew(const al_tensor *x);
al_tensor *al_relative_unskew(const al_tensor *x);
/* The log-sum-exp merge of two partial attentions over disjoint key sets: o = c o1 + (1 - c) o2,
 * c = 1 / (1 + exp(lse2 - lse1)), *lse_out = logaddexp(lse1, lse2) (-inf: an empty part).
 * o1, o2 (..., dv); lse1, lse2 (...). */
al_tensor *al_attention_merge(const al_tensor *o1, const al_tensor *lse1, const al_tensor *o2,
                              const al_tensor *lse2, al_tensor **lse_out);
/* Softmax along dim within the groups of equal int64 label (groups broadcast to x). */
al_tensor *al_grouped_softmax(const al_tensor *x, const al_tensor *groups, int dim);
/* scores with all but the k largest along dim set to -inf (ties to the lower index); *keep_out
 * (may be NULL) the 0/1 mask.  The gradient reaches the kept scores; the selection is constant. */
al_tensor *al_topk_mask(const al_tensor *scores, int64_t k, int dim, al_tensor **keep_out);
/* One EMA step of spherical k-means for the "routing" centroids (H, c, d) from q (B, H, N, d) and
 * k (B, Hkv, M, d): mu <- decay mu + (1 - decay) normalize(sum of the rows nearest to mu).  No grad. */
al_tensor *al_routing_update(const al_tensor *centroids, const al_tensor *q, const al_tensor *k, double decay);

/* ---- autograd ------------------------------------------------------------------------- */
int al_set_requires_grad(al_tensor *t, int flag);  /* only leaves; returns 0 or -1 */
int al_requires_grad(const al_tensor *t);
int al_is_leaf(const al_tensor *t);
/* The name of the op that produced t on the graph (e.g. "matmul"), or NULL for a leaf. */
const char *al_grad_fn_name(const al_tensor *t);
al_tensor *al_grad(const al_tensor *t);            /* new reference, or NULL when none */
int al_set_grad(al_tensor *t, const al_tensor *grad); /* NULL clears */
int al_zero_grad(al_tensor *t);                    /* drops .grad */
/* Reverse pass from a scalar (or from `grad` of loss's shape when not NULL); frees the graph. */
int al_backward(al_tensor *loss, const al_tensor *grad);
int al_set_grad_enabled(int enabled);              /* returns the previous setting */
int al_is_grad_enabled(void);
/* Nodes now alive on the graph (a leak check for tests). */
int64_t al_live_nodes(void);
int64_t al_live_tensors(void);

/* ---- optimisers (in place on a parameter and its state; no graph) ------------------------ */
int al_sgd_step(al_tensor *param, al_tensor *momentum_buf, double lr, double momentum,
                double weight_decay, int nesterov);
/* Adam(W): decoupled = 1 applies weight decay to the weights directly (AdamW). step is 1-based. */
int al_adam_step(al_tensor *param, al_tensor *m, al_tensor *v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, int decoupled, int64_t step);
/* Scales the grads of n params so that their joint L2 norm is at most max_norm; returns the norm
 * before clipping, or -1 on error. */
double al_clip_grad_norm(int n, al_tensor *const *params, double max_norm);

/* ---- files ---------------------------------------------------------------------------- */
/* Writes n named tensors as safetensors, atomically (temporary file, then rename).
 * metadata_json: a JSON object of string values for "__metadata__", or NULL. */
int al_save_safetensors(const char *path, int n, const char *const *names,
                        al_tensor *const *tensors, const char *metadata_json);
typedef struct al_tensor_file al_tensor_file;
al_tensor_file *al_load_safetensors(const char *path);
int al_tensor_file_count(const al_tensor_file *f);
const char *al_tensor_file_name(const al_tensor_file *f, int i);
al_tensor *al_tensor_file_tensor(const al_tensor_file *f, int i);
const char *al_tensor_file_metadata(const al_tensor_file *f); /* raw JSON or NULL */
void al_tensor_file_close(al_tensor_file *f);
/* Images: float32 (H, W, C) in [0, 1]; save takes (H, W, C) or (H, W) and writes a PNG. */
al_tensor *al_image_load(const char *path);
int al_image_save_png(const char *path, const al_tensor *t);
/* Encodes h x w 8-bit pixels of c channels (row-major, 1..4 channels) as PNG and writes the file
 * atomically (what al_image_save_png does after converting; the viewer's screenshots too). */
int al_png_write(const char *path, const unsigned char *pixels, int w, int h, int c);
/* Writes a whole file atomically (temporary name in the same folder, fsync, rename). */
int al_write_file_atomic(const char *path, const void *data, size_t n);

/* ---- the run record stream (runlog.c has the file format) ------------------------------ */
enum {
    AL_RECORD_ATTENTION = 1, AL_RECORD_MATRIX = 2, AL_RECORD_SCALAR = 3, AL_RECORD_IMAGE = 4,
    AL_RECORD_TOKENS = 5, AL_RECORD_POINTS = 6, AL_RECORD_HEAT = 7, AL_RECORD_REFERENCE = 8,
    AL_RECORD_QUERY = 9, AL_RECORD_KEY = 10, AL_RECORD_LAST_KIND = 10
};
enum { AL_RECORD_FLOAT32 = 0, AL_RECORD_TEXT = 1 };
enum { AL_RECORD_HEADER_BYTES = 64, AL_RECORD_NAME_MAX = 255, AL_RECORD_MAX_BYTES = 268435456 };
typedef struct al_runlog al_runlog;
/* Opens (creating) DIR/records.bin for appending; NULL with an error when it cannot. */
al_runlog *al_runlog_open(const char *dir);
void al_runlog_close(al_runlog *log);
int64_t al_runlog_count(const al_runlog *log);  /* records written through this handle */
/* Appends one record (one write()); t is converted to contiguous float32, at most 4-d.  layer and
 * head are 1-based, 0 for none.  0 on success, -1 with an error. */
int al_runlog_write(al_runlog *log, int kind, const char *name, int64_t step, int layer, int head,
                    const al_tensor *t);
int al_runlog_write_floats(al_runlog *log, int kind, const char *name, int64_t step, int layer, int head,
                           int ndim, const int64_t *shape, const float *values);
int al_runlog_write_text(al_runlog *log, int kind, const char *name, int64_t step, int ndim,
                         const int64_t *shape, const char *text, size_t n);
/* One record's header, as the reader found it. */
typedef struct al_record_info {
    int kind, dtype, ndim, layer, head;
    int64_t step;
    double time;
    int64_t shape[4];
    int64_t numel;
    int64_t offset, payload_offset, payload_bytes;
    char name[256];
} al_record_info;
typedef struct al_runlog_reader al_runlog_reader;
al_runlog_reader *al_runlog_reader_open(const char *path);
void al_runlog_reader_close(al_runlog_reader *r);
/* 1: the next whole record is in *info; 0: none yet (end of file or a record still being
 * written: call again later); -1: the file is garbled here (the error names file and offset). */
int al_runlog_next(al_runlog_reader *r, al_record_info *info);
int64_t al_runlog_reader_offset(const al_runlog_reader *r);
int al_runlog_read_payload(al_runlog_reader *r, const al_record_info *info, void *dst, size_t n);
/* Size of a file in bytes, -1 when it does not exist (the training loop's cheap command poll). */
int64_t al_file_size(const char *path);

/* ---- interrupts: SIGINT and SIGTERM as a request to stop at the next step (interrupt.c) ---- */
void al_catch_interrupts(int on);
int al_interrupted(void);   /* 0, or the number of the signal that asked */

/* ---- the op profiler (lab.profile): off by default, and then it costs one branch per backward
 * node.  On, each node's backward is timed under the op's name, and the products count their
 * floating-point operations, which the caller collects op by op. ---- */
void al_profile_enable(int on);
/* Floating-point operations counted since the last call (the Lua layer calls it after each op). */
double al_profile_take_flops(void);
/* The backward entries gathered since the last reset: how many, then each one's op name, calls,
 * seconds and counted floating-point operations (0 where the op does not count them). */
int al_profile_backward_count(void);
int al_profile_backward_entry(int i, const char **name, int64_t *calls, double *seconds, double *flops);
void al_profile_reset(void);

/* ---- devices: what the tests of the device rule use ------------------------------------- */
/* A tensor that says it lives on the CUDA device but whose memory no one may touch (mapped
 * PROT_NONE: a read or a write ends the process).  tests/lua/test_device_rule.lua hands one to
 * every function of this header, in a child process each, to show that each one either works on it
 * or refuses it with an error, and none reads device memory as if it were the CPU's.  Built in every
 * build, with or without CUDA. */
al_tensor *al_unreadable_device_tensor(int ndim, const int64_t *shape, al_dtype dtype);
/* AL_FFI_END */

/* the run record stream's file name in a run directory, and the magic that opens each record */
#define AL_RUNLOG_FILE "records.bin"
#define AL_RECORD_MAGIC "ALR1"

/* ---- JSON, and the run directory's JSON files (for C readers: the viewer, the safetensors
 * loader; Lua reads and writes them with lua/attnlab/json.lua, so this part is not fed to the FFI).
 * docs/run-directory.md is the grammar of every file in a run directory. ---- */

/* json_read.c: strict RFC 8259 into one block of memory, values in document order: a container
 * is followed by everything it holds (span values in all, itself included), so its members are
 * walked with al_json_first / al_json_next.  Strings are decoded UTF-8 with a NUL after them. */
enum { AL_JSON_MAX_DEPTH = 64 };
typedef enum { AL_JSON_NULL, AL_JSON_FALSE, AL_JSON_TRUE, AL_JSON_NUMBER, AL_JSON_STRING, AL_JSON_ARRAY,
               AL_JSON_OBJECT } al_json_type;
typedef struct al_json {
    al_json_type type;
    int count;              /* an array's elements, an object's members */
    int span;               /* values from this one to the end of what it holds (1 for a scalar) */
    const char *key;        /* a member of an object: its name; otherwise NULL */
    const char *string;     /* a string: its text (length bytes, no NUL inside) */
    size_t length;
    double number;          /* a number: its value (+-inf beyond the double range) */
    int is_integer;         /* ... written without fraction or exponent, and within int64: */
    int64_t integer;        /* ... then exactly this */
    size_t begin, end;      /* the bytes of the text it was read from */
} al_json;
/* Where and why a text is not JSON: the byte, the path to it ("a.shape[1]"), the reason. */
typedef struct al_json_error { size_t offset; char where[160]; char message[160]; } al_json_error;
/* The document (its root is [0]; free it with al_json_free), or NULL with the error in *err (when
 * not NULL) and in al_last_error().  what names the text in messages ("header", "line", "file"). */
al_json *al_json_parse(const char *text, size_t len, const char *what, al_json_error *err);
void al_json_free(al_json *doc);
/* An object's member of that name (the last, when there are several, as json.lua keeps), an
 * object's or array's first item and the one after item; NULL when there is none. */
const al_json *al_json_get(const al_json *object, const char *key);
const al_json *al_json_first(const al_json *container);
const al_json *al_json_next(const al_json *container, const al_json *item);

/* runfiles_read.c: a whole JSON file (config.json, status.json, summary.json, written by a rename
 * so never seen half written); NULL with an error naming the path, the byte and the reason. */
al_json *al_json_read_file(const char *path);

/* A JSON-lines file followed while it grows (metrics.jsonl): only whole lines are read; a last
 * line without its newline is the writer in mid-line and is read again on a later call. */
typedef struct al_jsonl_reader al_jsonl_reader;
enum {
    AL_JSONL_NONE = 0,      /* no whole new line yet (the file may not exist yet) */
    AL_JSONL_LINE = 1,      /* *line holds the next line's value; the caller frees it */
    AL_JSONL_MALFORMED = 2, /* the next line is not JSON: al_last_error() names file, line, byte */
    AL_JSONL_RESTART = 3    /* the file was replaced or cut shorter (a resumed run rewrote it):
                               what was read before is void, and reading starts over */
};
al_jsonl_reader *al_jsonl_open(const char *path);
void al_jsonl_close(al_jsonl_reader *r);
/* One of the above, or -1 when the file cannot be read (the error says why). */
int al_jsonl_next(al_jsonl_reader *r, al_json **line);
int64_t al_jsonl_line_number(const al_jsonl_reader *r);   /* 1-based, of the line last returned */

/* A line of metrics.jsonl read by its grammar: a step, and either numbers (curve points: every
 * member but "step" whose value is a number, or null for a value that was NaN or infinite) or
 * an event, whose members are its fields.  The viewer (and any replay) acts on these fields,
 * never on the text, which is for people. */
typedef enum {
    AL_EVENT_NONE,          /* not an event: a line of numbers */
    AL_EVENT_OTHER,         /* an event of the script's own: shown, no effect */
    AL_EVENT_PAUSE, AL_EVENT_RESUME, AL_EVENT_SINGLE_STEP,
    AL_EVENT_ABLATE, AL_EVENT_SCALE, AL_EVENT_RESTORE,   /* layer, head: scale from this step on */
    AL_EVENT_RESTORE_ALL,   /* every head back to 1 */
    AL_EVENT_IGNORED        /* a command the run could not apply */
} al_event_kind;
typedef struct al_metrics_line {
    int64_t step;
    al_event_kind event;
    const char *event_name; /* the "event" member (NULL when none) */
    const char *text;       /* the "text" member, else the event's name (NULL when no event) */
    int layer, head;        /* ablate, scale, restore: 1-based */
    double scale;           /* ... the head's output scale from this step on */
} al_metrics_line;
/* 0 with *out filled (its strings point into line), or -1 when line breaks the grammar (no
 * integer "step", an event without its fields, ...), with an error that says how. */
int al_metrics_line_read(const al_json *line, al_metrics_line *out);

#ifdef __cplusplus
}
#endif
#endif /* ATTNLAB_H */
