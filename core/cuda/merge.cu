/* merge.cu -- the log-sum-exp merge of two partial attentions (attention/merge.c) on the GPU: a
 * thread per row, the CPU's arithmetic in double (attention/merge_weight.h), forward and the two
 * backward passes (the output's and the log-sum-exp's).  Every tensor contiguous, rows of dv. */
#include "cuda_internal.h"
#include "attention/merge_weight.h"

template <typename T>
static __global__ void merge_kernel(const T *o1, const T *l1, const T *o2, const T *l2, T *out, T *lse, int64_t rows,
                                    int64_t dv) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const double c = merge_part_one_weight(l1[r], l2[r]);
        for (int64_t e = r * dv; e < (r + 1) * dv; e++) out[e] = (T)(c * (double)o1[e] + (1 - c) * (double)o2[e]);
        lse[r] = (T)merge_logaddexp(l1[r], l2[r]);
    }
}

/* dO1 = c g, dO2 = (1 - c) g, dL1 = c (1 - c) g . (O1 - O2) = -dL2 */
template <typename T>
static __global__ void merge_output_backward_kernel(const T *o1, const T *l1, const T *o2, const T *l2, const T *g, T *d1,
                                                    T *dl1, T *d2, T *dl2, int64_t rows, int64_t dv) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const double c = merge_part_one_weight(l1[r], l2[r]);
        double dc = 0;
        for (int64_t e = r * dv; e < (r + 1) * dv; e++) {
            const double ge = g[e];
            dc += ge * ((double)o1[e] - (double)o2[e]);
            d1[e] = (T)(c * ge);
            d2[e] = (T)((1 - c) * ge);
        }
        dl1[r] = (T)(c * (1 - c) * dc);
        dl2[r] = (T)(-c * (1 - c) * dc);
    }
}

/* dL1 = c g, dL2 = (1 - c) g */
template <typename T>
static __global__ void merge_lse_backward_kernel(const T *l1, const T *l2, const T *g, T *dl1, T *dl2, int64_t rows) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const double c = merge_part_one_weight(l1[r], l2[r]);
        dl1[r] = (T)(c * (double)g[r]);
        dl2[r] = (T)((1 - c) * (double)g[r]);
    }
}

template <typename T> static const T *in(const al_tensor *t) { return (const T *)al_ptr(t); }
template <typename T> static T *out(al_tensor *t) { return (T *)al_ptr(t); }
static const int THREADS = 128;

template <typename T>
static void merge_typed(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2, al_tensor *o,
                        al_tensor *lse, int64_t rows, int64_t dv) {
    merge_kernel<T><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(in<T>(o1), in<T>(l1), in<T>(o2), in<T>(l2),
                                                                                     out<T>(o), out<T>(lse), rows, dv);
}
extern "C" int al_cuda_attention_merge(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                                       al_tensor *o, al_tensor *lse) {
    const int64_t rows = al_numel(l1), dv = rows ? al_numel(o1) / rows : 0;
    if (rows == 0) return 0;
    if (o1->dtype == AL_FLOAT32) merge_typed<float>(o1, l1, o2, l2, o, lse, rows, dv);
    else merge_typed<double>(o1, l1, o2, l2, o, lse, rows, dv);
    return al_cuda_ok("attention_merge", cudaGetLastError()) ? 0 : -1;
}

template <typename T>
static void output_backward_typed(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2, const al_tensor *l2,
                                  const al_tensor *g, al_tensor *d1, al_tensor *dl1, al_tensor *d2, al_tensor *dl2,
                                  int64_t rows, int64_t dv) {
    merge_output_backward_kernel<T><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(
        in<T>(o1), in<T>(l1), in<T>(o2), in<T>(l2), in<T>(g), out<T>(d1), out<T>(dl1), out<T>(d2), out<T>(dl2), rows, dv);
}
extern "C" int al_cuda_attention_merge_backward(const al_tensor *o1, const al_tensor *l1, const al_tensor *o2,
                                                const al_tensor *l2, const al_tensor *g, al_tensor *d1, al_tensor *dl1,
                                                al_tensor *d2, al_tensor *dl2) {
    const int64_t rows = al_numel(l1), dv = rows ? al_numel(o1) / rows : 0;
    if (rows == 0) return 0;
    if (o1->dtype == AL_FLOAT32) output_backward_typed<float>(o1, l1, o2, l2, g, d1, dl1, d2, dl2, rows, dv);
    else output_backward_typed<double>(o1, l1, o2, l2, g, d1, dl1, d2, dl2, rows, dv);
    return al_cuda_ok("attention_merge: backward", cudaGetLastError()) ? 0 : -1;
}

extern "C" int al_cuda_attention_merge_lse_backward(const al_tensor *l1, const al_tensor *l2, const al_tensor *g,
                                                    al_tensor *dl1, al_tensor *dl2) {
    const int64_t rows = al_numel(l1);
    if (rows == 0) return 0;
    if (l1->dtype == AL_FLOAT32)
        merge_lse_backward_kernel<float><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(
            in<float>(l1), in<float>(l2), in<float>(g), out<float>(dl1), out<float>(dl2), rows);
    else
        merge_lse_backward_kernel<double><<<al_cuda_blocks(rows, THREADS), THREADS, 0, al_cuda_stream()>>>(
            in<double>(l1), in<double>(l2), in<double>(g), out<double>(dl1), out<double>(dl2), rows);
    return al_cuda_ok("attention_merge: backward", cudaGetLastError()) ? 0 : -1;
}
