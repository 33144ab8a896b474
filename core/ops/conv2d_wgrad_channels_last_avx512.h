/* conv2d_wgrad_channels_last_avx512.h -- the weight gradient of a float 2-D convolution on AVX-512
 * for layers with many channels (conv2d.c; stride 1, one group, 3 x 3 and 5 x 5 kernels, input
 * channels a multiple of 16).
 *
 *   dW(o, c, ki, kj) = the sum over images and output positions p of dy(n, o, p) x(n, c, p + tap)
 *
 * is, for each tap, a matrix product over the positions: (Cout x P) times (P x Cin).
 * conv2d_direct_avx512.h's kernel vectorises over 16 output columns of a row, so every tap needs x's
 * row shifted by kj (shuffles or line-splitting loads) and every sum ends in a reduction across
 * lanes; with 27 sums, 3 dy vectors and the shift's operands it runs out of the 32 vector registers
 * and reached about 60% of what our matrix product does (bench/RESULTS.md, 2026-12-07).  Here the
 * vectors run over the input channels instead, as a matrix product's micro-kernel does: x is first
 * copied channels-last and zero-padded, as (N, Hp, Wp, Cin), and a unit -- one kernel row ki, CB
 * output channels, 16 input channels -- keeps KW x CB sums (at most 24) in registers.  Per output
 * position it loads the KW vectors of x its taps reach and broadcasts CB values of dy, read in
 * place: no shuffles, no reductions, no masks.  Measured against the alternatives (bench/RESULTS.md,
 * 2026-12-07): vectors over the output channels need dy copied channels-last too (dy is the larger
 * of the two in most layers), 3-15% slower; two vectors of input channels a unit (31 of the 32
 * registers) 10-18% slower on 32 and 64 channels.
 *
 * The positions are walked in bands of rows sized for L2; each thread owns a fixed run of units
 * and walks every band, carrying its units' sums from one band to the next through a (tap, Cout,
 * Cin) buffer.  So each dW entry is summed by one unit over the images and positions in order,
 * whatever the thread count. */
#ifndef ATTNLAB_CONV2D_WGRAD_CHANNELS_LAST_AVX512_H
#define ATTNLAB_CONV2D_WGRAD_CHANNELS_LAST_AVX512_H

#ifdef __AVX512F__
/* a band of output rows: its dy rows and the x rows they reach near this many floats (256 KiB, a
 * quarter of this machine's L2 per core, so that the band and the thread's sums stay there) */
enum { CHANNELS_LAST_BAND_ELEMENTS = 1 << 16 };

typedef struct {
    const direct_wgrad *d;
    int64_t kw, Hp, Wp;       /* the padded x: Hp rows of Wp positions of Cin channels */
    const float *xt;         /* x channels-last */
    const float *dy;         /* read in place, (N, Cout, Ho, Wo) */
    float *sums;             /* (kh kw, Cout, Cin): the sums carried from band to band */
} channels_last_wgrad;

/* CB output channels a unit takes, for KW taps a row: the most with KW CB <= 24 sums (+ KW vectors
 * of x and one broadcast, within the 32 registers) */
static inline int64_t channels_last_block(int64_t kw) { return 24 / kw; }

/* One unit over the output rows [oy0, oy1) of image n.  KW and CB are constants at every call
 * (channels_last_unit below), so that the sums are named at compile time and stay in registers. */
