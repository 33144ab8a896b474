/* generic/reduce_lines.h -- the line kernels of ops/reduce.c, written once for a scalar type `real`.
 *
 * reduce.c includes this file once per floating dtype through float_types.h (Torch7's generic/
 * files did the same), which defines `real` (float or double), `SFX(name)` (name_float or
 * name_double) and the math functions of that type.  The kernels are plain C functions, so compiler
 * errors, a debugger's breakpoints and perf's symbols point at the lines below, not at one macro
 * call site.
 *
 * Every kernel sees its data as contiguous (outer, R, inner) lines, R the reduced size (see
 * `lines` in reduce.c); `inner` is the unit-stride direction. */

/* the sum of one contiguous line of n >= SUM_LANES values: SUM_LANES running sums (reduce.c), x[r]
 * into sum r % SUM_LANES, then the sums added in a fixed pairwise order.  One running sum is a chain
 * of dependent additions, 4 cycles each: a million values took 0.85 ms, the lanes' sums 0.20.  The
 * order depends only on n, never on threads. */
static double SFX(sum_long_line)(const real *x, int64_t n) {
    double part[SUM_LANES] = {0};
    int64_t r = 0;
    for (; r + SUM_LANES <= n; r += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) part[j] += x[r + j];
    for (int j = 0; r < n; r++, j++) part[j] += x[r];
    for (int width = SUM_LANES / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++) part[j] += part[j + width];
    return part[0];
}

/* o[a, i] = scale * sum_r x[a, r, i], accumulated in double for long float32 lines.  Lines of at
 * least LONG_LINE (reduce.c) values are summed in lanes (sum_long_line); shorter ones, the losses of
 * a training step among them, one value after another as they always were: their results keep
 * every bit. */
static void SFX(sum_lines)(const real *x, real *o, lines l, double scale) {
    if (l.inner == 1) {
        #pragma omp parallel for schedule(static) if (l.outer * l.R >= AL_PARALLEL_GRAIN)
        for (int64_t a = 0; a < l.outer; a++) {
            double acc = 0;
            if (l.R >= LONG_LINE) acc = SFX(sum_long_line)(x + a * l.R, l.R);
            else
                for (int64_t r = 0; r < l.R; r++) acc += x[a * l.R + r];
            o[a] = (real)(acc * scale);
        }
    } else {
        #pragma omp parallel for schedule(static) if (l.outer * l.R * l.inner >= AL_PARALLEL_GRAIN)
        for (int64_t a = 0; a < l.outer; a++) {
            real *orow = o + a * l.inner;
            for (int64_t i = 0; i < l.inner; i++) orow[i] = 0;
            for (int64_t r = 0; r < l.R; r++) {
                const real *xrow = x + (a * l.R + r) * l.inner;
                for (int64_t i = 0; i < l.inner; i++) orow[i] += xrow[i];
            }
            for (int64_t i = 0; i < l.inner; i++) orow[i] = (real)(orow[i] * scale);
        }
    }
}

/* The largest (want_max) or smallest value of each line and its index r.  NaN wins: the first
 * NaN of a line is its max and its min, as in PyTorch. */
static void SFX(argbest_lines)(const real *x, real *vo, int64_t *io, lines l, bool want_max) {
    for (int64_t a = 0; a < l.outer; a++)
        for (int64_t i = 0; i < l.inner; i++) {
            const real *line = x + a * l.R * l.inner + i;
            real best = line[0];
            int64_t bi = 0;
            for (int64_t r = 1; r < l.R; r++) {
                real v = line[r * l.inner];
                bool better = want_max ? v > best : v < best;
                if (better || (v != v && best == best)) { best = v; bi = r; }
            }
            vo[a * l.inner + i] = best;
            io[a * l.inner + i] = bi;
        }
}

/* One line x[0], x[inner], ... of length R: the max-subtracted softmax, log-softmax or the
 * log-sum-exp.  A line of -inf gives softmax 0, log-softmax -inf and logsumexp -inf (not NaN). */
static void SFX(softmax_lines)(const real *x, real *o, lines l, softmax_kind kind) {
    #pragma omp parallel for schedule(static) if (l.outer * l.R * l.inner >= AL_PARALLEL_GRAIN)
    for (int64_t a = 0; a < l.outer; a++)
        for (int64_t i = 0; i < l.inner; i++) {
            const real *line = x + a * l.R * l.inner + i;
            real m = -INFINITY;
            for (int64_t r = 0; r < l.R; r++) if (line[r * l.inner] > m) m = line[r * l.inner];
            real ref = isinf(m) ? (real)0 : m;
            double z = 0;
            for (int64_t r = 0; r < l.R; r++) z += EXP(line[r * l.inner] - ref);
            real lse = ref + (real)log(z);
            if (kind == SM_LOGSUMEXP) { o[a * l.inner + i] = lse; continue; }
            real *orow = o + a * l.R * l.inner + i;
            if (kind == SM_SOFTMAX) {
                real inv = z > 0 ? (real)(1.0 / z) : (real)0;
                for (int64_t r = 0; r < l.R; r++) orow[r * l.inner] = EXP(line[r * l.inner] - ref) * inv;
            } else {
                for (int64_t r = 0; r < l.R; r++) orow[r * l.inner] = line[r * l.inner] - lse;
            }
        }
}

/* softmax:     dx = y * (g - sum(g * y))
 * log_softmax: dx = g - exp(y) * sum(g)
 * logsumexp:   dx = g * exp(x - y)  (y, one value per line, broadcast back along it; x only here) */
static void SFX(softmax_backward_lines)(const real *y, const real *gg, const real *xx, real *dx, lines l,
                                        softmax_kind kind) {
    #pragma omp parallel for schedule(static) if (l.outer * l.R * l.inner >= AL_PARALLEL_GRAIN)
    for (int64_t a = 0; a < l.outer; a++)
        for (int64_t i = 0; i < l.inner; i++) {
            int64_t base = a * l.R * l.inner + i;
            if (kind == SM_LOGSUMEXP) {
                real yy = y[a * l.inner + i], g1 = gg[a * l.inner + i];
                for (int64_t r = 0; r < l.R; r++) {
                    real xv = xx[base + r * l.inner];
                    dx[base + r * l.inner] = isinf(yy) ? (real)0 : g1 * EXP(xv - yy);
                }
                continue;
            }
            double acc = 0;
            for (int64_t r = 0; r < l.R; r++)
                acc += kind == SM_SOFTMAX ? (double)gg[base + r * l.inner] * y[base + r * l.inner]
                                          : (double)gg[base + r * l.inner];
            for (int64_t r = 0; r < l.R; r++) {
                int64_t k = base + r * l.inner;
                dx[k] = kind == SM_SOFTMAX ? y[k] * (gg[k] - (real)acc) : gg[k] - EXP(y[k]) * (real)acc;
            }
        }
}

/* y_r = sum_{s <= r} x_s along each line (reverse: sum_{s >= r}), accumulated in double */
static void SFX(cumsum_lines)(const real *x, real *o, lines l, bool reverse) {
    for (int64_t a = 0; a < l.outer; a++)
        for (int64_t i = 0; i < l.inner; i++) {
            double acc = 0;
            for (int64_t k = 0; k < l.R; k++) {
                int64_t r = reverse ? l.R - 1 - k : k, at = (a * l.R + r) * l.inner + i;
                acc += x[at];
                o[at] = (real)acc;
            }
        }
}
