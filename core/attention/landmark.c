/* landmark.c -- the "landmark" variant: landmark attention's grouped softmax (Mohtashami & Jaggi
 * 2023, arXiv 2305.16300; epfml/landmark-attention landmark_grouped_softmax), the training form.
 * The keys hold landmark tokens (opts.landmarks (M) or (B, M), nonzero at a landmark); a landmark
 * closes its block: block(j) = the number of landmarks before j.  For query i (position t = i, or
 * i + M - N bottom-right; causal only) with current block c = block(t), over keys j <= t:
 *   joint softmax p over G_cur = {regular j in block c} and the landmarks L_g of blocks g < c (the
 *   current block's landmark is excluded, even when i is that landmark);
 *   within-block softmax q over the regular keys of each earlier block g;
 *   w_ij = p_j on G_cur,  p_{L_g} q_j for regular j in block g < c,  0 on landmarks;  O = w v.
 * Both softmaxes are one grouped softmax (grouped_softmax.c) with label 0 for the joint set and
 * g + 1 for block g; the product by p_{L_g} is a gather.  Composed of the core's ops, so the
 * backward comes with them.  O(N M) time and memory, as the reference's training path (block
 * retrieval at inference is not here).  With each landmark's logit equal to the log-sum-exp of its
 * block's logits, w is exactly causal softmax over the regular keys (tested).  On CUDA tensors the
 * layout is built on the host (from a copy of the landmarks) and moved, and the ops run on the GPU. */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>

/* is key j of batch b a landmark (landmarks (M) or (B, M), any dtype) */
static bool is_landmark(const al_tensor *lm, int64_t b, int64_t j) {
    const int64_t off = lm->offset + (lm->ndim == 2 ? b * lm->strides[0] : 0) + j * lm->strides[lm->ndim - 1];
    switch (lm->dtype) {
    case AL_FLOAT32: return ((const float *)lm->storage->data)[off] != 0;
    case AL_FLOAT64: return ((const double *)lm->storage->data)[off] != 0;
    default: return ((const int64_t *)lm->storage->data)[off] != 0;
    }
}

/* The constant structure of the grouped softmax, per (b, i, j) (every head alike):
 *   labels (B, 1, N, M): 0 joint set, g + 1 for the regular keys of earlier block g
 *   allowed (B, 1, N, M): 0 on the current block's landmark and above the diagonal
 *   earlier (B, 1, N, M), current (B, 1, N, M): 1 on regular keys of earlier / the current block
 *   closer (B, H, N, M) int64: the landmark closing block(j) (j itself where there is none) */
typedef struct { al_tensor *labels, *allowed, *earlier, *current, *closer; } landmark_layout;

static void layout_release(landmark_layout *l) {
    al_release(l->labels); al_release(l->allowed); al_release(l->earlier); al_release(l->current); al_release(l->closer);
}

static bool landmark_layout_build(const attention_problem *p, const al_tensor *lm, landmark_layout *l) {
    const int64_t B = p->B, H = p->H, N = p->N, M = p->M;
    int64_t s1[4] = {B, 1, N, M}, sh[4] = {B, H, N, M};
    const al_dtype dt = p->q->dtype;
    l->labels = al_new_tensor(4, s1, AL_INT64);
    l->allowed = al_new_tensor(4, s1, AL_FLOAT64);
    l->earlier = al_new_tensor(4, s1, AL_FLOAT64);
    l->current = al_new_tensor(4, s1, AL_FLOAT64);
    l->closer = al_new_tensor(4, sh, AL_INT64);
    int64_t *block = malloc(sizeof(int64_t) * (size_t)(M + 1)), *closing = malloc(sizeof(int64_t) * (size_t)(M + 1));
    bool ok = l->labels && l->allowed && l->earlier && l->current && l->closer && block && closing;
    for (int64_t b = 0; ok && b < B; b++) {
        int64_t seen = 0;
        for (int64_t j = 0; j < M; j++) {        /* block(j); closing[g]: the landmark ending block g */
            block[j] = seen;
            closing[j] = -1;
            if (is_landmark(lm, b, j)) closing[seen++] = j;
        }
        for (int64_t i = 0; i < N; i++) {
            const int64_t t = i + (p->causal == 2 ? M - N : 0);
            const int64_t c = t < 0 ? 0 : (t < M ? block[t] : seen);
            for (int64_t j = 0; j < M; j++) {
                const int64_t e = (b * N + i) * M + j;
                const bool lmk = is_landmark(lm, b, j), prev = block[j] < c;
                ((int64_t *)al_ptr(l->labels))[e] = lmk || !prev ? 0 : block[j] + 1;
                ((double *)al_ptr(l->allowed))[e] = j <= t && !(lmk && !prev);
                ((double *)al_ptr(l->earlier))[e] = !lmk && prev;
                ((double *)al_ptr(l->current))[e] = !lmk && !prev;
                const int64_t closer = !lmk && prev ? closing[block[j]] : j;
                for (int64_t h = 0; h < H; h++) ((int64_t *)al_ptr(l->closer))[((b * H + h) * N + i) * M + j] = closer;
            }
        }
    }
    free(block); free(closing);
    if (!ok) { al_error("attention: out of memory for the landmark layout (%s)", al_shape_str(4, sh)); return false; }
    /* the 0/1 tensors in q's dtype; all of them beside q (built on the host, moved to the GPU) */
    al_tensor **flags[3] = {&l->allowed, &l->earlier, &l->current};
    for (int f = 0; f < 3; f++) {
        al_tensor *c = al_to_dtype_nograd(*flags[f], dt);
        al_release(*flags[f]);
        *flags[f] = c;
        if (!c) return false;
    }
    al_tensor **all[5] = {&l->labels, &l->allowed, &l->earlier, &l->current, &l->closer};
    for (int t = 0; t < 5; t++)
        if (!(*all[t] = attention_on_device_of(p->q, *all[t]))) return false;
    return true;
}

