/* cuda_bf16.h -- the part of CUDA's bfloat16 header that core/cuda uses, emulated on the CPU
 * (make test-cuda-emulated): the storage type and its conversions, rounding as the GPU's do (to
 * nearest, ties to even, straight from double too; NaN stays NaN; past the largest finite value,
 * infinity).  No arithmetic operators: the kernels compute in float (cuda_internal.h's
 * compute_type), and one that started to add bfloat16 values directly would fail to build here. */
#ifndef ATTNLAB_EMULATED_CUDA_BF16_H
#define ATTNLAB_EMULATED_CUDA_BF16_H

#include <math.h>
#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t bits;
};

static inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* float -> bfloat16: the top 16 bits, rounded to nearest even on the 16 dropped ones */
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 h;
    if (isnan(f)) { h.bits = (uint16_t)((u >> 16) | 0x40); return h; }   /* a quiet NaN of the same sign */
    u += 0x7fffu + ((u >> 16) & 1u);
    h.bits = (uint16_t)(u >> 16);
    return h;
}

/* double -> bfloat16 in one rounding (through float it would round twice): the nearest multiple of
 * bfloat16's spacing at x's binade, ties to even (rint in the default rounding mode) */
static inline __nv_bfloat16 __double2bfloat16(double x) {
    if (isnan(x) || isinf(x) || x == 0) return __float2bfloat16((float)x);
    int e = ilogb(x);
    if (e < -126) e = -126;                       /* float's (and bfloat16's) subnormal spacing */
    const double spacing = ldexp(1.0, e - 7), r = rint(x / spacing) * spacing;
    if (fabs(r) >= ldexp(1.0, 128)) return __float2bfloat16(x > 0 ? INFINITY : -INFINITY);
    return __float2bfloat16((float)r);            /* r is a bfloat16 value: exact in float */
}

#endif
