/* loss.c -- mean squared error and cross-entropy. */
#include "../internal.h"
#include <math.h>

al_tensor *al_mse(const al_tensor *pred, const al_tensor *target) {
    CHECK_TENSOR("mse", pred, "pred");
    CHECK_TENSOR("mse", target, "target");
    /* CPU or CUDA: composed of ops that have kernels on both (the mean's CUDA kernel is the reductions') */
    if (!al_same_device("mse", pred, target, NULL)) return NULL;
    /* no broadcasting here: (B) against (B, 1) silently averaging a B x B matrix is a classic bug */
    if (!al_shape_equal(pred->ndim, pred->shape, target->ndim, target->shape)) {
        al_error("mse: pred %s and target %s must have the same shape", TSHAPE(pred), TSHAPE(target));
        return NULL;
    }
    if (al_numel(pred) == 0) { al_error("mse: empty tensors (shape %s)", TSHAPE(pred)); return NULL; }
    al_tensor *diff = al_sub(pred, target);
    al_tensor *sq = diff ? al_mul(diff, diff) : NULL;
    al_tensor *out = sq ? al_mean(sq, AL_ALL_DIMS, 0) : NULL;
    al_release(diff);
    al_release(sq);
    return out;
}

/* Cross-entropy: loss = mean over counted rows of lse(row) - row[id].
 * Backward: (softmax(row) - onehot(id)) / count on counted rows, 0 on ignored ones.
 * The row kernel, once per float dtype: cross_entropy_rows_float, cross_entropy_rows_double. */
#define GENERIC_FILE "../generic/loss_rows.h"
#include "../generic/float_types.h"

static void cross_entropy_backward(al_node *node, const al_tensor *g) {
    double scale = al_item(g) * node->scalars[0];
    al_tensor *grad = al_mul_scalar(node->saved[0], scale);
    al_tensor *shaped = grad ? al_reshape(grad, node->inputs[0]->ndim, node->inputs[0]->shape) : NULL;
    al_accumulate_input(node, 0, shaped);
    al_release(grad);
    al_release(shaped);
}

static void report_bad_class(int64_t id, int64_t position, int64_t C) {
    al_error("cross_entropy: class id %lld at position %lld is out of range for %lld classes", (long long)id + 1,
             (long long)position + 1, (long long)C);
}

/* The device's part of cross_entropy: the ids checked and counted there (the first bad one comes
 * back for the message), the rows' kernel (core/cuda/nn.cu) writes P and the loss total comes back
 * as a double, as the CPU's row loop returns it.  -1 with an error. */
static int cross_entropy_cuda(const al_tensor *lc, const al_tensor *ic, al_tensor *prob, int64_t C,
                              int64_t ignore_index, double *total, int64_t *count) {
    int64_t first_bad, bad_id;
    if (al_cuda_check_ids("cross_entropy", ic, C, ignore_index, true, &first_bad, &bad_id, count) < 0) return -1;
    if (first_bad < al_numel(ic)) { report_bad_class(bad_id, first_bad, C); return -1; }
    return al_cuda_cross_entropy(lc, ic, prob, ignore_index, total);
}

al_tensor *al_cross_entropy(const al_tensor *logits, const al_tensor *target, int64_t ignore_index) {
    CHECK_TENSOR("cross_entropy", logits, "logits");
    CHECK_TENSOR("cross_entropy", target, "target");
    if (!al_same_device("cross_entropy", logits, target, NULL)) return NULL;   /* CPU or CUDA (core/cuda/nn.cu) */
    if (logits->ndim < 1 || !al_is_float(logits->dtype)) {
        al_error("cross_entropy: logits must be a float tensor (..., C) (got %s, %s)", TSHAPE(logits),
                 al_dtype_name(logits->dtype));
        return NULL;
    }
    if (target->dtype != AL_INT64) {
        al_error("cross_entropy: target ids must be int64 (got %s of shape %s)", al_dtype_name(target->dtype), TSHAPE(target));
        return NULL;
    }
    if (!al_shape_equal(logits->ndim - 1, logits->shape, target->ndim, target->shape)) {
        al_error("cross_entropy: logits %s need target ids of shape %s, got %s", TSHAPE(logits),
                 al_shape_str(logits->ndim - 1, logits->shape), TSHAPE(target));
        return NULL;
    }
    int64_t C = logits->shape[logits->ndim - 1], rows = al_numel(target);
    al_tensor *ic = al_contiguous_nograd(target);
    if (!ic) return NULL;
    const al_device device = logits->storage->device;
    const int64_t *ids = device == AL_CPU ? al_ptr(ic) : NULL;
    for (int64_t r = 0; ids && r < rows; r++)
        if (ids[r] != ignore_index && (ids[r] < 0 || ids[r] >= C)) {
            report_bad_class(ids[r], r, C);
            al_release(ic);
            return NULL;
        }
    al_tensor *lc = al_contiguous_nograd(logits);
    int64_t pshape[2] = {rows, C};
    al_tensor *prob = lc ? al_new_tensor_on(2, pshape, logits->dtype, device) : NULL;
    double total = 0;
    int64_t count = 0;
    if (prob && device == AL_CUDA) {
        if (cross_entropy_cuda(lc, ic, prob, C, ignore_index, &total, &count) < 0) { al_release(prob); prob = NULL; }
    } else if (prob) {
        if (logits->dtype == AL_FLOAT32)
            total = cross_entropy_rows_float(al_ptr(lc), al_ptr(ic), al_ptr(prob), rows, C, ignore_index, &count);
        else total = cross_entropy_rows_double(al_ptr(lc), al_ptr(ic), al_ptr(prob), rows, C, ignore_index, &count);
    }
    const double mean = count ? total / (double)count : 0.0;
    al_tensor *out = prob ? al_full_on(0, NULL, mean, logits->dtype, device) : NULL;
    if (out && al_grad_needed1(logits)) {
        al_node *node = al_record(out, "cross_entropy", cross_entropy_backward, 1, &logits);
        if (node) { al_node_save(node, 0, prob); node->scalars[0] = count ? 1.0 / (double)count : 0.0; }
    }
    al_release(ic); al_release(lc); al_release(prob);
    return out;
}
