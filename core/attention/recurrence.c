/* recurrence.c -- the prefix-state recurrence with its reverse pass: one (dv x d) state per query
 * head, written once per key position and read by the queries,
 *     S_t = alpha_t S_{t-1} + w_t k_t^T,   w_t = beta_t (v_t - delta alpha_t S_{t-1} k_t)
 * with delta = 0 (Hebbian / gated linear attention: S_t = alpha_t S_{t-1} + beta_t v_t k_t^T) or
 * delta = 1 (gated delta rule, Miras L2-regression memory: S_t = alpha_t S_{t-1}(I - beta_t k_t k_t^T)
 * + beta_t v_t k_t^T).  Readout y_i = S_i (scale q_i) (causal: query i reads the state after key i,
 * N = M) or y_i = S_M (scale q_i) (not causal: every query reads the final state; M may differ).
 *
 * Composing this from per-step ops would put O(N) nodes on the graph, so it is one op with its own
 * backward.  Memory: the forward keeps the state at the start of every chunk of ~sqrt(M) steps
 * (O(sqrt(M) d dv) per head); the backward recomputes each chunk's states from its checkpoint and
 * runs the reverse recurrence through them (twice the forward's flops in all, never O(M d dv)).
 * Arithmetic is float64 throughout (float32 inputs are widened; the state sums then drift less).
 * On CUDA tensors the same recurrence runs on the device (core/cuda/recurrence.cu: the state's rows
 * split over a block's threads); this file holds the CPU's loops and the op around both.
 *
 * Reverse pass, with G = dL/dS_t accumulated from the readouts after t:
 *     G += dy_t q_t^T (causal), dq_t = S_t^T dy_t,
 *     dw = G k_t,  dk_t = G^T w_t + S_{t-1}^T du,  du = -delta alpha_t beta_t dw,
 *     dv_t = beta_t dw,  dbeta_t = dw . (v_t - delta alpha_t u_t),  u_t = S_{t-1} k_t,
 *     dalpha_t = <G, S_{t-1}> - delta beta_t dw . u_t,
 *     G <- alpha_t G + du k_t^T  (the gradient with respect to S_{t-1}). */
#include "attention_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Everything one call needs, float64 and contiguous: q (B,H,N,d), k (B,Hkv,M,d), v (B,Hkv,M,dv),
 * coef (B,H,M,2) holding [beta, alpha] per step. */
typedef struct {
    int64_t B, H, Hkv, N, M, d, dv, chunk, n_chunks;
    double scale;
    int causal, delta;
    const double *q, *k, *v, *coef;
} recurrence_problem;

static int64_t chunk_length(int64_t M) {
    int64_t c = (int64_t)ceil(sqrt((double)(M > 0 ? M : 1)));
    return c < 1 ? 1 : c;
}

/* One step on state S (dv x d): u = S k, w = beta (v - delta alpha u), S = alpha S + w k^T.
 * Leaves u and w in the caller's buffers for the reverse pass. */
static void recurrence_step(const recurrence_problem *r, double *S, const double *k, const double *v,
                            double beta, double alpha, double *u, double *w) {
    const int64_t d = r->d, dv = r->dv;
    for (int64_t a = 0; a < dv; a++) {
        double s = 0;
        if (r->delta) for (int64_t c = 0; c < d; c++) s += S[a * d + c] * k[c];
        u[a] = s;
        w[a] = beta * (v[a] - r->delta * alpha * s);
    }
    for (int64_t a = 0; a < dv; a++)
        for (int64_t c = 0; c < d; c++) S[a * d + c] = alpha * S[a * d + c] + w[a] * k[c];
}

/* y = S (scale q) */
static void recurrence_read(const recurrence_problem *r, const double *S, const double *q, double *y) {
    for (int64_t a = 0; a < r->dv; a++) {
        double s = 0;
        for (int64_t c = 0; c < r->d; c++) s += S[a * r->d + c] * q[c];
        y[a] = r->scale * s;
    }
}

/* Reverse of one readout y = S (scale q): dq = scale S^T dy, and G (dL/dS) += scale dy q^T */
static void read_backward(const recurrence_problem *r, const double *S, const double *q, const double *dy,
                          double *dq, double *G) {
    for (int64_t c = 0; c < r->d; c++) {
        double s = 0;
        for (int64_t a = 0; a < r->dv; a++) s += S[a * r->d + c] * dy[a];
        dq[c] = r->scale * s;
    }
    for (int64_t a = 0; a < r->dv; a++)
        for (int64_t c = 0; c < r->d; c++) G[a * r->d + c] += r->scale * dy[a] * q[c];
}

