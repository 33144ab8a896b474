/* cublas_v2.h -- the part of cuBLAS that core/cuda/matmul.cu and memory.cu use, emulated on the CPU
 * (cublas.cpp): the handle calls and the strided-batched gemm as plain column-major loops, with
 * cuBLAS's own argument checks (a leading dimension too small for its matrix is
 * CUBLAS_STATUS_INVALID_VALUE, as on the GPU), so matmul.cu's mapping of row-major operands onto
 * column-major calls is what gets checked.  cuBLAS's numerics (blocking, order of the sums) are
 * not emulated. */
#ifndef ATTNLAB_EMULATED_CUBLAS_V2_H
#define ATTNLAB_EMULATED_CUBLAS_V2_H

#include "cuda_runtime.h"

/* the real library's numbers */
enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,   /* here: an operand reaches outside device memory */
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_PEDANTIC_MATH = 2 };

struct emulated_cublas;
typedef emulated_cublas *cublasHandle_t;

const char *cublasGetStatusName(cublasStatus_t s);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
/* C_i = alpha op(A_i) op(B_i) + beta C_i for i < count, X_i = X + i stride_x, all column-major */
cublasStatus_t cublasSgemmStridedBatched_64(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                            int64_t m, int64_t n, int64_t k, const float *alpha, const float *A,
                                            int64_t lda, int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                                            const float *beta, float *C, int64_t ldc, int64_t stride_c, int64_t count);
cublasStatus_t cublasDgemmStridedBatched_64(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                            int64_t m, int64_t n, int64_t k, const double *alpha, const double *A,
                                            int64_t lda, int64_t stride_a, const double *B, int64_t ldb,
                                            int64_t stride_b, const double *beta, double *C, int64_t ldc,
                                            int64_t stride_c, int64_t count);

#endif
