/* rng.c -- the one random number generator of the core: counter-based.
 *
 * The whole state is two integers, (seed, counter).  Draw number i of the stream is a pure
 * function of (seed, i): the 64-bit index is spread by a Weyl step (i * golden ratio), xored with a
 * key derived from the seed, and mixed by Pelle Evensen's NASAM bijection (built to pass PractRand
 * even on plain counter input; dieharder -a passes on one stream and on 16 seeds interleaved).
 * Each call takes the draws counter, counter + 1, ... and advances counter past them, so:
 *   - a result depends only on the state and the request, never on the thread count or on how a
 *     loop was split, so large fills run in parallel and stay reproducible;
 *   - checkpoint/resume is exact: save {seed, counter}, restore it, and the next draw is the same.
 *
 * Normals use Box-Muller and keep both outputs (r cos t and r sin t), one pair per 64-bit draw for
 * float32 (24-bit radius uniform, 24-bit angle) and one pair per two draws for float64 (53 bits
 * each).  The radius uniform is (k + 1) / 2^bits, in (0, 1], so log never sees 0.  The angle is
 * reduced to an octant in integer arithmetic (exactly), and log, sin and cos are short polynomials
 * (Cephes for float, fdlibm for double) written as plain C so that the compiler vectorises the
 * block loop (libm calls are scalar and cost many times more).  Every pair is computed by the same
 * fixed-size block loop, never by a scalar remainder loop, so a value is bit-identical whichever
 * block, call size or thread it falls in.  (Values may differ between builds, e.g. with and
 * without FMA, but never within one.) */
#include "internal.h"
#include <math.h>
#include <string.h>

static uint64_t rng_seed, rng_counter; /* program start: seed 0, counter 0 */

#define GOLDEN 0x9E3779B97F4A7C15ull

