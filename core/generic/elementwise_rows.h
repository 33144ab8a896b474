/* generic/elementwise_rows.h -- the row kernels of ops/elementwise.c, written once for a scalar
 * type `real`.  elementwise.c includes this file for float and double through float_types.h and
 * once more for int64_t (without REAL_IS_FLOAT: the float-only parts left out); see
 * reduce_lines.h for why plain functions rather than macros.
 *
 * The pattern: an always-inline `*_apply(op, ...)` says what one element is; an always-inline
 * `*_loop(op, ...)` runs it over a row, with separate loops for the contiguous and the
 * against-one-value cases, which vectorise; the `*_row` function switches on op once and calls
 * the loop with op as a constant, so the compiler folds the apply's switch away and each case is a
 * plain loop of its own, as if written out by hand.
 *
 * A row: p[0] the output, p[1..] the inputs, n elements, s[] the strides in elements (al_iter). */

ALWAYS_INLINE real SFX(binary_apply)(binary_op op, real a, real b) {
    switch (op) {
#ifdef REAL_IS_FLOAT
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
#else   /* int64: +, -, * wrap around, in unsigned arithmetic since signed overflow is undefined;
         * no division (`/` computes in float, see binary_compute) */
    case OP_ADD: return (real)((uint64_t)a + (uint64_t)b);
    case OP_SUB: return (real)((uint64_t)a - (uint64_t)b);
    case OP_MUL: return (real)((uint64_t)a * (uint64_t)b);
    case OP_DIV: return 0;
#endif
#ifdef REAL_IS_FLOAT
    case OP_MAX: return a > b || a != a ? a : b;   /* NaN wins, as in PyTorch */
    case OP_MIN: return a < b || a != a ? a : b;
#else
    case OP_MAX: return a > b ? a : b;
    case OP_MIN: return a < b ? a : b;
#endif
    }
    return 0;
}

ALWAYS_INLINE void SFX(binary_loop)(binary_op op, char **p, int64_t n, const int64_t *s) {
    real *o = (real *)p[0];
    const real *x = (const real *)p[1], *y = (const real *)p[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1)
        for (int64_t i = 0; i < n; i++) o[i] = SFX(binary_apply)(op, x[i], y[i]);
    else if (s[0] == 1 && s[1] == 1 && s[2] == 0)
        for (int64_t i = 0; i < n; i++) o[i] = SFX(binary_apply)(op, x[i], y[0]);
    else if (s[0] == 1 && s[1] == 0 && s[2] == 1)
        for (int64_t i = 0; i < n; i++) o[i] = SFX(binary_apply)(op, x[0], y[i]);
    else
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = SFX(binary_apply)(op, x[i * s[1]], y[i * s[2]]);
}

static void SFX(binary_row)(binary_op op, char **p, int64_t n, const int64_t *s) {
    switch (op) {
    case OP_ADD: SFX(binary_loop)(OP_ADD, p, n, s); break;
    case OP_SUB: SFX(binary_loop)(OP_SUB, p, n, s); break;
    case OP_MUL: SFX(binary_loop)(OP_MUL, p, n, s); break;
    case OP_DIV: SFX(binary_loop)(OP_DIV, p, n, s); break;
    case OP_MAX: SFX(binary_loop)(OP_MAX, p, n, s); break;
    case OP_MIN: SFX(binary_loop)(OP_MIN, p, n, s); break;
    }
}

/* ---- comparisons: 1 or 0, written as float32 or float64 ----------------------------------------- */

/* an int, not a bool: int -> float converts in vector registers, bool -> float did not vectorise */
ALWAYS_INLINE int SFX(compare_apply)(al_compare_op op, real a, real b) {
    switch (op) {
    case AL_EQ: return a == b;
    case AL_NE: return a != b;
    case AL_LT: return a < b;
    case AL_LE: return a <= b;
    case AL_GT: return a > b;
    case AL_GE: return a >= b;
    }
    return 0;
}

ALWAYS_INLINE void SFX(compare_loop)(al_compare_op op, bool out_double, char **p, int64_t n, const int64_t *s) {
    char *o = p[0];
    const real *x = (const real *)p[1], *y = (const real *)p[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1)
        for (int64_t i = 0; i < n; i++) store01(o, i, out_double, SFX(compare_apply)(op, x[i], y[i]));
    else if (s[0] == 1 && s[1] == 1 && s[2] == 0)
        for (int64_t i = 0; i < n; i++) store01(o, i, out_double, SFX(compare_apply)(op, x[i], y[0]));
    else
        for (int64_t i = 0; i < n; i++) store01(o, i * s[0], out_double, SFX(compare_apply)(op, x[i * s[1]], y[i * s[2]]));
}

