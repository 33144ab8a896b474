/* conv2d_wgrad_channels_last_avx512.h -- the weight gradient of a float 2-D convolution on AVX-512
 * for layers with many channels (conv2d.c; stride 1, one group, 3 x 3 and 5 x 5 kernels, output
 * channels a multiple of 16, at least 4 input channels).
 *
 *   dW(o, c, ki, kj) = the sum over images and output positions p of dy(n, o, p) x(n, c, p + tap)
 *
 * is, for each tap, a matrix product over the positions: (Cin x P) times (P x Cout).
 * conv2d_direct_avx512.h's kernel vectorises over 16 output columns of a row, so every tap needs x's
 * row shifted by kj (shuffles or line-splitting loads) and every sum ends in a reduction across
 * lanes; with 27 sums, 3 dy vectors and the shift's operands it runs out of the 32 vector registers
 * and reached about 60% of what our matrix product does (bench/RESULTS.md, 2026-12-07).  Here the
 * vectors run over the output channels instead, as a matrix product's micro-kernel does: dy and x are
 * first copied channels-last (dy as (N, Ho, Wo, Cout), x zero-padded as (N, Hp, Wp, Cin)), and a unit
 * -- one kernel row ki, CB input channels, OV vectors of 16 output channels -- keeps KW x CB x OV sums
 * (at most 24) in registers.  Per output position it loads OV vectors of dy and broadcasts KW x CB
 * values of x, each used for OV multiply-adds: no shuffles, no reductions, no masks.
 *
 * The positions are walked in bands of rows sized for L2; each thread owns a fixed run of units
 * and walks every band, carrying its units' sums from one band to the next through a (tap, Cin,
 * Cout) buffer.  So each dW entry is summed by one unit over the images and positions in order,
 * whatever the thread count. */
#ifndef ATTNLAB_CONV2D_WGRAD_CHANNELS_LAST_AVX512_H
#define ATTNLAB_CONV2D_WGRAD_CHANNELS_LAST_AVX512_H

#ifdef __AVX512F__
/* a band of output rows: its dy rows and the x rows they reach near this many floats (256 KiB, a
 * quarter of this machine's L2 per core, so that the band and the thread's sums stay there) */
enum { CHANNELS_LAST_BAND_ELEMENTS = 1 << 16 };

typedef struct {
    const direct_wgrad *d;
    int64_t kh, kw, Hp, Wp;   /* the padded x: Hp rows of Wp positions of Cin channels */
    const float *xt, *dyt;   /* the channels-last copies */
    float *sums;             /* (kh kw, Cin, Cout): the sums carried from band to band */
} channels_last_wgrad;

/* CB input channels a unit takes, for KW taps a row and OV vectors of output channels: the most
 * with KW CB OV <= 24 sums (+ OV dy vectors, within the 32 registers) */
static inline int64_t channels_last_block(int64_t kw, int64_t ov) { return 24 / (kw * ov); }

/* One unit over the output rows [oy0, oy1) of image n.  OV, KW and CB are constants at every call
 * (channels_last_unit below), so that the sums are named at compile time and stay in registers. */
static inline __attribute__((always_inline)) void channels_last_unit_band(const channels_last_wgrad *w, int OV, int KW,
                                                                          int CB, int64_t ki, int64_t c0, int64_t o0,
                                                                          int64_t n, int64_t oy0, int64_t oy1) {
    const direct_wgrad *d = w->d;
    const int64_t Cin = d->Cin, Cout = d->Cout, Wo = d->Wo, dw = d->dw;
    float *sums = w->sums + (ki * KW * Cin + c0) * Cout + o0;   /* row (kj, cb) at ((ki KW + kj) Cin + cb) Cout */
    __m512 acc[24];
    #pragma GCC unroll 5
    for (int kj = 0; kj < KW; kj++) {
        #pragma GCC unroll 8
        for (int cb = 0; cb < CB; cb++) {
            #pragma GCC unroll 4
            for (int j = 0; j < OV; j++) acc[(kj * CB + cb) * OV + j] = _mm512_loadu_ps(sums + (kj * Cin + cb) * Cout + 16 * j);
        }
    }
    for (int64_t oy = oy0; oy < oy1; oy++) {
        const float *g = w->dyt + ((n * d->Ho + oy) * Wo) * Cout + o0;
        const float *xr = w->xt + ((n * w->Hp + oy + ki * d->dh) * w->Wp) * Cin + c0;
        for (int64_t ox = 0; ox < Wo; ox++, g += Cout, xr += Cin) {
            __m512 gv[4];
            #pragma GCC unroll 4
            for (int j = 0; j < OV; j++) gv[j] = _mm512_loadu_ps(g + 16 * j);
            #pragma GCC unroll 5
            for (int kj = 0; kj < KW; kj++) {
                #pragma GCC unroll 8
                for (int cb = 0; cb < CB; cb++) {
                    const __m512 xv = _mm512_set1_ps(xr[kj * dw * Cin + cb]);
                    #pragma GCC unroll 4
                    for (int j = 0; j < OV; j++)
                        acc[(kj * CB + cb) * OV + j] = _mm512_fmadd_ps(xv, gv[j], acc[(kj * CB + cb) * OV + j]);
                }
            }
        }
    }
    #pragma GCC unroll 5
    for (int kj = 0; kj < KW; kj++) {
        #pragma GCC unroll 8
        for (int cb = 0; cb < CB; cb++) {
            #pragma GCC unroll 4
            for (int j = 0; j < OV; j++) _mm512_storeu_ps(sums + (kj * Cin + cb) * Cout + 16 * j, acc[(kj * CB + cb) * OV + j]);
        }
    }
}

