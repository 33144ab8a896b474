/* conv2d_direct_avx512.h -- 2-D convolution computed directly, without the column matrix, for float
 * on AVX-512 (conv2d.c's forward, input gradient and weight gradient; stride 1, one group).
 *
 * im2col copies each input value kh x kw times into a matrix 9x (3x3) or 25x (5x5) the input's size,
 * and on the visual-search CNN's shapes building and folding it cost as much as the products
 * (bench/RESULTS.md).  Here each output row is summed in registers straight from the input rows:
 * for a block of DIRECT_OB output channels and 32 output columns (two vectors), every tap (input
 * channel, ki, kj) loads the two shifted input vectors once and multiplies them by one broadcast
 * weight per output channel, 2 x DIRECT_OB multiply-adds for 2 + DIRECT_OB loads.  The input rows are
 * read from a zero-padded copy (a band of rows at a time, in a buffer of the thread's own that stays
 * in cache), so the loads need no lane masks and no checks for rows in the padding: with masks read
 * per tap, the kernels before this layout ran 1.5-2.2x (forward) and 1.7-2.6x (input gradient) slower
 * on one thread (bench/RESULTS.md, 2026-12-07).
 *
 * One kernel serves the forward and the input gradient, described by direct_conv:
 *   out(n, oc, r, c) = bias(oc) + the sum over ic, ki, kj of
 *                      w(oc, ic, ki, kj) in(n, ic, r + row_base + ki row_step, c + col_base + kj col_step)
 *   forward:   out = y, in = x;  row_base = -pt, row_step = dh;  w(oc, ic) = w[oc Cin kk + ic kk]
 *   dx:        out = dx, in = dy; row_base = pt, row_step = -dh; w(oc = c, ic = o) = w[o Cin kk + c kk]
 * (the input gradient is the forward's adjoint: dx(c, iy, ix) gathers dy(o, iy + pt - ki dh, ...)).
 * The weight gradient has a kernel of its own (below).  Each output element of every pass is
 * summed by one thread in a fixed order, so the result does not depend on the thread count. */
#ifndef ATTNLAB_CONV2D_DIRECT_AVX512_H
#define ATTNLAB_CONV2D_DIRECT_AVX512_H

typedef struct {
    int64_t N, IC, OC, in_h, in_w, out_h, out_w, kh, kw;
    int64_t row_base, row_step, col_base, col_step;
    int64_t w_oc, w_ic;   /* w(oc, ic, ki, kj) = w[oc w_oc + ic w_ic + ki kw + kj] */
} direct_conv;

enum { DIRECT_OB = 8, DIRECT_MAX_KW = 16 };   /* kernels up to 16 wide; wider ones (rare) go through the columns */

#ifdef __AVX512F__
#include <immintrin.h>

/* lanes l of a vector of output columns c0 + l whose input column icol + l lies in [0, in_w), and
 * l < valid (the output columns left in the row) */
static inline __mmask16 direct_lanes(int64_t icol, int64_t in_w, int64_t valid) {
    int64_t lo = icol < 0 ? -icol : 0, hi = in_w - icol;
    if (hi > 16) hi = 16;
    if (hi > valid) hi = valid;
    if (hi <= lo) return 0;
    const uint32_t upto = hi >= 16 ? 0xffffu : (1u << hi) - 1u;
    return (__mmask16)(upto & ~((1u << lo) - 1u));
}

/* Zero-padded copies of input rows, so that the kernels below load whole vectors without lane masks
 * or row checks.  pad_plane_rows writes `rows` rows of `width` floats: row pr, column pc holds
 * plane(row0 + pr, col0 + pc), zero where that lies outside the in_h x in_w plane.  width is a
 * multiple of 16, so each padded row starts on a 64-byte line. */
static inline int64_t padded_width(int64_t columns) { return (columns + 15) / 16 * 16; }

