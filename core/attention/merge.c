/* merge.c -- the log-sum-exp merge of two partial attentions over disjoint key sets (reference
 * notes section 0; insuhan/hyper-attn add_self_attentions, NATTEN merge_attentions):
 *   c = 1 / (1 + exp(L2 - L1)),   O = c O1 + (1 - c) O2,   L = L1 - log c = logaddexp(L1, L2)
 * with L = -inf for an empty part (c = 1 when both are empty: O = O1, L = -inf).
 * Backward (u = c (1 - c), dc = g_O . (O1 - O2)):
 *   dO1 = c g_O;  dO2 = (1 - c) g_O;  dL1 = u dc + c g_L;  dL2 = -u dc + (1 - c) g_L.
 * O and L are two outputs; each has its own node (O's inputs O1, L1, O2, L2; L's inputs L1, L2).
 * On CUDA tensors the same arithmetic runs a thread per row (core/cuda/merge.cu). */
#include "attention_internal.h"
#include "merge_weight.h"
#include <math.h>

/* element i of a contiguous float32 or float64 tensor, as a double */
static inline double at(const al_tensor *t, int64_t i) {
    return t->dtype == AL_FLOAT32 ? ((const float *)al_ptr(t))[i] : ((const double *)al_ptr(t))[i];
}
static inline void put(al_tensor *t, int64_t i, double x) {
    if (t->dtype == AL_FLOAT32) ((float *)al_ptr(t))[i] = (float)x;
    else ((double *)al_ptr(t))[i] = x;
}

static void merge_output_backward(al_node *node, const al_tensor *g) {
    al_tensor *o1 = al_contiguous_nograd(node->inputs[0]), *l1 = al_contiguous_nograd(node->inputs[1]);
    al_tensor *o2 = al_contiguous_nograd(node->inputs[2]), *l2 = al_contiguous_nograd(node->inputs[3]);
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *d1 = o1 ? al_new_like(o1) : NULL, *d2 = o1 ? al_new_like(o1) : NULL;
    al_tensor *dl1 = l1 ? al_new_like(l1) : NULL, *dl2 = l1 ? al_new_like(l1) : NULL;
    bool ok = o1 && l1 && o2 && l2 && gc && d1 && d2 && dl1 && dl2;
    if (ok && o1->storage->device == AL_CUDA) {
        ok = al_cuda_attention_merge_backward(o1, l1, o2, l2, gc, d1, dl1, d2, dl2) == 0;
    } else if (ok) {
        const int64_t rows = al_numel(l1), dv = rows ? al_numel(o1) / rows : 0;
        for (int64_t r = 0; r < rows; r++) {
            const double c = merge_part_one_weight(at(l1, r), at(l2, r));
            double dc = 0;
            for (int64_t e = r * dv; e < (r + 1) * dv; e++) {
                const double ge = at(gc, e);
                dc += ge * (at(o1, e) - at(o2, e));
                put(d1, e, c * ge);
                put(d2, e, (1 - c) * ge);
            }
            put(dl1, r, c * (1 - c) * dc);
            put(dl2, r, -c * (1 - c) * dc);
        }
    }
    if (ok) {
        al_accumulate_input(node, 0, d1);
        al_accumulate_input(node, 1, dl1);
        al_accumulate_input(node, 2, d2);
        al_accumulate_input(node, 3, dl2);
    }
    al_release(o1); al_release(l1); al_release(o2); al_release(l2); al_release(gc);
    al_release(d1); al_release(d2); al_release(dl1); al_release(dl2);
}