/* Pointers of query head (b, h) and its key/value head. */
#define HEAD_Q(r, b, h) ((r)->q + (((b) * (r)->H + (h)) * (r)->N) * (r)->d)
#define HEAD_K(r, b, h) ((r)->k + (((b) * (r)->Hkv + (h) / ((r)->H / (r)->Hkv)) * (r)->M) * (r)->d)
#define HEAD_V(r, b, h) ((r)->v + (((b) * (r)->Hkv + (h) / ((r)->H / (r)->Hkv)) * (r)->M) * (r)->dv)
#define HEAD_COEF(r, b, h) ((r)->coef + (((b) * (r)->H + (h)) * (r)->M) * 2)

/* Forward of one query head: y (N, dv) and the chunk checkpoints (n_chunks, dv, d). */
static void forward_head(const recurrence_problem *r, int64_t b, int64_t h, double *y, double *checkpoints,
                         double *S, double *u, double *w) {
    const double *q = HEAD_Q(r, b, h), *k = HEAD_K(r, b, h), *v = HEAD_V(r, b, h), *cf = HEAD_COEF(r, b, h);
    const int64_t sd = r->dv * r->d;
    memset(S, 0, sizeof(double) * sd);
    for (int64_t t = 0; t < r->M; t++) {
        if (t % r->chunk == 0) memcpy(checkpoints + (t / r->chunk) * sd, S, sizeof(double) * sd);
        recurrence_step(r, S, k + t * r->d, v + t * r->dv, cf[2 * t], cf[2 * t + 1], u, w);
        if (r->causal) recurrence_read(r, S, q + t * r->d, y + t * r->dv);
    }
    if (!r->causal)
        for (int64_t i = 0; i < r->N; i++) recurrence_read(r, S, q + i * r->d, y + i * r->dv);
}

/* Reverse pass of one query head.  dq, dcoef are this head's own; dk, dv are its kv head's and are
 * accumulated into (the heads of one group run on one thread, in order). */
static void backward_head(const recurrence_problem *r, int64_t b, int64_t h, const double *dy,
                          const double *checkpoints, double *dq, double *dk, double *dvv, double *dcoef,
                          double *states, double *us, double *ws, double *G) {
    const double *q = HEAD_Q(r, b, h), *k = HEAD_K(r, b, h), *v = HEAD_V(r, b, h), *cf = HEAD_COEF(r, b, h);
    const int64_t d = r->d, dv = r->dv, sd = dv * d;
    memset(G, 0, sizeof(double) * sd);
    if (!r->causal) {   /* every query read the final state S_M: G = sum_i scale dy_i q_i^T */
        const double *SM = NULL;
        /* S_M: recompute the last chunk forward from its checkpoint */
        int64_t last = r->n_chunks - 1, t0 = last * r->chunk;
        memcpy(states, checkpoints + last * sd, sizeof(double) * sd);
        for (int64_t t = t0; t < r->M; t++)
            recurrence_step(r, states, k + t * d, v + t * dv, cf[2 * t], cf[2 * t + 1], us, ws);
        SM = states;
        for (int64_t i = 0; i < r->N; i++) read_backward(r, SM, q + i * d, dy + i * dv, dq + i * d, G);
    }
    for (int64_t ch = r->n_chunks - 1; ch >= 0; ch--) {
        int64_t t0 = ch * r->chunk, t1 = t0 + r->chunk < r->M ? t0 + r->chunk : r->M;
        /* states[s] = S_{t0 + s - 1}: the state before step t0 + s (s = 0 .. t1 - t0) */
        memcpy(states, checkpoints + ch * sd, sizeof(double) * sd);
        for (int64_t t = t0; t < t1; t++) {
            double *next = states + (t - t0 + 1) * sd;
            memcpy(next, states + (t - t0) * sd, sizeof(double) * sd);
            recurrence_step(r, next, k + t * d, v + t * dv, cf[2 * t], cf[2 * t + 1], us + (t - t0) * dv,
                            ws + (t - t0) * dv);
        }
        for (int64_t t = t1 - 1; t >= t0; t--) {
            const double *Sprev = states + (t - t0) * sd, *Scur = Sprev + sd;
            const double *u = us + (t - t0) * dv, *w = ws + (t - t0) * dv, *kt = k + t * d, *vt = v + t * dv;
            const double beta = cf[2 * t], alpha = cf[2 * t + 1];
            if (r->causal) read_backward(r, Scur, q + t * d, dy + t * dv, dq + t * d, G);
            double dbeta = 0, dalpha = 0;
            for (int64_t c = 0; c < d; c++) {   /* dk from w k^T: G^T w */
                double s = 0;
                for (int64_t a = 0; a < dv; a++) s += G[a * d + c] * w[a];
                dk[t * d + c] += s;
            }
            for (int64_t a = 0; a < dv; a++) {
                double dw = 0;
                for (int64_t c = 0; c < d; c++) { dw += G[a * d + c] * kt[c]; dalpha += G[a * d + c] * Sprev[a * d + c]; }
                dvv[t * dv + a] += beta * dw;
                dbeta += dw * (vt[a] - r->delta * alpha * u[a]);
                dalpha -= r->delta * beta * dw * u[a];
                /* G <- alpha G + du k^T with du_a = -delta alpha beta dw_a; dk += S_{t-1}^T du */
                double du = -r->delta * alpha * beta * dw;
                for (int64_t c = 0; c < d; c++) {
                    if (du != 0) dk[t * d + c] += Sprev[a * d + c] * du;
                    G[a * d + c] = alpha * G[a * d + c] + du * kt[c];
                }
            }
            dcoef[2 * t] = dbeta;
            dcoef[2 * t + 1] = dalpha;
        }
    }
}

