/* cublas.cpp -- the emulated cuBLAS (cublas_v2.h): a handle that remembers its stream and math
 * mode, and gemm as the textbook triple loop over column-major matrices. */
#include "cublas_v2.h"
#include <stdio.h>

struct emulated_cublas {
    cudaStream_t stream;
    cublasMath_t mode;
};

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    }
    return "unknown error";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    *handle = new emulated_cublas{0, CUBLAS_PEDANTIC_MATH};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

/* element (r, c) of op(X), X column-major with leading dimension ld */
template <typename T> static T element(const T *X, cublasOperation_t op, int64_t ld, int64_t r, int64_t c) {
    return op == CUBLAS_OP_N ? X[r + c * ld] : X[c + r * ld];
}

static int64_t at_least_1(int64_t x) { return x > 1 ? x : 1; }

/* Whether all `count` (rows x cols) matrices at X + i stride, leading dimension ld, lie in device
 * memory; says which operand does not. */
template <typename T>
static bool in_device_memory(const char *operand, const T *X, int64_t rows, int64_t cols, int64_t ld, int64_t stride,
                             int64_t count) {
    if (rows == 0 || cols == 0 || count == 0) return true;
    const int64_t last = (cols - 1) * ld + rows - 1;
    int64_t lo = 0, hi = last;   /* element offsets spanned by the batch (a stride may be 0 or negative) */
    if (stride >= 0) hi += (count - 1) * stride;
    else lo += (count - 1) * stride;
    if (emulated_device_range(X + lo, (size_t)(hi - lo + 1) * sizeof(T))) return true;
    fprintf(stderr, "emulated cuBLAS: gemm operand %s (%lld x %lld, ld %lld, %lld matrices %lld apart) reaches outside "
                    "device memory\n", operand, (long long)rows, (long long)cols, (long long)ld, (long long)count,
            (long long)stride);
    return false;
}

template <typename T>
static cublasStatus_t gemm_strided_batched(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                                           int64_t n, int64_t k, const T *alpha, const T *A, int64_t lda, int64_t sa,
                                           const T *B, int64_t ldb, int64_t sb, const T *beta, T *C, int64_t ldc,
                                           int64_t sc, int64_t count) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    /* cuBLAS's checks: A is stored (m x k) untransposed, (k x m) transposed; B (k x n) or (n x k) */
    if (m < 0 || n < 0 || k < 0 || count < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || lda < at_least_1(ta == CUBLAS_OP_N ? m : k) ||
        ldb < at_least_1(tb == CUBLAS_OP_N ? k : n) || ldc < at_least_1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    const bool an = ta == CUBLAS_OP_N, bn = tb == CUBLAS_OP_N;
    if (!in_device_memory("A", A, an ? m : k, an ? k : m, lda, sa, count) ||
        !in_device_memory("B", B, bn ? k : n, bn ? n : k, ldb, sb, count) ||
        !in_device_memory("C", (const T *)C, m, n, ldc, sc, count))
        return CUBLAS_STATUS_EXECUTION_FAILED;
    for (int64_t i = 0; i < count; i++) {
        const T *Ai = A + i * sa, *Bi = B + i * sb;
        T *Ci = C + i * sc;
        for (int64_t c = 0; c < n; c++)
            for (int64_t r = 0; r < m; r++) {
                T acc = 0;
                for (int64_t l = 0; l < k; l++) acc += element(Ai, ta, lda, r, l) * element(Bi, tb, ldb, l, c);
                /* beta = 0: C is not read (it may hold NaN), as in BLAS */
                Ci[r + c * ldc] = *alpha * acc + (*beta == 0 ? (T)0 : *beta * Ci[r + c * ldc]);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched_64(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                            int64_t m, int64_t n, int64_t k, const float *alpha, const float *A,
                                            int64_t lda, int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                                            const float *beta, float *C, int64_t ldc, int64_t stride_c, int64_t count) {
    return gemm_strided_batched(handle, transa, transb, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                                stride_c, count);
}

cublasStatus_t cublasDgemmStridedBatched_64(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                            int64_t m, int64_t n, int64_t k, const double *alpha, const double *A,
                                            int64_t lda, int64_t stride_a, const double *B, int64_t ldb,
                                            int64_t stride_b, const double *beta, double *C, int64_t ldc,
                                            int64_t stride_c, int64_t count) {
    return gemm_strided_batched(handle, transa, transb, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                                stride_c, count);
}