static void pad_plane_rows(const float *plane, int64_t in_h, int64_t in_w, int64_t row0, int64_t col0, int64_t rows,
                           int64_t width, float *dst) {
    int64_t lo = -col0 > 0 ? -col0 : 0, hi = in_w - col0 < width ? in_w - col0 : width;   /* the columns inside */
    if (hi < lo) hi = lo;
    for (int64_t pr = 0; pr < rows; pr++, dst += width) {
        const int64_t ir = row0 + pr;
        if (ir < 0 || ir >= in_h || hi == lo) {
            memset(dst, 0, sizeof(float) * (size_t)width);
            continue;
        }
        memset(dst, 0, sizeof(float) * (size_t)lo);
        memcpy(dst + lo, plane + ir * in_w + col0 + lo, sizeof(float) * (size_t)(hi - lo));
        memset(dst + hi, 0, sizeof(float) * (size_t)(width - hi));
    }
}

/* Output row r of image n, channels [oc0, oc0 + DIRECT_OB) (those below OC stored), all columns.
 * src is input channel 0's padded row for output row r (ki = 0, column 0); channel ic's is
 * plane_stride further on, tap (ki, kj) is ki rs rows and kj cs columns on (either step may be
 * negative).  wp is the block's weights packed as [ic][ki][kj][DIRECT_OB]: a tap's broadcasts share a
 * line.  Inlined with constant kw and cs for the common kernels, so that the kj loop unrolls. */
static inline __attribute__((always_inline)) void direct_row(const direct_conv *d, const float *src, int64_t plane_stride,
                                                             int64_t wpad, int64_t kw, int64_t rs, int64_t cs, int64_t n,
                                                             int64_t oc0, int64_t r, const float *wp, const float *bias,
                                                             float *out) {
    const int64_t kh = d->kh, IC = d->IC, taps = kh * kw;
    const int64_t channels = d->OC - oc0 < DIRECT_OB ? d->OC - oc0 : DIRECT_OB;
    for (int64_t c0 = 0; c0 < d->out_w; c0 += 32) {
        __m512 acc[DIRECT_OB][2];
        #pragma GCC unroll 8
        for (int o = 0; o < DIRECT_OB; o++) {
            const __m512 b = _mm512_set1_ps(bias && o < channels ? bias[oc0 + o] : 0.0f);
            acc[o][0] = b;
            acc[o][1] = b;
        }
        const float *plane = src + c0;
        for (int64_t ic = 0; ic < IC; ic++, plane += plane_stride) {
            const float *wt = wp + ic * taps * DIRECT_OB;
            for (int64_t ki = 0; ki < kh; ki++, wt += kw * DIRECT_OB) {
                const float *row = plane + ki * rs * wpad;
                #pragma GCC unroll 5
                for (int64_t kj = 0; kj < kw; kj++) {
                    const __m512 x0 = _mm512_loadu_ps(row + kj * cs);
                    const __m512 x1 = _mm512_loadu_ps(row + kj * cs + 16);
                    #pragma GCC unroll 8
                    for (int o = 0; o < DIRECT_OB; o++) {
                        const __m512 wv = _mm512_set1_ps(wt[kj * DIRECT_OB + o]);
                        acc[o][0] = _mm512_fmadd_ps(wv, x0, acc[o][0]);
                        acc[o][1] = _mm512_fmadd_ps(wv, x1, acc[o][1]);
                    }
                }
            }
        }
        const int64_t valid = d->out_w - c0;
        const __mmask16 m0 = direct_lanes(0, 16, valid), m1 = direct_lanes(0, 16, valid - 16);
        /* a constant trip count, every acc[o] named at compile time: with `o < channels` as the
         * bound the compiler kept the accumulators in memory (measured 2x slower) */
        #pragma GCC unroll 8
        for (int o = 0; o < DIRECT_OB; o++) {
            if (o >= channels) continue;
            float *dst = out + ((n * d->OC + oc0 + o) * d->out_h + r) * d->out_w + c0;
            _mm512_mask_storeu_ps(dst, m0, acc[o][0]);
            _mm512_mask_storeu_ps(dst + 16, m1, acc[o][1]);
        }
    }
}