/* Float64, contiguous copies of the node's or the call's inputs (no graph). */
static bool widen(const al_tensor *const in[4], al_tensor *out[4]) {
    for (int i = 0; i < 4; i++) {
        al_tensor *w = al_to_dtype_nograd(in[i], AL_FLOAT64);
        out[i] = w ? al_contiguous_nograd(w) : NULL;
        al_release(w);
        if (!out[i]) return false;
    }
    return true;
}

/* The sizes, as the CUDA kernels take them */
static al_recurrence_shape shape_of(const recurrence_problem *r) {
    return (al_recurrence_shape){.B = r->B, .H = r->H, .Hkv = r->Hkv, .N = r->N, .M = r->M, .d = r->d, .dv = r->dv,
                                 .chunk = r->chunk, .n_chunks = r->n_chunks, .scale = r->scale, .causal = r->causal,
                                 .delta = r->delta};
}

static recurrence_problem problem_of(al_tensor *const t[4], double scale, int causal, int delta) {
    recurrence_problem r = {0};
    r.B = t[0]->shape[0]; r.H = t[0]->shape[1]; r.N = t[0]->shape[2]; r.d = t[0]->shape[3];
    r.Hkv = t[1]->shape[1]; r.M = t[1]->shape[2]; r.dv = t[2]->shape[3];
    r.chunk = chunk_length(r.M);
    r.n_chunks = r.M > 0 ? (r.M + r.chunk - 1) / r.chunk : 1;
    r.scale = scale; r.causal = causal; r.delta = delta;
    r.q = al_ptr(t[0]); r.k = al_ptr(t[1]); r.v = al_ptr(t[2]); r.coef = al_ptr(t[3]);
    return r;
}