typedef struct { const al_tensor *landmarks; } landmark_options;
static const attention_option options[] = {
    {OPTION_FIELD(landmark_options, landmarks), .kind = OPTION_TENSOR,
     .summary = "(M) or (B, M), nonzero where key j is a landmark token (the one that closes its block)"},
    {0},
};

static al_tensor *landmark_forward(attention_problem *p, al_tensor **weights) {
    const al_tensor *lm = ((const landmark_options *)p->options)->landmarks;
    if (!lm || !(lm->ndim == 1 || (lm->ndim == 2 && lm->shape[0] == p->B)) || lm->shape[lm->ndim - 1] != p->M) {
        al_error("attention: variant 'landmark' needs landmarks of shape (M) or (B, M) = (%lld, %lld), nonzero at the "
                 "landmark tokens (got %s)", (long long)p->B, (long long)p->M, lm ? TSHAPE(lm) : "nil");
        return NULL;
    }
    if (!p->causal) {
        al_error("attention: variant 'landmark' is causal (blocks close with their landmark): pass causal = true");
        return NULL;
    }
    landmark_layout l = {0};
    al_tensor *k = NULL, *v = NULL, *kt = NULL, *qk = NULL, *S = NULL, *Sb = NULL, *Sl = NULL, *Sm = NULL;
    al_tensor *P = NULL, *G = NULL, *eg = NULL, *mult = NULL, *w = NULL, *out = NULL, *ninf = NULL;
    /* the layout is read on the host: a copy of landmarks on the GPU */
    al_tensor *lm_host = al_to_cpu_nograd(lm);
    if (!lm_host || !landmark_layout_build(p, lm_host, &l)) goto done;
    k = attention_repeat_heads(p->k, p->H);
    v = k ? attention_repeat_heads(p->v, p->H) : NULL;
    kt = v ? al_transpose(k, 2, 3) : NULL;
    qk = kt ? al_matmul(p->q, kt) : NULL;
    S = qk ? al_mul_scalar(qk, p->scale) : NULL;
    Sb = S && p->bias ? al_add(S, p->bias) : (S ? al_retain(S) : NULL);
    ninf = al_full_on(0, NULL, -INFINITY, p->q->dtype, p->q->storage->device);
    Sl = Sb && ninf ? al_where(l.allowed, Sb, ninf) : NULL;        /* the current landmark out */
    Sm = Sl ? attention_mask_logits(p, Sl) : NULL;
    P = Sm ? al_grouped_softmax(Sm, l.labels, 3) : NULL;
    G = P ? al_gather(P, 3, l.closer) : NULL;                       /* p of the block's landmark */
    eg = G ? al_mul(G, l.earlier) : NULL;
    mult = eg ? al_add(eg, l.current) : NULL;
    w = mult ? al_mul(P, mult) : NULL;
    out = w ? al_matmul(w, v) : NULL;
    if (out && weights) *weights = al_detach(w);
done:
    layout_release(&l);
    al_release(lm_host);
    al_release(k); al_release(v); al_release(kt); al_release(qk); al_release(S); al_release(Sb); al_release(Sl);
    al_release(Sm); al_release(P); al_release(G); al_release(eg); al_release(mult); al_release(w); al_release(ninf);
    return out;
}

const attention_variant attention_landmark = {
    .name = "landmark", .forward = landmark_forward, .cuda_forward = landmark_forward, .options = options,
    .options_size = sizeof(landmark_options),
    .summary = "landmark attention: grouped softmax over the current block and earlier blocks' landmarks, then "
               "within blocks"};