static inline __attribute__((always_inline)) void channels_last_unit_band(const channels_last_wgrad *w, int KW, int CB,
                                                                          int64_t ki, int64_t c0, int64_t o0,
                                                                          int64_t n, int64_t oy0, int64_t oy1) {
    const direct_wgrad *d = w->d;
    const int64_t Cin = d->Cin, Cout = d->Cout, Wo = d->Wo, dw = d->dw, P = d->Ho * Wo;
    float *sums = w->sums + (ki * KW * Cout + o0) * Cin + c0;   /* row (kj, cb) at ((ki KW + kj) Cout + cb) Cin */
    __m512 acc[24];
    #pragma GCC unroll 8
    for (int cb = 0; cb < CB; cb++) {
        #pragma GCC unroll 5
        for (int kj = 0; kj < KW; kj++) acc[cb * KW + kj] = _mm512_loadu_ps(sums + (kj * Cout + cb) * Cin);
    }
    for (int64_t oy = oy0; oy < oy1; oy++) {
        const float *g = w->dy + (n * Cout + o0) * P + oy * Wo;   /* dy(o0 + cb, oy, ox) at g[cb P + ox] */
        const float *xr = w->xt + ((n * w->Hp + oy + ki * d->dh) * w->Wp) * Cin + c0;
        for (int64_t ox = 0; ox < Wo; ox++, xr += Cin) {
            __m512 xv[5];
            #pragma GCC unroll 5
            for (int kj = 0; kj < KW; kj++) xv[kj] = _mm512_loadu_ps(xr + kj * dw * Cin);
            #pragma GCC unroll 8
            for (int cb = 0; cb < CB; cb++) {
                const __m512 gv = _mm512_set1_ps(g[cb * P + ox]);
                #pragma GCC unroll 5
                for (int kj = 0; kj < KW; kj++) acc[cb * KW + kj] = _mm512_fmadd_ps(gv, xv[kj], acc[cb * KW + kj]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int cb = 0; cb < CB; cb++) {
        #pragma GCC unroll 5
        for (int kj = 0; kj < KW; kj++) _mm512_storeu_ps(sums + (kj * Cout + cb) * Cin, acc[cb * KW + kj]);
    }
}

/* The instantiations: KW 3 or 5, CB up to channels_last_block(KW) (the tasks are made within it). */
static void channels_last_unit(const channels_last_wgrad *w, int64_t cb, int64_t ki, int64_t c0, int64_t o0, int64_t n,
                               int64_t oy0, int64_t oy1) {
    switch (w->kw * 10 + cb) {
    case 31: channels_last_unit_band(w, 3, 1, ki, c0, o0, n, oy0, oy1); break;
    case 32: channels_last_unit_band(w, 3, 2, ki, c0, o0, n, oy0, oy1); break;
    case 33: channels_last_unit_band(w, 3, 3, ki, c0, o0, n, oy0, oy1); break;
    case 34: channels_last_unit_band(w, 3, 4, ki, c0, o0, n, oy0, oy1); break;
    case 35: channels_last_unit_band(w, 3, 5, ki, c0, o0, n, oy0, oy1); break;
    case 36: channels_last_unit_band(w, 3, 6, ki, c0, o0, n, oy0, oy1); break;
    case 37: channels_last_unit_band(w, 3, 7, ki, c0, o0, n, oy0, oy1); break;
    case 38: channels_last_unit_band(w, 3, 8, ki, c0, o0, n, oy0, oy1); break;
    case 51: channels_last_unit_band(w, 5, 1, ki, c0, o0, n, oy0, oy1); break;
    case 52: channels_last_unit_band(w, 5, 2, ki, c0, o0, n, oy0, oy1); break;
    case 53: channels_last_unit_band(w, 5, 3, ki, c0, o0, n, oy0, oy1); break;
    case 54: channels_last_unit_band(w, 5, 4, ki, c0, o0, n, oy0, oy1); break;
    }
}

/* dst[j ds + i] = src[i ss + j] for i, j < 16: sixteen rows loaded, transposed in registers (pairs
 * of floats, then of doubles, then 128-bit lanes twice), sixteen rows stored.  The copies below
 * were scalar at first and took a quarter of the weight gradient's time. */
static inline void transpose_16x16(const float *src, int64_t ss, float *dst, int64_t ds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * ss);
    for (int i = 0; i < 16; i += 2) {   /* lane L of t[i]: r[i][4L], r[i+1][4L], r[i][4L+1], r[i+1][4L+1] */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {   /* lane L of r[g + k]: column 4L + k of rows g .. g + 3 */
        r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
        r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
    }
    for (int k = 0; k < 4; k++) {       /* column 4L + k: lane L of r[k], r[4 + k], r[8 + k], r[12 + k] */
        const __m512 v0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), v1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xee);
        const __m512 v2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44), v3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xee);
        _mm512_storeu_ps(dst + (0 + k) * ds, _mm512_shuffle_f32x4(v0, v2, 0x88));
        _mm512_storeu_ps(dst + (4 + k) * ds, _mm512_shuffle_f32x4(v0, v2, 0xdd));
        _mm512_storeu_ps(dst + (8 + k) * ds, _mm512_shuffle_f32x4(v1, v3, 0x88));
        _mm512_storeu_ps(dst + (12 + k) * ds, _mm512_shuffle_f32x4(v1, v3, 0xdd));
    }
}

/* dst[j ds + i] = src[i ss + j] for i < rows, j < cols: blocks of 16 x 16, the edges one by one */
static void transpose_block(const float *src, int64_t ss, float *dst, int64_t ds, int64_t rows, int64_t cols) {
    const int64_t rows16 = rows / 16 * 16, cols16 = cols / 16 * 16;
    for (int64_t i = 0; i < rows16; i += 16)
        for (int64_t j = 0; j < cols16; j += 16) transpose_16x16(src + i * ss + j, ss, dst + j * ds + i, ds);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = i < rows16 ? cols16 : 0; j < cols; j++) dst[j * ds + i] = src[i * ss + j];
}

/* A unit: kernel row ki, output channels [o0, o0 + cb), input channels [c0, c0 + 16). */
typedef struct { int64_t ki, o0, cb, c0; } channels_last_task;

/* dW for 3 x 3 and 5 x 5 kernels with Cin a multiple of 16; false, doing nothing, for other shapes
 * or when the copy cannot be allocated (conv2d.c then takes another kernel). */
