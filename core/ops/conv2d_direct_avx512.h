/* conv2d_direct_avx512.h -- 2-D convolution computed directly, without the column matrix, for float
 * on AVX-512 (conv2d.c's forward, input gradient and weight gradient; stride 1, one group).
 *
 * im2col copies each input value kh x kw times into a matrix 9x (3x3) or 25x (5x5) the input's size,
 * and on the visual-search CNN's shapes building and folding it cost as much as the products
 * (bench/RESULTS.md).  Here each output row is summed in registers straight from the input rows:
 * for a block of DIRECT_OB output channels and 32 output columns (two vectors), every tap (input
 * channel, ki, kj) loads the two shifted input vectors once and multiplies them by one broadcast
 * weight per output channel, 2 x DIRECT_OB multiply-adds for 2 + DIRECT_OB loads.  Lanes whose
 * input column falls in the padding or past the row are masked off (a masked load reads nothing
 * there), and input rows in the padding are skipped.
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

enum { DIRECT_OB = 8, DIRECT_MAX_KW = 16 };   /* kernels up to 16 wide (the lane masks of a row are kept per kj) */

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

/* Output row r of image n, channels [oc0, oc0 + DIRECT_OB) (those below OC stored), all columns.
 * wp is the block's weights packed as [ic][ki][kj][DIRECT_OB]: a tap's broadcasts share a line. */
static void direct_row(const direct_conv *d, int64_t n, int64_t oc0, int64_t r, const float *in, const float *wp,
                       const float *bias, float *out) {
    const int64_t taps = d->kh * d->kw, channels = d->OC - oc0 < DIRECT_OB ? d->OC - oc0 : DIRECT_OB;
    for (int64_t c0 = 0; c0 < d->out_w; c0 += 32) {
        __m512 acc[DIRECT_OB][2];
        #pragma GCC unroll 8
        for (int o = 0; o < DIRECT_OB; o++) {
            const __m512 b = _mm512_set1_ps(bias && o < channels ? bias[oc0 + o] : 0.0f);
            acc[o][0] = b;
            acc[o][1] = b;
        }
        const int64_t valid = d->out_w - c0, kw = d->kw, kh = d->kh, in_h = d->in_h, in_w = d->in_w, IC = d->IC;
        /* per kj (the same for every input channel and row): the lanes and the column offset */
        __mmask16 lanes[DIRECT_MAX_KW][2];
        int64_t offset[DIRECT_MAX_KW];
        for (int64_t kj = 0; kj < kw; kj++) {
            offset[kj] = c0 + d->col_base + kj * d->col_step;
            lanes[kj][0] = direct_lanes(offset[kj], in_w, valid);
            lanes[kj][1] = direct_lanes(offset[kj] + 16, in_w, valid - 16);
        }
        for (int64_t ic = 0; ic < IC; ic++) {
            for (int64_t ki = 0; ki < kh; ki++) {
                const int64_t ir = r + d->row_base + ki * d->row_step;
                if (ir < 0 || ir >= in_h) continue;
                const float *row = in + ((n * IC + ic) * in_h + ir) * in_w;
                const float *wt = wp + (ic * taps + ki * kw) * DIRECT_OB;
                for (int64_t kj = 0; kj < kw; kj++) {
                    const __m512 x0 = _mm512_maskz_loadu_ps(lanes[kj][0], row + offset[kj]);
                    const __m512 x1 = _mm512_maskz_loadu_ps(lanes[kj][1], row + offset[kj] + 16);
                    #pragma GCC unroll 8
                    for (int o = 0; o < DIRECT_OB; o++) {
                        const __m512 wv = _mm512_set1_ps(wt[kj * DIRECT_OB + o]);
                        acc[o][0] = _mm512_fmadd_ps(wv, x0, acc[o][0]);
                        acc[o][1] = _mm512_fmadd_ps(wv, x1, acc[o][1]);
                    }
                }
            }
        }
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

/* out = the direct convolution of in (see the top of the file); bias may be NULL.  Returns false,
 * doing nothing, when the packed weights cannot be allocated (or, below, without AVX-512). */
static bool direct_conv_float(const direct_conv *d, const float *in, const float *w, const float *bias, float *out,
                              bool parallel) {
    const int64_t blocks = (d->OC + DIRECT_OB - 1) / DIRECT_OB, taps = d->kh * d->kw;
    const size_t packed_bytes = sizeof(float) * (size_t)(blocks * d->IC * taps * DIRECT_OB);
    float *wp = al_alloc(packed_bytes);
    if (!wp) return false;
    for (int64_t blk = 0; blk < blocks; blk++)   /* [block][ic][tap][o], zero past OC */
        for (int64_t ic = 0; ic < d->IC; ic++)
            for (int64_t t = 0; t < taps; t++)
                for (int o = 0; o < DIRECT_OB; o++) {
                    const int64_t oc = blk * DIRECT_OB + o;
                    wp[((blk * d->IC + ic) * taps + t) * DIRECT_OB + o] = oc < d->OC ? w[oc * d->w_oc + ic * d->w_ic + t] : 0.0f;
                }
    const int64_t units = d->N * blocks * d->out_h;
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t u = 0; u < units; u++) {
        const int64_t n = u / (blocks * d->out_h), blk = u / d->out_h % blocks, r = u % d->out_h;
        direct_row(d, n, blk * DIRECT_OB, r, in, wp + blk * d->IC * taps * DIRECT_OB, bias, out);
    }
    al_free(wp, packed_bytes);
    return true;
}
/* ---- the weight gradient --------------------------------------------------------------------
 * dW(o, c, ki, kj) = the sum over images and output positions of dy(n, o, oy, ox) x(n, c, oy + ki dh
 * - pt, ox + kj dw - pl).  A unit is OB output channels and one input channel; its KH x KW taps x OB
 * sums stay in vector registers over every position (16 output columns a vector) and are added up
 * across lanes at the end: per vector of positions, OB loads of dy and KH KW shifted loads of x feed
 * OB KH KW multiply-adds.  Each dW entry is one unit's, summed in a fixed order. */
typedef struct {
    int64_t N, Cin, Cout, H, W, Ho, Wo;
    int64_t pt, pl, dh, dw;
} direct_wgrad;

static inline __attribute__((always_inline)) void wgrad_unit(const direct_wgrad *d, int OB, int KH, int KW, int64_t o0,
                                                             int64_t c, const float *x, const float *dy,
                                                             const __mmask16 *lanes, float *dW) {
    __m512 acc[8][25];
    for (int o = 0; o < OB; o++)
        for (int t = 0; t < KH * KW; t++) acc[o][t] = _mm512_setzero_ps();
    /* the geometry in locals: read through d, each field was loaded again at every tap */
    const int64_t Ho = d->Ho, Wo = d->Wo, H = d->H, W = d->W, dh = d->dh, dw = d->dw, pt = d->pt, pl = d->pl;
    const int64_t vectors = (Wo + 15) / 16;
    for (int64_t n = 0; n < d->N; n++) {
        const float *xc = x + (n * d->Cin + c) * H * W;
        const float *gy = dy + (n * d->Cout + o0) * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            const float *rows[5];   /* the input rows of the taps' ki, NULL in the padding */
            for (int ki = 0; ki < KH; ki++) {
                const int64_t iy = oy + ki * dh - pt;
                rows[ki] = iy < 0 || iy >= H ? NULL : xc + iy * W - pl;
            }
            for (int64_t v = 0; v < vectors; v++) {
                const int64_t ox0 = v * 16;
                const __mmask16 *vl = lanes + v * (KW + 1);
                __m512 g[8];
                for (int o = 0; o < OB; o++) g[o] = _mm512_maskz_loadu_ps(vl[0], gy + (o * Ho + oy) * Wo + ox0);
                for (int ki = 0; ki < KH; ki++) {
                    if (!rows[ki]) continue;
                    const float *row = rows[ki] + ox0;
                    for (int kj = 0; kj < KW; kj++) {
                        const __m512 xv = _mm512_maskz_loadu_ps(vl[1 + kj], row + kj * dw);
                        for (int o = 0; o < OB; o++) acc[o][ki * KW + kj] = _mm512_fmadd_ps(g[o], xv, acc[o][ki * KW + kj]);
                    }
                }
            }
        }
    }
    for (int o = 0; o < OB; o++)
        for (int t = 0; t < KH * KW; t++) dW[((o0 + o) * d->Cin + c) * KH * KW + t] = _mm512_reduce_add_ps(acc[o][t]);
}

