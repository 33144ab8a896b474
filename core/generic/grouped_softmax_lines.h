/* generic/grouped_softmax_lines.h -- the line kernel of attention/grouped_softmax.c, written once
 * for a scalar type `real`; grouped_softmax.c includes it once per float dtype through
 * float_types.h (see reduce_lines.h for why plain functions rather than macros). */

/* Each line of n entries, its entries sorted by label (order, n slots of scratch): the grouped
 * softmax y of x, or (backward, x holding y) its gradient from g. */
static void SFX(grouped_lines)(const real *x, const int64_t *labels, const real *g, real *y, int64_t lines,
                               int64_t n, bool backward, labelled *order) {
    for (int64_t l = 0; l < lines; l++) {
        const real *xl = x + l * n, *gl = backward ? g + l * n : NULL;
        real *yl = y + l * n;
        for (int64_t j = 0; j < n; j++) order[j] = (labelled){labels[l * n + j], j};
        qsort(order, (size_t)n, sizeof *order, by_label_then_pos);
        for (int64_t g0 = 0, g1; g0 < n; g0 = g1) {   /* [g0, g1): one group's run of order */
            for (g1 = g0 + 1; g1 < n && order[g1].label == order[g0].label; g1++) {}
            if (backward) {   /* x holds y here */
                real dot = 0;
                for (int64_t e = g0; e < g1; e++) dot += gl[order[e].pos] * xl[order[e].pos];
                for (int64_t e = g0; e < g1; e++) {
                    const int64_t j = order[e].pos;
                    yl[j] = xl[j] * (gl[j] - dot);
                }
            } else {
                real mx = -INFINITY, z = 0;
                for (int64_t e = g0; e < g1; e++) if (xl[order[e].pos] > mx) mx = xl[order[e].pos];
                if (mx == -INFINITY) mx = 0;
                for (int64_t e = g0; e < g1; e++) {
                    const int64_t j = order[e].pos;
                    yl[j] = (real)exp((double)(xl[j] - mx));
                    z += yl[j];
                }
                const real inv = z > 0 ? (real)1 / z : (real)0;
                for (int64_t e = g0; e < g1; e++) yl[order[e].pos] *= inv;
            }
        }
    }
}