/* The rows of output one task covers, and the padded copy of its input rows, sized to stay in the
 * core's L2 cache (1 MiB on the project's machine) while every channel block passes over it. */
enum { DIRECT_BAND_ELEMENTS = 1 << 16 };

/* out = the direct convolution of in (see the top of the file); bias may be NULL.  Returns false,
 * doing nothing, when the buffers cannot be allocated (or, below, without AVX-512).
 *
 * The work is cut into tasks of one image and a band of output rows.  A task first copies its input
 * rows (every channel, with the halo its kernel reaches) into the thread's padded buffer, then runs
 * every channel block over every row of the band from there.  A padded copy of the whole input
 * instead was written and read back through memory: with the input out of cache, as after a
 * backward, the forward ran 1.5x slower than with it cached.  With a negative step (the input
 * gradient) the taps still run ki = 0, 1, ... from the bottom of the rows they reach, so every
 * element is summed in the order the earlier, masked kernel summed it, to the last bit. */
static bool direct_conv_float(const direct_conv *d, const float *in, const float *w, const float *bias, float *out,
                              bool parallel) {
    const int64_t rs = d->row_step, cs = d->col_step;
    /* the padded rows and columns start at the lowest the taps reach */
    const int64_t row_reach = (d->kh - 1) * (rs < 0 ? -rs : rs), col_reach = (d->kw - 1) * (cs < 0 ? -cs : cs);
    const int64_t row0 = d->row_base - (rs < 0 ? row_reach : 0), col0 = d->col_base - (cs < 0 ? col_reach : 0);
    /* tap (0, 0)'s place in the padded rows: the bottom (right) of their reach for a negative step */
    const int64_t tap0 = (rs < 0 ? row_reach : 0), tap0_col = (cs < 0 ? col_reach : 0);
    const int64_t blocks = (d->OC + DIRECT_OB - 1) / DIRECT_OB, taps = d->kh * d->kw, halo = row_reach;
    /* columns up to the last 32-column block's end + the taps' reach */
    const int64_t wpad = padded_width((d->out_w + 31) / 32 * 32 + col_reach);
    const int threads = parallel ? al_get_num_threads() : 1;
    int64_t band = DIRECT_BAND_ELEMENTS / (d->IC * wpad > 0 ? d->IC * wpad : 1) - halo;
    if (band < 1) band = 1;
    if (band > d->out_h) band = d->out_h;
    /* enough tasks to keep the threads evenly busy (re-padding a halo costs less than an idle thread) */
    while (band > 1 && d->N * ((d->out_h + band - 1) / band) < 4 * threads) band = (band + 1) / 2;
    const int64_t bands = (d->out_h + band - 1) / band, tasks = d->N * bands;
    const int64_t band_rows = band + halo, plane_stride = band_rows * wpad;
    const size_t packed_bytes = sizeof(float) * (size_t)(blocks * d->IC * taps * DIRECT_OB);
    const int64_t buffer_elems = d->IC * plane_stride;   /* one thread's padded band */
    const size_t buffers_bytes = sizeof(float) * (size_t)buffer_elems * (size_t)threads;
    float *wp = al_alloc(packed_bytes), *buffers = al_alloc(buffers_bytes);
    if (!wp || !buffers) {
        al_free(wp, packed_bytes);
        al_free(buffers, buffers_bytes);
        return false;
    }
    for (int64_t blk = 0; blk < blocks; blk++)   /* [block][ic][tap][o], zero past OC */
        for (int64_t ic = 0; ic < d->IC; ic++)
            for (int64_t t = 0; t < taps; t++)
                for (int o = 0; o < DIRECT_OB; o++) {
                    const int64_t oc = blk * DIRECT_OB + o;
                    wp[((blk * d->IC + ic) * taps + t) * DIRECT_OB + o] = oc < d->OC ? w[oc * d->w_oc + ic * d->w_ic + t] : 0.0f;
                }
    #pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        float *buf = buffers + (size_t)omp_get_thread_num() * (size_t)buffer_elems;
#else
        float *buf = buffers;
#endif
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t n = t / bands, r0 = t % bands * band, r1 = r0 + band < d->out_h ? r0 + band : d->out_h;
            for (int64_t ic = 0; ic < d->IC; ic++)
                pad_plane_rows(in + (n * d->IC + ic) * d->in_h * d->in_w, d->in_h, d->in_w, row0 + r0, col0,
                               r1 - r0 + halo, wpad, buf + ic * plane_stride);
            for (int64_t blk = 0; blk < blocks; blk++) {
                const float *wb = wp + blk * d->IC * taps * DIRECT_OB;
                const int64_t oc0 = blk * DIRECT_OB;
                for (int64_t r = r0; r < r1; r++) {
                    const float *src = buf + (r - r0 + tap0) * wpad + tap0_col;
                    /* the common kernels with constant kw and column step, so that the kj loop unrolls */
                    if (d->kw == 3 && cs == 1) direct_row(d, src, plane_stride, wpad, 3, rs, 1, n, oc0, r, wb, bias, out);
                    else if (d->kw == 3 && cs == -1) direct_row(d, src, plane_stride, wpad, 3, rs, -1, n, oc0, r, wb, bias, out);
                    else if (d->kw == 5 && cs == 1) direct_row(d, src, plane_stride, wpad, 5, rs, 1, n, oc0, r, wb, bias, out);
                    else if (d->kw == 5 && cs == -1) direct_row(d, src, plane_stride, wpad, 5, rs, -1, n, oc0, r, wb, bias, out);
                    else if (d->kw == 1) direct_row(d, src, plane_stride, wpad, 1, rs, 1, n, oc0, r, wb, bias, out);
                    else direct_row(d, src, plane_stride, wpad, d->kw, rs, cs, n, oc0, r, wb, bias, out);
                }
            }
        }
    }
    al_free(wp, packed_bytes);
    al_free(buffers, buffers_bytes);
    return true;
}

