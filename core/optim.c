/* optim.c -- optimiser steps and gradient clipping, in place on a parameter, its .grad and its
 * state tensors.
 *
 * The arithmetic follows PyTorch's (torch.optim.SGD, Adam, AdamW and clip_grad_norm_) operation by
 * operation, so that a run here and a run there agree to rounding.  Nothing is recorded on the
 * graph: these work on raw memory.  They run every step on every parameter, so each is one or two
 * plain loops over contiguous memory that the compiler vectorises; sqrt goes through an explicit
 * vector helper because a libm sqrt call keeps GCC from vectorising a loop (errno). */
#include "internal.h"
#include "ops/elementwise_ops.h"
#include <math.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* ---- validation ---------------------------------------------------------------------------- */

/* param must be a contiguous float tensor (it is written in place), on the CPU or on CUDA
 * (core/cuda/optim.cu); its grad and state tensors must be on the same device. */
static bool check_param(const char *fn, const al_tensor *p) {
    if (!p) { al_error("%s: argument 'param' is missing (nil)", fn); return false; }
    if (!al_is_float(p->dtype)) {
        al_error("%s: param of shape %s has dtype %s; optimisers need float32 or float64", fn,
                 TSHAPE(p), al_dtype_name(p->dtype));
        return false;
    }
    if (!al_is_contiguous(p)) {
        al_error("%s: param of shape %s must be a contiguous tensor", fn, TSHAPE(p));
        return false;
    }
    return true;
}

/* A state tensor (momentum buffer, m, v) must match the param exactly: same shape, same dtype,
 * contiguous, and not the param's own memory. */
static bool check_state(const char *fn, const char *name, const al_tensor *p, const al_tensor *s) {
    if (!s) { al_error("%s: state tensor '%s' is missing (nil)", fn, name); return false; }
    if (!al_shape_equal(s->ndim, s->shape, p->ndim, p->shape) || s->dtype != p->dtype) {
        al_error("%s: %s has shape %s and dtype %s but the param has shape %s and dtype %s", fn, name,
                 TSHAPE(s), al_dtype_name(s->dtype), TSHAPE(p), al_dtype_name(p->dtype));
        return false;
    }
    if (!al_same_device(fn, p, s, NULL)) return false;
    if (!al_is_contiguous(s)) {
        al_error("%s: %s of shape %s must be a contiguous tensor", fn, name, TSHAPE(s));
        return false;
    }
    if (s->storage == p->storage) {
        al_error("%s: %s of shape %s shares memory with the param", fn, name, TSHAPE(s));
        return false;
    }
    return true;
}

/* The param's gradient as a contiguous tensor of the param's dtype (a new reference), or NULL with
 * *rc = 0 when there is none, or NULL with *rc = -1 on error. */
static al_tensor *grad_for(const char *fn, const al_tensor *p, int *rc) {
    *rc = 0;
    const al_tensor *g = p->grad;
    if (!g) return NULL;
    if (!al_shape_equal(g->ndim, g->shape, p->ndim, p->shape) || g->dtype != p->dtype) {
        al_error("%s: grad has shape %s and dtype %s but the param has shape %s and dtype %s", fn,
                 TSHAPE(g), al_dtype_name(g->dtype), TSHAPE(p), al_dtype_name(p->dtype));
        *rc = -1;
        return NULL;
    }
    if (!al_same_device(fn, p, g, NULL)) { *rc = -1; return NULL; }
    al_tensor *c = al_contiguous_nograd(g);
    if (!c) *rc = -1;
    return c;
}

/* ---- the update kernels ------------------------------------------------------------------- */

/* out[i] = sqrt(in[i]), correctly rounded, vectorised by hand (see the top of the file). */
static void sqrt_rows_float(float *restrict out, const float *restrict in, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_sqrt_ps(_mm512_loadu_ps(in + i)));
#elif defined(__AVX__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_sqrt_ps(_mm256_loadu_ps(in + i)));
#elif defined(__SSE2__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(in + i)));
#endif
    for (; i < n; i++) out[i] = sqrtf(in[i]);
}