/* The instantiations: KW 3 or 5, OV 1..4, CB up to channels_last_block(KW, OV) (the tasks are made
 * within it). */
static void channels_last_unit(const channels_last_wgrad *w, int64_t ov, int64_t cb, int64_t ki, int64_t c0, int64_t o0,
                               int64_t n, int64_t oy0, int64_t oy1) {
    const int64_t key = w->kw * 100 + ov * 10 + cb;
    switch (key) {
    case 311: channels_last_unit_band(w, 1, 3, 1, ki, c0, o0, n, oy0, oy1); break;
    case 312: channels_last_unit_band(w, 1, 3, 2, ki, c0, o0, n, oy0, oy1); break;
    case 313: channels_last_unit_band(w, 1, 3, 3, ki, c0, o0, n, oy0, oy1); break;
    case 314: channels_last_unit_band(w, 1, 3, 4, ki, c0, o0, n, oy0, oy1); break;
    case 315: channels_last_unit_band(w, 1, 3, 5, ki, c0, o0, n, oy0, oy1); break;
    case 316: channels_last_unit_band(w, 1, 3, 6, ki, c0, o0, n, oy0, oy1); break;
    case 317: channels_last_unit_band(w, 1, 3, 7, ki, c0, o0, n, oy0, oy1); break;
    case 318: channels_last_unit_band(w, 1, 3, 8, ki, c0, o0, n, oy0, oy1); break;
    case 321: channels_last_unit_band(w, 2, 3, 1, ki, c0, o0, n, oy0, oy1); break;
    case 322: channels_last_unit_band(w, 2, 3, 2, ki, c0, o0, n, oy0, oy1); break;
    case 323: channels_last_unit_band(w, 2, 3, 3, ki, c0, o0, n, oy0, oy1); break;
    case 324: channels_last_unit_band(w, 2, 3, 4, ki, c0, o0, n, oy0, oy1); break;
    case 331: channels_last_unit_band(w, 3, 3, 1, ki, c0, o0, n, oy0, oy1); break;
    case 332: channels_last_unit_band(w, 3, 3, 2, ki, c0, o0, n, oy0, oy1); break;
    case 341: channels_last_unit_band(w, 4, 3, 1, ki, c0, o0, n, oy0, oy1); break;
    case 342: channels_last_unit_band(w, 4, 3, 2, ki, c0, o0, n, oy0, oy1); break;
    case 511: channels_last_unit_band(w, 1, 5, 1, ki, c0, o0, n, oy0, oy1); break;
    case 512: channels_last_unit_band(w, 1, 5, 2, ki, c0, o0, n, oy0, oy1); break;
    case 513: channels_last_unit_band(w, 1, 5, 3, ki, c0, o0, n, oy0, oy1); break;
    case 514: channels_last_unit_band(w, 1, 5, 4, ki, c0, o0, n, oy0, oy1); break;
    case 521: channels_last_unit_band(w, 2, 5, 1, ki, c0, o0, n, oy0, oy1); break;
    case 522: channels_last_unit_band(w, 2, 5, 2, ki, c0, o0, n, oy0, oy1); break;
    case 531: channels_last_unit_band(w, 3, 5, 1, ki, c0, o0, n, oy0, oy1); break;
    case 541: channels_last_unit_band(w, 4, 5, 1, ki, c0, o0, n, oy0, oy1); break;
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

/* A unit: kernel row ki, input channels [c0, c0 + cb), output channels [o0, o0 + 16 ov). */
typedef struct { int64_t ki, c0, cb, o0, ov; } channels_last_task;

/* dW for 3 x 3 and 5 x 5 kernels with Cout a multiple of 16 and Cin >= 4; false, doing nothing,
 * for other shapes or when the copies cannot be allocated (conv2d.c then takes another kernel). */
static bool channels_last_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy,
                                      float *dW, bool parallel) {
    if (!((kh == 3 && kw == 3) || (kh == 5 && kw == 5)) || d->Cout % 16 || d->Cin < 4) return false;
    const int64_t N = d->N, Cin = d->Cin, Cout = d->Cout, H = d->H, W = d->W, Ho = d->Ho, Wo = d->Wo;
    const int64_t Hp = Ho + (kh - 1) * d->dh, Wp = Wo + (kw - 1) * d->dw;
    const size_t xt_bytes = sizeof(float) * (size_t)(N * Hp * Wp * Cin), dyt_bytes = sizeof(float) * (size_t)(N * Ho * Wo * Cout);
    const size_t sums_bytes = sizeof(float) * (size_t)(kh * kw * Cin * Cout);
    /* the units: output channels in blocks of 64 (the last 16-48), input channels in blocks as even
     * as channels_last_block allows */
    const int64_t oblocks = (Cout / 16 + 3) / 4;
    int64_t ntasks = 0;
    for (int64_t ob = 0; ob < oblocks; ob++) {
        const int64_t ov = Cout / 16 - 4 * ob < 4 ? Cout / 16 - 4 * ob : 4, most = channels_last_block(kw, ov);
        ntasks += kh * ((Cin + most - 1) / most);
    }
    const size_t tasks_bytes = sizeof(channels_last_task) * (size_t)ntasks;
    float *xt = al_alloc(xt_bytes), *dyt = al_alloc(dyt_bytes), *sums = al_alloc(sums_bytes);
    channels_last_task *tasks = al_alloc(tasks_bytes);
    if (!xt || !dyt || !sums || !tasks) {
        al_free(xt, xt_bytes); al_free(dyt, dyt_bytes); al_free(sums, sums_bytes); al_free(tasks, tasks_bytes);
        return false;
    }
    int64_t t = 0;
    for (int64_t ob = 0; ob < oblocks; ob++) {
        const int64_t ov = Cout / 16 - 4 * ob < 4 ? Cout / 16 - 4 * ob : 4, most = channels_last_block(kw, ov);
        const int64_t cblocks = (Cin + most - 1) / most;
        for (int64_t ki = 0; ki < kh; ki++)
            for (int64_t cbk = 0, c0 = 0; cbk < cblocks; cbk++) {
                const int64_t cb = (Cin - c0) / (cblocks - cbk);   /* the blocks differ by at most one channel */
                tasks[t++] = (channels_last_task){ki, c0, cb, 64 * ob, ov};
                c0 += cb;
            }
    }
    /* bands of output rows: R rows of dy and R + (kh - 1) dh rows of x near the band size */
    const int64_t per_row = Wo * Cout + Wp * Cin;
    int64_t band = (CHANNELS_LAST_BAND_ELEMENTS - (kh - 1) * d->dh * Wp * Cin) / per_row;
    if (band < 1) band = 1;
    if (band > Ho) band = Ho;
    const channels_last_wgrad w = {d, kh, kw, Hp, Wp, xt, dyt, sums};
    const int threads = parallel ? al_get_num_threads() : 1;
    #pragma omp parallel num_threads(threads)
    {
        /* the copies, channels-last: x's padded position (py, px) holds x(py - pt, px - pl) */
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
        #pragma omp for schedule(static) collapse(2)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o0 = 0; o0 < Cout; o0 += 16)
                transpose_block(dy + (n * Cout + o0) * Ho * Wo, Ho * Wo, dyt + n * Ho * Wo * Cout + o0, Cout, 16, Ho * Wo);
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < kh * kw * Cin * Cout; i++) sums[i] = 0.f;
        /* (the implied barrier: every copy is made before any unit reads it) */
        const int64_t me = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t first = ntasks * me / nth, last = ntasks * (me + 1) / nth;
        for (int64_t n = 0; n < N; n++)
            for (int64_t oy0 = 0; oy0 < Ho; oy0 += band) {
                const int64_t oy1 = oy0 + band < Ho ? oy0 + band : Ho;
                for (int64_t k = first; k < last; k++)
                    channels_last_unit(&w, tasks[k].ov, tasks[k].cb, tasks[k].ki, tasks[k].c0, tasks[k].o0, n, oy0, oy1);
            }
        #pragma omp barrier
        /* dW(o, c, ki, kj) from the sums' (ki kw + kj, c, o) */
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t c = 0; c < Cin; c++)
                for (int64_t tap = 0; tap < kh * kw; tap++) dW[(o * Cin + c) * kh * kw + tap] = sums[(tap * Cin + c) * Cout + o];
    }
    al_free(xt, xt_bytes); al_free(dyt, dyt_bytes); al_free(sums, sums_bytes); al_free(tasks, tasks_bytes);
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
