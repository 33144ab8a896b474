/* softmax_cuda.c -- the "softmax", "sliding_window" and 1-D (strided_)neighborhood variants on CUDA tensors:
 * what the GPU kernels need beyond
 * al_attention's checks, the outputs, and the autograd node with its backward; the kernels are
 * core/cuda/attention.cu (fused forward keeping the row log-sum-exp, the map on request, and the
 * recompute backward).
 *
 * One kernel serves every `kernel` option: it never forms the map except when weights are asked
 * for (a separate kernel writes P = exp(S - L) then), and it takes a trainable bias.  The option
 * keeps its CPU meaning where that is a promise: kernel = 'tiled' refuses weights and a trainable
 * bias as the CPU's tiled kernel does, so a script behaves the same on both devices. */
#include "attention_internal.h"
#include <stdlib.h>

static const char *const NODE_NAME = "attention_softmax_cuda";

static al_cuda_attention_args args_of(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                                      const al_tensor *bias, const al_tensor *mask, int causal, double scale,
                                      int64_t window, const al_tensor *ranges) {
    return (al_cuda_attention_args){.q = q, .k = k, .v = v, .bias = bias, .mask = mask, .causal = causal,
                                    .scale = scale, .window = window, .ranges = ranges};
}

/* A neighborhood's key ranges for the kernel: [lo_i, end_i) of every query by the CPU's own rule
 * (visible_range), as an int64 (2, N) tensor on the device; NULL with an error if the bounds were
 * not non-decreasing in i, which the kernel's tile ranges rely on (a 1-D neighborhood's are). */
static al_tensor *neighborhood_ranges(const attention_problem *p) {
    int64_t *host = malloc(sizeof(int64_t) * (size_t)(2 * p->N + 1));
    if (!host) { al_error("attention: out of memory for the key ranges of %lld queries", (long long)p->N); return NULL; }
    bool monotone = true;
    for (int64_t i = 0; i < p->N; i++) {
        host[p->N + i] = visible_range(p, i, &host[i]);
        if (i > 0 && (host[i] < host[i - 1] || host[p->N + i] < host[p->N + i - 1])) monotone = false;
    }
    al_tensor *ranges = NULL;
    if (!monotone) {
        al_error("attention: this neighborhood's key ranges do not grow with the query; it has no CUDA kernel");
    } else {
        const int64_t shape[2] = {2, p->N};
        al_tensor *cpu = al_from_buffer(2, shape, AL_INT64, host);
        ranges = cpu ? al_to_device(cpu, AL_CUDA) : NULL;
        al_release(cpu);
    }
    free(host);
    return ranges;
}

/* inputs q, k, v [, bias]; saved: 0 the output (an alias), 1 the row log-sum-exp, 2 bias, 3 mask,
 * 4 a neighborhood's key ranges (or NULL); ints[0] causal, ints[1] the sliding window (0: none),
 * scalars[0] scale */
static void cuda_softmax_backward(al_node *node, const al_tensor *g) {
    const al_tensor *q = node->inputs[0], *k = node->inputs[1], *v = node->inputs[2];
    const al_cuda_attention_args a = args_of(q, k, v, node->saved[2], node->saved[3], (int)node->ints[0],
                                             node->scalars[0], node->ints[1], node->saved[4]);
    const bool want_bias = node->n_inputs > 3 && al_input_needs_grad(node, 3);
    const int64_t map[4] = {q->shape[0], q->shape[1], q->shape[2], k->shape[2]};
    al_tensor *gc = al_same_device_any_dtype(node->name, q, g, NULL) ? al_contiguous_nograd(g) : NULL;
    al_tensor *dq = al_input_needs_grad(node, 0) ? al_new_tensor_on(4, q->shape, q->dtype, AL_CUDA) : NULL;
    al_tensor *dk = al_input_needs_grad(node, 1) ? al_new_tensor_on(4, k->shape, k->dtype, AL_CUDA) : NULL;
    al_tensor *dv = al_input_needs_grad(node, 2) ? al_new_tensor_on(4, v->shape, v->dtype, AL_CUDA) : NULL;
    al_tensor *db = want_bias ? al_new_tensor_on(4, map, q->dtype, AL_CUDA) : NULL;
    const bool allocated = gc && (dq || !al_input_needs_grad(node, 0)) && (dk || !al_input_needs_grad(node, 1)) &&
                           (dv || !al_input_needs_grad(node, 2)) && (db || !want_bias);
    if (!allocated || al_cuda_attention_backward(&a, node->saved[0], node->saved[1], gc, dq, dk, dv, db) < 0) {
        /* the failure said why; hand back nothing rather than partial gradients */
        al_release(dq); al_release(dk); al_release(dv); al_release(db);
        dq = dk = dv = db = NULL;
    }
    al_accumulate_input_take(node, 0, dq);
    al_accumulate_input_take(node, 1, dk);
    al_accumulate_input_take(node, 2, dv);
    al_accumulate_input_take(node, 3, db);
    al_release(gc);
}