static bool channels_last_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy,
                                      float *dW, bool parallel) {
    if (!((kh == 3 && kw == 3) || (kh == 5 && kw == 5)) || d->Cin % 16) return false;
    const int64_t N = d->N, Cin = d->Cin, Cout = d->Cout, H = d->H, W = d->W, Ho = d->Ho, Wo = d->Wo;
    const int64_t Hp = Ho + (kh - 1) * d->dh, Wp = Wo + (kw - 1) * d->dw;
    const size_t xt_bytes = sizeof(float) * (size_t)(N * Hp * Wp * Cin), sums_bytes = sizeof(float) * (size_t)(kh * kw * Cin * Cout);
    /* the units: input channels in blocks of 16, output channels in blocks as even as
     * channels_last_block allows */
    const int64_t most = channels_last_block(kw), oblocks = (Cout + most - 1) / most, ntasks = Cin / 16 * kh * oblocks;
    const size_t tasks_bytes = sizeof(channels_last_task) * (size_t)ntasks;
    float *xt = al_alloc(xt_bytes), *sums = al_alloc(sums_bytes);
    channels_last_task *tasks = al_alloc(tasks_bytes);
    if (!xt || !sums || !tasks) {
        al_free(xt, xt_bytes); al_free(sums, sums_bytes); al_free(tasks, tasks_bytes);
        return false;
    }
    int64_t t = 0;
    for (int64_t c0 = 0; c0 < Cin; c0 += 16)
        for (int64_t ki = 0; ki < kh; ki++)
            for (int64_t obk = 0, o0 = 0; obk < oblocks; obk++) {
                const int64_t cb = (Cout - o0) / (oblocks - obk);   /* the blocks differ by at most one channel */
                tasks[t++] = (channels_last_task){ki, o0, cb, c0};
                o0 += cb;
            }
    /* bands of output rows: R rows of dy and R + (kh - 1) dh rows of x near the band size */
    const int64_t per_row = Wo * Cout + Wp * Cin;
    int64_t band = (CHANNELS_LAST_BAND_ELEMENTS - (kh - 1) * d->dh * Wp * Cin) / per_row;
    if (band < 1) band = 1;
    if (band > Ho) band = Ho;
    const channels_last_wgrad w = {d, kw, Hp, Wp, xt, dy, sums};
    const int threads = parallel ? al_get_num_threads() : 1;
    #pragma omp parallel num_threads(threads)
    {
        /* the copy, channels-last: x's padded position (py, px) holds x(py - pt, px - pl) */
        #pragma omp for schedule(static) collapse(2)
        for (int64_t n = 0; n < N; n++)
            for (int64_t py = 0; py < Hp; py++) {
                float *row = xt + (n * Hp + py) * Wp * Cin;
                const int64_t iy = py - d->pt;
                if (iy < 0 || iy >= H) { memset(row, 0, sizeof(float) * (size_t)(Wp * Cin)); continue; }
                /* the columns inside the plane, px in [lo, hi); a plane's row read along, written across */
                const int64_t lo = d->pl, hi = W + d->pl < Wp ? W + d->pl : Wp;
                if (lo > 0) memset(row, 0, sizeof(float) * (size_t)(lo * Cin));
                if (hi < Wp) memset(row + hi * Cin, 0, sizeof(float) * (size_t)((Wp - hi) * Cin));
                transpose_block(x + (n * Cin * H + iy) * W + lo - d->pl, H * W, row + lo * Cin, Cin, Cin, hi - lo);
            }
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < kh * kw * Cin * Cout; i++) sums[i] = 0.f;
        /* (the implied barrier: the copy is made before any unit reads it) */
        const int64_t me = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t first = ntasks * me / nth, last = ntasks * (me + 1) / nth;
        for (int64_t n = 0; n < N; n++)
            for (int64_t oy0 = 0; oy0 < Ho; oy0 += band) {
                const int64_t oy1 = oy0 + band < Ho ? oy0 + band : Ho;
                for (int64_t k = first; k < last; k++)
                    channels_last_unit(&w, tasks[k].cb, tasks[k].ki, tasks[k].c0, tasks[k].o0, n, oy0, oy1);
            }
        #pragma omp barrier
        /* dW(o, c, ki, kj) from the sums' (ki kw + kj, o, c) */
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t c = 0; c < Cin; c++)
                for (int64_t tap = 0; tap < kh * kw; tap++) dW[(o * Cin + c) * kh * kw + tap] = sums[(tap * Cout + o) * Cin + c];
    }
    al_free(xt, xt_bytes); al_free(sums, sums_bytes); al_free(tasks, tasks_bytes);
    return true;
}
#else
static bool channels_last_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy,
                                      float *dW, bool parallel) {
    (void)d; (void)kh; (void)kw; (void)x; (void)dy; (void)dW; (void)parallel;
    return false;
}
#endif
#endif