static void sqrt_rows_double(double *restrict out, const double *restrict in, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(out + i, _mm512_sqrt_pd(_mm512_loadu_pd(in + i)));
#elif defined(__AVX__)
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(out + i, _mm256_sqrt_pd(_mm256_loadu_pd(in + i)));
#elif defined(__SSE2__)
    for (; i + 2 <= n; i += 2) _mm_storeu_pd(out + i, _mm_sqrt_pd(_mm_loadu_pd(in + i)));
#endif
    for (; i < n; i++) out[i] = sqrt(in[i]);
}

enum { ADAM_CHUNK = 1024 }; /* elements per pass; the sqrt scratch stays in L1 */

/* The update loops, once per float dtype: sgd_update_float, adam_update_double, ... */
#define GENERIC_FILE "generic/optim_steps.h"
#include "generic/float_types.h"

/* ---- SGD ------------------------------------------------------------------------------------ */

int al_sgd_step(al_tensor *param, al_tensor *momentum_buf, double lr, double momentum,
                double weight_decay, int nesterov) {
    const char *fn = "sgd_step";
    if (!check_param(fn, param)) return -1;
    if (!(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0) || !isfinite(lr + momentum + weight_decay)) {
        al_error("%s: lr %g, momentum %g and weight_decay %g must be finite and >= 0 (param shape %s)",
                 fn, lr, momentum, weight_decay, TSHAPE(param));
        return -1;
    }
    if (nesterov && momentum == 0) {
        al_error("%s: nesterov needs momentum > 0 (param shape %s)", fn, TSHAPE(param));
        return -1;
    }
    if (momentum != 0 && !check_state(fn, "momentum_buf", param, momentum_buf)) return -1;
    int rc;
    al_tensor *grad = grad_for(fn, param, &rc);
    if (!grad) return rc;
    al_tensor *buf = momentum != 0 ? momentum_buf : NULL;
    const int64_t n = al_numel(param);
    if (param->storage->device == AL_CUDA) {
        rc = al_cuda_sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov);
        al_release(grad);
        return rc;
    }
    if (param->dtype == AL_FLOAT32)
        sgd_update_float(al_ptr(param), al_ptr(grad), buf ? al_ptr(buf) : NULL, n, lr, momentum, weight_decay, nesterov);
    else sgd_update_double(al_ptr(param), al_ptr(grad), buf ? al_ptr(buf) : NULL, n, lr, momentum, weight_decay, nesterov);
    al_release(grad);
    return 0;
}

/* ---- Adam ----------------------------------------------------------------------------------- */

int al_adam_step(al_tensor *param, al_tensor *m, al_tensor *v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, int decoupled, int64_t step) {
    const char *fn = "adam_step";
    if (!check_param(fn, param)) return -1;
    if (!(lr >= 0) || !isfinite(lr) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) ||
        !(eps >= 0) || !isfinite(eps) || !(weight_decay >= 0) || !isfinite(weight_decay)) {
        al_error("%s: need lr >= 0, betas in [0, 1), eps >= 0, weight_decay >= 0; got lr %g, betas "
                 "(%g, %g), eps %g, weight_decay %g (param shape %s)", fn, lr, beta1, beta2, eps,
                 weight_decay, TSHAPE(param));
        return -1;
    }
    if (step < 1) {
        al_error("%s: step %lld is not 1-based (the first step is 1; param shape %s)", fn,
                 (long long)step, TSHAPE(param));
        return -1;
    }
    if (!check_state(fn, "m", param, m) || !check_state(fn, "v", param, v)) return -1;
    if (m->storage == v->storage) {
        al_error("%s: m and v (shape %s) share memory", fn, TSHAPE(m));
        return -1;
    }
    int rc;
    al_tensor *grad = grad_for(fn, param, &rc);
    if (!grad) return rc;
    const double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    const int64_t n = al_numel(param);
    if (param->storage->device == AL_CUDA) {
        rc = al_cuda_adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2);
        al_release(grad);
        return rc;
    }
    if (param->dtype == AL_FLOAT32)
        adam_update_float(al_ptr(param), al_ptr(m), al_ptr(v), al_ptr(grad), n, lr, beta1, beta2, eps, weight_decay,
                          decoupled, bc1, bc2);
    else adam_update_double(al_ptr(param), al_ptr(m), al_ptr(v), al_ptr(grad), n, lr, beta1, beta2, eps, weight_decay,
                            decoupled, bc1, bc2);
    al_release(grad);
    return 0;
}