static void merge_lse_backward(al_node *node, const al_tensor *g) {
    al_tensor *l1 = al_contiguous_nograd(node->inputs[0]), *l2 = al_contiguous_nograd(node->inputs[1]);
    al_tensor *gc = al_contiguous_nograd(g);
    al_tensor *dl1 = l1 ? al_new_like(l1) : NULL, *dl2 = l1 ? al_new_like(l1) : NULL;
    bool ok = l1 && l2 && gc && dl1 && dl2;
    if (ok && l1->storage->device == AL_CUDA) {
        ok = al_cuda_attention_merge_lse_backward(l1, l2, gc, dl1, dl2) == 0;
    } else if (ok) {
        for (int64_t r = 0; r < al_numel(l1); r++) {
            const double c = merge_part_one_weight(at(l1, r), at(l2, r));
            put(dl1, r, c * at(gc, r));
            put(dl2, r, (1 - c) * at(gc, r));
        }
    }
    if (ok) {
        al_accumulate_input(node, 0, dl1);
        al_accumulate_input(node, 1, dl2);
    }
    al_release(l1); al_release(l2); al_release(gc); al_release(dl1); al_release(dl2);
}

al_tensor *al_attention_merge(const al_tensor *o1, const al_tensor *lse1, const al_tensor *o2,
                              const al_tensor *lse2, al_tensor **lse_out) {
    if (lse_out) *lse_out = NULL;
    CHECK_TENSOR("attention_merge", o1, "o1");
    CHECK_TENSOR("attention_merge", lse1, "lse1");
    CHECK_TENSOR("attention_merge", o2, "o2");
    CHECK_TENSOR("attention_merge", lse2, "lse2");
    /* CPU or CUDA (core/cuda/merge.cu), all four on one; no bfloat16 */
    if (!al_same_device("attention_merge", o1, lse1, o2) || !al_same_device("attention_merge", o1, lse2, NULL)) return NULL;
    if (o1->ndim < 1 || !al_shape_equal(o1->ndim, o1->shape, o2->ndim, o2->shape) ||
        !al_shape_equal(o1->ndim - 1, o1->shape, lse1->ndim, lse1->shape) ||
        !al_shape_equal(lse1->ndim, lse1->shape, lse2->ndim, lse2->shape) || !al_is_float(o1->dtype) ||
        o2->dtype != o1->dtype || lse1->dtype != o1->dtype || lse2->dtype != o1->dtype) {
        al_error("attention_merge: needs o1, o2 of one shape (..., dv) and lse1, lse2 of shape (...), one float dtype "
                 "(got o1 %s, lse1 %s, o2 %s, lse2 %s; %s, %s, %s, %s)", TSHAPE(o1), TSHAPE(lse1), TSHAPE(o2),
                 TSHAPE(lse2), al_dtype_name(o1->dtype), al_dtype_name(lse1->dtype), al_dtype_name(o2->dtype),
                 al_dtype_name(lse2->dtype));
        return NULL;
    }
    al_tensor *a = al_contiguous_nograd(o1), *b = al_contiguous_nograd(o2);
    al_tensor *la = al_contiguous_nograd(lse1), *lb = al_contiguous_nograd(lse2);
    al_tensor *out = a ? al_new_like(a) : NULL, *lse = la ? al_new_like(la) : NULL;
    bool ok = a && b && la && lb && out && lse;
    if (ok && a->storage->device == AL_CUDA) {
        ok = al_cuda_attention_merge(a, la, b, lb, out, lse) == 0;
    } else if (ok) {
        const int64_t rows = al_numel(la), dv = rows ? al_numel(a) / rows : 0;
        for (int64_t r = 0; r < rows; r++) {
            const double l1 = at(la, r), l2 = at(lb, r), c = merge_part_one_weight(l1, l2);
            for (int64_t e = r * dv; e < (r + 1) * dv; e++) put(out, e, c * at(a, e) + (1 - c) * at(b, e));
            put(lse, r, merge_logaddexp(l1, l2));
        }
    }
    if (ok) {
        const al_tensor *in[4] = {o1, lse1, o2, lse2}, *lin[2] = {lse1, lse2};
        if (al_grad_needed2(o1, lse1) || al_grad_needed2(o2, lse2))
            al_record(out, "attention_merge", merge_output_backward, 4, in);
        if (al_grad_needed2(lse1, lse2)) al_record(lse, "attention_merge_lse", merge_lse_backward, 2, lin);
    } else {
        al_release(out); al_release(lse);
        out = lse = NULL;
    }
    al_release(a); al_release(b); al_release(la); al_release(lb);
    if (lse_out) *lse_out = lse;
    else al_release(lse);
    return out;
}