/* splitmix64's finaliser: seeds 0, 1, 2, ... get unrelated keys (a bijection, so no two collide) */
static uint64_t seed_key(uint64_t seed) {
    uint64_t z = seed + GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotr64(uint64_t x, int r) { return (x >> r) | (x << (64 - r)); }

static inline uint64_t draw(uint64_t key, uint64_t index) {
    uint64_t x = (index * GOLDEN) ^ key;
    x ^= rotr64(x, 25) ^ rotr64(x, 47);
    x *= 0x9E6C63D0676A9A99ull;
    x ^= (x >> 23) ^ (x >> 51);
    x *= 0x9E6D62D06F6A9A9Bull;
    x ^= (x >> 23) ^ (x >> 51);
    return x;
}

/* Takes n draws from the stream: returns the index of the first and advances the counter. */
static uint64_t take_draws(uint64_t n) {
    uint64_t first = rng_counter;
    rng_counter += n;
    return first;
}

void al_seed(uint64_t seed) { rng_seed = seed; rng_counter = 0; }

/* What a device kernel needs to make al_rand's numbers (core/cuda/nn.cu's dropout mask): the key of
 * the current seed, and n draws taken from the stream as al_rand would take them. */
void al_rng_take(uint64_t n, uint64_t *key, uint64_t *first) {
    *key = seed_key(rng_seed);
    *first = take_draws(n);
}

void al_rng_get_state(uint64_t *seed, uint64_t *counter) {
    if (seed) *seed = rng_seed;
    if (counter) *counter = rng_counter;
}

void al_rng_set_state(uint64_t seed, uint64_t counter) { rng_seed = seed; rng_counter = counter; }

/* ---- normals ------------------------------------------------------------------------------ */

enum { BLOCK = 64 }; /* pairs per block: a multiple of every vector width */

/* Cephes logf for x in (0, 1] (normal numbers only, which is all we pass). */
static inline float log_f32(float x) {
    int32_t i;
    memcpy(&i, &x, 4);
    int32_t e = (i >> 23) - 126;                 /* x = m 2^e with m in [0.5, 1) */
    i = (i & 0x007fffff) | 0x3f000000;
    float m;
    memcpy(&m, &i, 4);
    int32_t lo = m < 0.70710678f;                /* to m in [sqrt(1/2), sqrt(2)) */
    e -= lo;
    float f = lo ? m + m - 1.0f : m - 1.0f;
    float z = f * f;
    float p = 7.0376836292E-2f;
    p = p * f - 1.1514610310E-1f;
    p = p * f + 1.1676998740E-1f;
    p = p * f - 1.2420140846E-1f;
    p = p * f + 1.4249322787E-1f;
    p = p * f - 1.6668057665E-1f;
    p = p * f + 2.0000714765E-1f;
    p = p * f - 2.4999993993E-1f;
    p = p * f + 3.3333331174E-1f;
    float fe = (float)e;
    float y = f * z * p + fe * -2.12194440E-4f - 0.5f * z;
    return f + y + fe * 0.693359375f;
}

/* sqrt without libm, for 0 <= x <= 75: libm's sqrt may set errno, and that possibility alone
 * keeps GCC from vectorising a loop that calls it (unless built with -fno-math-errno).  Newton
 * steps on 1/sqrt from the bit-trick guess (3.4e-2 -> 1.8e-3 -> 4.6e-6 -> 3e-11), then one
 * Heron step on the root; x = 0 gives 0. */
static inline float sqrt_f32(float x) {
    int32_t i;
    memcpy(&i, &x, 4);
    i = 0x5f375a86 - (i >> 1);
    float y, h = 0.5f * x;
    memcpy(&y, &i, 4);
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    float r = x * y;
    return r + 0.5f * y * (x - r * r);
}

static inline double sqrt_f64(double x) {
    int64_t i;
    memcpy(&i, &x, 8);
    i = 0x5fe6eb50c7b537a9ll - (i >> 1);
    double y, h = 0.5 * x;
    memcpy(&y, &i, 8);
    y = y * (1.5 - h * y * y);
    y = y * (1.5 - h * y * y);
    y = y * (1.5 - h * y * y);
    double r = x * y;
    return r + 0.5 * y * (x - r * r);
}

/* A pair of normals per draw: c[k], s[k] from draw first + k. */
static void normal_block_f32(uint64_t key, uint64_t first, float *restrict c, float *restrict s) {
    for (int k = 0; k < BLOCK; k++) {
        uint64_t x = draw(key, first + (uint64_t)k);
        int32_t a = (int32_t)(x >> 40);                      /* radius: 24 bits */
        int32_t j = (int32_t)(x & 0xFFFFFF) + (1 << 21);     /* angle: 24 bits of a turn */
        float u = (float)(a + 1) * 0x1p-24f;                  /* (0, 1] */
        float l = -2.0f * log_f32(u);
        float r = sqrt_f32(l > 0.0f ? l : 0.0f);
        int32_t q = (j >> 22) & 3;                            /* quadrant */
        float t = (float)((j & 0x3FFFFF) - (1 << 21)) * (float)(M_PI_2 / 4194304.0); /* |t| <= pi/4 */
        float z = t * t;
        float sn = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * t + t;
        float cs = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z
                   - 0.5f * z + 1.0f;
        /* (cos, sin) of q*pi/2 + t */
        float cq = (q & 1) ? sn : cs, sq = (q & 1) ? cs : sn;
        c[k] = (q == 1 || q == 2) ? -r * cq : r * cq;
        s[k] = (q >= 2) ? -r * sq : r * sq;
    }
}

/* fdlibm's coefficients: log (Lg1..Lg7, ln 2 split in two), __kernel_sin and __kernel_cos */
static const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                    Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                    Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                    Lg7 = 1.479819860511658591e-01, ln2_hi = 6.93147180369123816490e-01,
                    ln2_lo = 1.90821492927058770002e-10;
static const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
                    S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
                    S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
static const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
                    C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
                    C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;

/* fdlibm log for x in (0, 1]. */
static inline double log_f64(double x) {
    int64_t i;
    memcpy(&i, &x, 8);
    int64_t e = (i >> 52) - 1022;                /* x = m 2^e with m in [0.5, 1) */
    i = (i & 0x000FFFFFFFFFFFFFll) | 0x3FE0000000000000ll;
    double m;
    memcpy(&m, &i, 8);
    int64_t lo = m < 0.70710678118654752;
    e -= lo;
    double f = lo ? m + m - 1.0 : m - 1.0;
    double s = f / (2.0 + f), z = s * s, w = z * z;
    double R = w * (Lg2 + w * (Lg4 + w * Lg6)) + z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    double hfsq = 0.5 * f * f, k = (double)e;
    return k * ln2_hi - ((hfsq - (s * (hfsq + R) + k * ln2_lo)) - f);
}

/* A pair of normals per two draws: c[k], s[k] from draws first + 2k and first + 2k + 1. */
static void normal_block_f64(uint64_t key, uint64_t first, double *restrict c, double *restrict s) {
    for (int k = 0; k < BLOCK; k++) {
        uint64_t xa = draw(key, first + 2 * (uint64_t)k), xb = draw(key, first + 2 * (uint64_t)k + 1);
        int64_t a = (int64_t)(xa >> 11);                            /* radius: 53 bits */
        int64_t j = (int64_t)(xb >> 11) + ((int64_t)1 << 50);        /* angle: 53 bits of a turn */
        double u = (double)(a + 1) * 0x1p-53;
        double l = -2.0 * log_f64(u);
        double r = sqrt_f64(l > 0.0 ? l : 0.0);
        int64_t q = (j >> 51) & 3;
        double t = (double)((j & (((int64_t)1 << 51) - 1)) - ((int64_t)1 << 50)) * (M_PI_2 * 0x1p-51);
        double z = t * t;
        double sn = t + z * t * (S1 + z * (S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)))));
        double rc = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
        double hz = 0.5 * z, w = 1.0 - hz;
        double cs = w + (((1.0 - w) - hz) + z * rc);
        double cq = (q & 1) ? sn : cs, sq = (q & 1) ? cs : sn;
        c[k] = (q == 1 || q == 2) ? -r * cq : r * cq;
        s[k] = (q >= 2) ? -r * sq : r * sq;
    }
}