/* dW for 1 x 1, 3 x 3 and 5 x 5 kernels (8, 2 and 1 output channels a unit: 8, 18 and 25 vector
 * sums); false, doing nothing, for other kernel sizes or when the lane table cannot be allocated. */
static bool direct_wgrad_float(const direct_wgrad *d, int64_t kh, int64_t kw, const float *x, const float *dy, float *dW,
                               bool parallel) {
    const int OB = kh == 1 && kw == 1 ? 8 : kh == 3 && kw == 3 ? 2 : kh == 5 && kw == 5 ? 1 : 0;
    if (!OB || d->Cout % OB) return false;
    /* per vector of output columns: its own lanes, then each kj's lanes of x */
    const int64_t vectors = (d->Wo + 15) / 16;
    const size_t lane_bytes = sizeof(__mmask16) * (size_t)(vectors * (kw + 1));
    __mmask16 *lanes = al_alloc(lane_bytes);
    if (!lanes) return false;
    for (int64_t v = 0; v < vectors; v++) {
        lanes[v * (kw + 1)] = direct_lanes(0, 16, d->Wo - v * 16);
        for (int64_t kj = 0; kj < kw; kj++)
            lanes[v * (kw + 1) + 1 + kj] = direct_lanes(v * 16 + kj * d->dw - d->pl, d->W, d->Wo - v * 16);
    }
    const int64_t units = d->Cout / OB * d->Cin;
    #pragma omp parallel for schedule(static) if (parallel)
    for (int64_t u = 0; u < units; u++) {
        const int64_t o0 = u / d->Cin * OB, c = u % d->Cin;
        if (OB == 8) wgrad_unit(d, 8, 1, 1, o0, c, x, dy, lanes, dW);
        else if (OB == 2) wgrad_unit(d, 2, 3, 3, o0, c, x, dy, lanes, dW);
        else wgrad_unit(d, 1, 5, 5, o0, c, x, dy, lanes, dW);
    }
    al_free(lanes, lane_bytes);
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