/* A padded copy of every plane at once (the weight gradient's, below): rows x width each. */
typedef struct { float *data; int64_t rows, width; size_t bytes; } padded_planes;

static bool pad_planes(const float *in, int64_t planes, int64_t in_h, int64_t in_w, int64_t row0, int64_t col0,
                       int64_t rows, int64_t columns, bool parallel, padded_planes *p) {
    p->rows = rows;
    p->width = padded_width(columns);
    p->bytes = sizeof(float) * (size_t)(planes * rows * p->width);
    p->data = al_alloc(p->bytes);
    if (!p->data) return false;
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t plane = 0; plane < planes; plane++)
        pad_plane_rows(in + plane * in_h * in_w, in_h, in_w, row0, col0, rows, p->width, p->data + plane * rows * p->width);
    return true;
}

/* ---- the weight gradient --------------------------------------------------------------------
 * dW(o, c, ki, kj) = the sum over images and output positions of dy(n, o, oy, ox) x(n, c, oy + ki dh
 * - pt, ox + kj dw - pl).  A unit is OB output channels and one input channel; its KH x KW taps x OB
 * sums stay in vector registers over every position (16 output columns a vector) and are added up
 * across lanes at the end: per vector of positions, OB loads of dy and KH KW shifted loads of x (from
 * its zero-padded copy, so without masks or row checks) feed OB KH KW multiply-adds.  dy's lanes past
 * Wo are masked off, so what x holds there does not count.  Each dW entry is one unit's, summed in a
 * fixed order. */
typedef struct {
    int64_t N, Cin, Cout, H, W, Ho, Wo;
    int64_t pt, pl, dh, dw;
} direct_wgrad;

/* row[kj .. kj + 15] from cur = row[0 .. 15] and next = row[16 .. 31], for kj in 0..4 (the
 * shift is an instruction's immediate: a switch, folded once kj is a constant) */