static void recurrence_backward(al_node *node, const al_tensor *grad_out) {
    al_tensor *in[4] = {0}, *g64 = al_to_dtype_nograd(grad_out, AL_FLOAT64);
    al_tensor *gy = g64 ? al_contiguous_nograd(g64) : NULL;
    al_tensor *grads[4] = {0};
    if (!gy || !widen((const al_tensor *const *)node->inputs, in)) goto done;
    recurrence_problem r = problem_of(in, node->scalars[0], (int)node->ints[0], (int)node->ints[1]);
    const al_device dev = in[0]->storage->device;
    for (int i = 0; i < 4; i++) {
        grads[i] = al_full_on(in[i]->ndim, in[i]->shape, 0, AL_FLOAT64, dev);
        if (!grads[i]) goto done;
    }
    if (dev == AL_CUDA) {
        const al_recurrence_shape shape = shape_of(&r);
        if (al_cuda_state_recurrence_backward(&shape, in[0], in[1], in[2], in[3], node->saved[0], gy, grads[0], grads[1],
                                              grads[2], grads[3]) < 0)
            goto done;
        for (int i = 0; i < 4; i++) al_accumulate_input(node, i, grads[i]);
        goto done;
    }
    const double *dy = al_ptr(gy), *checkpoints = al_ptr(node->saved[0]);
    double *dq = al_ptr(grads[0]), *dk = al_ptr(grads[1]), *dvv = al_ptr(grads[2]), *dcoef = al_ptr(grads[3]);
    const int64_t sd = r.dv * r.d, group = r.H / r.Hkv;
    bool failed = false;
    #pragma omp parallel for schedule(static) if (r.B * r.Hkv > 1 && r.M * sd * group > 4096)
    for (int64_t bk = 0; bk < r.B * r.Hkv; bk++) {
        double *work = malloc(sizeof(double) * ((size_t)(r.chunk + 2) * sd + 2 * (size_t)r.chunk * r.dv + 8));
        if (!work) { failed = true; continue; }
        double *G = work, *states = G + sd, *us = states + (r.chunk + 1) * sd, *ws = us + r.chunk * r.dv;
        int64_t b = bk / r.Hkv, hk = bk % r.Hkv;
        for (int64_t h = hk * group; h < (hk + 1) * group; h++)
            backward_head(&r, b, h, dy + (b * r.H + h) * r.N * r.dv, checkpoints + (b * r.H + h) * r.n_chunks * sd,
                          dq + (b * r.H + h) * r.N * r.d, dk + (b * r.Hkv + hk) * r.M * r.d,
                          dvv + (b * r.Hkv + hk) * r.M * r.dv, dcoef + (b * r.H + h) * r.M * 2, states, us, ws, G);
        free(work);
    }
    if (failed) { al_error("attention: out of memory in the recurrence's backward"); goto done; }
    for (int i = 0; i < 4; i++) al_accumulate_input(node, i, grads[i]);
done:
    for (int i = 0; i < 4; i++) { al_release(in[i]); al_release(grads[i]); }
    al_release(g64); al_release(gy);
}

/* Every head's forward on the CPU's threads: y (B, H, N, dv), checkpoints (B, H, n_chunks, dv, d) */
static bool forward_on_cpu(const recurrence_problem *r, double *y, double *checkpoints) {
    const int64_t sd = r->dv * r->d;
    bool failed = false;
    #pragma omp parallel for schedule(static) if (r->B * r->H > 1 && r->M * sd > 4096)
    for (int64_t bh = 0; bh < r->B * r->H; bh++) {
        double *work = malloc(sizeof(double) * ((size_t)sd + 2 * (size_t)r->dv + 2));
        if (!work) { failed = true; continue; }
        forward_head(r, bh / r->H, bh % r->H, y + bh * r->N * r->dv, checkpoints + bh * r->n_chunks * sd, work,
                     work + sd, work + sd + r->dv);
        free(work);
    }
    if (failed) al_error("attention: out of memory in the recurrence");
    return !failed;
}

al_tensor *attention_state_recurrence(const al_tensor *q, const al_tensor *k, const al_tensor *v,
                                      const al_tensor *coef, double scale, int causal, bool delta) {
    const al_tensor *inputs[4] = {q, k, v, coef};
    al_tensor *in[4] = {0}, *out = NULL, *checkpoints = NULL;
    if (!widen(inputs, in)) goto done;
    recurrence_problem r = problem_of(in, scale, causal, delta ? 1 : 0);
    int64_t yshape[4] = {r.B, r.H, r.N, r.dv}, cshape[5] = {r.B, r.H, r.n_chunks, r.dv, r.d};
    const al_device dev = q->storage->device;
    al_tensor *y = al_new_tensor_on(4, yshape, AL_FLOAT64, dev);
    checkpoints = al_full_on(5, cshape, 0, AL_FLOAT64, dev);
    if (!y || !checkpoints) { al_release(y); goto done; }
    const al_recurrence_shape shape = shape_of(&r);
    const bool ran = dev == AL_CUDA ? al_cuda_state_recurrence_forward(&shape, in[0], in[1], in[2], in[3], y, checkpoints) == 0
                                    : forward_on_cpu(&r, al_ptr(y), al_ptr(checkpoints));
    if (!ran) { al_release(y); goto done; }
    out = q->dtype == AL_FLOAT64 ? y : al_to_dtype_nograd(y, q->dtype);
    if (out != y) al_release(y);
    if (out && (al_grad_needed2(q, k) || al_grad_needed2(v, coef))) {
        al_node *node = al_record(out, delta ? "delta_rule" : "state_recurrence", recurrence_backward, 4, inputs);
        if (node) {
            al_node_save(node, 0, checkpoints);
            node->scalars[0] = scale;
            node->ints[0] = causal;
            node->ints[1] = delta ? 1 : 0;
        }
    }
done:
    for (int i = 0; i < 4; i++) al_release(in[i]);
    al_release(checkpoints);
    return out;
}