/* o[0..len) = c[0], s[0], c[1], s[1], ...: a block's cos and sin halves in output order (the full
 * block in one plain loop, the last, partial one element by element).  A macro, so that the same
 * lines serve the float and the double outputs. */
#define INTERLEAVE_PAIRS(o, len, c, s) do {                                                       \
        if ((len) == 2 * BLOCK)                                                                  \
            for (int k = 0; k < BLOCK; k++) { (o)[2 * k] = (c)[k]; (o)[2 * k + 1] = (s)[k]; }    \
        else                                                                                     \
            for (int64_t i = 0; i < (len); i++) (o)[i] = (i & 1) ? (s)[i / 2] : (c)[i / 2];     \
    } while (0)

/* Normal number i of this fill is the cos (i even) or sin (i odd) half of pair i/2. */
void al_rng_normal_fill(float *f32, double *f64, int64_t n) {
    if (n <= 0 || (!f32 && !f64)) return;
    const uint64_t key = seed_key(rng_seed);
    const int64_t pairs = (n + 1) / 2, nblocks = (pairs + BLOCK - 1) / BLOCK;
    const uint64_t per_pair = f32 ? 1 : 2;
    const uint64_t first = take_draws((uint64_t)pairs * per_pair);
    #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t i0 = b * 2 * BLOCK;                  /* first output of this block */
        const int64_t len = n - i0 < 2 * BLOCK ? n - i0 : 2 * BLOCK;
        const uint64_t d0 = first + (uint64_t)(b * BLOCK) * per_pair;
        if (f32) {
            float c[BLOCK], s[BLOCK];
            normal_block_f32(key, d0, c, s);
            INTERLEAVE_PAIRS(f32 + i0, len, c, s);
        } else {
            double c[BLOCK], s[BLOCK];
            normal_block_f64(key, d0, c, s);
            INTERLEAVE_PAIRS(f64 + i0, len, c, s);
        }
    }
}
#undef INTERLEAVE_PAIRS

/* ---- tensors ------------------------------------------------------------------------------ */

static al_tensor *new_random(const char *fn, int ndim, const int64_t *shape, al_dtype dtype,
                             bool float_only) {
    if (!al_check_shape(fn, ndim, shape)) return NULL;
    if (float_only && !al_is_float(dtype)) {
        al_error("%s: dtype %s is not a floating-point type (use float32 or float64)", fn,
                 al_dtype_name(dtype));
        return NULL;
    }
    return al_new_tensor(ndim, shape, dtype);
}

al_tensor *al_randn(int ndim, const int64_t *shape, al_dtype dtype) {
    al_tensor *t = new_random("randn", ndim, shape, dtype, true);
    if (!t) return NULL;
    if (dtype == AL_FLOAT32) al_rng_normal_fill(al_ptr(t), NULL, al_numel(t));
    else al_rng_normal_fill(NULL, al_ptr(t), al_numel(t));
    return t;
}

/* One draw per value: its top 24 (float32) or 53 (float64) bits, scaled to [0, 1) exactly. */
al_tensor *al_rand(int ndim, const int64_t *shape, al_dtype dtype) {
    al_tensor *t = new_random("rand", ndim, shape, dtype, true);
    if (!t) return NULL;
    const int64_t n = al_numel(t);
    const uint64_t key = seed_key(rng_seed), first = take_draws((uint64_t)n);
    if (dtype == AL_FLOAT32) {
        float *o = al_ptr(t);
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++)
            o[i] = (float)(int32_t)(draw(key, first + (uint64_t)i) >> 40) * 0x1p-24f;
    } else {
        double *o = al_ptr(t);
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++)
            o[i] = (double)(int64_t)(draw(key, first + (uint64_t)i) >> 11) * 0x1p-53;
    }
    return t;
}

/* low + floor(draw * range / 2^64): the multiply-high maps 64 random bits onto the range with a
 * bias of at most range / 2^64 per value, which no experiment here can see. */
al_tensor *al_randint(int64_t low, int64_t high, int ndim, const int64_t *shape) {
    if (high <= low) {
        al_error("randint: empty range [%lld, %lld) (high must be > low)", (long long)low, (long long)high);
        return NULL;
    }
    al_tensor *t = new_random("randint", ndim, shape, AL_INT64, false);
    if (!t) return NULL;
    const int64_t n = al_numel(t);
    const uint64_t range = (uint64_t)high - (uint64_t)low;
    const uint64_t key = seed_key(rng_seed), first = take_draws((uint64_t)n);
    int64_t *o = al_ptr(t);
    #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        uint64_t hi = (uint64_t)(((unsigned __int128)draw(key, first + (uint64_t)i) * range) >> 64);
        o[i] = (int64_t)((uint64_t)low + hi);
    }
    return t;
}