ALWAYS_INLINE void SFX(compare_ops)(al_compare_op op, bool out_double, char **p, int64_t n, const int64_t *s) {
    switch (op) {
    case AL_EQ: SFX(compare_loop)(AL_EQ, out_double, p, n, s); break;
    case AL_NE: SFX(compare_loop)(AL_NE, out_double, p, n, s); break;
    case AL_LT: SFX(compare_loop)(AL_LT, out_double, p, n, s); break;
    case AL_LE: SFX(compare_loop)(AL_LE, out_double, p, n, s); break;
    case AL_GT: SFX(compare_loop)(AL_GT, out_double, p, n, s); break;
    case AL_GE: SFX(compare_loop)(AL_GE, out_double, p, n, s); break;
    }
}

/* out_double is a constant in each call, so each output type gets loops of its own */
static void SFX(compare_row)(al_compare_op op, bool out_double, char **p, int64_t n, const int64_t *s) {
    if (out_double) SFX(compare_ops)(op, true, p, n, s);
    else SFX(compare_ops)(op, false, p, n, s);
}

/* ---- where: out = keep != 0 ? a : b, all of one dtype (keep is cond as 0/1 in that dtype) ------ */

static void SFX(where_row)(char **p, int64_t n, const int64_t *s) {
    real *o = (real *)p[0];
    const real *c = (const real *)p[1], *x = (const real *)p[2], *y = (const real *)p[3];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1)
        for (int64_t i = 0; i < n; i++) o[i] = c[i] != 0 ? x[i] : y[i];
    else
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = c[i * s[1]] != 0 ? x[i * s[2]] : y[i * s[3]];
}

#ifdef REAL_IS_FLOAT
/* ---- unary math and ops with a scalar ------------------------------------------------------------ */

/* gelu, tanh form: 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi) */
ALWAYS_INLINE real SFX(unary_apply)(unary_op op, real a, real s0, real s1) {
    switch (op) {
    case U_NEG: return -a;
    case U_EXP: return FAST_EXP(a);
    case U_LOG: return LOG(a);
    case U_SQRT: return SQRT(a);
    case U_TANH: return FAST_TANH(a);
    case U_SIGMOID: return (real)1 / ((real)1 + FAST_EXP(-a));
    case U_RELU: return a > 0 ? a : (real)0;
    case U_GELU: return (real)0.5 * a * ((real)1 + FAST_TANH((real)GELU_C * (a + (real)0.044715 * a * a * a)));
    case U_ABS: return FABS(a);
    case U_ADD_S: return a + s0;
    case U_MUL_S: return a * s0;
    case U_RSUB_S: return s0 - a;
    case U_RDIV_S: return s0 / a;
    case U_POW_S: return POW(a, s0);
    case U_SQUARE: return a * a;
    case U_CLAMP: return a < s0 ? s0 : (a > s1 ? s1 : a);
    }
    return 0;
}

ALWAYS_INLINE void SFX(unary_loop)(unary_op op, char **p, int64_t n, const int64_t *s, real s0, real s1) {
    real *o = (real *)p[0];
    const real *x = (const real *)p[1];
    if (s[0] == 1 && s[1] == 1) for (int64_t i = 0; i < n; i++) o[i] = SFX(unary_apply)(op, x[i], s0, s1);
    else for (int64_t i = 0; i < n; i++) o[i * s[0]] = SFX(unary_apply)(op, x[i * s[1]], s0, s1);
}

