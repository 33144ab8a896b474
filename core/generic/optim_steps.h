/* generic/optim_steps.h -- the per-element update loops of optim.c, written once for a scalar
 * type `real`, included once per float dtype through float_types.h (see reduce_lines.h for why
 * plain functions rather than macros).  SFX(sqrt_rows) is optim.c's hand-vectorised, correctly
 * rounded square root of a row. */

/* d = g + wd p; buf = momentum buf + d; d = nesterov ? d + momentum buf : buf; p -= lr d.
 * PyTorch starts buf as a copy of d on the first step; a zero-filled buf gives the same numbers.
 * buf is NULL without momentum. */
static void SFX(sgd_update)(real *restrict pp, const real *restrict gp, real *restrict bp, int64_t n,
                            double lr, double momentum, double weight_decay, bool nesterov) {
    const real lr_ = (real)lr, mom = (real)momentum, wd = (real)weight_decay;
    if (!bp) {
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) pp[i] -= lr_ * (gp[i] + wd * pp[i]);
    } else {
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) {
            real d = gp[i] + wd * pp[i];
            real b = mom * bp[i] + d;
            bp[i] = b;
            pp[i] -= lr_ * (nesterov ? d + mom * b : b);
        }
    }
}

/* PyTorch's multi-tensor Adam, per element:
 *   g = grad (+ wd p when coupled);  p *= 1 - lr wd (when decoupled, AdamW)
 *   m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g g
 *   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),   bc_k = 1 - b_k^step
 * in three passes over a chunk: update m, v (and p's decay), sqrt(v), update p.  The division by
 * sqrt(bc2) is a multiplication by its inverse (one rounding apart; the divider is the bottleneck). */
static void SFX(adam_update)(real *restrict pp, real *restrict mp, real *restrict vp, const real *restrict gp,
                             int64_t n, double lr, double beta1, double beta2, double eps,
                             double weight_decay, bool decoupled, double bc1, double bc2) {
    const real w = (real)(1 - beta1), b2 = (real)beta2, c2 = (real)(1 - beta2), wd = (real)weight_decay;
    const real decay = (real)(1 - lr * weight_decay), step_size = (real)(lr / bc1);
    const real inv_bc2_sqrt = (real)(1 / sqrt(bc2)), eps_ = (real)eps;
    const bool coupled = !decoupled && weight_decay != 0, decay_p = decoupled && weight_decay != 0;
    const int64_t nchunks = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
    #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
    for (int64_t c = 0; c < nchunks; c++) {
        real den[ADAM_CHUNK];
        const int64_t i0 = c * ADAM_CHUNK;
        const int64_t len = n - i0 < ADAM_CHUNK ? n - i0 : ADAM_CHUNK;
        real *restrict p = pp + i0, *restrict mm = mp + i0, *restrict vv = vp + i0;
        const real *restrict g = gp + i0;
        for (int64_t i = 0; i < len; i++) {
            real gi = coupled ? g[i] + wd * p[i] : g[i];
            if (decay_p) p[i] *= decay;
            real mi = mm[i];
            mm[i] = w < (real)0.5 ? mi + w * (gi - mi) : gi - (gi - mi) * ((real)1 - w);
            vv[i] = vv[i] * b2 + c2 * gi * gi;
        }
        SFX(sqrt_rows)(den, vv, len);
        for (int64_t i = 0; i < len; i++) p[i] -= step_size * mm[i] / (den[i] * inv_bc2_sqrt + eps_);
    }
}