/* ---- gradient clipping ---------------------------------------------------------------------- */

enum { NORM_CHUNK = 16384 };

/* Sum of squares in double, summed chunk by chunk in a fixed order, so that the result does not
 * depend on the number of threads; -1 when out of memory. */
static double sum_squares(const al_tensor *g) {
    const int64_t n = al_numel(g), nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    if (n == 0) return 0;
    double small[64], *part = nchunks <= 64 ? small : malloc(sizeof(double) * (size_t)nchunks);
    if (!part) { al_error("clip_grad_norm: out of memory"); return -1; }
    const bool f32 = g->dtype == AL_FLOAT32;
    const void *base = al_ptr(g);
    #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t i0 = c * NORM_CHUNK, len = n - i0 < NORM_CHUNK ? n - i0 : NORM_CHUNK;
        double s = 0;
        if (f32) {
            const float *x = (const float *)base + i0;
            #pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < len; i++) s += (double)x[i] * (double)x[i];
        } else {
            const double *x = (const double *)base + i0;
            #pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < len; i++) s += x[i] * x[i];
        }
        part[c] = s;
    }
    double total = 0;
    for (int64_t c = 0; c < nchunks; c++) total += part[c];
    if (part != small) free(part);
    return total;
}

/* g *= k in place (g is a leaf gradient: contiguous and its own, but a strided one is handled).
 * On CUDA the elementwise kernel does it in place, through g's own strides. */
static int scale_grad(al_tensor *g, double k) {
    const int64_t n = al_numel(g);
    if (g->storage->device == AL_CUDA) return al_cuda_unary(U_MUL_S, g, g, k, 0);
    if (!al_is_contiguous(g)) {
        al_tensor *c = al_contiguous_nograd(g);
        if (!c || scale_grad(c, k) < 0 || al_copy_(g, c) < 0) { al_release(c); return -1; }
        al_release(c);
        return 0;
    }
    if (g->dtype == AL_FLOAT32) {
        float *x = al_ptr(g);
        const float kf = (float)k;
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) x[i] *= kf;
    } else {
        double *x = al_ptr(g);
        #pragma omp parallel for schedule(static) if (n >= AL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) x[i] *= k;
    }
    return 0;
}

/* norm = sqrt(sum of every grad's squares); when max_norm / (norm + 1e-6) < 1 every grad is
 * multiplied by that factor (PyTorch's clip_grad_norm_ with norm_type 2).  Returns the norm.
 * The params and grads of one call are all on the CPU or all on CUDA, where each grad's sum of
 * squares is reduced on the device and added here, in double, in the params' order. */
double al_clip_grad_norm(int n, al_tensor *const *params, double max_norm) {
    const char *fn = "clip_grad_norm";
    if (n < 0 || (n > 0 && !params)) {
        al_error("%s: %d params given%s", fn, n, params ? "" : " but the list is missing");
        return -1;
    }
    if (!(max_norm >= 0)) {
        al_error("%s: max_norm %g must be >= 0", fn, max_norm);
        return -1;
    }
    double total = 0;
    for (int i = 0; i < n; i++) {
        const al_tensor *p = params[i];
        if (!p) { al_error("%s: param %d of %d is missing (nil)", fn, i + 1, n); return -1; }
        if (!al_same_device(fn, params[0], p, p->grad)) return -1;
        const al_tensor *g = p->grad;
        if (!g) continue;
        if (!al_is_float(g->dtype)) {
            al_error("%s: the grad of param %d (shape %s) is not a float tensor", fn, i + 1, TSHAPE(g));
            return -1;
        }
        al_tensor *c = al_contiguous_nograd(g);
        double s = !c ? -1 : c->storage->device == AL_CUDA ? al_cuda_sum_squares(c) : sum_squares(c);
        al_release(c);
        if (s < 0) return -1;
        total += s;
    }
    const double norm = sqrt(total);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < n; i++)
            if (params[i]->grad && scale_grad(params[i]->grad, coef) < 0) return -1;
    return norm;
}
