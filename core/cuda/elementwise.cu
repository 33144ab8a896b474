/* elementwise.cu -- the CUDA elementwise kernels: strided copies with dtype conversion (contiguous,
 * to(dtype), gradient accumulation; bfloat16 too), fills, broadcasting binary ops and unary math.
 *
 * One thread per output element in a grid-stride loop; each operand is read through its own
 * (shape, strides) view with the broadcast dims at stride 0, so every layout the CPU side accepts
 * (permuted, narrowed, expanded) works without a copy first.  The math matches the CPU kernels'
 * definitions (generic/elementwise_rows.h) with the device's exp and tanh, so results agree to
 * rounding, not bit for bit; make test-cuda compares them with a tolerance. */
#include "cuda_internal.h"
#include "ops/elementwise_ops.h"

static al_cuda_view view_of(const al_tensor *t, const int64_t *strides) {
    al_cuda_view v;
    v.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) { v.shape[d] = t->shape[d]; v.strides[d] = strides ? strides[d] : t->strides[d]; }
    return v;
}

/* the output's view over the output's shape, with an input's strides (for broadcast reads) */
static al_cuda_view view_with(const al_tensor *out, const int64_t *strides) {
    al_cuda_view v = view_of(out, NULL);
    for (int d = 0; d < out->ndim; d++) v.strides[d] = strides[d];
    return v;
}

template <typename T> static __device__ T *at(void *base, int64_t off) { return (T *)base + off; }

/* ---- copies ---------------------------------------------------------------------------------- */

template <typename TO, typename FROM>
static __global__ void copy_kernel(TO *dst, al_cuda_view dv, const FROM *src, al_cuda_view sv, int64_t n, bool add) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        TO *d = dst + al_cuda_offset(dv, i);
        const TO x = convert<TO>::from(src[al_cuda_offset(sv, i)]);
        *d = add ? add_of(*d, x) : x;
    }
}

template <typename TO, typename FROM>
static void launch_copy(al_tensor *dst, const al_tensor *src, const int64_t *sstrides, bool add, int64_t n) {
    const int threads = 256;
    copy_kernel<TO, FROM><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
        (TO *)al_ptr(dst), view_of(dst, NULL), (const FROM *)al_ptr(src), view_with(dst, sstrides), n, add);
}

template <typename TO>
static void launch_copy_from(al_tensor *dst, const al_tensor *src, const int64_t *sstrides, bool add, int64_t n) {
    switch (src->dtype) {
    case AL_FLOAT32: launch_copy<TO, float>(dst, src, sstrides, add, n); break;
    case AL_FLOAT64: launch_copy<TO, double>(dst, src, sstrides, add, n); break;
    case AL_INT64: launch_copy<TO, long long>(dst, src, sstrides, add, n); break;
    case AL_BFLOAT16: launch_copy<TO, __nv_bfloat16>(dst, src, sstrides, add, n); break;
    }
}

extern "C" int al_cuda_copy_into(al_tensor *dst, const al_tensor *src, const int64_t *src_strides, bool add) {
    const int64_t n = al_numel(dst);
    if (n == 0) return 0;
    switch (dst->dtype) {
    case AL_FLOAT32: launch_copy_from<float>(dst, src, src_strides, add, n); break;
    case AL_FLOAT64: launch_copy_from<double>(dst, src, src_strides, add, n); break;
    case AL_INT64: launch_copy_from<long long>(dst, src, src_strides, add, n); break;
    case AL_BFLOAT16: launch_copy_from<__nv_bfloat16>(dst, src, src_strides, add, n); break;
    }
    return al_cuda_ok("copy", cudaGetLastError()) ? 0 : -1;
}

extern "C" al_tensor *al_cuda_contiguous(const al_tensor *t) {
    if (al_is_contiguous(t)) return al_alias(t);
    al_tensor *c = al_new_like(t);
    if (c && al_cuda_copy_into(c, t, t->strides, false) < 0) { al_release(c); return NULL; }
    return c;
}

template <typename T>
static __global__ void fill_kernel(T *dst, al_cuda_view dv, double value, int64_t n) {
    const T x = convert<T>::from(value);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[al_cuda_offset(dv, i)] = x;
}

extern "C" int al_cuda_fill(al_tensor *t, double value) {
    const int64_t n = al_numel(t);
    if (n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n, threads);
    cudaStream_t s = al_cuda_stream();
    switch (t->dtype) {
    case AL_FLOAT32: fill_kernel<float><<<blocks, threads, 0, s>>>((float *)al_ptr(t), view_of(t, NULL), value, n); break;
    case AL_FLOAT64: fill_kernel<double><<<blocks, threads, 0, s>>>((double *)al_ptr(t), view_of(t, NULL), value, n); break;
    case AL_INT64: fill_kernel<long long><<<blocks, threads, 0, s>>>((long long *)al_ptr(t), view_of(t, NULL), value, n); break;
    case AL_BFLOAT16:
        fill_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>((__nv_bfloat16 *)al_ptr(t), view_of(t, NULL), value, n);
        break;
    }
    return al_cuda_ok("fill_", cudaGetLastError()) ? 0 : -1;
}

