/* generic/loss_rows.h -- the row kernel of ops/loss.c's cross-entropy, written once for a scalar
 * type `real`, included once per float dtype through float_types.h (see reduce_lines.h for why
 * plain functions rather than macros). */

/* Cross-entropy of `rows` rows of C logits against ids: returns the sum over counted rows of
 * lse(row) - row[id] and sets *count to their number; writes the gradient's numerator,
 * softmax(row) - onehot(id), into P (0 on rows whose id is `ignore`). */
static double SFX(cross_entropy_rows)(const real *X, const int64_t *Y, real *P, int64_t rows, int64_t C,
                                      int64_t ignore, int64_t *count) {
    double total = 0;
    int64_t counted = 0;
    for (int64_t r = 0; r < rows; r++) {
        const real *x = X + r * C;
        real *p = P + r * C;
        if (Y[r] == ignore) { for (int64_t c = 0; c < C; c++) p[c] = 0; continue; }
        real m = x[0];
        for (int64_t c = 1; c < C; c++) if (x[c] > m) m = x[c];
        double z = 0;
        for (int64_t c = 0; c < C; c++) { p[c] = EXP(x[c] - m); z += p[c]; }
        total += m + log(z) - x[Y[r]];
        for (int64_t c = 0; c < C; c++) p[c] = (real)(p[c] / z);
        p[Y[r]] -= 1;
        counted++;
    }
    *count = counted;
    return total;
}