static inline __attribute__((always_inline)) __m512 shifted_row(__m512i cur, __m512i next, int kj) {
    switch (kj) {
    case 0: return _mm512_castsi512_ps(cur);
    case 1: return _mm512_castsi512_ps(_mm512_alignr_epi32(next, cur, 1));
    case 2: return _mm512_castsi512_ps(_mm512_alignr_epi32(next, cur, 2));
    case 3: return _mm512_castsi512_ps(_mm512_alignr_epi32(next, cur, 3));
    default: return _mm512_castsi512_ps(_mm512_alignr_epi32(next, cur, 4));
    }
}

static inline __attribute__((always_inline)) void wgrad_unit(const direct_wgrad *d, int OB, int KH, int KW, int64_t dh,
                                                             int64_t dw, int64_t o0, int64_t c, const padded_planes *xp,
                                                             const float *dy, float *dW) {
    /* OB KH KW <= 27 sums: an array no larger, so that the compiler keeps it in registers (sized
     * [8][25], the 5 x 5 unit's sums went back to the stack at every step) */
    __m512 acc[27];
    #pragma GCC unroll 27
    for (int t = 0; t < OB * KH * KW; t++) acc[t] = _mm512_setzero_ps();
    /* the geometry in locals: read through d, each field was loaded again at every tap */
    const int64_t Ho = d->Ho, Wo = d->Wo, wpad = xp->width;
    const int64_t vectors = (Wo + 15) / 16;
    const __mmask16 tail = direct_lanes(0, 16, Wo - (vectors - 1) * 16);
    for (int64_t n = 0; n < d->N; n++) {
        const float *xc = xp->data + (n * d->Cin + c) * xp->rows * wpad;
        const float *gy = dy + (n * d->Cout + o0) * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            const float *row0 = xc + oy * wpad;   /* the padded rows oy + ki dh */
            for (int64_t v = 0; v < vectors; v++) {
                const int64_t ox0 = v * 16;
                const __mmask16 lanes = v + 1 < vectors ? (__mmask16)0xffff : tail;
                __m512 g[8];
                #pragma GCC unroll 8
                for (int o = 0; o < OB; o++) g[o] = _mm512_maskz_loadu_ps(lanes, gy + (o * Ho + oy) * Wo + ox0);
                #pragma GCC unroll 5
                for (int ki = 0; ki < KH; ki++) {
                    const float *row = row0 + ki * dh * wpad + ox0;
                    /* without dilation, the KW shifted vectors from two aligned loads (the padded
                     * rows start on a line): a load per tap split a cache line at every kj > 0 */
                    const __m512i cur = _mm512_loadu_si512(row);
                    const __m512i next = KW > 1 ? _mm512_loadu_si512(row + 16) : cur;   /* (past a 1 x 1's row) */
                    #pragma GCC unroll 5
                    for (int kj = 0; kj < KW; kj++) {
                        __m512 xv = dw == 1 ? shifted_row(cur, next, kj) : _mm512_loadu_ps(row + kj * dw);
                        /* one load for the OB products: left to itself the compiler folds the load
                         * into each multiply-add, loading the (line-splitting) vector OB times */
                        __asm__("" : "+v"(xv));
                        #pragma GCC unroll 8
                        for (int o = 0; o < OB; o++)
                            acc[o * KH * KW + ki * KW + kj] = _mm512_fmadd_ps(g[o], xv, acc[o * KH * KW + ki * KW + kj]);
                    }
                }
            }
        }
    }
    /* every loop over the sums unrolled: one indexed by a variable puts the array in memory, and the
     * compiler then stored every sum back to it at every step */
    #pragma GCC unroll 8
    for (int o = 0; o < OB; o++) {
        #pragma GCC unroll 25
        for (int t = 0; t < KH * KW; t++) dW[((o0 + o) * d->Cin + c) * KH * KW + t] = _mm512_reduce_add_ps(acc[o * KH * KW + t]);
    }
}