/* ---- binary ops ------------------------------------------------------------------------------ */

template <typename T> static __device__ T binary_value(int op, T a, T b) {
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_MAX: return a > b || a != a ? a : b;   /* NaN wins, as on the CPU and in PyTorch */
    default: return a < b || a != a ? a : b;
    }
}
/* int64: wrapping arithmetic as on the CPU, and no division (it is true division, done in float) */
template <> __device__ long long binary_value<long long>(int op, long long a, long long b) {
    switch (op) {
    case OP_ADD: return (long long)((unsigned long long)a + (unsigned long long)b);
    case OP_SUB: return (long long)((unsigned long long)a - (unsigned long long)b);
    case OP_MUL: return (long long)((unsigned long long)a * (unsigned long long)b);
    case OP_DIV: return 0;
    case OP_MAX: return a > b ? a : b;
    default: return a < b ? a : b;
    }
}

template <typename T>
static __global__ void binary_kernel(int op, T *out, al_cuda_view ov, const T *a, al_cuda_view av, const T *b,
                                     al_cuda_view bv, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[al_cuda_offset(ov, i)] = binary_value<T>(op, a[al_cuda_offset(av, i)], b[al_cuda_offset(bv, i)]);
}

template <typename T>
static void launch_binary(int op, al_tensor *out, const al_tensor *a, const int64_t *sa, const al_tensor *b,
                          const int64_t *sb, int64_t n) {
    const int threads = 256;
    binary_kernel<T><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
        op, (T *)al_ptr(out), view_of(out, NULL), (const T *)al_ptr(a), view_with(out, sa), (const T *)al_ptr(b),
        view_with(out, sb), n);
}

extern "C" int al_cuda_binary(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                              const int64_t *b_strides) {
    const int64_t n = al_numel(out);
    if (n == 0) return 0;
    switch (out->dtype) {
    case AL_FLOAT32: launch_binary<float>(op, out, a, a_strides, b, b_strides, n); break;
    case AL_FLOAT64: launch_binary<double>(op, out, a, a_strides, b, b_strides, n); break;
    case AL_INT64: launch_binary<long long>(op, out, a, a_strides, b, b_strides, n); break;
    default:   /* bfloat16: refused before here (al_same_device); a kernel that did nothing would be worse */
        al_error("binary: no CUDA kernel for %s", al_dtype_name(out->dtype));
        return -1;
    }
    return al_cuda_ok("elementwise op", cudaGetLastError()) ? 0 : -1;
}

/* ---- unary math ------------------------------------------------------------------------------ */

template <typename T> static __device__ T unary_value(int op, T a, T s0, T s1) {
    switch (op) {
    case U_NEG: return -a;
    case U_EXP: return exp(a);
    case U_LOG: return log(a);
    case U_SQRT: return sqrt(a);
    case U_TANH: return tanh(a);
    case U_SIGMOID: return (T)1 / ((T)1 + exp(-a));
    case U_RELU: return a > 0 ? a : (T)0;
    case U_GELU: return (T)0.5 * a * ((T)1 + tanh((T)GELU_C * (a + (T)0.044715 * a * a * a)));
    case U_ABS: return fabs(a);
    case U_ADD_S: return a + s0;
    case U_MUL_S: return a * s0;
    case U_RSUB_S: return s0 - a;
    case U_RDIV_S: return s0 / a;
    case U_POW_S: return s0 == (T)2 ? a * a : pow(a, s0);
    case U_SQUARE: return a * a;
    default: return a < s0 ? s0 : (a > s1 ? s1 : a);   /* U_CLAMP */
    }
}

template <typename T>
static __global__ void unary_kernel(int op, T *out, al_cuda_view ov, const T *a, al_cuda_view av, T s0, T s1, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[al_cuda_offset(ov, i)] = unary_value<T>(op, a[al_cuda_offset(av, i)], s0, s1);
}

extern "C" int al_cuda_unary(int op, al_tensor *out, const al_tensor *a, double s0, double s1) {
    const int64_t n = al_numel(out);
    if (n == 0) return 0;
    const int threads = 256;
    const unsigned blocks = al_cuda_blocks(n, threads);
    cudaStream_t s = al_cuda_stream();
    if (out->dtype == AL_FLOAT32)
        unary_kernel<float><<<blocks, threads, 0, s>>>(op, (float *)al_ptr(out), view_of(out, NULL), (const float *)al_ptr(a),
                                                         view_of(a, NULL), (float)s0, (float)s1, n);
    else
        unary_kernel<double><<<blocks, threads, 0, s>>>(op, (double *)al_ptr(out), view_of(out, NULL), (const double *)al_ptr(a),
                                                          view_of(a, NULL), s0, s1, n);
    return al_cuda_ok("elementwise op", cudaGetLastError()) ? 0 : -1;
}

