/* agent.c -- the "agent" variant: Agent attention (Han et al. 2023, arXiv 2312.08874), as
 * LeapLabTHU/Agent-Attention agent_deit.py's AgentAttention without its extras.  n agent tokens A
 * (opts.agents, (B, H, n, d) or broadcastable to it, may require grad; or opts.agent_count agents
 * average-pooled from q over the sequence, the 1-D form of the reference's adaptive pooling of the
 * query grid) first gather from the keys, then the queries read from the agents:
 *   V_A = softmax(scale A K^T) V   (n x dv),     O = softmax(scale Q A^T) V_A   (N x dv)
 * a generalised linear attention of rank <= n: O(N n (d + dv)) time and O(N n) memory per head,
 * composed of differentiable ops.  Left out: the agent biases B1, B2 and the depthwise-conv term
 * DWC(V) (image-grid specific).  No causal form (pooled agents mix future tokens; the paper has
 * none), no bias or mask.  Its map (only when asked, O(N n M)): softmax(scale Q A^T) softmax(scale A K^T).
 * On CUDA tensors the same ops run on the GPU (the pooling matrix is made on the host and moved). */
#include "attention_internal.h"

/* (n, N) adaptive average pooling matrix: row a averages positions [floor(a N / n), ceil((a + 1) N / n)) */
static al_tensor *pooling_matrix(int64_t n, int64_t N, al_dtype dt) {
    al_tensor *m = al_full(2, (int64_t[]){n, N}, 0, dt);
    for (int64_t a = 0; m && a < n; a++) {
        int64_t lo = a * N / n, hi = ((a + 1) * N + n - 1) / n;
        for (int64_t i = lo; i < hi; i++) {
            double w = 1.0 / (double)(hi - lo);
            if (dt == AL_FLOAT32) ((float *)al_ptr(m))[a * N + i] = (float)w;
            else ((double *)al_ptr(m))[a * N + i] = w;
        }
    }
    return m;
}

typedef struct { const al_tensor *agents; int64_t agent_count; } agent_options;
static const attention_option options[] = {
    {OPTION_FIELD(agent_options, agents), .kind = OPTION_TENSOR,
     .summary = "the agent tokens (B, H, n, d), broadcastable; or else agent_count"},
    {OPTION_FIELD(agent_options, agent_count), .kind = OPTION_INTEGER, .least = 1,
     .summary = "n agents average-pooled from q over the sequence (at most N), when agents is not given"},
    {0},
};

static al_tensor *agent_tokens(const attention_problem *p) {
    const agent_options *o = p->options;
    if (o->agents && o->agent_count) {
        al_error("attention: variant 'agent' takes opts.agents or opts.agent_count, not both");
        return NULL;
    }
    if (o->agents) {
        const al_tensor *a = o->agents;
        if (a->ndim != 4 || a->shape[3] != p->d || a->shape[2] < 1) {
            al_error("attention: variant 'agent' needs agents of shape (B, H, n, d) with d = %lld, n >= 1 (got %s)",
                     (long long)p->d, TSHAPE(a));
            return NULL;
        }
        int64_t shape[4] = {p->B, p->H, a->shape[2], p->d};
        return attention_broadcast_option("agent", "agents", a, 4, shape, "(B, H, n, d)", p->q->dtype);
    }
    if (o->agent_count < 1 || o->agent_count > p->N) {
        al_error("attention: variant 'agent' needs opts.agents (B, H, n, d) or opts.agent_count in 1..N = %lld "
                 "(got agent_count %lld)", (long long)p->N, (long long)o->agent_count);
        return NULL;
    }
    /* built on the host, moved beside q on the GPU (an (n, N) constant per call) */
    al_tensor *pool = attention_on_device_of(p->q, pooling_matrix(o->agent_count, p->N, p->q->dtype));
    al_tensor *a = pool ? al_matmul(pool, p->q) : NULL;
    al_release(pool);
    return a;
}

static al_tensor *agent_forward(attention_problem *p, al_tensor **weights) {
    if (p->causal) {
        al_error("attention: variant 'agent' has no causal form (agents pooled from q mix future tokens)");
        return NULL;
    }
    op_scope s = {0};
    al_tensor *A = OP(&s, agent_tokens(p));
    al_tensor *k = OP(&s, attention_repeat_heads(p->k, p->H)), *v = OP(&s, attention_repeat_heads(p->v, p->H));
    al_tensor *gather = OP(&s, al_softmax(OP(&s, al_mul_scalar(OP(&s, al_matmul(A, OP(&s, al_transpose(k, 2, 3)))), p->scale)), 3));
    al_tensor *VA = OP(&s, al_matmul(gather, v));                                      /* (B,H,n,dv) */
    al_tensor *broadcast = OP(&s, al_softmax(OP(&s, al_mul_scalar(OP(&s, al_matmul(p->q, OP(&s, al_transpose(A, 2, 3)))), p->scale)), 3));
    al_tensor *out = OP(&s, al_matmul(broadcast, VA));
    al_tensor *w = NULL;
    if (out && weights) {
        int prev = al_set_grad_enabled(0);
        w = OP(&s, al_matmul(broadcast, gather));
        al_set_grad_enabled(prev);
    }
    return scope_return(&s, out, weights, w);
}

const attention_variant attention_agent = {
    .name = "agent", .forward = agent_forward, .cuda_forward = agent_forward, .flags = ATTENTION_NO_LOGITS,
    .options = options, .options_size = sizeof(agent_options),
    .summary = "agent attention: n agent tokens (opts.agents, or opts.agent_count pooled from q) gather from k/v, "
               "queries read the agents"};