static void SFX(unary_row)(unary_op op, char **p, int64_t n, const int64_t *s, real s0, real s1) {
    switch (op) {
    case U_NEG: SFX(unary_loop)(U_NEG, p, n, s, s0, s1); break;
    case U_EXP: SFX(unary_loop)(U_EXP, p, n, s, s0, s1); break;
    case U_LOG: SFX(unary_loop)(U_LOG, p, n, s, s0, s1); break;
    case U_SQRT: SFX(unary_loop)(U_SQRT, p, n, s, s0, s1); break;
    case U_TANH: SFX(unary_loop)(U_TANH, p, n, s, s0, s1); break;
    case U_SIGMOID: SFX(unary_loop)(U_SIGMOID, p, n, s, s0, s1); break;
    case U_RELU: SFX(unary_loop)(U_RELU, p, n, s, s0, s1); break;
    case U_GELU: SFX(unary_loop)(U_GELU, p, n, s, s0, s1); break;
    case U_ABS: SFX(unary_loop)(U_ABS, p, n, s, s0, s1); break;
    case U_ADD_S: SFX(unary_loop)(U_ADD_S, p, n, s, s0, s1); break;
    case U_MUL_S: SFX(unary_loop)(U_MUL_S, p, n, s, s0, s1); break;
    case U_RSUB_S: SFX(unary_loop)(U_RSUB_S, p, n, s, s0, s1); break;
    case U_RDIV_S: SFX(unary_loop)(U_RDIV_S, p, n, s, s0, s1); break;
    case U_POW_S:   /* x^2 (mse, variances) as a multiplication: exact, and no pow call per element */
        if (s0 == 2) SFX(unary_loop)(U_SQUARE, p, n, s, s0, s1);
        else SFX(unary_loop)(U_POW_S, p, n, s, s0, s1);
        break;
    case U_SQUARE: SFX(unary_loop)(U_SQUARE, p, n, s, s0, s1); break;
    case U_CLAMP: SFX(unary_loop)(U_CLAMP, p, n, s, s0, s1); break;
    }
}

/* ---- the derivative factor d out / d a, from the input a and the output b ------------------------ */

ALWAYS_INLINE real SFX(dfactor_apply)(unary_op op, real a, real b, real s0, real s1) {
    switch (op) {
    case U_SIGMOID: return b * ((real)1 - b);
    case U_TANH: return (real)1 - b * b;
    case U_EXP: return b;
    case U_SQRT: return (real)0.5 / b;
    case U_LOG: return (real)1 / a;
    case U_RELU: return a > 0 ? (real)1 : (real)0;
    case U_ABS: return a > 0 ? (real)1 : (a < 0 ? (real)-1 : (real)0);
    case U_RDIV_S: return -b / a;
    case U_POW_S: return s0 == 0 ? (real)0 : s0 * POW(a, s0 - 1);
    case U_CLAMP: return a >= s0 && a <= s1 ? (real)1 : (real)0;
    case U_GELU: {
        real u = (real)GELU_C * (a + (real)0.044715 * a * a * a), th = FAST_TANH(u);
        return (real)0.5 * ((real)1 + th) + (real)0.5 * a * ((real)1 - th * th) * (real)GELU_C * ((real)1 + (real)0.134145 * a * a);
    }
    default: return 0;   /* neg and the scalar ops have no factor: unary_backward forms theirs directly */
    }
}

ALWAYS_INLINE void SFX(dfactor_loop)(unary_op op, char **p, int64_t n, const int64_t *s, real s0, real s1) {
    real *o = (real *)p[0];
    const real *x = (const real *)p[1], *y = (const real *)p[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1)
        for (int64_t i = 0; i < n; i++) o[i] = SFX(dfactor_apply)(op, x[i], y[i], s0, s1);
    else
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = SFX(dfactor_apply)(op, x[i * s[1]], y[i * s[2]], s0, s1);
}

static void SFX(dfactor_row)(unary_op op, char **p, int64_t n, const int64_t *s, real s0, real s1) {
    switch (op) {
    case U_SIGMOID: SFX(dfactor_loop)(U_SIGMOID, p, n, s, s0, s1); break;
    case U_TANH: SFX(dfactor_loop)(U_TANH, p, n, s, s0, s1); break;
    case U_EXP: SFX(dfactor_loop)(U_EXP, p, n, s, s0, s1); break;
    case U_SQRT: SFX(dfactor_loop)(U_SQRT, p, n, s, s0, s1); break;
    case U_LOG: SFX(dfactor_loop)(U_LOG, p, n, s, s0, s1); break;
    case U_RELU: SFX(dfactor_loop)(U_RELU, p, n, s, s0, s1); break;
    case U_ABS: SFX(dfactor_loop)(U_ABS, p, n, s, s0, s1); break;
    case U_RDIV_S: SFX(dfactor_loop)(U_RDIV_S, p, n, s, s0, s1); break;
    case U_POW_S: SFX(dfactor_loop)(U_POW_S, p, n, s, s0, s1); break;
    case U_CLAMP: SFX(dfactor_loop)(U_CLAMP, p, n, s, s0, s1); break;
    case U_GELU: SFX(dfactor_loop)(U_GELU, p, n, s, s0, s1); break;
    default: break;
    }
}
#endif