/* ---- comparisons: out (float32 or float64) = 1 where a op b holds, else 0 ---------------------- */

template <typename T> static __device__ bool compare_value(int op, T a, T b) {
    switch (op) {
    case AL_EQ: return a == b;
    case AL_NE: return a != b;
    case AL_LT: return a < b;
    case AL_LE: return a <= b;
    case AL_GT: return a > b;
    default: return a >= b;   /* AL_GE */
    }
}

template <typename T, typename O>
static __global__ void compare_kernel(int op, O *out, al_cuda_view ov, const T *a, al_cuda_view av, const T *b,
                                      al_cuda_view bv, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[al_cuda_offset(ov, i)] = compare_value<T>(op, a[al_cuda_offset(av, i)], b[al_cuda_offset(bv, i)]) ? (O)1 : (O)0;
}

template <typename T, typename O>
static void launch_compare(int op, al_tensor *out, const al_tensor *a, const int64_t *sa, const al_tensor *b,
                           const int64_t *sb, int64_t n) {
    const int threads = 256;
    compare_kernel<T, O><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
        op, (O *)al_ptr(out), view_of(out, NULL), (const T *)al_ptr(a), view_with(out, sa), (const T *)al_ptr(b),
        view_with(out, sb), n);
}

template <typename T>
static void launch_compare_into(int op, al_tensor *out, const al_tensor *a, const int64_t *sa, const al_tensor *b,
                                const int64_t *sb, int64_t n) {
    if (out->dtype == AL_FLOAT64) launch_compare<T, double>(op, out, a, sa, b, sb, n);
    else launch_compare<T, float>(op, out, a, sa, b, sb, n);
}

extern "C" int al_cuda_compare(int op, al_tensor *out, const al_tensor *a, const int64_t *a_strides, const al_tensor *b,
                               const int64_t *b_strides) {
    const int64_t n = al_numel(out);
    if (n == 0) return 0;
    switch (a->dtype) {
    case AL_FLOAT32: launch_compare_into<float>(op, out, a, a_strides, b, b_strides, n); break;
    case AL_FLOAT64: launch_compare_into<double>(op, out, a, a_strides, b, b_strides, n); break;
    case AL_INT64: launch_compare_into<long long>(op, out, a, a_strides, b, b_strides, n); break;
    default:   /* bfloat16: refused before here (al_same_device); a kernel that did nothing would be worse */
        al_error("compare: no CUDA kernel for %s", al_dtype_name(a->dtype));
        return -1;
    }
    return al_cuda_ok("compare", cudaGetLastError()) ? 0 : -1;
}

/* ---- where: out = keep ? a : b, keep a 0/1 tensor of out's dtype (ops/elementwise.c makes it) --- */

template <typename T>
static __global__ void where_kernel(T *out, al_cuda_view ov, const T *keep, al_cuda_view kv, const T *a, al_cuda_view av,
                                    const T *b, al_cuda_view bv, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[al_cuda_offset(ov, i)] = keep[al_cuda_offset(kv, i)] != (T)0 ? a[al_cuda_offset(av, i)] : b[al_cuda_offset(bv, i)];
}

template <typename T>
static void launch_where(al_tensor *out, const al_tensor *keep, const int64_t *sk, const al_tensor *a, const int64_t *sa,
                         const al_tensor *b, const int64_t *sb, int64_t n) {
    const int threads = 256;
    where_kernel<T><<<al_cuda_blocks(n, threads), threads, 0, al_cuda_stream()>>>(
        (T *)al_ptr(out), view_of(out, NULL), (const T *)al_ptr(keep), view_with(out, sk), (const T *)al_ptr(a),
        view_with(out, sa), (const T *)al_ptr(b), view_with(out, sb), n);
}

extern "C" int al_cuda_where(al_tensor *out, const al_tensor *keep, const int64_t *keep_strides, const al_tensor *a,
                             const int64_t *a_strides, const al_tensor *b, const int64_t *b_strides) {
    const int64_t n = al_numel(out);
    if (n == 0) return 0;
    switch (out->dtype) {
    case AL_FLOAT32: launch_where<float>(out, keep, keep_strides, a, a_strides, b, b_strides, n); break;
    case AL_FLOAT64: launch_where<double>(out, keep, keep_strides, a, a_strides, b, b_strides, n); break;
    case AL_INT64: launch_where<long long>(out, keep, keep_strides, a, a_strides, b, b_strides, n); break;
    default:   /* bfloat16: refused before here (al_same_device); a kernel that did nothing would be worse */
        al_error("where: no CUDA kernel for %s", al_dtype_name(out->dtype));
        return -1;
    }
    return al_cuda_ok("where", cudaGetLastError()) ? 0 : -1;
}
