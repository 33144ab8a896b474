/* solve_system.h -- one linear system M X = R solved in place by Gaussian elimination with partial
 * pivoting, in float64: ops/matmul.c's al_solve runs it per system on the CPU, core/cuda/solve.cu a
 * thread per system on the GPU; one rule for both devices, compiled for the host and, under nvcc,
 * for the device too. */
#ifndef ATTNLAB_SOLVE_SYSTEM_H
#define ATTNLAB_SOLVE_SYSTEM_H
#include "../internal.h"
#include <math.h>

/* m (n x n, overwritten) and r (n x kc, overwritten by X); false when a pivot is 0 (m is singular) */
static inline AL_HOST_DEVICE bool solve_system(double *m, double *r, int64_t n, int64_t kc) {
    for (int64_t col = 0; col < n; col++) {
        int64_t piv = col;
        for (int64_t q = col + 1; q < n; q++) if (fabs(m[q * n + col]) > fabs(m[piv * n + col])) piv = q;
        if (m[piv * n + col] == 0) return false;
        if (piv != col) {
            for (int64_t c = 0; c < n; c++) { const double t = m[col * n + c]; m[col * n + c] = m[piv * n + c]; m[piv * n + c] = t; }
            for (int64_t c = 0; c < kc; c++) { const double t = r[col * kc + c]; r[col * kc + c] = r[piv * kc + c]; r[piv * kc + c] = t; }
        }
        for (int64_t q = col + 1; q < n; q++) {
            const double f = m[q * n + col] / m[col * n + col];
            for (int64_t c = col; c < n; c++) m[q * n + c] -= f * m[col * n + c];
            for (int64_t c = 0; c < kc; c++) r[q * kc + c] -= f * r[col * kc + c];
        }
    }
    for (int64_t col = n - 1; col >= 0; col--)
        for (int64_t c = 0; c < kc; c++) {
            double s = r[col * kc + c];
            for (int64_t q = col + 1; q < n; q++) s -= m[col * n + q] * r[q * kc + c];
            r[col * kc + c] = s / m[col * n + col];
        }
    return true;
}

#endif