al_tensor *attention_cuda_softmax_forward(const attention_problem *p, al_tensor **weights) {
    const char *fn = "attention";
    if (p->d > AL_CUDA_ATTENTION_HEAD_MAX || p->dv > AL_CUDA_ATTENTION_HEAD_MAX) {
        al_error("%s: the CUDA kernel takes head dims up to %d; q %s and v %s have d = %lld, dv = %lld", fn,
                 AL_CUDA_ATTENTION_HEAD_MAX, TSHAPE(p->q), TSHAPE(p->v), (long long)p->d, (long long)p->dv);
        return NULL;
    }
    const bool trainable_bias = p->bias && al_grad_needed1(p->bias);
    if (p->kernel == 2 && weights) {
        al_error("%s: the tiled kernel never forms the attention map; ask for weights with kernel = 'dense' "
                 "(or 'auto')", fn);
        return NULL;
    }
    if (p->kernel == 2 && trainable_bias) {
        al_error("%s: the tiled kernel takes a bias only as a constant (a trainable bias needs "
                 "kernel = 'dense' or 'auto'); bias %s", fn, TSHAPE(p->bias));
        return NULL;
    }
    /* bfloat16: a trainable bias's gradient would be folded to the bias's shape by a sum, which has no
     * bfloat16 kernel; so the bias must be a constant there (a float32 one works, in float32) */
    if (trainable_bias && p->q->dtype == AL_BFLOAT16) {
        al_error("%s: a trainable bias with bfloat16 q, k, v has no kernel for its gradient; detach the bias or "
                 "use float32 (bias %s)", fn, TSHAPE(p->bias));
        return NULL;
    }
    /* a trainable bias's gradient is dS, of shape (B, H, N, M); a bias broadcast to that shape gets it
     * summed over the broadcast dims by the expand that made p->bias (attention.c), on the device */
    al_tensor *ranges = p->nbhd.ndim > 0 ? neighborhood_ranges(p) : NULL;
    if (p->nbhd.ndim > 0 && !ranges) return NULL;
    const al_cuda_attention_args a = args_of(p->q, p->k, p->v, p->bias, p->mask, p->causal, p->scale, p->window, ranges);
    const int64_t os[4] = {p->B, p->H, p->N, p->dv}, ls[3] = {p->B, p->H, p->N}, ps[4] = {p->B, p->H, p->N, p->M};
    const al_dtype dt = p->q->dtype;
    /* the row log-sum-exp in the kernels' compute type: float32 for bfloat16 (cuda_internal.h's compute_type) */
    const al_dtype lse_dt = dt == AL_BFLOAT16 ? AL_FLOAT32 : dt;
    al_tensor *out = al_new_tensor_on(4, os, dt, AL_CUDA), *lse = al_new_tensor_on(3, ls, lse_dt, AL_CUDA);
    al_tensor *map = weights && out && lse ? al_new_tensor_on(4, ps, dt, AL_CUDA) : NULL;
    if (!out || !lse || (weights && !map) || al_cuda_attention_forward(&a, out, lse) < 0 ||
        (map && al_cuda_attention_weights(&a, lse, map) < 0)) {
        al_release(out); al_release(lse); al_release(map); al_release(ranges);
        return NULL;
    }
    const al_tensor *raw_bias = trainable_bias ? p->bias : NULL;
    if (al_grad_needed2(p->q, p->k) || al_grad_needed2(p->v, raw_bias)) {
        const al_tensor *in[4] = {p->q, p->k, p->v, raw_bias};
        al_node *node = al_record(out, NODE_NAME, cuda_softmax_backward, raw_bias ? 4 : 3, in);
        if (node) {
            attention_save_for_recompute(node, out, lse, p);
            al_node_save(node, 4, ranges);
            node->ints[0] = p->causal;
            node->ints[1] = p->window;
            node->n_ints = 2;
            node->scalars[0] = p->scale;
        }
    }
    if (weights) *weights = map;
    al_release(lse);
    al_release(ranges);
    return out;
}
