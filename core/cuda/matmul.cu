/* matmul.cu -- matrix products on the GPU through cuBLAS.
 *
 * ops/matmul.c hands over operands whose matrices each have a unit stride along rows or columns
 * (it copies the others), the broadcast batch shape and each operand's batch strides.  cuBLAS is
 * column-major: the row-major product C = A B is computed as C^T = B^T A^T, and a row-major matrix
 * read as column-major is its transpose, so a row-major operand goes in untransposed and a
 * column-major one (a transposed view, as every backward makes) with CUBLAS_OP_T; no copies.
 * Batches whose offsets are one stride apart (contiguous batches, or a broadcast weight at
 * stride 0) are one strided-batched call; any other batch layout is one call per matrix (rare:
 * products of permuted views that ops/matmul.c did not make contiguous).
 * float32 runs in float32 (CUBLAS_PEDANTIC_MATH, set with the handle: no TF32), float64 in float64. */
#include "cuda_internal.h"

/* How cuBLAS reads a row-major (rows x cols) matrix with strides (s0, s1): the op and leading
 * dimension that give its transpose in column-major terms (see above). */
static bool column_major_view(int64_t s0, int64_t s1, int64_t rows, int64_t cols, cublasOperation_t *op, int64_t *ld) {
    if (s1 == 1 && (s0 >= (cols > 1 ? cols : 1) || rows == 1)) { *op = CUBLAS_OP_N; *ld = s0 > cols ? s0 : (cols > 1 ? cols : 1); return true; }
    if (s0 == 1 && (s1 >= (rows > 1 ? rows : 1) || cols == 1)) { *op = CUBLAS_OP_T; *ld = s1 > rows ? s1 : (rows > 1 ? rows : 1); return true; }
    return false;
}

/* The single stride between consecutive batch offsets, when there is one. */
static bool uniform_batch_stride(int nb, const int64_t *batch, const int64_t *strides, int64_t *stride) {
    int64_t expect = -1;   /* stride of the innermost batch dim with size > 1 */
    int64_t span = 1;
    for (int d = nb - 1; d >= 0; d--) {
        if (batch[d] == 1) continue;
        if (expect < 0) { expect = strides[d]; span = batch[d]; continue; }
        if (strides[d] != expect * span) return false;
        span *= batch[d];
    }
    *stride = expect < 0 ? 0 : expect;
    return true;
}

template <typename T>
static cublasStatus_t gemm_strided(cublasHandle_t h, cublasOperation_t opb, cublasOperation_t opa, int64_t m, int64_t n,
                                   int64_t k, const T *b, int64_t ldb, int64_t sb, const T *a, int64_t lda, int64_t sa,
                                   T *c, int64_t ldc, int64_t sc, int64_t count);
template <>
cublasStatus_t gemm_strided<float>(cublasHandle_t h, cublasOperation_t opb, cublasOperation_t opa, int64_t m, int64_t n,
                                   int64_t k, const float *b, int64_t ldb, int64_t sb, const float *a, int64_t lda,
                                   int64_t sa, float *c, int64_t ldc, int64_t sc, int64_t count) {
    const float one = 1, zero = 0;
    return cublasSgemmStridedBatched_64(h, opb, opa, m, n, k, &one, b, ldb, sb, a, lda, sa, &zero, c, ldc, sc, count);
}
template <>
cublasStatus_t gemm_strided<double>(cublasHandle_t h, cublasOperation_t opb, cublasOperation_t opa, int64_t m, int64_t n,
                                    int64_t k, const double *b, int64_t ldb, int64_t sb, const double *a, int64_t lda,
                                    int64_t sa, double *c, int64_t ldc, int64_t sc, int64_t count) {
    const double one = 1, zero = 0;
    return cublasDgemmStridedBatched_64(h, opb, opa, m, n, k, &one, b, ldb, sb, a, lda, sa, &zero, c, ldc, sc, count);
}

template <typename T>
static int matmul_typed(const al_tensor *a, const al_tensor *b, al_tensor *out, int nb, const int64_t *batch,
                        const int64_t *abs_, const int64_t *bbs, int64_t n, int64_t k, int64_t m) {
    cublasHandle_t h = al_cublas("matmul");
    if (!h) return -1;
    cublasOperation_t opa, opb;
    int64_t lda, ldb;
    if (!column_major_view(a->strides[a->ndim - 2], a->strides[a->ndim - 1], n, k, &opa, &lda) ||
        !column_major_view(b->strides[b->ndim - 2], b->strides[b->ndim - 1], k, m, &opb, &ldb)) {
        al_error("matmul: operand layouts %s and %s reached cuBLAS without a unit stride (a bug: ops/matmul.c copies them)",
                 TSHAPE(a), TSHAPE(b));
        return -1;
    }
    const T *A = (const T *)al_ptr(a), *B = (const T *)al_ptr(b);
    T *C = (T *)al_ptr(out);
    const int64_t nbatch = al_shape_numel(nb, batch), ldc = m > 1 ? m : 1;
    int64_t sa = 0, sb = 0;
    if (uniform_batch_stride(nb, batch, abs_, &sa) && uniform_batch_stride(nb, batch, bbs, &sb))
        return al_cublas_ok("matmul", gemm_strided<T>(h, opb, opa, m, n, k, B, ldb, sb, A, lda, sa, C, ldc, n * m, nbatch)) ? 0 : -1;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t aoff, boff;
        al_batch_offsets(bi, nb, batch, abs_, bbs, &aoff, &boff);
        if (!al_cublas_ok("matmul", gemm_strided<T>(h, opb, opa, m, n, k, B + boff, ldb, 0, A + aoff, lda, 0,
                                                    C + bi * n * m, ldc, 0, 1)))
            return -1;
    }
    return 0;
}

extern "C" int al_cuda_matmul(const al_tensor *a, const al_tensor *b, al_tensor *out, int nb, const int64_t *batch,
                              const int64_t *a_batch_strides, const int64_t *b_batch_strides, int64_t n, int64_t k,
                              int64_t m) {
    if (n == 0 || m == 0 || al_shape_numel(nb, batch) == 0) return 0;
    if (k == 0) return al_cuda_fill(out, 0);   /* an empty sum */
    if (a->dtype == AL_FLOAT32) return matmul_typed<float>(a, b, out, nb, batch, a_batch_strides, b_batch_strides, n, k, m);
    return matmul_typed<double>(a, b, out, nb, batch, a_batch_strides, b_batch_strides, n, k, m);
}