/* One unit: the output channels [o0, o0 + size) against input channel c, size at most the group
 * width direct_wgrad_float picks for the kernel's size.  Each size and kernel is its own instantiation of
 * wgrad_unit, so that the sums are named at compile time. */
static void wgrad_group(const direct_wgrad *d, int64_t kh, int64_t o0, int64_t size, int64_t c, const padded_planes *xp,
                        const float *dy, float *dW) {
    /* without dilation the taps' offsets are constants: as variables, the 5 x 5 unit's 25
     * addresses took more registers than there are, and its sums went to the stack */
    const bool plain = d->dh == 1 && d->dw == 1;
    if (kh == 1) {
        if (size == 8) wgrad_unit(d, 8, 1, 1, 1, 1, o0, c, xp, dy, dW);
        else for (int64_t o = 0; o < size; o++) wgrad_unit(d, 1, 1, 1, 1, 1, o0 + o, c, xp, dy, dW);
    } else if (kh == 3 && plain) {
        if (size == 3) wgrad_unit(d, 3, 3, 3, 1, 1, o0, c, xp, dy, dW);
        else if (size == 2) wgrad_unit(d, 2, 3, 3, 1, 1, o0, c, xp, dy, dW);
        else wgrad_unit(d, 1, 3, 3, 1, 1, o0, c, xp, dy, dW);
    } else if (kh == 3) {
        for (int64_t o = 0; o + 1 < size; o += 2) wgrad_unit(d, 2, 3, 3, d->dh, d->dw, o0 + o, c, xp, dy, dW);
        if (size % 2) wgrad_unit(d, 1, 3, 3, d->dh, d->dw, o0 + size - 1, c, xp, dy, dW);
    } else if (plain) {
        wgrad_unit(d, 1, 5, 5, 1, 1, o0, c, xp, dy, dW);
    } else {
        wgrad_unit(d, 1, 5, 5, d->dh, d->dw, o0, c, xp, dy, dW);
    }
}

/* dW for 1 x 1, 3 x 3 and 5 x 5 kernels, in units of up to 8, 3 and 1 output channels (8, 27 and
 * 25 vector sums); false, doing nothing, for other kernel sizes or when x's padded copy cannot be
 * allocated. */
static bool direct_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy, float *dW,
                               bool parallel) {
    const int64_t width = kh == 1 && kw == 1 ? 8 : kh == 3 && kw == 3 ? 3 : kh == 5 && kw == 5 ? 1 : 0;
    if (!width) return false;
    padded_planes xp;   /* rows oy + ki dh - pt, columns ox + kj dw - pl, for every vector of 16 columns */
    if (!pad_planes(x, d->N * d->Cin, d->H, d->W, -d->pt, -d->pl, d->Ho + (kh - 1) * d->dh,
                    (d->Wo + 15) / 16 * 16 + (kw - 1) * d->dw, parallel, &xp))
        return false;
    const int64_t groups = (d->Cout + width - 1) / width, units = groups * d->Cin;
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t u = 0; u < units; u++) {
        const int64_t o0 = u / d->Cin * width, c = u % d->Cin;
        wgrad_group(d, kh, o0, d->Cout - o0 < width ? d->Cout - o0 : width, c, &xp, dy, dW);
    }
    al_free(xp.data, xp.bytes);
    return true;
}
#else
typedef struct {
    int64_t N, Cin, Cout, H, W, Ho, Wo;
    int64_t pt, pl, dh, dw;
} direct_wgrad;
static bool direct_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy, float *dW,
                               bool parallel) {
    (void)d; (void)kh; (void)kw; (void)x; (void)dy; (void)dW; (void)parallel;
    return false;
}
static bool direct_conv_float(const direct_conv *d, const float *in, const float *w, const float *bias, float *out,
                              bool parallel) {
    (void)d; (void)in; (void)w; (void)bias; (void)out; (void)parallel;
    return false;
}
#endif
#endif
